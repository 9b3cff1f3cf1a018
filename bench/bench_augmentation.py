"""Augmentation throughput (source records/s) and peak memory on 100k source records.

    python bench/bench_augmentation.py [--records 100000] [--small 10000] [--repeats 1]

Input: the bundled seed corpus (313 records, 54 prompts) replicated into a generic JSONL source in a temporary
folder; replica k appends `` (case k)`` to every user turn, so each replica is a new set of prompts (new
prompt groups, new record ids) with the same label structure, ~6 records per prompt. The recipe is
``configs/augment/seed.yaml`` with that file as its source.

Each run is a fresh subprocess running the whole pipeline (read + label-map the JSONL, synthesize configs,
examples and pairs, balance, write JSONL + ``datasets`` folders + manifest); phases are timed inside it (Python
and library imports excluded), memory is its peak RSS. The ratio line is *scaling efficiency*: records/s at
``--records`` divided by records/s at ``--small`` (1.0 = throughput independent of size, i.e. linear time; below
1 = something grows faster than linearly; well above 1 = fixed start-up costs dominate the small run, so keep
``--small`` at 10k or more).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 0.8  # scaling efficiency we call linear enough (not a brief target; see the module doc)


def write_source(path: Path, records: int) -> int:
    """``records`` generic JSONL rows from replicas of the seed corpus; returns the number written."""
    from augmentation.sources import SEED_CORPUS

    rows = [json.loads(line) for line in SEED_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        replica = 0
        while written < records:
            for row in rows:
                if written >= records:
                    break
                row = dict(row)
                if replica:
                    if "messages" in row:
                        row["messages"] = [dict(m, content=f"{m['content']} (case {replica})")
                                           if m["role"] == "user" else m for m in row["messages"]]
                    if "prompt" in row:
                        row["prompt"] = f"{row['prompt']} (case {replica})"
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
            replica += 1
    return written


def child(args) -> None:
    """One pipeline run over ``args.source``; prints one JSON line."""
    from augmentation.pipeline import build, load_taxonomy, summarize, write_outputs
    from augmentation.sources import load_records

    recipe = common.seed_recipe()
    recipe.sources[0].type, recipe.sources[0].path = "jsonl", str(args.source)
    recipe.sources[0].name = "seed"
    phases = {}
    rss_before = common.current_rss_mib()
    start = time.perf_counter()
    taxonomy = load_taxonomy(recipe)
    records = load_records(recipe, taxonomy)
    phases["load"] = time.perf_counter() - start
    mark = time.perf_counter()
    result = build(recipe, records, taxonomy)
    phases["build"] = time.perf_counter() - mark
    mark = time.perf_counter()
    manifest = summarize(result, records, recipe, taxonomy)
    with tempfile.TemporaryDirectory() as tmp:
        write_outputs(result, manifest, Path(tmp) / "out")
    phases["write"] = time.perf_counter() - mark
    total = time.perf_counter() - start
    examples = sum(len(v) for v in result.examples.values())
    pairs = sum(len(v) for v in result.pairs.values())
    print(json.dumps({"records": len(records), "seconds": round(total, 2), "records_per_second": round(len(records) / total, 1),
                      "phases": {k: round(v, 2) for k, v in phases.items()}, "examples": examples, "pairs": pairs,
                      "peak_rss_mib": round(common.peak_rss_mib(), 1), "rss_before_mib": round(rss_before, 1)}))


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(repeats=1)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000, help="size of the scaling reference run")
    parser.add_argument("--in-process", action="store_true",
                        help="no subprocesses (smoke tests): peak memory is then not per run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)  # nothing here uses torch threads; recorded for the record
    if args.child:
        child(args)
        return {}
    results: dict[int, list[dict]] = {args.small: [], args.records: []}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for n in results:
            sources[n] = Path(tmp) / f"source-{n}.jsonl"
            write_source(sources[n], n)
        print(f"augmentation: {args.records} and {args.small} source records (seed corpus replicas), "
              f"{args.repeats} repeats, load {common.machine_info()['loadavg_1m']}", flush=True)
        sizes = list(results)
        for rep in range(args.repeats):
            for n in sizes[rep % 2:] + sizes[: rep % 2]:
                if args.in_process:
                    buffer = io.StringIO()
                    with contextlib.redirect_stdout(buffer):
                        child(argparse.Namespace(source=sources[n]))
                    out = json.loads(buffer.getvalue().strip().splitlines()[-1])
                else:
                    out = common.run_json_subprocess([str(Path(__file__).resolve()), "--child", "--source",
                                                      str(sources[n])])
                results[n].append(out)
                print(f"  [repeat {rep + 1}/{args.repeats}] {n} records: {out['records_per_second']} records/s, "
                      f"{out['seconds']} s {out['phases']}, peak RSS {out['peak_rss_mib']} MiB", flush=True)

    def med(n: int, key: str) -> float:
        return statistics.median(r[key] for r in results[n])

    rows = []
    for n in sizes:
        phases = {k: statistics.median(r["phases"][k] for r in results[n]) for k in results[n][0]["phases"]}
        rows.append({"source records": n, "records/s": med(n, "records_per_second"), "seconds": med(n, "seconds"),
                     "load s": phases["load"], "build s": phases["build"], "write s": phases["write"],
                     "examples": results[n][0]["examples"], "pairs": results[n][0]["pairs"],
                     "peak RSS MiB": med(n, "peak_rss_mib"),
                     "RSS MiB per 1k records": round((med(n, "peak_rss_mib") - med(n, "rss_before_mib")) / n * 1000, 1)})
    print(common.table(rows))
    ratio = med(args.records, "records_per_second") / med(args.small, "records_per_second")
    payload = {"ratio": round(ratio, 3),
               "ratio_name": f"scaling efficiency: records/s at {args.records} / records/s at {args.small}",
               "target": TARGET, "target_met": ratio >= TARGET,
               "records_per_second": med(args.records, "records_per_second"),
               "peak_rss_mib": med(args.records, "peak_rss_mib"), "rows": rows,
               "runs": {str(k): v for k, v in results.items()}}
    common.write_results("augmentation", payload, args.out, script=__file__, argv=argv)
    print(f"{args.records} records: {payload['records_per_second']:.0f} records/s, peak RSS "
          f"{payload['peak_rss_mib']:.0f} MiB")
    print(common.ratio_line("scaling_efficiency", ratio, TARGET, unit=""))
    return payload


if __name__ == "__main__":
    main()
