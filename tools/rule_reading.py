"""``python -m tools.rule_reading MODEL``: the rule-reading table (:mod:`eval.rule_reading`) for any scorer, on
DynaBench (Aug) and, if given, generated rule data. ``csrm eval`` prints the same block on DynaBench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.items import TEST, EvalItem
from eval.rule_reading import benchmark_block
from eval.rule_report import block_markdown
from eval.rule_tests import DYNABENCH_GROUP, GENERATED_GROUP


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.rule_reading MODEL``: the table on DynaBench (Aug) and, if given, generated data."""
    parser = argparse.ArgumentParser(prog="python -m tools.rule_reading", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a trained CSRM folder, zero-shot:<model> or probe:surface")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $CSRM_DATA_DIR)")
    parser.add_argument("--rule-data", default=None, help="generated rule data: an augmentation output folder "
                        "holding rules/test.jsonl (and rules/dev.jsonl for the threshold and the probe)")
    parser.add_argument("--no-dynabench", action="store_true", help="only the generated rule data")
    parser.add_argument("--limit", type=int, default=None, help="at most N dev and N test DynaBench items")
    parser.add_argument("--no-controls", action="store_true", help="skip the config-blanked and lengths-only "
                        "columns (the scorer's own column only)")
    parser.add_argument("--out", default=None, help="write the blocks as JSON here")
    args = parser.parse_args(argv)
    from csrm.base.errors import InputError
    from eval.benchmarks import BenchmarkUnavailable, load_benchmark
    from eval.models import load_scorer
    from eval.rule_tests import load_rule_data

    sets: dict[str, tuple[list[EvalItem], str, str, str | None]] = {}
    try:
        if not args.no_dynabench:
            bench = load_benchmark("dynabench", args.data_dir, use_hub=False, limit=args.limit)
            sets["DynaBench (Aug) dev half"] = (bench.items, bench.source, DYNABENCH_GROUP, None)
        if args.rule_data:
            items, source = load_rule_data(args.rule_data)
            sets["generated rule data (test split)"] = (items, source, GENERATED_GROUP, TEST)
    except (BenchmarkUnavailable, InputError) as err:
        print(f"python -m tools.rule_reading: error: {err}", file=sys.stderr)
        return 2
    if not sets:
        parser.error("nothing to evaluate: drop --no-dynabench or give --rule-data")
    scorer = load_scorer(args.model)
    blocks = {}
    for title, (items, source, key, contrasts_on) in sets.items():
        blocks[title] = benchmark_block(scorer, items, group_key=key, source=source, controls=not args.no_controls,
                                        contrasts_on=contrasts_on)
        print("\n".join(block_markdown(blocks[title], title=f"Rule reading, {title}: `{args.model}`")) + "\n")
    if args.out:
        Path(args.out).write_text(json.dumps(blocks, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
