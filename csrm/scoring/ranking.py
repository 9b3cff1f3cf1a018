"""One ranking rule for CSRM outputs, shared by ``score_responses``, ``/rank`` and the judge.

The **estimated error** mirrors CoSAlign's error score (lower is better, a violation costs 3)::

    err = 3 * 1[verdict = violates] + sigmoid(-reward)

A response judged compliant scores in ``[0, 1]``, a violating one in ``[3, 4]``: every compliant response ranks
above every violating one, and within a class the higher reward ranks higher (``sigmoid(-reward)`` is strictly
decreasing). The verdict is the scorer's (``p_violation >= threshold``), so per-config thresholds apply.
Ordering uses the exact key ``(violates, -reward)`` (:func:`rank_key`), which the error reproduces but for float
rounding at extreme rewards; equal keys are ties (kept in input order, never paired by the judge).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from csrm.base.compliance import VIOLATION_THRESHOLD
from csrm.base.score_types import ScoreResult

VIOLATION_COST = VIOLATION_THRESHOLD  # 3.0, CoSAlign's weight for a violated category


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def estimated_error(result: ScoreResult) -> float:
    """``3 * 1[violates] + sigmoid(-reward)`` (module doc)."""
    return VIOLATION_COST * (not result.complies) + _sigmoid(-result.reward)


def rank_key(result: ScoreResult) -> tuple[int, float]:
    """Sort key, smaller is better: compliant before violating, then higher reward first."""
    return (int(not result.complies), -float(result.reward))


def rank(results: Sequence[ScoreResult]) -> list[int]:
    """Indices of ``results`` best first (ties in input order)."""
    return sorted(range(len(results)), key=lambda i: (rank_key(results[i]), i))
