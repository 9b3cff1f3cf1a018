"""How sure is a rule-reading AUROC? A bootstrap over the FAIL items' violated rules.

DynaBench's FAIL items are not independent draws of rules. DynaBench expanded a few hundred hand-written seed
rules into variants, and the 96 FAIL items of the (Aug) dev half break 39 distinct rule texts, which
:func:`cluster_keys` merges into 27 rules: 26 items break one of the employee-information rules (internal and
external users, 12 wordings), 21 the rule about employees' GPS locations, 20 the one about a user repeating a
message. A judge's AUROC there is mostly how it scores those few rules, and two trainings of one recipe differ
by 30 points because they read one of them differently (results log, 2026-12-07 clusters). An interval that
resampled items would count those 21 GPS items as 21 pieces of evidence; this one resamples **clusters**: FAIL
items grouped by the rules they break (:func:`cluster_keys`: the texts of the violated rules, variants merged
when their word sets overlap by at least half; an item without ``rules_violated`` is its own cluster), PASS
items one by one, each side with
replacement (``scipy.stats.bootstrap``, two independent samples, percentile interval). The interval is what
another draw of violated rules of the same kind could give, which is the variation the rule-reading targets
are about. It is reported beside every AUROC of the rule-reading block (:mod:`eval.rule_reading`), with the
AUROC of the largest clusters alone (``by_rule``: the share of PASS items scored below that rule's FAIL items)
and of the other clusters together, which says which rules the number rests on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from csrm.base.rule_text import split_rules
from eval.items import EvalItem
from eval.rule_tests import violated

LEVEL = 0.95
DRAWS = 2000
SHOWN = 4  # the largest clusters whose own AUROC is reported (the rest together)
VARIANT_OVERLAP = 0.5  # word-set Jaccard at which two violated-rule texts are one rule's variants
_WORD = re.compile(r"[a-z0-9']+")


def violated_rule_key(item: EvalItem) -> str:
    """The cluster of a FAIL item: the texts of its violated rules (whitespace-normalised, sorted), ``""``
    when none can be located in its policy."""
    numbers = set(violated(item))
    return " | ".join(sorted(" ".join(r.text.split()).lower() for r in split_rules(item.item.config)
                             if r.number in numbers))


def cluster_keys(keys: Sequence[str], overlap: float = VARIANT_OVERLAP) -> list[str]:
    """One cluster label per key: keys whose word sets have a Jaccard overlap >= ``overlap`` are linked, and
    linked keys (transitively) share the label of the first of them. ``""`` stays ``""`` (no rule located)."""
    distinct = sorted({k for k in keys if k})
    words = [set(_WORD.findall(k)) for k in distinct]
    parent = list(range(len(distinct)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(distinct)):
        for j in range(i):
            union = words[i] | words[j]
            if union and len(words[i] & words[j]) / len(union) >= overlap:
                parent[root(i)] = root(j)
    label = {k: distinct[root(i)] for i, k in enumerate(distinct)}
    return [label.get(k, "") for k in keys]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties one half) of ``scores`` for ``labels`` (1 = violation): the value of
    ``sklearn.metrics.roc_auc_score``, written out because the bootstrap calls it 2,000 times per column and
    scikit-learn's input checks make each call several times slower (one 203-item interval: 4.8 s against 1.1 s)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def clustered_auroc_interval(labels: Sequence[int], p_violation: Sequence[float], clusters: Sequence[str], *,
                             level: float = LEVEL, draws: int = DRAWS, seed: int = 0) -> dict[str, Any] | None:
    """The AUROC with a percentile interval from resampling FAIL clusters and PASS items (module doc).
    ``clusters``: one key per item (used for FAIL items only; ``""`` makes the item its own cluster). ``None``
    without both classes or with a single FAIL cluster (nothing to resample)."""
    from scipy.stats import bootstrap

    y = np.asarray(labels, dtype=int)
    p = np.asarray(p_violation, dtype=np.float64)
    fail = np.flatnonzero(y == 1)
    passed = np.flatnonzero(y == 0)
    keys = [clusters[i] or f"item {i}" for i in fail]
    members: dict[str, list[int]] = {}
    for i, key in zip(fail, keys, strict=True):
        members.setdefault(key, []).append(int(i))
    groups = [np.asarray(v) for v in members.values()]
    if len(groups) < 2 or len(passed) == 0:
        return None

    def statistic(chosen_groups: np.ndarray, chosen_pass: np.ndarray) -> float:
        f = np.concatenate([groups[int(g)] for g in chosen_groups])
        return auroc(np.r_[np.ones(len(f), dtype=int), np.zeros(len(chosen_pass), dtype=int)],
                     np.r_[p[f], p[chosen_pass.astype(int)]])

    result = bootstrap((np.arange(len(groups)), passed), statistic, n_resamples=draws, confidence_level=level,
                       method="percentile", vectorized=False, rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    ranked = sorted(members.items(), key=lambda kv: -len(kv[1]))
    big = [(key, idx) for key, idx in ranked[:SHOWN] if len(idx) > 1]
    rest = [i for _, idx in ranked[len(big):] for i in idx]

    def pass_below(idx: Sequence[int]) -> float:
        """Share of PASS items scored below these FAIL items (ties 1/2): the AUROC of this cluster alone."""
        return auroc(np.r_[np.ones(len(idx), dtype=int), np.zeros(len(passed), dtype=int)], np.r_[p[list(idx)], p[passed]])

    return {"auroc": auroc(y, p), "low": float(interval.low), "high": float(interval.high), "level": level,
            "fail_clusters": len(groups), "fail_items": len(fail), "pass_items": len(passed),
            "largest_cluster": max(len(g) for g in groups),
            "by_rule": [{"rule": key[:120], "fail_items": len(idx), "pass_below": pass_below(idx)} for key, idx in big],
            "other_rules": {"rules": len(groups) - len(big), "fail_items": len(rest),
                            "pass_below": pass_below(rest) if rest else None}}
