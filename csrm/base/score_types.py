"""What a scorer takes and returns. Every scorer (the CSRM, baselines) speaks these types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from csrm.base.records import Message


@dataclass
class ScoreItem:
    """One thing to judge: a config's text, the conversation so far, and a response (``None`` = screen the
    request: would a full answer comply?)."""

    config: str
    messages: list[Message]
    response: str | None = None
    item_id: str = ""


@dataclass
class ScoreResult:
    """Calibrated P(complies), the reward (higher = better: helpful and compliant), and the verdict.

    ``threshold`` is a cut on ``p_violation = 1 - p_comply``: the item violates iff ``p_violation >=
    threshold`` (so ``complies = p_violation < threshold``), the scorer's global or per-config threshold.
    """

    p_comply: float
    reward: float
    complies: bool
    threshold: float

    @property
    def p_violation(self) -> float:
        return 1.0 - self.p_comply


class Scorer(Protocol):
    """Anything that scores items in batches (the CSRM scorer, the zero-shot LLM judge baseline, ...)."""

    def score_items(self, items: list[ScoreItem]) -> list[ScoreResult]: ...
