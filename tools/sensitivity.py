"""Config sensitivity: does P(complies) rise when the config starts allowing what the prompt is about?

``python -m tools.sensitivity MODEL [--data-dir DIR]``: for every CoSAlign-Test *unseen* prompt that has
categories outside its config, the prompt is scored under its own config and under the same config with the
prompt's own categories added (``SafetyConfig(allow=...).render()``, the benchmark's rendering). A model that
reads the config raises P(complies) on (nearly) every item; a config-blind one cannot. Prints the share of
items whose P(complies) rose and the mean change, and writes them as JSON to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from csrm.base.paths import data_dir
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem
from eval.benchmarks import load_benchmark
from eval.models import load_scorer


def config_sensitivity(scorer, items) -> dict[str, float]:
    """Share of items whose P(complies) rises when their config also allows the prompt's categories."""
    before, after = [], []
    for it in items:
        allowed = set(it.extra["allowed"])
        own = set(it.extra.get("prompt_categories_norm") or ())
        if not own or own <= allowed:
            continue
        widened = SafetyConfig(allow={c: 3 for c in sorted(allowed | own)}).render()
        before.append(it.item)
        after.append(ScoreItem(widened, it.item.messages, it.item.response))
    p0 = [r.p_comply for r in scorer.score_items(before)]
    p1 = [r.p_comply for r in scorer.score_items(after)]
    rose = sum(b > a for a, b in zip(p0, p1, strict=True))
    return {"n": len(p0), "share_raised": rose / max(1, len(p0)),
            "mean_change": sum(b - a for a, b in zip(p0, p1, strict=True)) / max(1, len(p0))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sensitivity", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a trained CSRM folder (or any eval model spec)")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $CSRM_DATA_DIR)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    bench = load_benchmark("cosalign-test", Path(args.data_dir) if args.data_dir else data_dir(), use_hub=False)
    from csrm.base.taxonomy import RiskTaxonomy
    from eval.benchmarks.cosalign_test import normalize_categories

    names = RiskTaxonomy.default().names
    items = [it for it in bench.items if it.extra["set"] == "unseen"]
    for it in items:
        it.extra["prompt_categories_norm"] = normalize_categories(list(it.extra.get("prompt_categories") or []),
                                                                  names)
    result = config_sensitivity(load_scorer(args.model), items)
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
