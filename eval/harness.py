"""Run a scorer over benchmarks: load (or skip) each benchmark, score its items in chunks, time it, and
compute the metrics of every view."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csrm.base.score_types import ScoreItem, Scorer, ScoreResult
from eval.analysis import Scored, benchmark_metrics
from eval.benchmarks import BenchmarkUnavailable, LoadedBenchmark, load_benchmark
from eval.items import EvalItem, blind_items

Progress = Callable[[str, int, int], None]


@dataclass
class BenchmarkRun:
    """One benchmark's scored items and metrics."""

    benchmark: LoadedBenchmark
    scored: list[Scored]
    seconds: float
    metrics: dict[str, dict[str, Any]]
    rule_reading: dict[str, Any] | None = None  # eval.rule_reading.benchmark_block (DynaBench only)

    @property
    def items_per_second(self) -> float:
        return len(self.scored) / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class EvalRun:
    """Everything a report needs: the model spec, the runs, and the benchmarks skipped (name -> reason)."""

    model: str
    runs: dict[str, BenchmarkRun] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    blind: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


def load_benchmarks(names: Sequence[str], data_dir: str | Path | None = None, **options: Any
                    ) -> tuple[dict[str, LoadedBenchmark], dict[str, str]]:
    """Load each named benchmark; ``(loaded, skipped name -> reason)``. Options go to :func:`load_benchmark`."""
    loaded, skipped = {}, {}
    for name in names:
        try:
            loaded[name] = load_benchmark(name, data_dir, **options)
        except BenchmarkUnavailable as err:
            skipped[name] = str(err)
    return loaded, skipped


def score_items(scorer: Scorer, items: Sequence[ScoreItem], *, chunk_size: int = 64,
                progress: Progress | None = None, label: str = "") -> list[ScoreResult]:
    """Score ``items`` in chunks (for progress), checking that each result is a probability in [0, 1]."""
    results: list[ScoreResult] = []
    for start in range(0, len(items), chunk_size):
        chunk = list(items[start:start + chunk_size])
        out = list(scorer.score_items(chunk))
        if len(out) != len(chunk):
            raise RuntimeError(f"scorer returned {len(out)} results for {len(chunk)} items")
        for r in out:
            if not 0.0 <= float(r.p_comply) <= 1.0:
                raise RuntimeError(f"scorer returned p_comply={r.p_comply!r}, outside [0, 1]")
        results.extend(out)
        if progress:
            progress(label, len(results), len(items))
    return results


def run_benchmark(scorer: Scorer, benchmark: LoadedBenchmark, *, blind: bool = False, chunk_size: int = 64,
                  progress: Progress | None = None) -> BenchmarkRun:
    """Score every dev and test item of ``benchmark`` and compute all its views' metrics."""
    items: list[EvalItem] = blind_items(benchmark.items) if blind else list(benchmark.items)
    start = time.perf_counter()
    if hasattr(scorer, "score_eval_items"):  # eval/probes.py: reads the items' structured allow sets
        results = list(scorer.score_eval_items(items))
    else:
        results = score_items(scorer, [it.item for it in items], chunk_size=chunk_size, progress=progress,
                              label=benchmark.name)
    seconds = time.perf_counter() - start
    scored = [Scored(it, r) for it, r in zip(benchmark.items, results, strict=True)]
    return BenchmarkRun(benchmark, scored, seconds, benchmark_metrics(scored, list(benchmark.views)))


RULE_READING_BENCHMARKS = ("dynabench",)  # rule policies with rules_violated metadata (eval.rule_tests)


def evaluate(scorer: Scorer, benchmarks: dict[str, LoadedBenchmark], *, model: str = "", blind: bool = False,
             skipped: dict[str, str] | None = None, chunk_size: int = 64, progress: Progress | None = None,
             settings: dict[str, Any] | None = None, rule_reading: bool = True) -> EvalRun:
    """Run ``scorer`` on each loaded benchmark. ``rule_reading``: on DynaBench also run the rule-reading
    tests (:mod:`eval.rule_reading`: rule swap, removal, within-transcript pairs, length; a few hundred more
    items scored), so every report that includes DynaBench carries them."""
    run = EvalRun(model=model, skipped=dict(skipped or {}), blind=blind, settings=dict(settings or {}))
    for name, bench in benchmarks.items():
        reason = scorer.unsupported(bench.items) if hasattr(scorer, "unsupported") else None
        if reason:
            run.skipped[name] = reason
            continue
        run.runs[name] = br = run_benchmark(scorer, bench, blind=blind, chunk_size=chunk_size, progress=progress)
        if rule_reading and name in RULE_READING_BENCHMARKS:
            from eval.rule_reading import benchmark_block

            br.rule_reading = benchmark_block(scorer, bench.items, [s.result for s in br.scored], blind=blind,
                                              source=bench.source)
    return run


_BARS: dict[str, Any] = {}


def stderr_progress(label: str, done: int, total: int) -> None:
    """A tqdm progress bar per benchmark (on stderr), closed when its last chunk is scored."""
    from tqdm.auto import tqdm

    bar = _BARS.get(label)
    if bar is None:
        bar = _BARS[label] = tqdm(total=total, desc=f"scoring {label}", unit="item")
    bar.update(done - bar.n)
    if done >= total:
        bar.close()
        del _BARS[label]
