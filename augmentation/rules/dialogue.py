"""Conversation scaffolds: business-domain User/Agent exchanges filled with Faker values.

A scaffold is ordinary customer-service talk in one domain (bank, HR helpdesk, clinic, ...); each rule family
then rewrites one or more Agent turns (and the User turn before them) to plant what its rule is about. Agent
turns are one to four sentences so that turn length varies independently of the label, and every filler turn
is annotated with its domain (``domain:<key>``) for the "only discuss ..." rules.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from augmentation.rules.core import Transcript, Wordings
from augmentation.rules.values import ValueBank, around_anchor
from csrm.base.rule_text import Turn


@dataclass(frozen=True)
class Domain:
    key: str
    scope: Wordings          # "only discuss {scope}" phrasings
    user: tuple[str, ...]
    agent: tuple[str, ...]


def _d(key: str, scope: list[str], user: list[str], agent: list[str]) -> Domain:
    return Domain(key, Wordings(f"scope.{key}", scope), tuple(user), tuple(agent))


DOMAINS = [
    _d("bank", ["the customer's bank accounts and transfers", "everyday banking questions",
                "accounts, cards and payments at the bank", "the bank's own products and services"],
       ["Hi, I want to check whether my transfer from {date} went through.", "Can I raise the limit on my card?",
        "Why was I charged a fee of {amount} last month?", "How do I set up a standing order to {name}?",
        "My app shows a pending payment to {company}. What does that mean?"],
       ["The transfer was completed on {date} and should already show in your balance.",
        "I can request a higher limit for you; it usually takes two working days to review.",
        "That fee is the monthly account charge, which is waived if you keep {amount} in the account.",
        "You can set up the standing order in the app under Payments, then choose a start date.",
        "A pending payment means the merchant has authorised it but not yet collected the money.",
        "I've added a note to your file so the team can follow up by {date}."]),
    _d("hr", ["workplace HR matters such as leave and benefits", "human-resources questions from staff",
              "employee benefits, leave and onboarding", "company HR policy"],
       ["How many vacation days do I have left this year?", "When does open enrollment for benefits start?",
        "I need to update my emergency contact, how do I do that?", "Is there a policy on working from {city}?",
        "Who should I talk to about my onboarding paperwork?"],
       ["You have eleven days of paid leave remaining, and up to five can carry over.",
        "Open enrollment runs from {date} for three weeks; the portal sends a reminder.",
        "You can update contacts yourself in the HR portal under Personal Details.",
        "Remote work from another city needs manager approval and a short form.",
        "Your HR partner is {name}, and they will walk you through the remaining forms.",
        "I've logged the request as ticket {num}; expect an answer within two days."]),
    _d("clinic", ["booking and managing clinic appointments", "appointment scheduling at the clinic",
                  "the clinic's opening hours, bookings and referrals", "practical questions about clinic visits"],
       ["I'd like to book a check-up with Dr. {name}.", "Can I move my appointment on {date}?",
        "Do I need a referral to see a specialist?", "What should I bring to my first visit?",
        "Is the clinic open on weekends?"],
       ["Dr. {name} has an opening on {date} at 10:30; shall I book it?",
        "I've moved your appointment; you'll get a confirmation text shortly.",
        "Most specialists need a referral from your GP, which we can request for you.",
        "Please bring a photo ID, your insurance card and a list of current medicines.",
        "We're open Saturday mornings from 9 to 12 and closed on Sundays.",
        "Arrive ten minutes early so reception can update your details."]),
    _d("telecom", ["phone and internet plans", "the customer's mobile and broadband service",
                   "plans, roaming and billing for our network", "connectivity and service issues"],
       ["My internet keeps dropping in the evening.", "How much does roaming cost in {city}?",
        "I want to upgrade my plan to unlimited data.", "Why is my bill {amount} higher this month?",
        "Can I keep my number if I switch providers?"],
       ["I've run a line test and see some noise; restarting the router often clears it.",
        "Roaming there is included in your plan up to 10 GB a month.",
        "The unlimited plan is available from your next billing date, {date}.",
        "The difference comes from a one-off charge for the device insurance.",
        "Yes, you can port your number; it normally takes one working day.",
        "I've scheduled an engineer visit, reference {num}."]),
    _d("travel", ["trip bookings, flights and hotels", "travel arrangements made through the agency",
                  "itineraries and bookings", "flight and hotel reservations"],
       ["Can you find me a flight to {city} on {date}?", "I need to change the name on my booking.",
        "Is breakfast included at the hotel?", "What is the baggage allowance on my ticket?",
        "Could you add a rental car to my trip?"],
       ["There is a direct flight on {date} leaving at 08:15, and a cheaper one with a stop.",
        "Name changes are allowed once for a fee of {amount}.",
        "Breakfast is included for both guests throughout the stay.",
        "Your fare includes one checked bag of 23 kg and a small cabin bag.",
        "I've added a compact rental car, collected at the airport desk.",
        "Your updated itinerary is reference {num}."]),
    _d("retail", ["orders, returns and deliveries", "the store's products and orders",
                  "shopping questions about our catalogue", "delivery and return questions"],
       ["Where is my order {num}?", "Can I return a jacket I bought on {date}?",
        "Do you have this lamp in another colour?", "The package arrived damaged.",
        "Is there a discount for ordering in bulk?"],
       ["Your order left our warehouse yesterday and should arrive on {date}.",
        "Returns are free within 30 days; print the label from your account page.",
        "The lamp also comes in sage green and charcoal.",
        "I'm sorry about that; I've arranged a replacement at no cost.",
        "Orders over {amount} get an automatic ten percent discount.",
        "Our courier partner {company} handles deliveries in your area."]),
    _d("it", ["IT support for company laptops and accounts", "technical help with work software",
              "helpdesk issues with devices and logins", "the company's IT systems"],
       ["I'm locked out of my account.", "My laptop won't connect to the VPN.",
        "Can I get a licence for the design software?", "The printer on floor three is jammed again.",
        "How do I set up email on my new phone?"],
       ["I've sent a password reset link to your registered device.",
        "Try reconnecting after updating the VPN client to the latest version.",
        "Licence requests need your manager's approval; I've forwarded it to {name}.",
        "A technician will look at the printer this afternoon.",
        "Install the company mail app and sign in with your work account.",
        "Ticket {num} is open for this, and I'll update you by {date}."]),
    _d("insurance", ["insurance policies and claims", "the customer's home and car insurance",
                     "claims, cover and premiums", "questions about their insurance policy"],
       ["I need to file a claim for a broken window.", "Does my policy cover rental cars?",
        "Why did my premium go up to {amount}?", "How long does a claim usually take?",
        "Can I add my partner {name} as a driver?"],
       ["I've opened claim {num}; please upload photos of the damage.",
        "Your policy covers rental cars for up to 14 days after an accident.",
        "Premiums in your area rose after a review of repair costs.",
        "Most claims are settled within ten working days.",
        "Adding a named driver is possible from {date}; the premium changes slightly.",
        "An assessor from {company} may call to arrange a visit."]),
]
DOMAIN_BY_KEY = {d.key: d for d in DOMAINS}
OPENERS = ("Hello! How can I help you today?", "Hi there, thanks for getting in touch. What can I do for you?",
           "Good afternoon, you're chatting with the support team.")
LINKS = ("Is there anything else I can help with?", "Let me know if that works for you.",
         "Happy to help further if needed.", "Thanks for your patience.", "I hope that helps.")


def fill(text: str, bank: ValueBank, split: str, rng: random.Random) -> str:
    """Replace the scaffold placeholders with Faker values of ``split``."""
    fake = bank.fake(split)
    values = {"name": lambda: fake.name(), "company": lambda: fake.company(), "city": lambda: fake.city(),
              "date": lambda: around_anchor(fake, 365, 365).strftime("%B %d"),
              "amount": lambda: f"${fake.random_int(5, 400)}", "num": lambda: fake.bothify("#######")}
    for key, make in values.items():
        while "{" + key + "}" in text:
            text = text.replace("{" + key + "}", make(), 1)
    return text


def agent_filler(domain: Domain, bank: ValueBank, split: str, rng: random.Random, sentences: int) -> str:
    lines = rng.sample(domain.agent, min(sentences, len(domain.agent)))
    if rng.random() < 0.4:
        lines.append(rng.choice(LINKS))
    return " ".join(fill(line, bank, split, rng) for line in lines)


def scaffold(rng: random.Random, bank: ValueBank, split: str, *, n_agent: int | None = None,
             domain: Domain | None = None) -> Transcript:
    """A User/Agent conversation of ``n_agent`` Agent turns (1-4 when None) in one domain."""
    domain = domain or rng.choice(DOMAINS)
    n_agent = n_agent or rng.choice((1, 1, 2, 2, 3, 4))
    turns: list[Turn] = []
    if rng.random() < 0.15:
        turns.append(Turn("assistant", rng.choice(OPENERS)))
        n_agent = max(n_agent, 2)
    asks = rng.sample(domain.user, len(domain.user))
    while sum(t.role == "assistant" for t in turns) < n_agent:
        turns.append(Turn("user", fill(asks.pop(), bank, split, rng)))
        turns.append(Turn("assistant", agent_filler(domain, bank, split, rng, rng.choice((1, 1, 2, 2, 3, 4)))))
    return Transcript(turns, {}, [frozenset({f"domain:{domain.key}"})] * len(turns), domain.key)
