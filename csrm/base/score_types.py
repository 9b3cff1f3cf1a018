"""What a scorer takes and returns. Every scorer (the CSRM, baselines) speaks these types."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class Evidence:
    """What drove a verdict, for scorers that judge a policy rule by rule (the rule judge): the rule
    (``rule_number`` as written in the policy, ``None`` for a preamble or an unnumbered policy; ``rule_text``
    the rule itself), the transcript turn (``turn_index`` into ``csrm.base.rule_text.split_turns`` of the
    conversation plus response) and the judge's P(violation) for that (rule, turn) pair. ``reason`` says why,
    where code rather than the model decided the pair: a length limit counted by code gives the count against the
    limit ("412 words; the rule allows at most 300"), an emoji ban what it found ("2 emoji (🎉 😊); the rule
    allows none"); it is empty for a pair the model read."""

    rule_number: int | None
    rule_text: str
    turn_index: int
    p_violation: float
    reason: str = ""


@dataclass
class ScoreResult:
    """Calibrated P(complies), the reward (higher = better: helpful and compliant), and the verdict.

    ``threshold`` is a cut on ``p_violation = 1 - p_comply``: the item violates iff ``p_violation >=
    threshold`` (so ``complies = p_violation < threshold``), the scorer's global or per-config threshold.
    ``evidence`` names the rule and turn that drove the verdict where the scorer knows it (else ``None``).
    """

    p_comply: float
    reward: float
    complies: bool
    threshold: float
    evidence: Evidence | None = None

    @property
    def p_violation(self) -> float:
        return 1.0 - self.p_comply

    def as_json(self) -> dict:
        """The result as the JSON every output writes (``csrm score`` lines, the server's results): the
        scores and verdict, plus ``evidence`` (rule number and text, turn index, that pair's P(violation), the
        reason where code decided it) when the scorer names one: one place, so the file and the endpoint never
        disagree."""
        out = {"p_comply": self.p_comply, "p_violation": self.p_violation, "reward": self.reward,
               "complies": self.complies, "threshold": self.threshold}
        if self.evidence is not None:
            out["evidence"] = asdict(self.evidence)
        return out


class Scorer(Protocol):
    """Anything that scores items in batches (the CSRM scorer, the zero-shot LLM judge baseline, ...)."""

    def score_items(self, items: list[ScoreItem]) -> list[ScoreResult]: ...
