"""CSRMTrainer: a ``transformers.Trainer`` for the joint compliance + reward objective.

Why not ``trl.RewardTrainer``: it is Bradley–Terry only (``num_labels == 1``) and drops rows longer than
``max_length``; the CSRM needs a pointwise BCE term next to the pairs, and truncates by its formatter's rule.

What this subclass changes:

- **batches**: :class:`~csrm.model.data.MixedBatchSampler` (B examples + P pairs, length-grouped, seeded by
  ``(seed, epoch)``), so after ``resume_from_checkpoint`` the Trainer's skip of the batches already seen lands
  on the same data order;
- **loss**: :func:`~csrm.model.objective.csrm_loss` on one forward over the ``B + 2P`` padded sequences;
- **evaluation**: F1 (threshold 0.5, violation positive), AUROC, ECE, Brier and pair accuracy via
  :mod:`csrm.base.metrics`, sharded over processes (every rank runs the same number of forwards, as ZeRO-3 needs):
  ``Trainer.evaluate`` runs as is, on this class's ``get_eval_dataloader`` and ``evaluation_loop``;
- **faults**: a non-finite loss (:meth:`compute_loss`) or gradient norm (:class:`NonFiniteGradCallback`)
  raises :class:`NonFiniteLossError` before that step is saved, so every checkpoint on disk is good;
- **checkpoints**: the Trainer writes ``trainer_state.json`` last, so a checkpoint is complete exactly when it
  has one; :func:`last_checkpoint` only ever picks a complete one, :class:`CheckpointCallback` removes the state
  file of a ``checkpoint-N`` about to be written again (a rerun), and :meth:`CSRMTrainer.remove_incomplete_checkpoints`
  clears what a run killed mid-save left;
- **final model**: :meth:`CSRMTrainer.save_final_model` writes ``save_pretrained`` + tokenizer to a temporary
  folder and renames it over the target;
- **time budget**: ``max_train_minutes`` (:class:`TimeBudgetCallback`) ends the loop on every rank at the same
  step and saves a checkpoint to continue from.

Everything goes through the Trainer's public surface (``compute_loss``, ``get_train_dataloader``,
``get_eval_dataloader``, ``evaluation_loop``, ``evaluate``, ``log``, ``save_model`` and ``TrainerCallback`` events), so a ``transformers`` release inside the ``>=5,<6`` pin
that reshapes the training loop's private methods cannot break resume or checkpointing. DeepSpeed's ``auto``
bucket sizes come from ``CSRMConfig.hidden_size`` (the backbone's), which transformers reads itself.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalLoopOutput, seed_worker

from csrm.base.errors import NonFiniteLossError  # noqa: F401  (raised here; re-exported)
from csrm.base.io import replace_dir
from csrm.base.metrics import classification_metrics, pair_accuracy
from csrm.model.cross_encoder.args import CrossEncoderTrainConfig
from csrm.model.data import MixedBatchSampler, MixedCollator, MixedDataset, TokenizedSplit, eval_batches
from csrm.model.objective import csrm_loss

logger = logging.getLogger(__name__)



@dataclass
class SplitPredictions:
    """Model outputs over one split, in the split's order."""

    compliance_logits: np.ndarray  # [n_examples]
    labels: np.ndarray  # [n_examples], 1 = complies
    chosen_rewards: np.ndarray  # [n_pairs]
    rejected_rewards: np.ndarray  # [n_pairs]
    margins: np.ndarray  # [n_pairs]


def last_checkpoint(run_dir: str | Path) -> str | None:
    """Newest complete ``checkpoint-N`` in ``run_dir`` (complete = has its trainer state), else None."""
    root = Path(run_dir)
    if not root.is_dir():
        return None
    found = []
    for path in root.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.rsplit("-", 1)[-1]
        if step.isdigit() and (path / TRAINER_STATE_NAME).is_file():
            found.append((int(step), path))
    return str(max(found)[1]) if found else None


class TimeBudgetCallback(TrainerCallback):
    """Ends training once ``minutes`` of the training loop have passed (rank 0's clock decides, so every
    rank stops after the same step)."""

    def __init__(self, minutes: float):
        self.seconds, self.start = minutes * 60.0, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        over = torch.tensor([float(time.monotonic() - self.start > self.seconds)], device=args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(over, src=0)
        if over.item() > 0:
            logger.warning("time budget of %.3g min reached at step %d: stopping", self.seconds / 60,
                           state.global_step)
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"  # a checkpoint to continue from later
        return control


class SamplerEpochCallback(TrainerCallback):
    """Sets the batch sampler's epoch at each epoch's start (its order is a function of ``(seed, epoch)``).

    The Trainer's own ``set_epoch`` does not reach a sampler behind the resume skip's wrapper, so a resumed
    epoch would otherwise be shuffled with the wrong epoch; ``state.epoch`` is ``epoch + fraction done``.
    """

    def __init__(self) -> None:
        self.sampler: MixedBatchSampler | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.sampler is not None:
            self.sampler.set_epoch(int(state.epoch or 0))


class NonFiniteGradCallback(TrainerCallback):
    """Stops training (raises) when the gradient norm is not finite, before the optimizer steps.

    Reads the gradients the processes hold (after clipping, which turns an infinite norm into NaN entries);
    under DeepSpeed ZeRO the engine keeps them, so only the loss check applies there.
    """

    def __init__(self, check: Any):
        self.check = check

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad.detach() for p in model.parameters() if p.grad is not None] if model is not None else []
        if grads:
            self.check(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])),
                       "gradient norm")


class CheckpointCallback(TrainerCallback):
    """Makes a ``checkpoint-N`` about to be written again (a rerun into the same folder) incomplete first, so
    a kill during that save never leaves a complete-looking mix of two runs. Added last, it sees the
    ``should_save`` decided by every other callback."""

    def _invalidate(self, args, state, control) -> None:
        if control.should_save and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            (folder / TRAINER_STATE_NAME).unlink(missing_ok=True)

    def on_step_end(self, args, state, control, **kwargs):
        self._invalidate(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._invalidate(args, state, control)


class CSRMTrainer(Trainer):
    """Trainer over :class:`~csrm.model.data.TokenizedSplit` data for a :class:`~csrm.model.cross_encoder.modeling.CSRMModel`."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean; the Trainer divides by accumulation

    def __init__(self, model: nn.Module, args: CrossEncoderTrainConfig, train_data: TokenizedSplit | None = None,
                 eval_data: TokenizedSplit | None = None, processing_class: Any = None, **kwargs: Any):
        pad_id = getattr(processing_class, "pad_token_id", None)
        collator = MixedCollator(pad_id if pad_id is not None else 0,
                                 getattr(processing_class, "padding_side", "right"), args.pad_to_multiple_of)
        has_eval = eval_data is not None and (len(eval_data.examples) + len(eval_data.pairs)) > 0
        super().__init__(model=model, args=args, data_collator=collator,
                         train_dataset=MixedDataset(train_data) if train_data is not None else None,
                         eval_dataset=MixedDataset(eval_data) if has_eval else None,
                         processing_class=processing_class, **kwargs)
        self._epoch_callback = SamplerEpochCallback()
        self.add_callback(self._epoch_callback)
        self.add_callback(NonFiniteGradCallback(self.check_finite))
        if args.max_train_minutes:
            self.add_callback(TimeBudgetCallback(args.max_train_minutes))
        self.add_callback(CheckpointCallback())  # last: sees every other callback's should_save
        self._stats: dict[str, Any] = defaultdict(float)
        self.items_seen: dict[str, int] = defaultdict(int)  # this process: examples, pairs, tokens
        self.eval_seconds = 0.0  # time spent in evaluate(), to tell training throughput apart

    # -- data ------------------------------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("CSRMTrainer: training needs train_data")
        ds: MixedDataset = self.train_dataset
        args: CrossEncoderTrainConfig = self.args
        sampler = MixedBatchSampler(
            ds.examples.lengths, ds.pairs.lengths, args.examples_per_batch, args.effective_pairs_per_batch,
            seed=args.data_seed if args.data_seed is not None else args.seed, group_by_length=args.group_by_length)
        self._epoch_callback.sampler = sampler
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=self.data_collator,
                            num_workers=args.dataloader_num_workers, pin_memory=args.dataloader_pin_memory,
                            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
                            prefetch_factor=args.dataloader_prefetch_factor,
                            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers,
                                                   rank=args.process_index))
        return self.accelerator.prepare(loader)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        """This process's share of the split's evaluation batches (:func:`~csrm.model.data.eval_batches`).

        Whole batches are dealt to processes in turn, and a process short of batches repeats its last one, so
        every rank runs the same number of forwards (ZeRO-3 needs it); :meth:`predict_split` gathers the rows
        by index, so a repeat counts once. Not passed through ``accelerator.prepare``: its sharding splits a
        batch by rows and trims by dataset length, while a CSRM batch mixes examples and pairs."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("CSRMTrainer: evaluation needs eval_data")
        if isinstance(dataset, TokenizedSplit):
            dataset = MixedDataset(dataset)
        batches = eval_batches(dataset, self.args.per_device_eval_batch_size)
        world, rank = max(1, self.args.world_size), self.args.process_index
        mine = batches[rank::world]
        rounds = math.ceil(len(batches) / world) if batches else 0
        mine += [mine[-1] if mine else batches[0]] * (rounds - len(mine))
        return DataLoader(dataset, batch_sampler=mine, collate_fn=self.data_collator)

    # -- loss ------------------------------------------------------------------------------------------
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        b, p = int(inputs["num_examples"]), int(inputs["num_pairs"])
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        rewards = out.rewards
        args: CrossEncoderTrainConfig = self.args
        parts = csrm_loss(out.compliance_logits[:b], inputs["compliance_labels"], rewards[b:b + p],
                          rewards[b + p:b + 2 * p], inputs["margins"], compliance_weight=args.compliance_weight,
                          reward_weight=args.reward_weight, margin_scale=args.margin_scale,
                          center_rewards_coefficient=args.center_rewards_coefficient)
        if model.training:
            self.check_finite(parts.loss, "loss")
            stats = self._stats
            stats["micro_batches"] += 1
            stats["bce"] += parts.bce.detach()
            if p:
                stats["pair_batches"] += 1
                stats["bradley_terry"] += parts.bradley_terry.detach()
                stats["pair_accuracy"] += parts.pair_accuracy
            self.items_seen["examples"] += b
            self.items_seen["pairs"] += p
            self.items_seen["tokens"] += int(inputs["attention_mask"].sum())
        return (parts.loss, out) if return_outputs else parts.loss

    def check_finite(self, value: torch.Tensor | float | None, what: str) -> None:
        """Raise :class:`NonFiniteLossError` on every rank when ``value`` is not finite on any rank."""
        if value is None:
            return
        tensor = torch.as_tensor(value, dtype=torch.float32, device=self.args.device).detach()
        bad = (~torch.isfinite(tensor)).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)  # every rank stops together
        if bad.item() > 0:
            step = self.state.global_step + 1
            checkpoint = last_checkpoint(self.args.output_dir)
            where = (f"the last good checkpoint is {checkpoint}" if checkpoint
                     else "no checkpoint had been saved yet")
            raise NonFiniteLossError(
                f"training stopped: the {what} became {tensor.item()} at step {step} "
                f"(epoch {self.state.epoch or 0:.2f}); nothing from this step was saved and {where}. "
                "Lower learning_rate (or check the data), then resume with resume_from_checkpoint=<that folder>.")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        stats = self._stats
        if "loss" in logs and stats["micro_batches"]:
            logs["bce"] = round(float(stats["bce"] / stats["micro_batches"]), 4)
            if stats["pair_batches"]:
                logs["bradley_terry"] = round(float(stats["bradley_terry"] / stats["pair_batches"]), 4)
                logs["pair_accuracy"] = round(float(stats["pair_accuracy"] / stats["pair_batches"]), 4)
            self._stats = defaultdict(float)
        super().log(logs, start_time)

    # -- evaluation ------------------------------------------------------------------------------------
    def _eval_model(self) -> nn.Module:
        """The model ready for inference, also when ``evaluate`` runs before ``train``.

        Without DeepSpeed that is the model itself (the Trainer placed it on the device; evaluation needs no
        DDP wrapper). Under DeepSpeed it is the engine, started for inference here when training has not.
        """
        if not self.is_deepspeed_enabled:
            return self.model
        if self.deepspeed is None:
            from transformers.integrations.deepspeed import deepspeed_init

            deepspeed_init(self, num_training_steps=0, inference=True)
            self.model_wrapped = self.deepspeed = self.accelerator.prepare(self.model)
        return self.deepspeed

    @torch.no_grad()
    def predict_split(self, loader: DataLoader) -> SplitPredictions:
        """Compliance logits and rewards for every example and pair of ``loader``'s dataset, from each
        process's batches (:meth:`get_eval_dataloader`; all processes take part)."""
        dataset: MixedDataset = loader.dataset
        model = self._eval_model()
        was_training = model.training
        model.eval()
        world = max(1, self.args.world_size)
        rows: list[tuple[int, int, float, float]] = []  # (kind, index, value_a, value_b)
        from tqdm.auto import tqdm

        for collated in tqdm(loader, desc="evaluating", unit="batch", leave=False,
                             disable=self.args.disable_tqdm or not self.is_world_process_zero()):
            batch = {k: v.to(self.args.device) if isinstance(v, torch.Tensor) else v for k, v in collated.items()}
            b, p = batch["num_examples"], batch["num_pairs"]
            with self.accelerator.autocast():
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            logits, rewards = out.compliance_logits.float().cpu(), out.rewards.float().cpu()
            rows += [(0, int(i), float(z), 0.0)
                     for i, z in zip(batch["example_index"].tolist(), logits[:b].tolist(), strict=True)]
            rows += [(1, int(j), float(c), float(r)) for j, c, r in
                     zip(batch["pair_index"].tolist(), rewards[b:b + p].tolist(), rewards[b + p:b + 2 * p].tolist(),
                         strict=True)]
        if world > 1:
            from accelerate.utils import gather_object

            rows = gather_object(rows)
        if was_training:
            model.train()
        examples = {i: z for kind, i, z, _ in rows if kind == 0}
        pairs = {j: (c, r) for kind, j, c, r in rows if kind == 1}
        order_e, order_p = sorted(examples), sorted(pairs)
        return SplitPredictions(
            compliance_logits=np.array([examples[i] for i in order_e], dtype=np.float64),
            labels=np.array([dataset.examples.labels[i] for i in order_e], dtype=np.int64),
            chosen_rewards=np.array([pairs[j][0] for j in order_p], dtype=np.float64),
            rejected_rewards=np.array([pairs[j][1] for j in order_p], dtype=np.float64),
            margins=np.array([dataset.pairs.margins[j] for j in order_p], dtype=np.float64))

    def evaluation_loop(self, dataloader: DataLoader, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> EvalLoopOutput:
        """The split's metrics (:meth:`compute_split_metrics`) from :meth:`predict_split` on ``dataloader``.

        Replaces ``Trainer.evaluation_loop``, which runs ``prediction_step`` per batch and concatenates row
        outputs: a CSRM batch's ``B + 2P`` sequences are examples and pairs, scored as two kinds of output."""
        preds = self.predict_split(dataloader)
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in self.compute_split_metrics(preds).items()}
        return EvalLoopOutput(predictions=None, label_ids=None, metrics=metrics,
                              num_samples=len(preds.labels) + len(preds.margins))

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """``Trainer.evaluate`` (batches from :meth:`get_eval_dataloader`, metrics from :meth:`evaluation_loop`,
        plus its speed metrics, the log and ``on_evaluate``), its wall time added to ``eval_seconds``."""
        start = time.perf_counter()
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        self.eval_seconds += time.perf_counter() - start
        return metrics

    def compute_split_metrics(self, preds: SplitPredictions) -> dict[str, float]:
        """The objective on the split plus classification (violation positive) and ranking metrics."""
        args: CrossEncoderTrainConfig = self.args
        temperature = float(getattr(self.accelerator.unwrap_model(self.model).config, "temperature", 1.0))
        parts = csrm_loss(torch.tensor(preds.compliance_logits), torch.tensor(preds.labels, dtype=torch.float32),
                          torch.tensor(preds.chosen_rewards), torch.tensor(preds.rejected_rewards),
                          torch.tensor(preds.margins), compliance_weight=args.compliance_weight,
                          reward_weight=args.reward_weight, margin_scale=args.margin_scale,
                          center_rewards_coefficient=args.center_rewards_coefficient)
        metrics: dict[str, float] = {"loss": float(parts.loss)}
        if len(preds.labels):
            p_violation = 1.0 / (1.0 + np.exp(preds.compliance_logits / temperature))
            cls = classification_metrics(1 - preds.labels, p_violation, threshold=0.5)
            metrics["bce"] = float(parts.bce)
            metrics.update({k: cls[k] for k in ("f1", "precision", "recall", "accuracy", "auroc", "ece", "brier")})
            metrics["examples"] = int(len(preds.labels))
        if len(preds.margins):
            metrics["bradley_terry"] = float(parts.bradley_terry)
            metrics["pair_accuracy"] = pair_accuracy(preds.chosen_rewards, preds.rejected_rewards)
            metrics["reward_gap"] = float(np.mean(preds.chosen_rewards - preds.rejected_rewards))
            metrics["pairs"] = int(len(preds.margins))
        return metrics

    # -- checkpoints and the final model ---------------------------------------------------------------
    def remove_incomplete_checkpoints(self) -> None:
        """Remove what a run killed while saving left: ``checkpoint-N`` folders without their trainer state
        (main process)."""
        if not self.args.should_save:
            return
        root = Path(self.args.output_dir)
        for path in root.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
            if path.is_dir() and not (path / TRAINER_STATE_NAME).is_file():
                logger.warning("removing the incomplete %s (killed while saving)", path)
                shutil.rmtree(path, ignore_errors=True)

    def save_final_model(self, output_dir: str | Path, extra_files: dict[str, str] | None = None) -> Path:
        """``save_pretrained`` + tokenizer (+ ``extra_files``: name -> text) into ``output_dir``, atomically:
        everything goes to ``.<name>.partial`` beside it, which is then renamed over ``output_dir``."""
        final = Path(output_dir).expanduser().resolve()
        partial_dir = final.parent / f".{final.name}.partial"
        if self.args.should_save:
            shutil.rmtree(partial_dir, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.save_model(str(partial_dir))  # collective under ZeRO-3 (gathers the weights)
        if self.args.should_save:
            (partial_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the YAML config is kept instead
            for name, text in (extra_files or {}).items():
                (partial_dir / name).write_text(text, encoding="utf-8")
            replace_dir(partial_dir, final, command="train")
        self.accelerator.wait_for_everyone()
        return final
