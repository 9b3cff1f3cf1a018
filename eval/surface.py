"""``probe:surface``: how far lengths alone go on a benchmark, printed beside every CSRM as a floor.

A logistic regression on three numbers per item that say nothing about meaning: the log character count of
the judged text (the response, or the request under screening), the number of conversation turns, and the
log character count of the config. It is fitted on each benchmark's **dev** items only and scores its test
items, as the tuned thresholds are.

Why it exists: DynaBench (Aug) carries surface cues. On its 203 test items the number of turns alone ranks FAIL
above PASS at AUROC 0.66, and a shorter response at 0.71 (measured 2026-12-01), so an AUROC in the low 70s on
that set is not evidence of reading the policy. A number a model reaches from lengths is not skill; this row
shows how much of each benchmark such cues explain. A benchmark whose dev items hold one class only (nothing
to fit) is reported as skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from csrm.base.records import last_user_turn
from csrm.base.score_types import ScoreItem, ScoreResult
from eval.items import DEV, EvalItem

NAME = "surface"


def surface_features(item: EvalItem | ScoreItem) -> list[float]:
    """[log(1 + characters judged), turns, log(1 + config characters)] of one item."""
    it = item.item if isinstance(item, EvalItem) else item
    judged = it.response if it.response is not None else last_user_turn(list(it.messages))
    turns = len(it.messages) + (it.response is not None)
    return [math.log1p(len(judged)), float(turns), math.log1p(len(it.config))]


class SurfaceProbe:
    """The lengths-only baseline (module doc); ``score_eval_items`` fits on the dev items it is given."""

    def unsupported(self, items: Sequence[EvalItem]) -> str | None:
        """Why this benchmark cannot be scored (None when it can): its dev items need both labels."""
        if len({it.label_violation for it in items if it.split == DEV}) < 2:
            return "probe:surface fits on the benchmark's dev items, which hold one class only (or none)"
        return None

    def fitted(self, items: Sequence[EvalItem]) -> FittedSurface:
        """The probe fitted on the dev items among ``items``: a plain scorer (``score_items``) of any item,
        which the rule-reading tests (:mod:`eval.rule_reading`) run on perturbed copies."""
        reason = self.unsupported(items)
        if reason:
            raise ValueError(reason)
        dev = [it for it in items if it.split == DEV]
        x = np.array([surface_features(it) for it in dev])
        y = np.array([it.label_violation for it in dev])
        return FittedSurface(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y))

    def score_eval_items(self, items: Sequence[EvalItem]) -> list[ScoreResult]:
        return self.fitted(items).score_items([it.item for it in items])

    def score_items(self, items):  # the Scorer protocol: this probe needs the benchmark's dev split
        raise TypeError("probe:surface scores EvalItems (score_eval_items): it fits on the benchmark's dev items")


class FittedSurface:
    """A fitted lengths-only probe: scores any :class:`ScoreItem` from its three length features."""

    def __init__(self, model):
        self.model = model

    def score_items(self, items: Sequence[ScoreItem]) -> list[ScoreResult]:
        if not items:
            return []
        p_violation = self.model.predict_proba(np.array([surface_features(it) for it in items]))[:, 1]
        return [ScoreResult(p_comply=float(1 - p), reward=float(-p), complies=bool(p < 0.5), threshold=0.5)
                for p in p_violation]
