"""Rules about letter case, checked by code: "Use all lowercase letters.", "Your entire response should be in
English, and in all capital letters.", "Do not write in all capital letters."

The rule judge's backbone is uncased: the MiniLM tokenizer lower-cases every input, so "PLEASE CHECK YOUR EMAIL"
and "please check your email" are the same tokens, and no case rule can be read from them (the trainer already
leaves such rules out of training: ``metadata.case_dependent``). Case is a character test, so a rule that is
**only** about case is not read by the cross-encoder: :func:`parse` turns it into a :class:`CaseRule` that the
predictor checks on each Agent turn as it checks a length limit (:mod:`csrm.model.rule.limits`).

Five kinds, told apart by what the rule is about:

- ``lowercase``: no upper-case letter anywhere ("in all lowercase letters", "no capital letters are allowed",
  "do not use capital letters", "not a single letter ... capitalized");
- ``capitals``: no lower-case letter anywhere ("in all capital letters", "capitalize all your words", "only
  use capital letters", "do not use lowercase letters"; "not ... lowercase letters only" says nothing and is left
  to the cross-encoder);
- ``no_shouting``: no run of four or more words in capitals, the generated conduct family's own pattern (a
  prohibition of *all* capitals: "do not write in all capital letters", "never shout at the user in capitals",
  "no all-caps sentences"); one acronym ("the FAQ page") is not shouting;
- ``capital_start`` / ``lowercase_start``: the reply's first letter (after any bracket, quote or digit) in
  capitals / lower case ("Always begin your response with a capital letter", "Never start the first word in a
  conversation with a lowercase letter"). A rule about "a conversation" holds the first Agent turn only
  (``conversation``); one about each sentence's first word is more than the reply's start and is left to the
  cross-encoder. DynaBench's policies hold the conversation rule in 68 of 254 items and no item breaks it; the
  cross-encoder, which sees no case, named it as the broken rule of PASS items.

A rule is read when it has no condition and nothing else but filler; "in English" counts as filler: the language
is not checked (IFEval's checker also asks ``langdetect``, which a scorer should not depend on for English
replies). A count of capitalised words ("use words in all capital letters at least 3 times") is more than case
and is left to the cross-encoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from csrm.model.rule.wording import CONDITION, FILLER, MAX_NEGATIONS, NEGATION, lower_words, negations

_ALL_CAPS = (r"(?:all[ -]?capital letters|all[ -]?caps|all[ -]?uppercase|capitali[sz]e all|in capitals|"
             r"only (?:use )?capital letters|in uppercase)")
_SHOUTING_BAN = re.compile(rf"{NEGATION.pattern}(?:\W+\w+){{0,6}}?\W+{_ALL_CAPS}", re.I)
_CAPITALS = re.compile(rf"\b{_ALL_CAPS}", re.I)
_LOWERCASE = re.compile(r"\b(?:lower[ -]?case(?:d)?|lowercased)\b", re.I)
# "no lowercase letters allowed" asks for capitals; "No response should use lowercase letters only" says nothing
_NOT_LOWERCASE = re.compile(rf"{NEGATION.pattern}(?:\W+\w+){{0,4}}?\W+(?:lower[ -]?case(?:d)?|lowercased)\b", re.I)
_NO_CAPITALS = re.compile(rf"{NEGATION.pattern}(?:\W+\w+){{0,8}}?\W+(?:capital letters?|capitali[sz](?:ed|ations?)|capitals)\b",
                          re.I)
# "start / begin ... with a lowercase / capital letter": the reply's first letter (CaseRule kinds *_start)
_START = re.compile(r"\b(?:start|starts|begin|begins)\b(?:\W+\w+){0,8}?\W+with\W+(?:an?\W+)?"
                    r"(lower[ -]?case|upper[ -]?case|capital|capitali[sz]ed)\W+letter\b", re.I)
_COUNTED = re.compile(r"\b(at least|at most|less than|fewer than|more than|times|\d+)\b", re.I)
_SHOUT = re.compile(r"\b(?:[A-Z]{2,}[,.!?']*\s+){3,}[A-Z]{2,}\b")
_FILLER = FILLER | frozenset("""
entire whole written writing used in or never not no don't do avoid without from allowed permitted english letters
letter capital capitals capitalized capitalised capitalize capitalise capitalization capitalizations lowercase lower
case cased lowercased uppercase caps whatsoever single sentences sentence words word with shout shouting user users
customer customers it its that this ensure contain contains it's
start starts begin begins first conversation conversations
""".split())


@dataclass(frozen=True)
class CaseRule:
    """One rule about letter case for every Agent turn, or for the first (``conversation``; module doc)."""

    kind: Literal["lowercase", "capitals", "no_shouting", "capital_start", "lowercase_start"]
    conversation: bool = False  # the first Agent turn only ("... the first word in a conversation ...")

    def broken_by(self, text: str) -> bool:
        if self.kind.endswith("_start"):
            first = _first_letter(text)
            return first is not None and (first.islower() if self.kind == "capital_start" else first.isupper())
        if self.kind == "lowercase":
            return any(c.isupper() for c in text)
        if self.kind == "capitals":
            return any(c.islower() for c in text)
        return _SHOUT.search(text) is not None

    def describe(self, text: str) -> str:
        """What broke the rule in an Agent turn, for the evidence."""
        if self.kind.endswith("_start"):
            asked = "a capital" if self.kind == "capital_start" else "a lower-case"
            return f"the reply starts with {_first_letter(text)!r}; the rule asks for {asked} letter"
        if self.kind == "lowercase":
            n, first = sum(c.isupper() for c in text), next(w for w in text.split() if any(c.isupper() for c in w))
            return f"{n} capital letter{'s' * (n != 1)} (first in {first!r}); the rule asks for lowercase"
        if self.kind == "capitals":
            n, first = sum(c.islower() for c in text), next(w for w in text.split() if any(c.islower() for c in w))
            return f"{n} lower-case letter{'s' * (n != 1)} (first in {first!r}); the rule asks for capitals"
        shout = _SHOUT.search(text)
        return f"{shout.group(0)!r} is written in capitals; the rule forbids it" if shout else ""


@lru_cache(maxsize=16384)  # a policy's rules are parsed for its pairs and again for its counted violations
def parse(rule: str) -> CaseRule | None:
    """The rule as a :class:`CaseRule`, or ``None`` when it is not only about letter case (module doc)."""
    text = " ".join(rule.split())
    if CONDITION.search(text) or _COUNTED.search(text) or negations(text) > MAX_NEGATIONS:
        return None
    if start := _START.search(text):
        return _start_rule(text, start)
    no_lowercase = _NOT_LOWERCASE.search(text) is not None
    if no_lowercase and re.search(r"\bonly\b", text, re.I):
        return None
    if _SHOUTING_BAN.search(text):
        kind = "no_shouting"
    elif _CAPITALS.search(text) or no_lowercase:
        kind = "capitals"
    elif _LOWERCASE.search(text) or _NO_CAPITALS.search(text):
        kind = "lowercase"
    else:
        return None
    if any(w not in _FILLER for w in lower_words(text)):
        return None
    return CaseRule(kind)


def _start_rule(text: str, start: re.Match) -> CaseRule | None:
    """A rule about the reply's first letter (module doc); ``None`` when it says more or is about sentences."""
    if re.search(r"\bsentences?\b", text, re.I) or any(w not in _FILLER for w in lower_words(text)):
        return None
    capital = not start.group(1).lower().startswith("lower")
    if NEGATION.search(text):
        capital = not capital
    return CaseRule("capital_start" if capital else "lowercase_start",
                    conversation=re.search(r"\bconversations?\b", text, re.I) is not None)


def _first_letter(text: str) -> str | None:
    return next((c for c in text if c.isalpha()), None)
