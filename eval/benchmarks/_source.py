"""Where benchmark rows come from: local JSONL files in the hub's schema, else the Hugging Face Hub.

Rows are returned as ``{split name: [row dict, ...]}`` plus a ``source`` string for the report. When neither
source works, :class:`BenchmarkUnavailable` names the benchmark, the local path looked for and the hub id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from csrm.base.io import iter_jsonl

Rows = dict[str, list[dict[str, Any]]]
R = TypeVar("R")


class BenchmarkUnavailable(RuntimeError):
    """A benchmark has no local files and could not be loaded from the hub."""

    def __init__(self, benchmark: str, local: str, hub_id: str, reason: str):
        self.benchmark, self.local, self.hub_id, self.reason = benchmark, local, hub_id, reason
        super().__init__(
            f"benchmark '{benchmark}' is unavailable: no local files at {local} and the hub dataset "
            f"'{hub_id}' could not be loaded ({reason}). Put the hub splits there as JSONL in the hub's "
            f"schema, or run where the Hugging Face Hub (or its local cache) is reachable.")


def read_jsonl_dir(directory: Path, names: list[str] | None = None) -> Rows | None:
    """``{file stem: rows}`` for ``directory/*.jsonl`` (or exactly ``names``); ``None`` if any is missing."""
    if names is None:
        paths = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    else:
        paths = [directory / name for name in names]
        if not all(p.is_file() for p in paths):
            return None
    if not paths:
        return None
    return {p.stem: [row for _, row in iter_jsonl(p)] for p in paths}


def hub_rows(hub_id: str, name: str | None = None, split: str | None = None) -> Rows:
    """Load a hub dataset with ``datasets.load_dataset`` and return its rows per split."""
    import datasets  # lazy: slow import, and tests patch ``datasets.load_dataset``

    loaded = datasets.load_dataset(hub_id, name, split=split)
    if isinstance(loaded, datasets.Dataset):
        return {split or "train": loaded.to_list()}
    return {key: part.to_list() for key, part in loaded.items()}


def fetch_rows(benchmark: str, local: Callable[[], R | None], local_desc: str, hub: Callable[[], R],
               hub_id: str, *, use_hub: bool = True) -> tuple[R, str]:
    """Local rows when present, else hub rows; ``(rows, source)`` or :class:`BenchmarkUnavailable`."""
    rows = local()
    if rows is not None:
        return rows, f"local:{local_desc}"
    if not use_hub:
        raise BenchmarkUnavailable(benchmark, local_desc, hub_id, "hub loading disabled (--no-hub)")
    try:
        return hub(), f"hub:{hub_id}"
    except Exception as err:  # any hub failure (offline, no cache, auth, bad name) means unavailable
        message = str(err).splitlines()[0] if str(err) else ""
        raise BenchmarkUnavailable(benchmark, local_desc, hub_id, f"{type(err).__name__}: {message}") from err
