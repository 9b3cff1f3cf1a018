"""The OR over (rule, window) pairs, its calibration, and the evidence it names.

An item violates its policy iff some rule is broken in some Agent turn. Over pair logits ``z_1..z_n`` the
item's score is

- ``max``: ``max_i z_i``; or
- ``softmax``: ``tau * log(mean_i exp(z_i / tau))``, a smooth max that tends to the max as ``tau -> 0``.

Both are **unchanged when the set of pairs is repeated**, and one violating window still dominates the score
however many benign windows surround it (the max exactly; the softmax up to ``tau * log(n)``). The noisy-OR
``1 - prod(1 - p_i)`` and a sum or product over windows are not used because they move with the number of
windows: the clause scorer's product made p_comply fall from 0.98 to 0.49 on a repeated benign answer (issue 28). (A
verbatim repeat does not even reach the OR: a turn's windows are read without it,
:func:`csrm.model.rule.modeling.turn_windows`. A long answer without repeats gives more windows, and the max
of more logits can only rise: issue 28's length test measures that drift on such an answer too.)

The score is then calibrated to a probability by a temperature and a bias fitted on the dev split at item
level (Platt scaling, :func:`fit_calibration`), so p_violation is a calibrated probability for the item, not
for one pair. The pair with the highest logit is the evidence: which rule, in which turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """``p_violation = sigmoid(scale * score + bias)``; the identity map is ``(1.0, 0.0)``."""

    scale: float = 1.0
    bias: float = 0.0

    def __call__(self, score: float) -> float:
        x = self.scale * score + self.bias
        return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def combine(logits: Sequence[float], *, method: str = "max", tau: float = 0.5) -> tuple[float, int]:
    """(item score, index of the pair that drove it) over pair logits (module doc). No pairs: ``-inf``."""
    if len(logits) == 0:
        return float("-inf"), -1
    z = np.asarray(logits, dtype=np.float64)
    top = int(np.argmax(z))
    if method == "max":
        return float(z[top]), top
    if method == "softmax":
        return float(z[top] + tau * np.log(np.mean(np.exp((z - z[top]) / tau)))), top
    raise ValueError(f"unknown aggregation {method!r}; expected max or softmax")


def fit_calibration(scores: Sequence[float], labels: Sequence[int]) -> Calibration:
    """Platt scaling of item scores against item labels (1 = violation) with scikit-learn's logistic
    regression; items without any pair (score ``-inf``) are left out of the fit. One class only: identity.

    A calibration never reverses the judge: a slope <= 0 means that on these items a higher pair logit goes with
    fewer violations, i.e. the item score does not rank them (an under-trained judge: measured on a SmolLM2 judge
    of 63 steps, slope -0.61). Inverting the judge would turn that failure into a score that looks like reading
    on sets where long policies are the benign ones (DynaBench), so the map is then the items' base rate for every
    score (``scale`` 0), which the trainer reports."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    keep = np.isfinite(x)
    if len(set(y[keep].tolist())) < 2:
        return Calibration()
    model = LogisticRegression(C=1e4, max_iter=1000).fit(x[keep, None], y[keep])
    if model.coef_[0, 0] <= 0:
        rate = float(y[keep].mean())
        return Calibration(scale=0.0, bias=math.log(rate / (1.0 - rate)))
    return Calibration(scale=float(model.coef_[0, 0]), bias=float(model.intercept_[0]))


def best_f1_threshold(p_violation: Sequence[float], labels: Sequence[int]) -> float:
    """The cut on p_violation that maximises F1 (violation = positive) on the given items; 0.5 with one class."""
    p = np.asarray(p_violation, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    if y.sum() == 0 or y.sum() == len(y):
        return 0.5
    best, cut = -1.0, 0.5
    for t in np.unique(p):
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        f1 = 2 * tp / max(1.0, pred.sum() + y.sum())
        if f1 > best:
            best, cut = f1, float(t)
    return cut
