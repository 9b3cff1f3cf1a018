"""Rule-reading evaluation (issue #28): does a scorer's verdict follow the policy's words, not its length?

``python -m tools.rule_reading MODEL [--data-dir DIR] [--rule-data DIR] [--out FILE]`` prints the table for
any scorer (a CSRM folder, ``zero-shot:...``, ``probe:surface``); ``csrm eval`` and every ``csrm run`` whose
benchmarks include ``dynabench`` compute the same block (:func:`benchmark_block`) and print it beside the
lengths-only probe and config-blind rows.

Measures, on the DynaBench (Aug) dev half (all its items, the loader's dev slice included, as the issue's
numbers are) or on generated rule data in the same schema (the contrasts are in :mod:`eval.rule_tests`):

- **swap**, **removal**, **pairs**: the share of contrasts in which the original (FAIL) item scores more
  violating than its perturbed copy or its PASS twin; ties count one half, so a config-blind scorer is at
  exactly 0.5. Removal is also split into "rules left" and "empty" (a single-rule policy emptied).
- **AUROC**, **F1 dev-tuned**: on the test items, with the threshold chosen for best F1 on the benchmark's
  dev slice (:func:`eval.analysis.view_metrics`, the numbers ``csrm eval`` reports); always-FAIL F1 beside.
  The AUROC carries a 95% interval from a bootstrap over the FAIL items' violated rules
  (:mod:`eval.rule_clusters`): DynaBench's FAIL items break few distinct rules, so its AUROC is uncertain by
  far more than its item count suggests.
- **named rule**: for FAIL items, the share whose ``result.evidence.rule_number`` is in ``rules_violated``;
  ``None`` (printed n/a) when the scorer gives no evidence.
- **length**: :mod:`eval.rule_length`.

Columns: the scorer itself; the same scorer with every policy blanked ("config blanked", a config-blind
control that needs no second model); the lengths-only probe (:mod:`eval.surface`) fitted on the dev slice
and run through the very same contrasts; the rule-relevance probe (:mod:`eval.relevance`: frozen rule-turn
similarity, which judges no violation and still passes swap and removal on DynaBench, so those two show
reading only where a scorer beats it). References: the "shorter policy is the FAIL one" heuristic on the
pairs and always-FAIL F1.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from csrm.base.score_types import ScoreItem, ScoreResult
from eval.analysis import Scored, view_metrics
from eval.items import HEADLINE, TEST, EvalItem
from eval.rule_clusters import cluster_keys, clustered_auroc_interval, violated_rule_key
from eval.rule_length import score_length_test
from eval.rule_report import BLANKED, LENGTHS, MODEL, RELEVANCE, TARGETS
from eval.rule_tests import (
    DYNABENCH_GROUP,
    metadata,
    removal_contrasts,
    shorter_policy_share,
    swap_contrasts,
    transcript_pairs,
    violated,
)

TIE = 1e-6


class BlankedScorer:
    """Another scorer with every policy blanked: what it sees is config-blind by construction."""

    def __init__(self, scorer):
        self.scorer = scorer

    def score_items(self, items: Sequence[ScoreItem]) -> list[ScoreResult]:
        return list(self.scorer.score_items([dataclasses.replace(it, config="") for it in items]))


def item_scorer(scorer, items: Sequence[EvalItem]):
    """A scorer of plain ScoreItems for ``scorer``: itself, a probe fitted on ``items``' dev slice
    (``fitted``), or ``None`` when it only scores benchmark items it reads structure from."""
    if hasattr(scorer, "fitted"):
        return scorer.fitted(items)
    if hasattr(scorer, "score_eval_items"):
        return None
    return scorer


def score(scorer, items: Sequence[ScoreItem], chunk_size: int = 64) -> list[ScoreResult]:
    """Score in chunks, checking the count and that each P(complies) is a probability."""
    out: list[ScoreResult] = []
    for start in range(0, len(items), chunk_size):
        chunk = list(items[start:start + chunk_size])
        results = list(scorer.score_items(chunk))
        if len(results) != len(chunk) or any(not 0.0 <= float(r.p_comply) <= 1.0 for r in results):
            raise RuntimeError(f"scorer returned {len(results)} results for {len(chunk)} items or a P(complies) "
                               "outside [0, 1]")
        out.extend(results)
    return out


def share_more_violating(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Share of pairs where ``first`` P(violation) is higher (ties one half); None without pairs. Scores
    within ``TIE`` of each other are a tie: a batched model scores one input with float noise of ~1e-7
    depending on what it is batched with, which must not break the ties of a config-blind scorer."""
    if not first:
        return None
    wins = [0.5 if abs(a - b) <= TIE else 1.0 if a > b else 0.0 for a, b in zip(first, second, strict=True)]
    return sum(wins) / len(wins)


def named_rule(items: Sequence[EvalItem], results: Sequence[ScoreResult]) -> dict[str, Any]:
    """Share of FAIL items whose evidence names a violated rule; ``share`` None when no evidence is given."""
    fails = [(it, r) for it, r in zip(items, results, strict=True) if it.label_violation == 1 and violated(it)]
    evidence = [getattr(r, "evidence", None) for _, r in fails]
    if not any(e is not None for e in evidence):
        return {"n": len(fails), "share": None}
    hits = [getattr(e, "rule_number", None) in violated(it) for (it, _), e in zip(fails, evidence, strict=True)]
    return {"n": len(fails), "share": sum(hits) / max(1, len(hits))}


def measures(scorer, items: Sequence[EvalItem], results: Sequence[ScoreResult] | None = None, *,
             group_key: str = DYNABENCH_GROUP, length_test: bool = True, contrasts_on: str | None = None
             ) -> dict[str, Any]:
    """Every measure (module doc) for one scorer of ScoreItems; ``results`` (aligned with ``items``) are
    reused when given, else the items are scored here. ``contrasts_on``: build swap, removal, pairs and
    named rule from the items of that split only (generated data: the test split; DynaBench: all)."""
    results = list(results) if results is not None else score(scorer, [it.item for it in items])
    all_results = results
    if contrasts_on is not None:
        keep = [i for i, it in enumerate(items) if it.split == contrasts_on]
        all_items, items, results = items, [items[i] for i in keep], [results[i] for i in keep]
    else:
        all_items = items
    pv = [1.0 - float(r.p_comply) for r in results]
    swaps, removals = swap_contrasts(items, group_key), removal_contrasts(items)
    changed = score(scorer, [c.changed for c in swaps + removals])
    changed_pv = [1.0 - float(r.p_comply) for r in changed]
    swap_pv, removal_pv = changed_pv[:len(swaps)], changed_pv[len(swaps):]
    pairs = transcript_pairs(items)
    out: dict[str, Any] = {
        "swap": {"n": len(swaps), "share": share_more_violating([pv[c.index] for c in swaps], swap_pv)},
        "removal": {"n": len(removals),
                    "share": share_more_violating([pv[c.index] for c in removals], removal_pv)},
        "pairs": {"n": len(pairs), "share": share_more_violating([pv[f] for f, _ in pairs], [pv[p] for _, p in pairs])},
        "named_rule": named_rule(items, results),
    }
    for note in ("rules left", "empty"):
        chosen = [(pv[c.index], q) for c, q in zip(removals, removal_pv, strict=True) if c.note == note]
        out["removal"][note.replace(" ", "_")] = {
            "n": len(chosen), "share": share_more_violating([a for a, _ in chosen], [b for _, b in chosen])}
    scored = [Scored(it, r) for it, r in zip(all_items, all_results, strict=True)]
    view = view_metrics(scored, HEADLINE)
    overall = view.get("overall") or {}
    out.update({"n_test": view["n_test"], "auroc": (overall.get("stored") or {}).get("auroc"),
                "f1_tuned": (overall.get("tuned") or {}).get("f1"), "threshold": view["tuned_threshold"]})
    test = [s for s in scored if s.item.split == TEST and HEADLINE in s.item.views]
    out["auroc_interval"] = clustered_auroc_interval(
        [s.item.views[HEADLINE] for s in test], [s.p_violation for s in test],
        cluster_keys([violated_rule_key(s.item) for s in test]))
    if length_test:
        out["length"] = score_length_test(lambda batch: score(scorer, batch), threshold=view["tuned_threshold"])
    return out


def references(items: Sequence[EvalItem], contrasts_on: str | None = None) -> dict[str, Any]:
    """Scorer-free reference values: the shorter-policy heuristic on the pairs, always-FAIL F1 on test."""
    test = [it.label_violation for it in items if it.split == TEST]
    positives = sum(test)
    pool = [it for it in items if contrasts_on is None or it.split == contrasts_on]
    return {"shorter_policy_fail": shorter_policy_share(pool, transcript_pairs(pool)),
            "always_fail_f1": 2 * positives / (len(test) + positives) if test else None,
            "config_blind": 0.5}


def benchmark_block(scorer, items: Sequence[EvalItem], results: Sequence[ScoreResult] | None = None, *,
                    blind: bool = False, group_key: str = DYNABENCH_GROUP, source: str = "",
                    controls: bool = True, contrasts_on: str | None = None) -> dict[str, Any]:
    """The rule-reading block of one scorer on one item set: its columns, the references and the targets.
    ``blind``: the scorer is evaluated config-blind (``results`` were scored on blanked items), so every
    contrast is blanked too and the "config blanked" column would repeat it. ``controls``: add the config
    blanked and lengths-only probe columns. Items the scorer cannot score give ``status: skipped``."""
    start = time.perf_counter()
    base = item_scorer(scorer, items)
    if base is None:
        return {"status": "skipped", "reason": "this scorer reads the items' structured allow sets only"}
    is_probe = base is not scorer
    options = {"group_key": group_key, "contrasts_on": contrasts_on}
    columns: dict[str, Any] = {MODEL: measures(BlankedScorer(base) if blind else base, items,
                                               None if is_probe else results, **options)}
    if controls and not blind and not is_probe:
        columns[BLANKED] = measures(BlankedScorer(base), items, **options)
    if controls and not is_probe:
        from eval.surface import SurfaceProbe

        probe = SurfaceProbe()
        if probe.unsupported(items) is None:
            columns[LENGTHS] = measures(probe.fitted(items), items, **options)
        from eval.relevance import RelevanceProbe

        columns[RELEVANCE] = measures(RelevanceProbe(), items, **options)
    groups = sorted({str(metadata(it).get(group_key)) for it in items if metadata(it).get(group_key) is not None})
    return {"status": "ok", "source": source, "group_key": group_key, "groups": groups, "n_items": len(items),
            "contrasts_on": contrasts_on or "all", "columns": columns,
            "references": references(items, contrasts_on), "targets": TARGETS,
            "seconds": round(time.perf_counter() - start, 1)}
