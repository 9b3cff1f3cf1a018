"""``csrm score`` data-parallel: under ``torchrun`` / ``accelerate launch`` every process scores one shard.

::

    torchrun --nproc_per_node 8 -m csrm score MODEL --input items.jsonl --output scores.jsonl
    accelerate launch --num_processes 8 -m csrm score MODEL --input items.jsonl --output scores.jsonl

Detected from the launcher's ``WORLD_SIZE`` (> 1). :class:`accelerate.PartialState` sets up the process group
(NCCL on GPUs; gloo on CPU, where accelerate must be told ``cpu=True``) and gives each process its device
(``cuda:<local rank>``). Process ``r`` of ``n``
takes the items ``r, r + n, r + 2n, ...`` of the validated input (interleaved, so a length-sorted input still
splits evenly) and scores them with :func:`csrm.scoring.score_file.score_file` into its own shard file
``OUTPUT.rank<r>-of-<n>.jsonl``, which is resumable exactly like a single-process run (its ``.partial`` keeps
what was scored; a rerun with the same command and number of processes scores only what is missing, and a
finished shard is not scored again). When every process is done (a barrier), process 0 merges the shards into
``OUTPUT`` in input order, atomically, and removes the shard files. A rerun with a different number of
processes starts its shards afresh.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csrm.base.io import write_jsonl

if TYPE_CHECKING:
    from csrm.scoring.score_file import ScoreConfig


def launched_world_size() -> int:
    """Number of processes the launcher started (``WORLD_SIZE``; 1 when run directly)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def shard_path(output: str | Path, rank: int, world: int) -> Path:
    output = Path(output)
    return output.with_name(f"{output.name}.rank{rank}-of-{world}.jsonl")


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def merge_shards(entries: list, output: str | Path, world: int) -> int:
    """Write ``output`` from the ``world`` finished shard files, in the order of ``entries``; remove the shards."""
    rows: dict[str, dict[str, Any]] = {}
    shards = [shard_path(output, rank, world) for rank in range(world)]
    for shard in shards:
        for row in _rows(shard):
            rows[str(row["id"])] = row
    missing = [item_id for item_id, _, _ in entries if item_id not in rows]
    if missing:
        raise RuntimeError(f"{len(missing)} ids missing from the shards of {output} (first: {missing[0]!r})")
    count = write_jsonl(output, (rows[item_id] for item_id, _, _ in entries))
    for shard in shards:
        shard.unlink(missing_ok=True)
    return count


def shard_fingerprint(cfg: ScoreConfig, device: str, rank: int, world: int) -> dict:
    """The resume fingerprint of one shard: the run's (model, input, settings) plus which shard of how many,
    so a shard's partial output is only resumed by the same shard of a run with the same process count."""
    import torch

    from csrm.scoring.score_file import run_fingerprint
    from csrm.scoring.scorer import resolve_bf16

    fingerprint = run_fingerprint(cfg.model, cfg.input, bf16=resolve_bf16(cfg.bf16, torch.device(device)))
    return {**fingerprint, "shard": f"{rank}/{world}"}


def score_distributed(cfg: ScoreConfig, entries: list) -> int:
    """Body of ``csrm score`` under a multi-process launcher (module doc); returns the exit status."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from csrm.scoring.score_file import score_file
    from csrm.scoring.scorer import load

    cpu = (cfg.device or "").startswith("cpu") or not torch.cuda.is_available()
    state = PartialState(cpu=True, backend="gloo") if cpu else PartialState()
    rank, world = state.process_index, state.num_processes
    mine = entries[rank::world]
    shard = shard_path(cfg.output, rank, world)
    device = cfg.device or str(state.device)
    counts = {"items": len(mine), "resumed": len(mine), "scored": 0}
    finished = shard.is_file() and [str(r["id"]) for r in _rows(shard)] == [e[0] for e in mine]
    if not finished:
        scorer = load(cfg.model, device=device, max_tokens=cfg.batch_tokens, bf16=cfg.bf16,
                      num_threads=cfg.threads, prefix_cache=None if cfg.prefix_cache else False)
        counts = score_file(scorer, cfg.input, shard, progress=cfg.progress and state.is_main_process,
                            entries=mine, fingerprint=shard_fingerprint(cfg, device, rank, world),
                            restart=cfg.restart)
    all_counts = gather_object([counts])
    state.wait_for_everyone()
    if state.is_main_process:
        merge_shards(entries, cfg.output, world)
        total = {key: sum(c[key] for c in all_counts) for key in ("items", "resumed", "scored")}
        print(json.dumps({"output": os.fspath(cfg.output), **total, "processes": world}))
    state.wait_for_everyone()
    return 0
