"""Training configuration of the cross-encoder family: :class:`CrossEncoderTrainConfig`, a ``TrainingArguments``
with the CSRM's reward fields in one class (TRL's habit for reward models).

Every ``TrainingArguments`` field (``learning_rate``, ``deepspeed``, ``activation_checkpointing``,
``report_to``, ...) is accepted as well, with its own help. ``csrm train`` builds this class through
:mod:`csrm.base.config` like every other command's config (keys, types, enum members and bounds checked
*before* anything is loaded; errors name file, line and field); ``TrainingArguments``' own cross-field checks
run in ``__post_init__`` and become the same :class:`~csrm.base.errors.InputError`.

``output_dir`` is the *final model* folder (``CSRMModel.from_pretrained(output_dir)``); the Trainer's
checkpoints, logs and wandb files go to ``checkpoint_dir`` (default ``<output_dir>-checkpoints``), so the model
can be swapped in atomically at the end without touching them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from csrm.base.config import above, at_least, setting, within
from csrm.base.errors import InputError

logger = logging.getLogger(__name__)


def inherited(name: str, default: Any, check: Any = None) -> Any:
    """A ``TrainingArguments`` field with a default changed for this task (or a bound added) and its own help."""
    own = {f.name: f for f in dataclasses.fields(TrainingArguments)}[name]
    return setting(default, " ".join(str(own.metadata.get("help", "")).split()), check=check)


def check_max_steps(value: int) -> str | None:
    """Refuse a run that would train zero steps (it would save an untrained model and exit 0)."""
    return None if value == -1 or value > 0 else f"must be > 0, or -1 to train num_train_epochs; got {value}"


def check_epochs(values: dict[str, Any]) -> tuple[str, str] | None:
    """With ``max_steps`` -1 the run trains ``num_train_epochs``, which must then be > 0."""
    epochs = values.get("num_train_epochs")
    if values.get("max_steps") == -1 and isinstance(epochs, (int, float)) and epochs <= 0:
        return "num_train_epochs", f"must be > 0 when max_steps is -1 (no training steps otherwise); got {epochs}"
    return None


@dataclass
class CrossEncoderTrainConfig(TrainingArguments):
    """Training configuration of a cross-encoder CSRM (module doc; the help texts double as the docs).

    Defaults that differ from ``TrainingArguments``: ``learning_rate`` 3e-5, ``per_device_train_batch_size`` 16
    (pointwise examples per batch), ``per_device_eval_batch_size`` 64 (sequences), ``logging_steps`` 10,
    ``eval_strategy``/``save_strategy`` ``steps`` every quarter of training, ``save_total_limit`` 2,
    ``warmup_steps`` 0.06 (a ratio), ``weight_decay`` 0.01, ``remove_unused_columns`` False (forced).
    """

    # -- model ------------------------------------------------------------------------------------------
    architecture: Literal["cross_encoder"] = setting(
        "cross_encoder", "the model family: cross_encoder (this config: one (config, conversation, response) "
                         "sequence through a fine-tuned backbone), clause (the default) or rule")
    model_name_or_path: str = setting("minilm", "backbone: a hub id or local path ('minilm' = the bundled "
                                      "all-MiniLM-L6-v2), or a saved CSRM folder to continue training it")
    backbone_config: dict | None = setting(None, "build a randomly initialised backbone from this config dict "
                                           "(model_type plus sizes, e.g. {model_type: bert, hidden_size: 32, ...}) "
                                           "instead of loading weights; smoke runs and tests. vocab_size defaults "
                                           "to the tokenizer's")
    tokenizer_name_or_path: str | None = setting(None, "tokenizer to use; default: model_name_or_path ('minilm' "
                                                 "when backbone_config is set)")
    pooling: Literal["mean", "cls", "last"] | None = setting(None, "mean | cls | last; default: last for "
                                                             "decoders, mean for encoders")
    template: Literal["plain", "chat"] = setting("plain", "input template: plain, or chat (decoders with a chat "
                                                 "template; config = system message)")
    max_length: int = setting(512, "token budget of one (config, conversation, response) input, truncated by the "
                              "formatter's rule (oldest conversation turns first, the config last and never "
                              "silently)", check=at_least(8))
    head_dropout: float = setting(0.1, "dropout on the pooled vector before both heads", check=within(0, 1, high_open=True))
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = setting(
        "float32", "weights dtype when loading the backbone: float32, bfloat16, float16 or auto (the checkpoint's)")
    trust_remote_code: bool = setting(False, "allow backbones/tokenizers that ship their own Python code")
    attn_implementation: str | None = setting(None, "attention kernel passed to the backbone's "
                                              "from_pretrained/from_config: eager, sdpa, flash_attention_2, ... "
                                              "(default: transformers' choice)")
    peft_config: dict | None = setting(None, "train LoRA adapters instead of the whole backbone (heads stay fully "
                                       "trainable; the final model is merged): {r, lora_alpha (alpha), "
                                       "lora_dropout (dropout), target_modules (list or 'all-linear'), "
                                       "load_in_4bit (QLoRA, needs bitsandbytes)}. See csrm/model/cross_encoder/lora.py")
    tokenize_cache: bool = setting(True, "cache the tokenized splits (datasets.map) under "
                                   "<checkpoint_dir>/tokenized, reused by reruns and resumes with the same data, "
                                   "tokenizer and length settings")

    # -- data -------------------------------------------------------------------------------------------
    dataset_path: str | None = setting(None, "folder written by 'csrm augment' (holding examples/ and pairs/ "
                                       "DatasetDicts); required")
    train_split: str = setting("train", "split to train on")
    eval_split: str | None = setting("validation", "split to evaluate on during training (F1/AUROC/ECE/pair "
                                     "accuracy); null = none")
    blind_config: bool = setting(False, "blank every config text (the config-blind baseline: what reading the "
                                 "config is worth); recorded in the saved model's config as blind_config")
    max_train_examples: int | None = setting(None, "use at most this many training examples", check=at_least(1))
    max_train_pairs: int | None = setting(None, "use at most this many training pairs", check=at_least(1))
    max_eval_examples: int | None = setting(None, "evaluate on at most this many examples", check=at_least(1))
    max_eval_pairs: int | None = setting(None, "evaluate on at most this many pairs", check=at_least(1))
    pairs_per_batch: int = setting(8, "preference pairs per device batch (P), next to per_device_train_batch_size "
                                   "examples (B); one forward runs B + 2P sequences", check=at_least(0))
    group_by_length: bool = setting(True, "group sequences of similar length into batches (less padding); still "
                                    "seeded and resumable")
    pad_to_multiple_of: int | None = setting(None, "pad each batch to a multiple of this many tokens (e.g. 8 on "
                                             "tensor cores)", check=at_least(1))

    # -- objective --------------------------------------------------------------------------------------
    compliance_weight: float = setting(1.0, "w_c: weight of the compliance BCE (0 disables the pointwise stream)",
                                       check=lambda v: None if v >= 0 else "loss weights must be >= 0")
    reward_weight: float = setting(1.0, "w_r: weight of the Bradley-Terry pair loss (0 disables the pair stream)",
                                   check=lambda v: None if v >= 0 else "loss weights must be >= 0")
    margin_scale: float = setting(0.1, "m in -log sigmoid(r_chosen - r_rejected - m * margin); margin = the "
                                  "pair's error gap. 0 = plain BT")
    center_rewards_coefficient: float | None = setting(None, "lambda of the reward-centering term "
                                                       "lambda * mean((r_c + r_r)^2) (TRL's idea; e.g. 0.01)")

    # -- run --------------------------------------------------------------------------------------------
    max_train_minutes: float | None = setting(None, "stop training after this many minutes of the training loop "
                                              "(all ranks at the same step), then evaluate and save as usual: a "
                                              "wall-clock budget on top of max_steps/num_train_epochs")
    overwrite: bool = setting(False, "write into a non-empty output_dir that is not an earlier csrm train output "
                              "(only the files training writes are replaced; everything else in it is kept)")
    checkpoint_dir: str | None = setting(None, "where Trainer checkpoints and logs go; default "
                                         "'<output_dir>-checkpoints'")
    resume_from_checkpoint: str | bool | None = setting(None, "a checkpoint folder to resume from, or true/'auto' "
                                                        "for the newest complete checkpoint in checkpoint_dir "
                                                        "(starting fresh when there is none)")

    # -- TrainingArguments defaults changed for this task -----------------------------------------------
    output_dir: str | None = setting(None, "final model folder (written atomically at the end; "
                                     "CSRMModel.from_pretrained loads it); required")
    max_steps: int = setting(-1, "total optimisation steps; -1 = train num_train_epochs", check=check_max_steps)
    num_train_epochs: float = setting(3.0, "epochs to train when max_steps is -1")
    learning_rate: float = setting(3e-5, "the initial AdamW learning rate", check=above(0))
    per_device_train_batch_size: int = setting(16, "pointwise examples per device batch (B; compliance_weight 0 trains on pairs only)",
                                               check=at_least(1))
    per_device_eval_batch_size: int = inherited("per_device_eval_batch_size", 64, check=at_least(1))
    gradient_accumulation_steps: int = inherited("gradient_accumulation_steps", 1, check=at_least(1))
    seed: int = inherited("seed", 42, check=at_least(0))
    logging_steps: float = inherited("logging_steps", 10)
    eval_strategy: IntervalStrategy | str = inherited("eval_strategy", "steps")
    eval_steps: float | None = inherited("eval_steps", 0.25)
    save_strategy: SaveStrategy | str = inherited("save_strategy", "steps")
    save_steps: float = inherited("save_steps", 0.25)
    save_total_limit: int | None = inherited("save_total_limit", 2)
    warmup_steps: float = inherited("warmup_steps", 0.06)
    weight_decay: float = inherited("weight_decay", 0.01)
    remove_unused_columns: bool = setting(False, "always False for the CSRM collator")

    check_fields = staticmethod(check_epochs)

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise InputError("missing: the final model folder must be given", field="output_dir")
        if self.dataset_path is None:
            raise InputError("missing: the folder written by 'csrm augment' must be given", field="dataset_path")
        if self.resume_from_checkpoint is False:
            self.resume_from_checkpoint = None
        self.remove_unused_columns = False
        if self.checkpoint_dir is None:
            self.checkpoint_dir = str(Path(self.output_dir).expanduser()) + "-checkpoints"
        # the field checks again, for a config built in Python rather than by csrm.base.config
        for name, message in (("per_device_train_batch_size", at_least(1)(self.per_device_train_batch_size)),
                              ("pairs_per_batch", at_least(0)(self.pairs_per_batch)),
                              ("max_length", at_least(8)(self.max_length)),
                              ("max_steps", check_max_steps(self.max_steps)),
                              check_epochs({"max_steps": self.max_steps,
                                            "num_train_epochs": self.num_train_epochs}) or ("", None)):
            if message:
                raise InputError(message, field=name)
        if self.uses_deepspeed and not self.use_cpu and not _has_gpu():
            # without use_cpu, accelerate finds no backend on a CPU-only machine and counts one process
            # while DeepSpeed runs several (every rank would then see the same batches)
            logger.warning("no GPU: DeepSpeed runs on CPU, use_cpu set to true")
            self.use_cpu = True
        if self.peft_config is not None:
            from csrm.model.cross_encoder.lora import check_peft_config

            self.peft_config = check_peft_config(self.peft_config)
        if self.compliance_weight < 0 or self.reward_weight < 0:
            raise InputError("loss weights must be >= 0", field="compliance_weight" if self.compliance_weight < 0
                             else "reward_weight")
        super().__post_init__()
        if self.uses_deepspeed and self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            _init_deepspeed_comm(self)

    @property
    def uses_deepspeed(self) -> bool:
        """A DeepSpeed config given here or by ``accelerate launch`` (its DeepSpeed plugin)."""
        return bool(self.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"

    @property
    def examples_per_batch(self) -> int:
        """B, or 0 when the compliance term is off."""
        return self.per_device_train_batch_size if self.compliance_weight > 0 else 0

    @property
    def effective_pairs_per_batch(self) -> int:
        """P, or 0 when the reward term is off."""
        return self.pairs_per_batch if self.reward_weight > 0 else 0

    def trainer_arguments(self, **changes: Any) -> CrossEncoderTrainConfig:
        """A copy for the Trainer: its ``output_dir`` is :attr:`checkpoint_dir` (checkpoints and logs)."""
        return dataclasses.replace(self, output_dir=self.checkpoint_dir, checkpoint_dir=self.checkpoint_dir,
                                   **changes)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def _init_deepspeed_comm(args: TrainingArguments) -> None:
    """On CPU, accelerate sets up a plain gloo process group; let DeepSpeed adopt it now, before the model is
    built, so ZeRO-3's ``zero.Init`` sees the real world size (otherwise it assumes one process)."""
    import deepspeed
    import torch

    _ = args.device  # sets up the process group
    if torch.distributed.is_initialized() and not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(dist_backend=torch.distributed.get_backend(), auto_mpi_discovery=False)
