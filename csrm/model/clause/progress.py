"""What the clause trainer shows while it runs: tqdm bars per stage and a Trainer-like log (``logging_steps``,
``report_to``).

A ``transformers.Trainer`` user expects a progress bar, a loss every ``logging_steps`` steps and, with
``report_to: wandb``, a W&B run holding the losses, the validation metrics and the timings. The clause
trainer is not a ``Trainer`` (a few hundred AdamW steps on cached features, :mod:`csrm.model.clause.trainer`),
so this module gives it the same surface:

- :class:`CountingEncoder`: the frozen-encoder stage counts the texts it encodes on a tqdm bar (``encoding``;
  the total grows as each table asks for its texts, since which texts are new is known only then).
- :class:`TrainLog`: one global step counter over the reader and judge stages; every ``logging_steps`` steps
  (and the last of each epoch and stage) an entry goes to ``train_results.json``'s ``log`` and, when
  ``report_to`` includes ``wandb``, to W&B as ``train/loss`` and ``train/<stage>_<part>`` at that step; :meth:`TrainLog.finish` logs the validation
  metrics as ``eval/<key>`` and the timings as ``train/<stage>_seconds`` and closes the run. W&B settings come
  from the usual environment (``WANDB_PROJECT``, default ``csrm``; ``WANDB_MODE=offline``; ``WANDB_DIR``), as
  for the cross-encoder through ``transformers``. Only the main process logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from csrm.base.tracking import flatten, wants_wandb
from csrm.model.clause.features import FeatureEncoder


class CountingEncoder(FeatureEncoder):
    """A :class:`FeatureEncoder` whose encoding advances a tqdm bar by one per text (``bar`` None: no bar)."""

    bar: Any = None

    def _encode(self, texts: list[str], *, tokens: bool):
        if self.bar is not None and texts:
            self.bar.total = (self.bar.total or 0) + len(texts)
            self.bar.refresh()
        for out in super()._encode(texts, tokens=tokens):
            if self.bar is not None:
                self.bar.update(1)
            yield out


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "step",
        disable: bool = False):
    """A tqdm bar on stderr, as ``transformers`` draws its own (``disable``: none)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True)


class TrainLog:
    """Step log of a clause training run (module doc)."""

    def __init__(self, *, logging_steps: int, report_to: str | list[str], main_process: bool, run_name: str,
                 config: Mapping[str, Any] | None):
        self.logging_steps, self.step, self.entries = logging_steps, 0, []
        self.run = None
        if main_process and wants_wandb(report_to):
            import wandb

            folder = os.environ.get("WANDB_DIR") or None
            if folder is not None:
                Path(folder).mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "csrm", job_type="train",
                                  name=run_name, config=dict(config or {}), dir=folder,
                                  group=os.environ.get("WANDB_RUN_GROUP") or None,
                                  mode=os.environ.get("WANDB_MODE") or None)
            self.run.define_metric("train/global_step")
            self.run.define_metric("*", step_metric="train/global_step", step_sync=True)

    @property
    def run_dir(self) -> str | None:
        """The W&B run folder (``.../wandb/offline-run-*`` offline), or None without W&B."""
        return str(Path(self.run.dir).parent) if self.run is not None else None

    def advance(self, stage: str, values: Mapping[str, float], *, last: bool = False, **where: int) -> None:
        """Count one optimisation step; log ``values`` when it is a logging step or ``last``."""
        self.step += 1
        if self.step % self.logging_steps and not last:
            return
        entry = {"stage": stage, "global_step": self.step, **where, **{k: float(v) for k, v in values.items()}}
        self.entries.append(entry)
        if self.run is not None:
            self.run.log({"train/global_step": self.step, "train/loss": float(values["loss"]),
                          **{f"train/{stage}_{k}": float(v) for k, v in values.items()}})

    def finish(self, eval_metrics: Mapping[str, float], timings: Mapping[str, float]) -> None:
        """Log the validation metrics (``eval/auroc``, ...) and timings, then close the W&B run."""
        if self.run is None:
            return
        import wandb

        payload = {"train/global_step": self.step,
                   **flatten({k.removeprefix("eval_"): v for k, v in eval_metrics.items()}, "eval"),
                   **flatten(dict(timings), "train")}
        self.run.log(payload)
        self.run.summary.update(payload)
        self.run.finish()
        wandb.teardown()  # later runs in this process (calibrate, eval) read the environment afresh
