"""How sure is a CoSA-Score gain? A paired bootstrap over the held-out items, pooled over runs (seeds).

    python -m tools.gain BEFORE AFTER [AFTER ...] [--judge NAME] [--out gain.json]   (from a clone)

BEFORE and each AFTER are ``eval.json`` files of ``csrm align`` or run folders (a folder means its last
evaluation: the last ``round_i/eval.json``, or ``baseline/eval.json`` for an evaluation-only run, ``rounds=0``).
All must judge the same held-out items. Beside the gain it prints each run's violation rate on disallowed
requests, refusal rate on allowed ones and helpful-and-compliant rate. Judges: ``training`` (the judge the run
was built with) and every independent judge (``eval.judges``) found in all the files; ``--judge`` keeps one.

Why a bootstrap: CoSA-Score is a mean of ``h * s`` over a few hundred held-out answers, so the gain of one
round moves by a few hundredths with *which* items are held out (on the CoSAlign recipe's 240 items, four times
as much as between seeds; on all 819, about as much). The items
are resampled with replacement within each config (CoSA-Score macro-averages over configs), the same draw for
before and every after-run (the answers are paired by item), and the gain is the after-runs' mean minus
before. The point estimate equals the difference of the reports' CoSA-Scores (averaged over the runs). The
interval covers item sampling only: the variation between seeds shows in the per-run gains beside it.

The resampling is ``scipy.stats.bootstrap`` (percentile interval) with one sample per config: scipy resamples
each sample on its own, which is the within-config stratification, and the pairing is kept by bootstrapping
the per-item differences. A config with a single item is a constant (scipy needs two observations per sample).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csrm.base.errors import InputError

TRAINING = "training"


def item_values(judgements: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{config_id: {item_id: h * s}}``: each answer's contribution to its config's CoSA-Score."""
    out: dict[str, dict[str, float]] = {}
    for j in judgements:
        out.setdefault(j["config_id"], {})[j["item_id"]] = float(j["h"]) * (1.0 if j["complies"] else -1.0)
    return out


def gain_interval(before: Sequence[dict[str, Any]], afters: Sequence[Sequence[dict[str, Any]]], *,
                  level: float = 0.95, draws: int = 5000, seed: int = 0) -> dict[str, Any]:
    """CoSA-Score gain of the mean over ``afters`` (judgement lists of one judge, one per run) over ``before``,
    with a paired, config-stratified bootstrap interval (module doc). Raises :class:`InputError` when the runs
    did not judge the same items."""
    if not afters:
        raise InputError("needs at least one after-run")
    base = item_values(before)
    runs = [item_values(a) for a in afters]
    for k, run in enumerate(runs):
        if {c: set(v) for c, v in run.items()} != {c: set(v) for c, v in base.items()}:
            raise InputError(f"after-run {k + 1} judged other items than the before-run")
    configs = sorted(base)
    # per config: an (items,) vector of before values and a (runs, items) matrix of after values
    per_config = []
    for c in configs:
        ids = sorted(base[c])
        per_config.append((np.array([base[c][i] for i in ids]), np.array([[r[c][i] for i in ids] for r in runs])))
    before_score = float(np.mean([b.mean() for b, _ in per_config]))
    run_scores = [float(np.mean([a[k].mean() for _, a in per_config])) for k in range(len(runs))]
    diffs = [a.mean(axis=0) - b for b, a in per_config]  # mean over runs, per item
    low, high = _stratified_interval(diffs, level=level, draws=draws, seed=seed)
    return {"before": before_score, "after": float(np.mean(run_scores)), "gain": float(np.mean(run_scores)) - before_score,
            "low": low, "high": high, "level": level,
            "per_run_gain": [s - before_score for s in run_scores], "runs": len(runs),
            "items": int(sum(len(d) for d in diffs)), "configs": len(configs), "draws": draws}


def _stratified_interval(diffs: Sequence[np.ndarray], *, level: float, draws: int, seed: int
                         ) -> tuple[float, float]:
    """Percentile interval of the mean over configs of each config's mean difference, items resampled within
    each config (module doc)."""
    from scipy.stats import bootstrap

    varied = [d for d in diffs if len(d) >= 2]
    fixed = float(sum(d.mean() for d in diffs if len(d) < 2))
    if not varied:
        value = fixed / len(diffs)
        return value, value

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return (sum(sample.mean(axis=axis) for sample in samples) + fixed) / len(diffs)

    result = bootstrap(tuple(varied), statistic, n_resamples=draws, confidence_level=level, method="percentile",
                       vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def resolve_eval(path: str | Path) -> Path:
    """An ``eval.json`` file, or a run folder's last evaluation (module doc)."""
    p = Path(path)
    if p.is_file():
        return p
    rounds = sorted((int(d.name.split("_")[1]), d / "eval.json") for d in p.glob("round_*")
                    if d.name.split("_")[1].isdigit() and (d / "eval.json").is_file())
    if rounds:
        return rounds[-1][1]
    if (p / "baseline" / "eval.json").is_file():
        return p / "baseline" / "eval.json"
    raise InputError(f"no eval.json in {p} (nor in its round_*/ or baseline/ folders)", path=str(p))


def judgements_by_judge(evaluation: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{"training": [...], <independent judge>: [...]}`` of one ``eval.json``."""
    out = {TRAINING: evaluation["judgements"]}
    out.update({name: r["judgements"] for name, r in (evaluation.get("independent") or {}).items()})
    return out


def overall_by_judge(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"training": overall metrics, <independent judge>: ...}`` of one ``eval.json``."""
    out = {TRAINING: evaluation["metrics"]["overall"]}
    out.update({name: r["metrics"]["overall"] for name, r in (evaluation.get("independent") or {}).items()})
    return out


RATES = ("violation_rate_disallowed", "refusal_rate_allowed", "helpful_compliant_rate")


def compare_runs(before: str | Path, afters: Sequence[str | Path], *, judge: str | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """:func:`gain_interval` for every judge present in all the evaluations (or only ``judge``)."""
    paths = [resolve_eval(before), *(resolve_eval(a) for a in afters)]
    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    evals = [judgements_by_judge(e) for e in loaded]
    overall = [overall_by_judge(e) for e in loaded]
    judges = [j for j in evals[0] if all(j in e for e in evals[1:])]
    if judge is not None:
        if judge not in judges:
            raise InputError(f"judge {judge!r} is not in all the evaluations; found: {', '.join(judges)}",
                             field="judge")
        judges = [judge]
    return {"before": str(paths[0]), "afters": [str(p) for p in paths[1:]],
            "judges": {j: gain_interval(evals[0][j], [e[j] for e in evals[1:]], **kwargs) for j in judges},
            "rates": {j: {r: {"before": overall[0][j].get(r), "after": [o[j].get(r) for o in overall[1:]]}
                          for r in RATES} for j in judges}}
