"""``python -m tools.gain BEFORE AFTER [AFTER ...] [--judge NAME] [--out gain.json]``: the CoSA-Score gain of
``csrm align`` runs with its paired-bootstrap interval, as Markdown tables (the method:
:mod:`csrm.alignment.gain`, which ``csrm align``'s report uses too)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from csrm.alignment import gain
from csrm.alignment.gain import RATES, compare_runs
from csrm.base.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gain", description=gain.__doc__.split("\n\n")[0])
    parser.add_argument("before", help="eval.json or run folder of the policy before")
    parser.add_argument("afters", nargs="+", help="eval.json files or run folders after (one per seed)")
    parser.add_argument("--judge", default=None, help="only this judge ('training' or an eval.judges entry)")
    parser.add_argument("--level", type=float, default=0.95, help="interval level")
    parser.add_argument("--draws", type=int, default=5000, help="bootstrap draws")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        result = compare_runs(args.before, args.afters, judge=args.judge, level=args.level, draws=args.draws)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"| judge | CoSA-Score before | after (mean of {len(args.afters)}) | gain | {args.level:.0%} interval "
          "| gain per run | items |")
    print("|---|---:|---:|---:|---|---|---:|")
    for name, g in result["judges"].items():
        print(f"| {name} | {g['before']:.3f} | {g['after']:.3f} | {g['gain']:+.3f} | [{g['low']:+.3f}, "
              f"{g['high']:+.3f}] | {' / '.join(f'{x:+.3f}' for x in g['per_run_gain'])} | {g['items']} |")
    print("\n| judge | " + " | ".join(f"{r.replace('_', ' ')} before → after (per run)" for r in RATES) + " |")
    print("|---|" + "---|" * len(RATES))
    for name, rates in result["rates"].items():
        cells = [f"{v['before']:.3f} → {' / '.join(f'{a:.3f}' for a in v['after'])}" if v["before"] is not None
                 else "–" for v in rates.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
