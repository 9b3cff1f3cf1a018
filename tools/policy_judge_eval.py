"""Evaluate a policy judge: ``python -m tools.policy_judge_eval MODEL [--out report.json]``.

A policy judge (:mod:`csrm.model.policy`) holds a category reader and a rule judge behind a router. What it must
show is that one folder reads both kinds of policy as well as each reader alone, and a policy that has both:

- **routing** of the benchmarks' real policies: the share of CoSAlign-Test's and CoSApien's category configs and of
  DynaBench (Aug)'s rule policies that the router keeps whole for their own reader (a policy kept whole scores
  exactly as that reader scores it);
- **as given**: CoSAlign-Test (headline view; thresholds tuned on the seen configs) and the DynaBench (Aug) dev half
  (20% dev slice tunes, 80% reported) scored by the judge and by the reader made for them: AUROC, F1 at the
  dev-tuned threshold, and the share of items whose score is the reader's to the bit;
- **mixed policies**, built from the same items so the labels stay right:
  *CoSAlign-Test + rules*: each category config followed by three numbered rules about business matters the
  requests never touch (DynaBench rules of a PASS item, never one a FAIL item breaks); the category part decides
  the label, so a good judge keeps the category reader's numbers, and what it loses is the rule judge's false
  alarms on unrelated rules. *Rules + allow-all*: each DynaBench policy after an allow list that permits every
  risk category at any severity; the rules decide the label, so a good judge keeps the rule judge's numbers, and
  what it loses is the category reader firing where the allow list permits everything.

Evaluate only: nothing here trains on either benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

from csrm.base.paths import data_dir
from csrm.base.rule_text import format_rules, split_rules
from csrm.base.safety_config import SafetyConfig
from csrm.base.validation import default_taxonomy
from csrm.scoring.scorer import load
from eval.benchmarks import LoadedBenchmark, load_benchmark
from eval.harness import run_benchmark

RULES_ADDED = 3


def headline(run) -> dict:  # noqa: ANN001 - eval.harness.BenchmarkRun
    """AUROC and F1 (dev-tuned threshold) of the headline view, as the eval report gives them."""
    view = run.metrics["headline"]["overall"]["tuned"]
    return {"n": view["n"], "auroc": round(100 * view["auroc"], 1), "f1_tuned": round(100 * view["f1"], 1)}


def with_configs(bench: LoadedBenchmark, config_of) -> LoadedBenchmark:  # noqa: ANN001 - str -> str
    """The benchmark with every item's config replaced by ``config_of(config)`` (labels, splits, ids kept)."""
    items = [dataclasses.replace(it, item=dataclasses.replace(it.item, config=config_of(it.item.config)))
             for it in bench.items]
    return dataclasses.replace(bench, items=items)


def unrelated_rules(dynabench: LoadedBenchmark, seed: int = 0) -> list[str]:
    """Numbered rules of DynaBench PASS items whose policy has no FAIL twin breaking it: business rules that
    CoSAlign-Test's requests never touch."""
    broken = {r.text for it in dynabench.items if it.label_violation for r in split_rules(it.item.config)
              if r.number in ((it.extra.get("metadata") or {}).get("rules_violated") or [])}
    pool = sorted({r.text for it in dynabench.items if not it.label_violation
                   for r in split_rules(it.item.config) if r.number is not None and 40 <= len(r.text) <= 300} - broken)
    random.Random(seed).shuffle(pool)
    return pool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved policy judge (csrm train configs/train/policy.yaml ...)")
    parser.add_argument("--out", help="write the numbers as JSON here")
    parser.add_argument("--data-dir", default=None, help="the shared data folder (default $CSRM_DATA_DIR)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    root = Path(args.data_dir) if args.data_dir else data_dir()
    judge = load(args.model)
    predictor = judge.predictor
    readers = {"category": load(predictor.model.part_dir("category")), "rules": load(predictor.model.part_dir("rules"))}
    cosalign, dynabench = load_benchmark("cosalign-test", root), load_benchmark("dynabench", root)
    apien = json.loads((root / "cosapien_configs" / "cosapien_safety_configs.json").read_text(encoding="utf-8"))
    out: dict = {"model": str(args.model), "routing": {}}
    for name, policies, want in (("cosalign-test", {it.item.config for it in cosalign.items}, "category"),
                                 ("cosapien", set(apien.values()), "category"),
                                 ("dynabench", {it.item.config for it in dynabench.items}, "rules")):
        kinds = [predictor.route(p).kind for p in sorted(policies)]
        out["routing"][name] = {"policies": len(kinds), "kept_whole": round(kinds.count(want) / len(kinds), 4),
                                "mixed": kinds.count("mixed"), "routed_to_the_other_reader": len(kinds) - kinds.count(
                                    want) - kinds.count("mixed")}
    rules = unrelated_rules(dynabench)
    counter = iter(range(10**9))
    added: dict[str, str] = {}

    def plus_rules(config: str) -> str:
        if config not in added:
            k = next(counter) * RULES_ADDED % max(1, len(rules) - RULES_ADDED)
            added[config] = config.rstrip() + "\n" + format_rules(rules[k:k + RULES_ADDED])
        return added[config]

    allow_all = SafetyConfig(allow={name: 3 for name in default_taxonomy().names}).render()
    cases = {
        "cosalign-test as given": (cosalign, readers["category"]),
        "dynabench as given": (dynabench, readers["rules"]),
        "cosalign-test + rules": (with_configs(cosalign, plus_rules), None),
        "rules + allow-all": (with_configs(dynabench, lambda c: allow_all + "\n" + c), None),
    }
    reference = {}
    for case, (bench, reader) in cases.items():
        t0 = time.perf_counter()
        run = run_benchmark(judge, bench)
        row = {"judge": headline(run), "seconds": round(time.perf_counter() - t0, 1)}
        if reader is not None:
            t0 = time.perf_counter()
            reader_run = run_benchmark(reader, bench)
            reference[bench.name] = headline(reader_run)
            row["reader"] = reference[bench.name]
            row["reader_seconds"] = round(time.perf_counter() - t0, 1)
            same = sum(a.result == b.result for a, b in zip(run.scored, reader_run.scored, strict=True))
            row["identical_to_reader"] = round(same / len(run.scored), 4)
        else:
            row["reader_on_given_policies"] = reference[bench.name]
            kinds = [predictor.route(it.item.config).kind for it in bench.items]
            row["mixed_share"] = round(kinds.count("mixed") / len(kinds), 4)
        out[case] = row
        print(case, json.dumps(row), flush=True)
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out["routing"]))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
