"""Benchmark registry: load a benchmark by name into labelled :class:`~eval.items.EvalItem` lists with a
dev/test split.

Dev rule (thresholds are tuned on dev items only; dev items never enter test numbers):

- ``cosapien``, ``dynabench``: a deterministic ``dev_fraction`` slice of each (group, kind) stratum, chosen
  by a hash of the item's content (stable across runs, orderings and ``--limit``).
- ``augmented``: as cosapien, over (mode, label) strata.
- ``cosalign-test``: the ``seen`` split (5 configs) is dev, the ``unseen`` split (3 configs) is test
  (``cosalign_dev="slice"`` uses the hash slice over both sets instead).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal, get_args

from csrm.base.paths import data_dir as default_data_dir
from eval.benchmarks import augmented, cosalign_test, cosapien, dynabench
from eval.benchmarks._source import BenchmarkUnavailable
from eval.items import DEV, TEST, EvalItem, assign_dev_slice, limit_items, split_items

BENCHMARKS: dict[str, ModuleType] = {m.NAME: m for m in (cosapien, dynabench, cosalign_test)}
# not part of ``all``: its --data-dir is an augmentation output folder, not the shared data folder
EXTRA_BENCHMARKS: dict[str, ModuleType] = {augmented.NAME: augmented}
ALIASES = {"cosalign": "cosalign-test", "cosalign_test": "cosalign-test", "cosa": "cosalign-test",
           "cosapien": "cosapien", "dynabench": "dynabench", "dyna": "dynabench"}
CosalignDev = Literal["seen", "slice"]
COSALIGN_DEV_CHOICES: tuple[str, ...] = get_args(CosalignDev)

__all__ = ["BENCHMARKS", "BenchmarkUnavailable", "LoadedBenchmark", "load_benchmark", "resolve_names"]


@dataclass
class LoadedBenchmark:
    """A benchmark's items (dev and test) with where they came from and how they are framed."""

    name: str
    title: str
    items: list[EvalItem]
    source: str
    views: dict[str, str]
    dev_rule: str
    hub_id: str
    notes: list[str] = field(default_factory=list)

    @property
    def dev(self) -> list[EvalItem]:
        return split_items(self.items)[0]

    @property
    def test(self) -> list[EvalItem]:
        return split_items(self.items)[1]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {kind: n}}``."""
        out: dict[str, Counter] = {DEV: Counter(), TEST: Counter()}
        for it in self.items:
            out[it.split][it.kind] += 1
        return {split: dict(sorted(c.items())) for split, c in out.items()}


def resolve_names(names: str | Iterable[str]) -> list[str]:
    """Canonical benchmark names from a comma list (``all`` = every benchmark); unknown names raise."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for part in (p.strip().lower() for p in parts):
        if not part:
            continue
        if part == "all":
            out.extend(n for n in BENCHMARKS if n not in out)
            continue
        name = ALIASES.get(part, part)
        if name not in BENCHMARKS and name not in EXTRA_BENCHMARKS:
            raise ValueError(f"unknown benchmark {part!r}; choose from {', '.join(BENCHMARKS)} (or all)")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("no benchmark given")
    return out


def load_benchmark(name: str, data_dir: str | Path | None = None, *, use_hub: bool = True,
                   dev_fraction: float = 0.2, cosalign_dev: str = "seen", limit: int | None = None
                   ) -> LoadedBenchmark:
    """Load one benchmark (local files under ``data_dir`` first, else the hub), split dev/test, and cap each
    split at ``limit`` items (spread over configs and label kinds). Raises :class:`BenchmarkUnavailable`."""
    (name,) = resolve_names(name)
    module = BENCHMARKS.get(name) or EXTRA_BENCHMARKS[name]
    items, source, notes = module.load(Path(data_dir) if data_dir else default_data_dir(), use_hub=use_hub)
    if name == cosalign_test.NAME and cosalign_dev == "seen":
        items = [dataclasses.replace(it, split=DEV if it.extra["set"] == "seen" else TEST) for it in items]
        dev_rule = cosalign_test.SEEN_DEV_RULE
    elif cosalign_dev not in COSALIGN_DEV_CHOICES:
        raise ValueError(f"cosalign_dev must be one of {COSALIGN_DEV_CHOICES}, got {cosalign_dev!r}")
    else:
        items = assign_dev_slice(items, dev_fraction)
        dev_rule = f"{module.DEV_RULE}: {dev_fraction:.0%} dev"
    if limit is not None:
        dev, test = split_items(items)
        items = limit_items(dev, limit) + limit_items(test, limit)
        notes = [*notes, f"--limit {limit}: at most {limit} dev and {limit} test items, spread over groups/kinds"]
    return LoadedBenchmark(name=name, title=module.TITLE, items=items, source=source, views=dict(module.VIEWS),
                           dev_rule=dev_rule, hub_id=module.HUB_ID, notes=notes)
