"""What the parsers of code-checked rules share about a rule's wording: numbers, negations, conditions, filler.

Every kind that :mod:`csrm.model.rule.code_checks` lists (length limits, emoji bans, letter case, IFEval's format
instructions) reads a rule only when it is *nothing but* that kind: the kind's phrase, and around it words that
add no instruction ("Your entire response must ...", "Please make sure ..."), no condition and no negation other
than the kind's own. The words and patterns they all need are here, once, so that "no" or "unless" means the
same to each of them; each module adds only the words of its own kind.
"""

from __future__ import annotations

import re

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
# a count in digits or in words, as a regex group
NUMBER = r"(\d{1,6}|" + "|".join(NUMBER_WORDS) + r")"
# a negation anywhere in a rule turns a requirement into a ban ("Do not use commas", "No reply should exceed ...")
NEGATION = re.compile(r"\b(never|not|no|don't|do not|doesn't|does not|avoid|without|refrain|must not|cannot|"
                      r"can't)\b", re.I)
# two negations ("Never reply without an emoji", "Do not refrain from ...") may cancel: such a rule is left to the
# cross-encoder by every kind, as is anything code could read backwards
MAX_NEGATIONS = 1
# a rule that holds one of these applies only sometimes, which code does not read (the cross-encoder does)
CONDITION = re.compile(r"\b(if|when|whenever|unless|in case|once|after|before|should the|should a|where)\b", re.I)
# the words around any instruction: whom it is for and the verbs that carry it
FILLER = frozenset("""
a all always an and answer answers any are at be each every in is make message messages must of only output please
replies reply respond response responses shall should sure text the to use uses using write you your
""".split())
_WORD = re.compile(r"[a-z']+")


def number(text: str) -> int:
    """The value of a :data:`NUMBER` match: "12" or "twelve"."""
    return int(text) if text.isdigit() else NUMBER_WORDS[text.lower()]


def negations(text: str) -> int:
    """How many negations ``text`` holds (more than :data:`MAX_NEGATIONS`: the parsers do not read the rule)."""
    return len(NEGATION.findall(text))


def lower_words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (apostrophes kept: "don't"), as the filler tests compare them."""
    return _WORD.findall(text.lower())
