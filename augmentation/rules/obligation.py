"""Conditional obligations: "if the user mentions Y, include Z", labelled by the truth table.

An Agent turn breaks the rule iff the User turn it answers (the one right before it) mentions Y (whole word,
any case) and the Agent turn does not contain Z. So of the four cells only (condition met, obligation not
met) is a violation; the other three are the PASS variants, two of them hard negatives: Z said without Y being
mentioned, and Y mentioned by the Agent (or in an earlier User turn) rather than in the message answered.
Y is a Faker company or city or a term from :data:`TERMS`; Z a word, a sentence, a reference code or a link.
"""

from __future__ import annotations

import random

from augmentation.rules.core import RuleItem, Transcript, Wordings, contains_word
from augmentation.rules.values import ValueBank
from csrm.base.rule_text import Turn

CONDITIONAL = Wordings("obligation.if", [
    "If the user mentions {y}, include {z} in your reply.",
    "Whenever a user brings up {y}, your response must contain {z}.",
    "When {y} is mentioned by the user, add {z} to your answer.",
    "Any reply to a message that mentions {y} has to include {z}.",
    "If a customer talks about {y}, make sure to mention {z}.",
    "Should the user refer to {y}, respond with {z} somewhere in the message.",
    "In response to any mention of {y} by the user, you must include {z}.",
    "Mentions of {y} from the user require you to add {z} to the reply.",
    "Each time the user names {y}, the answer must feature {z}.",
    "If the user's message refers to {y}, always include {z}.",
    "Where the user raises {y}, be sure your response has {z}.",
    "If {y} comes up in what the user writes, your next reply needs {z}.",
    "Replies to users who mention {y} must carry {z}.",
    "Once the user says {y}, answer that message with {z} included.",
    "In the case that the user discusses {y}, do the following: include {z} in the reply to that message.",
    "Consistently add {z} to your answer whenever the user's message brings up {y}.",
    "Always make sure to include {z} in the answer when the user asks about {y}.",
    "If the user inquires about {y}, always add {z} somewhere in your response to them.",
    "When a user message is about {y}, the reply to it has to contain {z}; do not leave it out.",
    "Add {z} to the response if the user specifically mentions {y} in their message.",
])
TERMS = Wordings("obligation.term", [
    "The Clash", "marathon training", "electric scooters", "the spring sale", "gift cards", "vinyl records",
    "pet insurance", "solar panels", "the loyalty program", "chess", "sourdough", "the Olympics", "jazz",
    "mountain biking", "home brewing", "crypto wallets", "the winter catalogue", "student discounts",
    "wedding planning", "camping gear", "the mobile app", "yoga classes", "classic cars", "board games",
    "the referral scheme", "gardening", "podcasts", "the premium tier", "surfing", "origami",
])
PHRASES = Wordings("obligation.phrase", [
    "Terms and conditions apply.", "This is not financial advice.", "Prices may vary by region.",
    "Offer valid while stocks last.", "Please consult a professional before acting on this.",
    "Availability is subject to change.", "Our support line is open around the clock.",
    "Rock on and stay punk!", "All bookings are final after 24 hours.", "Remember to keep your receipt.",
    "Data charges may apply.", "Results are not guaranteed.", "We value your feedback.",
    "Safety first, always.", "See our website for full details.",
])
Z_FORMS = {"word": 'the word "{z}"', "phrase": 'the sentence "{z}"', "code": "the reference code {z}",
           "link": "a link to {z}"}
MENTION_LINES = ("By the way, I'm a big fan of {y}.", "I heard about you through {y}.",
                 "Does this apply to {y} as well?", "Also, I was reading about {y} yesterday.",
                 "My friend mentioned {y} to me.")
INCLUDE_LINES = {"word": ("Oh, and one word for you: {z}.", "By the way, {z}!", "Here's a word to remember: {z}."),
                 "phrase": ("{z}",), "code": ("Your reference code is {z}.", "Please quote {z} if you call back."),
                 "link": ("More details at {z}.", "You can read more here: {z}.")}
AGENT_MENTION_LINES = ("Some of our customers also ask about {y}.", "Unrelated, but {y} has been popular lately.")


def _trigger(rng: random.Random, bank: ValueBank, split: str) -> str:
    source = rng.choice(("term", "term", "company", "city"))
    if source == "company":
        return bank.company(split)
    return bank.city(split) if source == "city" else TERMS.pick(rng, split)[1]


def _requirement(rng: random.Random, bank: ValueBank, split: str) -> tuple[str, str]:
    kind = rng.choice(tuple(Z_FORMS))
    if kind == "word":
        return kind, bank.word(split, rng)
    if kind == "phrase":
        return kind, PHRASES.pick(rng, split)[1]
    make = (lambda f: f.bothify("??-####").upper()) if kind == "code" else (lambda f: f.url() + f.uri_path())
    return kind, bank.fresh(split, make)


def rule(rng: random.Random, split: str, y: str, kind: str, z: str) -> RuleItem:
    template, text = CONDITIONAL.pick(rng, split)
    text = text.format(y=y, z=Z_FORMS[kind].format(z=z))

    def check(tr: Transcript) -> list[int]:
        bad = []
        for i, turn in enumerate(tr.turns):
            if turn.role != "assistant" or i == 0 or tr.turns[i - 1].role != "user":
                continue
            met = contains_word(turn.text, z) if kind == "word" else z.lower() in turn.text.lower()
            if contains_word(tr.turns[i - 1].text, y) and not met:
                bad.append(i)
        return bad

    return RuleItem(text, "obligation", template, f"obligation:{y.lower()}:{z.lower()}", check,
                    frozenset({y.lower(), z.lower()}))


def _append(tr: Transcript, i: int, line: str, front: bool = False) -> None:
    """Add ``line`` to turn ``i``; an Agent turn is then marked as holding an aside (off any domain's scope)."""
    text = tr.turns[i].text
    tr.turns[i] = Turn(tr.turns[i].role, f"{line} {text}" if front else f"{text} {line}")
    if tr.turns[i].role == "assistant":
        tr.topics[i] = tr.topics[i] | {"aside"}


def make_base(rng: random.Random, bank: ValueBank, split: str, skeleton: Transcript):
    """(target rule, violating transcript, compliant transcript, truth-table cell of the compliant one)."""
    y = _trigger(rng, bank, split)
    kind, z = _requirement(rng, bank, split)
    target = rule(rng, split, y, kind, z)
    agents = [i for i in skeleton.agent_indices() if i > 0]
    if not agents:
        return None
    pos = rng.choice(agents)
    mention = rng.choice(MENTION_LINES).format(y=y)
    include = rng.choice(INCLUDE_LINES[kind]).format(z=z)
    fail, ok = skeleton.copy(), skeleton.copy()
    _append(fail, pos - 1, mention, front=rng.random() < 0.5)
    cell = rng.choice(("cond+oblig", "cond+oblig", "nocond+oblig", "nocond_agent_mentions", "earlier_mention"))
    if cell == "cond+oblig":  # the same User turn as the violation: only the answer tells the verdict
        ok.turns[pos - 1] = fail.turns[pos - 1]
        _append(ok, pos, include, front=rng.random() < 0.3)
    elif cell == "nocond+oblig":
        _append(ok, pos, include)
    elif cell == "nocond_agent_mentions":
        _append(ok, pos, rng.choice(AGENT_MENTION_LINES).format(y=y))
    else:  # Y in an earlier User message that was answered with Z; the later answer needs nothing
        earlier = [i for i in agents if i < pos]
        if not earlier:
            _append(ok, pos, include)
            cell = "nocond+oblig"
        else:
            j = rng.choice(earlier)
            _append(ok, j - 1, mention)
            _append(ok, j, include)
    return target, fail, ok, cell


def distractors(rng: random.Random, bank: ValueBank, split: str, n: int) -> list[RuleItem]:
    out = []
    for _ in range(n):
        kind, z = _requirement(rng, bank, split)
        out.append(rule(rng, split, _trigger(rng, bank, split), kind, z))
    return out
