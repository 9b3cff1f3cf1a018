"""Results where people look: evaluation, calibration and CoSA-Score metrics and plots to Weights & Biases.

Training already reports through ``transformers`` (``report_to``); the later stages use the same setting:
``csrm eval --report-to wandb``, ``csrm calibrate --report-to wandb``, ``report_to: wandb`` in an alignment
config, and ``csrm run`` with a training config that has ``report_to: wandb`` (or the recipe's own
``report_to``). :func:`log_results` logs one stage's numbers (nested dicts flattened to ``job/a/b`` keys, both
as a history step and in the run summary), its PNG plots as ``wandb.Image`` and optional tables. It appends to
the active run when there is one (e.g. inside training), else opens a short run of its own (project
``$WANDB_PROJECT``, default ``csrm``; ``job_type`` = the stage) and finishes it, tearing wandb's process-wide
state down so that later runs read ``WANDB_DIR``/``WANDB_MODE`` afresh. ``WANDB_MODE=offline`` keeps
everything in ``<dir>/wandb/offline-run-*`` for a later ``wandb sync``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def wants_wandb(report_to: str | Iterable[str] | None) -> bool:
    """True when ``report_to`` (a name, a comma list, or a list) includes ``wandb`` or ``all``."""
    if report_to is None:
        return False
    names = report_to.split(",") if isinstance(report_to, str) else list(report_to)
    return any(str(n).strip() in {"wandb", "all"} for n in names)


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"a": {"b": 1}}`` -> ``{"prefix/a/b": 1.0}``; only finite numbers and booleans are kept."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def log_results(report_to: str | Iterable[str] | None, *, job_type: str, metrics: Mapping[str, Any],
                images: Mapping[str, str | Path] | None = None,
                tables: Mapping[str, tuple[list[str], list[list[Any]]]] | None = None,
                name: str | None = None, config: Mapping[str, Any] | None = None,
                dir: str | Path | None = None) -> str | None:
    """Log one stage's results to wandb if ``report_to`` asks for it (module doc); returns the run folder."""
    if not wants_wandb(report_to):
        return None
    import wandb

    run, own = wandb.run, wandb.run is None
    if own:
        # read the environment now: wandb caches its settings at the first init of the process
        dir = dir if dir is not None else os.environ.get("WANDB_DIR") or None
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "csrm", job_type=job_type, name=name,
                         config=dict(config or {}), dir=str(dir) if dir is not None else None,
                         group=os.environ.get("WANDB_RUN_GROUP") or None,
                         mode=os.environ.get("WANDB_MODE") or None)
    flat = flatten(metrics, job_type)
    payload: dict[str, Any] = dict(flat)
    for key, path in (images or {}).items():
        if Path(path).is_file():
            payload[f"{job_type}/{key}"] = wandb.Image(str(path))
    for key, (columns, rows) in (tables or {}).items():
        payload[f"{job_type}/{key}"] = wandb.Table(columns=list(columns), data=[list(r) for r in rows])
    run.log(payload)
    run.summary.update(flat)
    folder = str(Path(run.dir).parent)
    if own:
        run.finish()
        wandb.teardown()  # so a later run in this process (e.g. training) reads the environment afresh
    return folder
