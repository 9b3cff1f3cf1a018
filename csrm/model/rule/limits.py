"""Length limits, checked by counting: "Write at least two words in every conversation", "Respond with at most
150 words", "Your response should contain fewer than 6 sentences".

Counts and numeric limits are what a small cross-encoder reads worst and code checks exactly. Measured on the
DynaBench (Aug) dev half, "Write at least two words in every conversation." was the pair judge's most frequent
false alarm once topic conditions were gated (:mod:`csrm.model.rule.conditions`): the rule that drove 14 of its
158 PASS items, each kept by every Agent turn. So a rule that is **only** a length limit is not read by the
cross-encoder: :func:`parse` turns it into a :class:`Limit` and :meth:`Limit.broken_by` counts each Agent turn.

A rule is read as a limit when it has no condition ("if / when ..."), exactly one "<relation> <number> <unit>"
phrase (relations: at least, no fewer than, a minimum of, more than; at most, no more than, fewer than, less
than, up to, a maximum of, under, not exceed; numbers in digits or words up to twenty; units: words,
characters, sentences), and nothing but that limit and how often it holds ("in every response", "in any
reply"); "Include the word story at least twice" counts a keyword, not the length, and is left to the judge.
A negation before the phrase flips it ("Never use more than 50 words" is "at most 50 words"). Words are
counted as IFEval's checker counts them (runs of word characters, so the generated format rows are labelled by the same
count); sentences end at ``.``, ``!`` or ``?`` followed by a space or the end. An abbreviation ("Dr.") can add
one, so a sentence limit is declared broken only when the count misses it by more than one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from csrm.model.rule.wording import (
    CONDITION,
    FILLER,
    MAX_NEGATIONS,
    NEGATION,
    NUMBER,
    lower_words,
    negations,
    number,
)

_MIN = r"at least|no fewer than|no less than|a minimum of|minimum of|more than|over"
_MAX = r"at most|no more than|not more than|fewer than|less than|up to|a maximum of|maximum of|under|exceed(?:ing)?"
_LIMIT = re.compile(rf"\b({_MIN}|{_MAX})\s+{NUMBER}\s+(words?|characters?|sentences?)\b", re.I)
# what may surround the limit: the verb, the thing limited, how often it holds; anything else (a keyword, a
# topic, a format) makes the rule more than a limit, and the cross-encoder reads it
_FILLER = FILLER | frozenset("""
contain contains conversation conversations entire has have keep turn turns with avoid do don't never no not refrain
from without exceed exceeding fewer least length less long maximum minimum more most over overall per than total
under up
""".split())


@dataclass(frozen=True)
class Limit:
    """``low <= count(unit) <= high`` for every Agent turn (``high`` ``None``: no upper bound)."""

    unit: str
    low: int
    high: int | None

    def count(self, text: str) -> int:
        if self.unit == "words":
            return len(re.findall(r"\w+", text))
        if self.unit == "characters":
            return len(text)
        return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", s)])

    def describe(self, text: str) -> str:
        """The count of an Agent turn against the limit, for the evidence: "412 words; the rule allows at most 300"."""
        n = self.count(text)
        unit = self.unit if n != 1 else self.unit[:-1]
        if n < self.low:
            return f"{n} {unit}; the rule asks for at least {self.low}"
        return f"{n} {unit}; the rule allows at most {self.high}"

    def broken_by(self, text: str) -> bool:
        """Whether an Agent turn breaks the limit (module doc: a sentence count may be off by one)."""
        n = self.count(text)
        slack = 1 if self.unit == "sentences" else 0
        return n < self.low - slack or (self.high is not None and n > self.high + slack)


@lru_cache(maxsize=16384)  # a policy's rules are parsed for its pairs and again for its counted violations
def parse(rule: str) -> Limit | None:
    """The rule as a :class:`Limit`, or ``None`` when it is not only a length limit (module doc)."""
    text = " ".join(rule.split())
    found = list(_LIMIT.finditer(text))
    if len(found) != 1 or CONDITION.search(text):
        return None
    match = found[0]
    rest = (text[: match.start()] + " " + text[match.end():]).lower()
    if any(w not in _FILLER for w in lower_words(rest)) or negations(rest) > MAX_NEGATIONS:
        return None
    relation, n, unit = match.group(1).lower(), number(match.group(2)), match.group(3).lower().rstrip("s") + "s"
    is_min = bool(re.fullmatch(_MIN, relation))
    strict = relation in ("more than", "over", "fewer than", "less than", "under") or relation.startswith("exceed")
    if relation.startswith("exceed"):
        is_min, strict = True, True  # "exceed N" is "more than N"; only its negation ("do not exceed") is a limit
    if NEGATION.search(text[: match.start()]):
        is_min, strict = not is_min, not strict
    elif relation.startswith("exceed"):
        return None  # "exceed 50 words" without a negation asks for more than 50: rare and ambiguous, not read
    if is_min:
        return Limit(unit, n + 1 if strict else n, None)
    return Limit(unit, 0, n - 1 if strict else n)
