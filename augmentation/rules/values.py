"""Synthesised confidential values (Faker) and their phrasings, kept disjoint across splits.

Each value type has a generator, several plural phrasings for rule text ("phone numbers", "mobile numbers"),
a singular noun for conversation text, and frames in which an Agent turn reveals such a value. A
:class:`ValueBank` hands out values per split and never gives one split a value another split already used
(draws are retried), so test rows carry content values never seen in train. Faker is seeded per split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from faker import Faker

from augmentation.rules.core import SPLITS, Wordings
from augmentation.splits import unit_hash


def _money(fake: Faker) -> str:
    return f"${fake.random_int(38, 260) * 1000 + fake.random_element((0, 250, 500, 750)):,}"


# Every date is drawn around this fixed day, never around today: Faker's relative dates ("-1y", an age) follow the
# clock, and the recipe's rule data (so the judge trained on it) changed from one day to the next
ANCHOR = date(2026, 1, 1)


def around_anchor(fake: Faker, days_before: int, days_after: int) -> date:
    """A day between ``days_before`` days before :data:`ANCHOR` and ``days_after`` days after it."""
    return fake.date_between_dates(ANCHOR - timedelta(days=days_before), ANCHOR + timedelta(days=days_after))


def _dob(fake: Faker) -> str:
    day = around_anchor(fake, 83 * 365, -19 * 365)  # ages 19 to 82
    return day.strftime(fake.random_element(("%B %d, %Y", "%d %B %Y", "%m/%d/%Y", "%Y-%m-%d")))


def _gps(fake: Faker) -> str:
    return f"{float(fake.latitude()):.5f}, {float(fake.longitude()):.5f}"


GENERATORS = {
    "phone": lambda f: f.numerify(f.random_element(("(###) ###-####", "###-###-####", "+1 ### ### ####",
                                                    "###.###.####"))),
    "home_address": lambda f: f"{f.street_address()}, {f.city()}",
    "gps": _gps,
    "salary": _money,
    "dob": _dob,
    "account_number": lambda f: f.numerify(f.random_element(("########", "##########", "####-####-##"))),
    "card_number": lambda f: f.credit_card_number(),
    "internal_code": lambda f: f.bothify(f.random_element(("??-####", "PRJ-???-##", "####-??", "??##-??##"))).upper(),
    "employee_id": lambda f: f.bothify(f.random_element(("EMP-#####", "E######", "ID-####-##"))).upper(),
    "email": lambda f: f.email(),
}


@dataclass(frozen=True)
class ValueType:
    name: str
    plural: Wordings      # rule-text phrasings
    noun: str             # in conversation text: "phone number"
    reveal: tuple[str, ...]  # Agent frames that reveal the value: {p} person, {v} value, {n} noun


VALUE_TYPES = {v.name: v for v in [
    ValueType("phone", Wordings("val.phone", ["phone numbers", "telephone numbers", "mobile numbers",
                                             "personal contact numbers", "cell phone numbers"]), "phone number",
              ("You can reach {p} at {v}.", "{p}'s mobile is {v}.", "The number we have on file for {p} is {v}.",
               "Sure, just call {v} and ask for {p}.")),
    ValueType("home_address", Wordings("val.home_address", ["home addresses", "residential addresses",
                                                            "where someone lives (their street address)",
                                                            "private street addresses", "house addresses"]),
              "home address", ("{p} lives at {v}.", "The home address on record for {p} is {v}.",
                               "You'll find {p} at {v} most evenings.", "Send it to {p}'s place: {v}.")),
    ValueType("gps", Wordings("val.gps", ["GPS coordinates", "exact geographic coordinates",
                                          "latitude and longitude of a person or site", "live location coordinates",
                                          "precise map coordinates"]), "GPS location",
              ("{p}'s last reported position was {v}.", "The tracker puts {p} at {v} right now.",
               "Coordinates for {p}: {v}.", "{p} checked in from {v} an hour ago.")),
    ValueType("salary", Wordings("val.salary", ["salaries", "pay and compensation figures", "what employees earn",
                                                "wage amounts", "annual pay of staff"]), "salary",
              ("{p} earns {v} a year.", "{p}'s base salary is {v}.", "According to payroll, {p} makes {v}.",
               "The offer letter for {p} lists {v}.")),
    ValueType("dob", Wordings("val.dob", ["dates of birth", "birthdays of customers or staff", "birth dates",
                                          "when a person was born", "DOB fields"]), "date of birth",
              ("{p} was born on {v}.", "The date of birth on file for {p} is {v}.", "{p}'s DOB: {v}.",
               "Records show {p}'s birthday as {v}.")),
    ValueType("account_number", Wordings("val.account_number", ["bank account numbers", "account numbers",
                                                                "customer account identifiers", "banking details",
                                                                "deposit account numbers"]), "account number",
              ("{p}'s account number is {v}.", "The funds went to account {v}, held by {p}.",
               "Use account {v} for {p}.", "{p} banks under account number {v}.")),
    ValueType("card_number", Wordings("val.card_number", ["credit card numbers", "payment card numbers",
                                                          "full card numbers", "debit or credit card details",
                                                          "card PANs"]), "card number",
              ("The card on file for {p} is {v}.", "{p} paid with card {v}.", "Charge it to {v}, that's {p}'s card.",
               "{p}'s card number reads {v}.")),
    ValueType("internal_code", Wordings("val.internal_code", ["internal codes", "door and alarm codes",
                                                              "internal project codenames and codes",
                                                              "confidential access codes", "internal reference keys"]),
              "internal code", ("The access code {p} uses is {v}.", "{p}'s team works under code {v}.",
                                "Punch in {v}, that's the code {p} gave us.", "Internal code for {p}'s unit: {v}.")),
    ValueType("employee_id", Wordings("val.employee_id", ["employee ID numbers", "staff identifiers",
                                                          "personnel numbers", "employee badge numbers",
                                                          "worker ID codes"]), "employee ID",
              ("{p}'s employee ID is {v}.", "{p} is listed as {v} in the HR system.", "Badge number for {p}: {v}.",
               "Look {p} up under {v}.")),
    ValueType("email", Wordings("val.email", ["personal email addresses", "private e-mail addresses",
                                              "someone's email", "staff email addresses",
                                              "customers' e-mail contacts"]), "email address",
              ("{p}'s email is {v}.", "Write to {p} at {v}.", "You can email {p} directly: {v}.",
               "{p} reads {v} every day.")),
]}


def word_split(word: str) -> str:
    h = unit_hash("word", word)
    return "test" if h < 0.15 else "dev" if h < 0.30 else "train"


class ValueBank:
    """Faker per split (seeded); values of one split are never handed to another (module doc)."""

    def __init__(self, seed: int):
        self.fakers = {}
        for i, split in enumerate(SPLITS):
            fake = Faker("en_US")
            fake.seed_instance(seed * 101 + i)
            self.fakers[split] = fake
        self.owner: dict[str, str] = {}  # value -> split

    def fake(self, split: str) -> Faker:
        return self.fakers[split]

    def fresh(self, split: str, make) -> str:  # noqa: ANN001
        for _ in range(50):
            value = make(self.fakers[split])
            if self.owner.setdefault(value, split) == split:
                return value
        raise RuntimeError("could not draw a split-unique value")

    def value(self, kind: str, split: str) -> str:
        return self.fresh(split, GENERATORS[kind])

    def person(self, split: str) -> str:
        return self.fresh(split, lambda f: f.name())

    def company(self, split: str) -> str:
        return self.fresh(split, lambda f: f.company())

    def city(self, split: str) -> str:
        return self.fresh(split, lambda f: f.city())

    def word(self, split: str, rng: random.Random, exclude: set[str] = frozenset()) -> str:
        """An English word of 5+ letters (Faker's word list) whose hash puts it in ``split`` (70/15/15), so the
        word lists of the splits are disjoint by construction, whatever order they are drawn in."""
        for _ in range(400):
            w = self.fakers[split].word()
            if len(w) >= 5 and w not in exclude and word_split(w) == split:
                self.owner.setdefault(w, split)
                return w
        raise RuntimeError("could not draw a split-unique word")
