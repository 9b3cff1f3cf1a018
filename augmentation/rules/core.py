"""Shared structures of the rule-violation augmentation: transcripts with annotations, checkable rules, splits.

Every rule a generated policy holds is a :class:`RuleItem`: its text plus a ``check`` function over the
annotated :class:`Transcript` that returns the indices (into the transcript's turns) of the Agent turns that
break it. Labels are never written by hand: a row's ``violations`` are computed by running every rule's check
on the final transcript, so a distractor rule that happened to be broken would show up as a violation (the
assembly drops such distractors instead, so that contrasts flip or keep labels exactly as intended).

Splits. Rule wordings (templates), value phrasings and content are partitioned into train/dev/test by a hash
of their id (:func:`partition`), each split getting at least one member of every list of three or more, so
the test split reads wordings and content never used in train, not only other rows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from augmentation.splits import unit_hash
from csrm.base.rule_text import Turn

SPLITS = ("train", "dev", "test")


@dataclass
class Transcript:
    """Turns plus what code needs to judge them: ``secrets`` (value type -> values planted anywhere) and
    ``topics`` (per turn: content labels of that turn, e.g. ``{"violence"}`` or ``{"domain:bank"}``)."""

    turns: list[Turn]
    secrets: dict[str, set[str]] = field(default_factory=dict)
    topics: list[frozenset[str]] = field(default_factory=list)
    domain: str = ""

    def agent_indices(self) -> list[int]:
        return [i for i, t in enumerate(self.turns) if t.role == "assistant"]

    def copy(self) -> Transcript:
        return Transcript(list(self.turns), {k: set(v) for k, v in self.secrets.items()}, list(self.topics),
                          self.domain)


Check = Callable[[Transcript], list[int]]


@dataclass(frozen=True)
class RuleItem:
    """One checkable rule: ``text`` as written in the policy, its ``family`` and wording ``template`` id,
    ``key`` (identity: two rules with one key say the same), ``check`` (Agent turn indices that break it) and
    ``subjects`` (value types, trigger words, topics, instruction ids: two rules of one policy never share one, so
    a policy never says "share phone numbers" and "never share phone numbers" at once)."""

    text: str
    family: str
    template: str
    key: str
    check: Check = field(compare=False, repr=False)
    subjects: frozenset[str] = frozenset()  # what it is about: policies never hold two rules sharing one


def partition(ids: Sequence[str], salt: str, fractions: tuple[float, float] = (0.15, 0.15)) -> dict[str, str]:
    """Assign ids to train/dev/test by hash order: ``fractions`` = (dev, test) shares, at least one each when
    there are three or more ids (fewer: all train)."""
    ordered = sorted(ids, key=lambda i: unit_hash(salt, i))
    n = len(ordered)
    if n < 3:
        return {i: "train" for i in ordered}
    n_test = max(1, round(fractions[1] * n))
    n_dev = max(1, round(fractions[0] * n))
    out = {}
    for k, i in enumerate(ordered):
        out[i] = "test" if k < n_test else "dev" if k < n_test + n_dev else "train"
    return out


class Wordings:
    """A named list of phrasings partitioned into splits: ``pick(rng, split)`` draws one of that split's.

    ``ids`` are ``f"{name}.{index}"`` (stable while the list only grows at its end)."""

    def __init__(self, name: str, texts: Sequence[str], salt: str = "rules"):
        self.name, self.texts = name, list(texts)
        self.ids = [f"{name}.{i}" for i in range(len(self.texts))]
        self.split_of = partition(self.ids, salt)
        self.by_split = {s: [(i, t) for i, t in zip(self.ids, self.texts, strict=True) if self.split_of[i] == s]
                         for s in SPLITS}

    def pick(self, rng: random.Random, split: str) -> tuple[str, str]:
        """(template id, text) of one phrasing of ``split``."""
        return rng.choice(self.by_split[split] or self.by_split["train"])


def contains_word(text: str, word: str) -> bool:
    """Case-insensitive whole-word (or whole-phrase) containment."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text
