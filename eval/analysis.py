"""Metrics over scored items: per view, overall and per config group, at the scorer's stored threshold and at
a threshold tuned on dev items only.

Positive class = violation, ``p_violation = 1 - p_comply`` (as in :mod:`csrm.base.metrics`).

- *stored*: the scorer's own verdicts (``ScoreResult.complies``, i.e. its stored, possibly per-config,
  threshold on ``p_violation``) give F1/precision/recall/accuracy; AUROC, AUPRC, ECE and Brier do not
  depend on a threshold.
- *tuned*: one threshold on ``p_violation`` chosen for best F1 on the view's **dev** items
  (:func:`csrm.base.metrics.best_f1_threshold`), then applied unchanged to the test items.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from csrm.base.metrics import (
    best_f1_threshold,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
)
from csrm.base.score_types import ScoreResult
from eval.items import DEV, HEADLINE, TEST, EvalItem


@dataclass
class Scored:
    """An item with the scorer's result."""

    item: EvalItem
    result: ScoreResult

    @property
    def p_violation(self) -> float:
        return 1.0 - float(self.result.p_comply)

    @property
    def flagged(self) -> int:
        """The scorer's own verdict: 1 = violation at its stored threshold."""
        return int(not self.result.complies)


def stored_metrics(labels: Sequence[int], p_violation: Sequence[float], flagged: Sequence[int],
                   thresholds: Sequence[float] = ()) -> dict[str, float]:
    """:func:`csrm.base.metrics.classification_metrics` with the threshold-dependent numbers taken from the
    scorer's verdicts. ``threshold`` is the stored threshold (a cut on ``p_violation``, as
    ``ScoreResult.threshold`` holds it) when all results share one, else NaN (per-config thresholds)."""
    y, pred = np.asarray(labels, dtype=int), np.asarray(flagged, dtype=int)
    out = classification_metrics(y, p_violation, threshold=0.5)
    out.update({
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else float("nan"),
    })
    unique = set(thresholds)
    out["threshold"] = float(unique.pop()) if len(unique) == 1 else float("nan")
    return out


def tune_threshold(dev: Sequence[tuple[int, float]]) -> float | None:
    """Best-F1 threshold on ``p_violation`` from (label, p_violation) dev pairs; ``None`` when the dev
    pairs are empty or hold one class only (no threshold can be learned)."""
    labels = [label for label, _ in dev]
    if len(set(labels)) < 2:
        return None
    return best_f1_threshold(labels, [p for _, p in dev])


def _block(pairs: Sequence[tuple[int, Scored]], threshold: float | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    labels = [label for label, _ in pairs]
    probs = [s.p_violation for _, s in pairs]
    block = {"stored": stored_metrics(labels, probs, [s.flagged for _, s in pairs],
                                      [s.result.threshold for _, s in pairs])}
    block["tuned"] = classification_metrics(labels, probs, threshold) if threshold is not None else None
    return block


def view_metrics(scored: Sequence[Scored], view: str = HEADLINE) -> dict[str, Any]:
    """Metrics of one view: the dev-tuned threshold, then test metrics overall, per group and per kind.

    Only test items enter ``overall``/``groups``/``kinds``; dev items only choose ``tuned_threshold`` (their
    own stored-threshold numbers are kept under ``dev`` for diagnosis).
    """
    dev = [(s.item.views[view], s) for s in scored if view in s.item.views and s.item.split == DEV]
    test = [(s.item.views[view], s) for s in scored if view in s.item.views and s.item.split == TEST]
    threshold = tune_threshold([(label, s.p_violation) for label, s in dev])
    groups: dict[str, list[tuple[int, Scored]]] = defaultdict(list)
    kinds: dict[str, list[tuple[int, Scored]]] = defaultdict(list)
    for label, s in test:
        groups[s.item.group].append((label, s))
        kinds[s.item.kind].append((label, s))
    return {
        "n_dev": len(dev),
        "n_test": len(test),
        "tuned_threshold": threshold,
        "dev_calibrated": dev_calibrated([(label, s.p_violation) for label, s in dev],
                                         [(label, s.p_violation) for label, s in test]),
        "overall": _block(test, threshold),
        "groups": {g: _block(pairs, threshold) for g, pairs in sorted(groups.items())},
        "kinds": {k: _kind_summary(pairs, threshold) for k, pairs in sorted(kinds.items())},
        "dev": stored_metrics([label for label, _ in dev], [s.p_violation for _, s in dev],
                              [s.flagged for _, s in dev]) if dev else None,
    }


def dev_calibrated(dev: Sequence[tuple[int, float]], test: Sequence[tuple[int, float]]) -> dict[str, float] | None:
    """A temperature fitted on the dev items' P(violation) logits (NLL), applied unchanged to the test items:
    ``{"temperature", "ece", "brier"}`` on test; ``None`` without two classes on dev or without test items.
    This is calibration for this benchmark's kind of data learned from its dev slice only."""
    if len({label for label, _ in dev}) < 2 or not test:
        return None

    def logits(pairs):
        p = np.clip(np.array([q for _, q in pairs], dtype=np.float64), 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    temperature = fit_temperature(logits(dev), np.array([label for label, _ in dev]))
    p_test = 1.0 / (1.0 + np.exp(-logits(test) / temperature))
    y_test = np.array([label for label, _ in test])
    return {"temperature": float(temperature), "ece": expected_calibration_error(y_test, p_test),
            "brier": float(np.mean((p_test - y_test) ** 2))}


def _kind_summary(pairs: Sequence[tuple[int, Scored]], threshold: float | None) -> dict[str, Any]:
    """How one source label kind is judged: mean P(violation) and the share flagged as violation."""
    probs = np.array([s.p_violation for _, s in pairs])
    return {
        "n": len(pairs),
        "label": sorted({label for label, _ in pairs}),
        "mean_p_violation": float(probs.mean()),
        "flagged_stored": float(np.mean([s.flagged for _, s in pairs])),
        "flagged_tuned": float((probs >= threshold).mean()) if threshold is not None else None,
    }


def benchmark_metrics(scored: Sequence[Scored], views: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{view: view_metrics}`` for each view name."""
    return {view: view_metrics(scored, view) for view in views}


def clean_nan(obj: Any) -> Any:
    """Replace NaN/inf floats by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_nan(v) for v in obj]
    return obj
