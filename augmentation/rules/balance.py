"""Lengths must not give the label away: the lengths-only probe, and the balancing that keeps it near chance.

The probe is the one the issue reports beside every reading score: a logistic regression on five numbers a
row shows without being read (policy characters, transcript characters, rule count, turn count, longest Agent
turn; characters as log1p), scored by AUROC. :func:`balance_lengths` downsamples within cells of quantile bins
of the three character features (rule and turn counts follow them closely): in every cell the majority label
is cut to the minority's count, cells with one label only are dropped. What is left has, per cell, as many
PASS as FAIL rows, so no function of the binned lengths separates them.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np

from csrm.base.rule_text import agent_turns, split_turns

FEATURES = ("policy_chars", "transcript_chars", "num_rules", "num_turns", "longest_agent_turn")


def length_features(row: dict) -> list[float]:
    """The five probe features of a hub-schema row (metadata may be a dict or its JSON string)."""
    turns = split_turns(row["transcript"])
    longest = max((len(turns[i].text) for i in agent_turns(turns)), default=0)
    from csrm.base.rule_text import split_rules

    return [math.log1p(len(row["policy"])), math.log1p(len(row["transcript"])), float(len(split_rules(row["policy"]))),
            float(len(turns)), math.log1p(longest)]


def lengths_probe_auroc(rows: list[dict], fit_rows: list[dict] | None = None, folds: int = 5,
                        seed: int = 0) -> float:
    """AUROC of the lengths-only probe on ``rows`` (FAIL = positive). With ``fit_rows`` the probe is fitted
    there and scored on ``rows``; without, it is ``folds``-fold cross-validated within ``rows`` (the stricter
    reading: the probe may fit this very split's quirks), with fewer folds when a class has fewer rows than
    ``folds`` (a small run); NaN when a label is missing, or a class has one row and nothing to cross-validate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([length_features(r) for r in rows])
    y = np.array([r["label"] == "FAIL" for r in rows], dtype=int)
    if len(set(y)) < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if fit_rows is not None:
        xf = np.array([length_features(r) for r in fit_rows])
        yf = np.array([r["label"] == "FAIL" for r in fit_rows], dtype=int)
        scores = model.fit(xf, yf).predict_proba(x)[:, 1]
    else:
        folds = min(folds, int(np.bincount(y).min()))
        if folds < 2:
            return float("nan")
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        scores = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def _bins(values: list[float], n: int) -> list[int]:
    if n <= 1:
        return [0] * len(values)
    edges = np.quantile(values, [k / n for k in range(1, n)])
    return [int(np.searchsorted(edges, v, side="right")) for v in values]


def balance_lengths(rows: list[dict], bins: int, rng: random.Random) -> list[dict]:
    """Rows kept so that every length cell holds as many PASS as FAIL rows (module doc); order preserved."""
    feats = [length_features(r) for r in rows]
    keys = list(zip(*(_bins([f[j] for f in feats], bins) for j in (0, 1, 4)), strict=True))
    cells: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: {"PASS": [], "FAIL": []})
    for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
        cells[key][row["label"]].append(i)
    keep: set[int] = set()
    for cell in cells.values():
        n = min(len(cell["PASS"]), len(cell["FAIL"]))
        for label in ("PASS", "FAIL"):
            keep.update(rng.sample(cell[label], n))
    return [row for i, row in enumerate(rows) if i in keep]
