"""Generate the rule-violation data set: scaffolds -> family bases -> policies and contrasts -> balanced splits.

Per family, conversation ``k`` belongs to a split by its position (dev and test shares from the spec), draws
its wordings, values and content only from that split (:mod:`augmentation.rules.core`), and gets its own RNG
(recipe seed, family, k): the output is deterministic. A base whose transcripts do not come out as intended
(the target's check must flag the planted turn of the violating transcript and nothing in the compliant one)
is dropped and counted. Rows are labelled by code (:func:`augmentation.rules.policy.make_row`), then each
split is length-balanced (:mod:`augmentation.rules.balance`) and written as hub-schema JSONL.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from augmentation.rules import conduct, dialogue, disclosure, ifeval, obligation, topic
from augmentation.rules.balance import balance_lengths, lengths_probe_auroc
from augmentation.rules.core import SPLITS
from augmentation.rules.elaborate import elaborate, elaborate_some
from augmentation.rules.policy import contrast_policies, make_row, verified_pool
from augmentation.rules.spec import RulesSpec
from augmentation.rules.values import ValueBank
from csrm.base.io import atomic_path
from csrm.base.records import stable_id

FAIL_ONLY = ("rule_removed", "rule_swapped")


def _families(spec: RulesSpec, bank: ValueBank, resolve) -> tuple[dict[str, Any], list]:  # noqa: ANN001
    """The family modules in use and the distractor sources (every family's business rules, IFEval rules)."""
    modules: dict[str, Any] = {"disclosure": disclosure, "obligation": obligation, "conduct": conduct}
    sources = [lambda rng, split, n, m=m: m.distractors(rng, bank, split, n) for m in modules.values()]
    content = topic.load_content(resolve(spec.moderation) if spec.moderation else None)
    modules["topic"] = topic.Family(content)
    modules["format"] = ifeval.Family(ifeval.load_rules(resolve(spec.ifeval_rules)))
    sources += [lambda rng, split, n, m=modules[f]: m.distractors(rng, bank, split, n) for f in ("topic", "format")]
    return modules, sources


def split_of(k: int, n: int, spec: RulesSpec) -> str:
    """Conversation ``k`` of ``n``: the last shares are test and dev (interleaved by a stride of 20)."""
    slot = (k * 7919) % 100 / 100
    return "test" if slot < spec.test_fraction else "dev" if slot < spec.test_fraction + spec.dev_fraction else "train"


def generate(spec: RulesSpec, seed: int, resolve=lambda p: Path(p)) -> tuple[dict[str, list[dict]], dict]:  # noqa: ANN001
    """Rows per split (metadata as dicts) and statistics; ``resolve`` maps a spec path to a file."""
    bank = ValueBank(seed)
    modules, sources = _families(spec, bank, resolve)
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    stats: Counter[str] = Counter()
    for family in spec.families:
        if family not in modules:
            raise ImportError(f"rule family {family!r} is not available")
        module = modules[family]
        n = spec.scaffolds_per_family
        for k in range(n):
            split = split_of(k, n, spec)
            rng = random.Random(int(stable_id(seed, "rules", family, k), 16))
            skeleton = dialogue.scaffold(rng, bank, split)
            base = module.make_base(rng, bank, split, skeleton)
            if base is None:
                stats[f"{family}:no_base"] += 1
                continue
            target, fail, ok, variant = base
            if not target.check(fail) or target.check(ok):
                stats[f"{family}:dropped_unverified"] += 1
                continue
            pool = verified_pool(rng, split, target, [fail, ok], sources, want=spec.max_rules - 1)
            if spec.long_form_share > 0:  # same checks, longer texts: before the contrasts, so all share them
                target = elaborate(target, rng, split) if rng.random() < spec.long_form_share else target
                pool = elaborate_some(pool, spec.long_form_share, rng, split)
            policies = contrast_policies(rng, target, pool, spec.contrasts, spec.max_rules)
            blank = rng.random() < 0.3
            for which, tr in (("fail", fail), ("ok", ok)):
                base_id = stable_id(seed, family, k, which)[:16]
                for contrast, rules in policies.items():
                    if which == "ok" and contrast in FAIL_ONLY:
                        continue
                    extra = {"transcript_kind": which, "conversation": stable_id(seed, family, k)[:16]}
                    if contrast == "rule_swapped":
                        extra["swapped_in"] = next(r.template for r in rules if r not in policies["original"])
                    rows[split].append(make_row(rules, tr, family=family, contrast=contrast, base_id=base_id,
                                                split=split, target=target, variant=variant, blank_line=blank,
                                                extra=extra))
            stats[f"{family}:bases"] += 1
    return rows, dict(sorted(stats.items()))


def finish(rows: dict[str, list[dict]], spec: RulesSpec, seed: int) -> dict[str, Any]:
    """Length-balance each split in place; returns per-split summaries incl. the lengths-probe AUROC."""
    summary: dict[str, Any] = {}
    for split in SPLITS:
        before = rows[split]
        if spec.balance_lengths:
            rows[split] = balance_lengths(before, spec.length_bins, random.Random(int(stable_id(seed, split), 16)))
        summary[split] = summarize(rows[split], before_count=len(before))
    for split in ("dev", "test"):
        if rows[split] and rows["train"]:
            summary[split]["lengths_probe_auroc_fit_on_train"] = _rounded(
                lengths_probe_auroc(rows[split], fit_rows=rows["train"]))
    return summary


def _rounded(auroc: float) -> float | None:
    """An AUROC for the manifest: 4 decimals, ``None`` where undefined (strict JSON has no NaN)."""
    return None if math.isnan(auroc) else round(auroc, 4)


def summarize(rows: list[dict], before_count: int) -> dict[str, Any]:
    by_family: dict[str, Counter] = {}
    for r in rows:
        meta = r["metadata"]
        by_family.setdefault(meta["family"], Counter())[f"{meta['contrast']}:{r['label']}"] += 1
    fails = sum(r["label"] == "FAIL" for r in rows)
    return {"count": len(rows), "before_length_balance": before_count, "fail": fails, "pass": len(rows) - fails,
            "fail_fraction": round(fails / len(rows), 4) if rows else 0.0,
            "lengths_probe_auroc_cv": _rounded(lengths_probe_auroc(rows)) if rows else None,
            "by_family": {f: dict(sorted(c.items())) for f, c in sorted(by_family.items())},
            "templates": len({r["metadata"]["template"] for r in rows})}


def write(rows: dict[str, list[dict]], manifest: dict[str, Any], output_dir: str | Path) -> Path:
    """``output_dir/rules/{train,dev,test}.jsonl`` (metadata as a JSON string) and ``manifest.json``, atomically."""
    final = Path(output_dir) / "rules"
    with atomic_path(final, is_dir=True) as tmp:
        for split in SPLITS:
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as handle:
                for row in rows[split]:
                    out = {**row, "metadata": json.dumps(row["metadata"], sort_keys=True)}
                    handle.write(json.dumps(out, ensure_ascii=False) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return final


def run_rules(spec: RulesSpec, seed: int, output_dir: str | Path, resolve=lambda p: Path(p)) -> dict[str, Any]:  # noqa: ANN001
    """Generate, balance and write; returns the manifest (counts, label balance, probe AUROCs, wall time)."""
    start = time.perf_counter()
    rows, stats = generate(spec, seed, resolve)
    generated = time.perf_counter() - start
    summary = finish(rows, spec, seed)
    manifest = {"spec": {k: v for k, v in vars(spec).items()}, "seed": seed, "build": stats, "splits": summary,
                "generate_seconds": round(generated, 2), "total_seconds": round(time.perf_counter() - start, 2)}
    write(rows, manifest, output_dir)
    return manifest
