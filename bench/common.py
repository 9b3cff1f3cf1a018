"""Shared helpers of the benchmarks: interleaved timing with warm-up, repeats and medians; peak memory; the
seed-derived inputs; JSON results and markdown tables.

The dev machines are shared and noisy, so every benchmark reports a *ratio* against a baseline measured in the
same run: the methods are timed in turn (the order rotates every repeat, so a burst of load from someone else
hits each method about equally) and each method's median over the repeats is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SEED_RECIPE = PROJECT_ROOT / "configs" / "augment" / "seed.yaml"

if str(PROJECT_ROOT) not in sys.path:  # `python bench/x.py` from a checkout without `pip install -e .`
    sys.path.insert(0, str(PROJECT_ROOT))


# -- arguments --------------------------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    """Flags every benchmark has: threads, repeats, warm-up and where the JSON goes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on the shared 2-core dev machine, where other "
                             "users' jobs keep both cores busy, a 2-thread pool waits for its descheduled partner "
                             "at every op; see bench/README.md)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per method (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per method")
    parser.add_argument("--out", default=None, help="results JSON (default bench/results/<name>.json)")
    return parser


def set_threads(n: int | None) -> int:
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


# -- timing -----------------------------------------------------------------------------------------------
def interleaved(methods: dict[str, Callable[[], Any]], *, repeats: int = 3, warmup: int = 1,
                log: bool = True) -> dict[str, list[float]]:
    """Seconds of each repeat of each method. Warm-up runs first (each method ``warmup`` times, untimed); then
    ``repeats`` rounds in which every method runs once, the order rotated by one each round."""
    names = list(methods)
    for _ in range(warmup):
        for name in names:
            methods[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - start)
            if log:
                print(f"  [repeat {r + 1}/{repeats}] {name}: {times[name][-1]:.2f} s", flush=True)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """``median [min-max]`` of a list of seconds, for tables."""
    return f"{median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


# -- memory -----------------------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RSSSampler:
    """Samples this process's RSS every ``interval`` seconds in a thread: the peak *within* a block, which
    ru_maxrss (a lifetime high-water mark) cannot give once an earlier phase peaked higher."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_mib())
            time.sleep(self.interval)

    def __enter__(self) -> RSSSampler:
        self.peak = current_rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_mib())


def run_json_subprocess(args: list[str], *, timeout: float | None = None, env: dict[str, str] | None = None
                        ) -> dict[str, Any]:
    """Run ``python args...`` in a fresh process (fresh peak memory); its last stdout line is a JSON object."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=str(PROJECT_ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(args)} printed no JSON:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


# -- inputs from the bundled seed corpus --------------------------------------------------------------------
def seed_recipe(**overrides: Any):
    """The bundled seed augmentation recipe (configs/augment/seed.yaml), progress bar off."""
    from augmentation import load_recipe

    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in {"progress": False,
                                                                                  **overrides}.items()]
    return load_recipe(SEED_RECIPE, items)


def seed_augmentation():
    """The seed recipe's examples and pairs, built in memory (no files): an ``AugmentResult``."""
    from augmentation.pipeline import build, load_taxonomy
    from augmentation.sources import load_records

    recipe = seed_recipe()
    taxonomy = load_taxonomy(recipe)
    return build(recipe, load_records(recipe, taxonomy), taxonomy)


def write_seed_dataset(out_dir: str | Path) -> Path:
    """Run the seed recipe into ``out_dir`` (the folder ``csrm train`` reads)."""
    from augmentation import run

    run(seed_recipe(), output_dir=out_dir)
    return Path(out_dir)


def scoring_items(n: int, seed: int = 0, long_fraction: float = 0.3, screen_fraction: float = 0.1) -> list:
    """``n`` deterministic (config, conversation, response) items of a realistic length mix, from the seed
    augmentation output: its rendered configs (10 templates, 14-340 MiniLM tokens), its conversations, and
    responses that are either one seed response (short, 2-60 tokens), ``long_fraction`` of them 3-8 seed
    responses joined into one (long, ~100-400 tokens), or ``screen_fraction`` of them None (request screening).
    Configs repeat across items, as they do in practice (a deployment has few configs)."""
    from csrm.base.score_types import ScoreItem

    result = seed_augmentation()
    rows = [e for split in result.examples.values() for e in split]
    pairs = [p for split in result.pairs.values() for p in split]
    configs = sorted({e.config_text for e in rows} | {p.config_text for p in pairs})
    conversations = [e.messages for e in rows]
    responses = sorted({e.response for e in rows if e.response} | {p.chosen for p in pairs if p.chosen}
                       | {p.rejected for p in pairs if p.rejected})
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        u = rng.random()
        if u < screen_fraction:
            response = None
        elif u < screen_fraction + long_fraction:
            response = " ".join(rng.sample(responses, rng.randint(3, 8)))
        else:
            response = rng.choice(responses)
        items.append(ScoreItem(rng.choice(configs), rng.choice(conversations), response))
    return items


# -- results ----------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "loadavg_1m": round(os.getloadavg()[0], 2)}


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a run (``argv`` None = this process's own arguments)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", os.path.relpath(script, PROJECT_ROOT), *args])


def write_results(name: str, payload: dict[str, Any], out: str | None = None, *, script: str = "",
                  argv: Sequence[str] | None = None) -> Path:
    """``bench/results/<name>.json`` (or ``out``) with the payload, the command and the machine."""
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "command": command_line(script or sys.argv[0], argv), "machine": machine_info(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table (pasteable into bench/README.md)."""
    columns = list(columns or (rows[0] if rows else []))
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def ratio_line(name: str, value: float, target: float | None = None, *, higher_is_better: bool = True,
               unit: str = "x") -> str:
    """The final line every benchmark prints: ``RATIO name=value (target ...: MET|MISSED)``."""
    text = f"RATIO {name}={value:.2f}{unit}"
    if target is not None:
        met = value >= target if higher_is_better else value <= target
        text += f" (target {'>=' if higher_is_better else '<='} {target:g}{unit}: {'MET' if met else 'MISSED'})"
    return text
