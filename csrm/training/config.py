"""Configuration of ``csrm train``: :class:`CSRMTrainConfig`, a ``TrainingArguments`` with the CSRM's own fields.

Every ``TrainingArguments`` field (``learning_rate``, ``deepspeed``, ``activation_checkpointing``,
``report_to``, ...) is accepted as well. :func:`load_train_config` reads a YAML file plus overrides (parsed by
:mod:`csrm.base.config`: ``key=value``, ``--key value``, ``--key=value``, dotted keys into mapping fields such
as ``peft_config.r=8``) and checks every key and value type *before* anything is loaded, raising
:class:`~csrm.base.errors.InputError` naming the key (with a close match for typos). The field checks stay
here rather than in the shared builder: ``TrainingArguments`` fields are typed with enums and unions
(``SchedulerType | str``) the recipes' dataclasses never use.

``output_dir`` is the *final model* folder (``CSRMModel.from_pretrained(output_dir)``); the Trainer's
checkpoints, logs and wandb files go to ``checkpoint_dir`` (default ``<output_dir>-checkpoints``), so the model
can be swapped in atomically at the end without touching them.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from csrm.base import config as config_system
from csrm.base.errors import InputError
from csrm.base.io import load_yaml

logger = logging.getLogger(__name__)
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_POSITIVE, _COUNT, _WEIGHT = config_system.above(0), config_system.at_least(1), config_system.at_least(0)
# bounds of the numeric fields (csrm.base.config checks; None = unset always passes), applied to every value
# from a file or the command line and to the built config, so --print-config refuses what the run would;
# a table rather than metadata so the inherited TrainingArguments fields are covered the same way
FIELD_CHECKS: dict[str, config_system.Check] = {
    "learning_rate": _POSITIVE, "reader_learning_rate": _POSITIVE, "max_train_minutes": _POSITIVE,
    "adam_epsilon": _POSITIVE, "logging_steps": _POSITIVE, "eval_steps": _POSITIVE, "save_steps": _POSITIVE,
    "per_device_train_batch_size": _COUNT, "per_device_eval_batch_size": _COUNT, "pairs_per_batch": _COUNT,
    "reader_batch_size": _COUNT, "reader_dim": _COUNT, "gradient_accumulation_steps": _COUNT,
    "eval_accumulation_steps": _COUNT, "save_total_limit": _COUNT, "pad_to_multiple_of": _COUNT,
    "max_train_examples": _COUNT, "max_train_pairs": _COUNT, "max_eval_examples": _COUNT, "max_eval_pairs": _COUNT,
    "max_length": config_system.at_least(8), "reader_steps": _WEIGHT, "max_distractors": _WEIGHT,
    "max_pseudo_prompts": _WEIGHT, "compliance_weight": _WEIGHT, "reward_weight": _WEIGHT, "aux_weight": _WEIGHT,
    "pseudo_weight": _WEIGHT, "pseudo_margin": _WEIGHT, "margin_scale": _WEIGHT,
    "center_rewards_coefficient": _WEIGHT, "warmup_steps": _WEIGHT, "weight_decay": _WEIGHT,
    "max_grad_norm": _WEIGHT, "seed": _WEIGHT, "data_seed": _WEIGHT, "dataloader_num_workers": _WEIGHT,
    "head_dropout": config_system.within(0, 1, high_open=True),
    "adam_beta1": config_system.within(0, 1, high_open=True), "adam_beta2": config_system.within(0, 1, high_open=True),
    "label_smoothing_factor": config_system.within(0, 1, high_open=True),
}


def check_bounds(values: dict[str, Any], *, source: str | None = None) -> None:
    """Raise :class:`InputError` naming the first field of ``values`` outside its :data:`FIELD_CHECKS` bound."""
    for key, value in values.items():
        check = FIELD_CHECKS.get(key)
        message = check(value) if check is not None and isinstance(value, (int, float)) else None
        if message:
            raise InputError(message, path=source, field=key)


@dataclass
class CSRMTrainConfig(TrainingArguments):
    """Training configuration of a CSRM (see the module docstring; the help texts double as the docs).

    Defaults that differ from ``TrainingArguments``: ``learning_rate`` 3e-5, ``per_device_train_batch_size`` 16
    (pointwise examples per batch), ``per_device_eval_batch_size`` 64 (sequences), ``logging_steps`` 10,
    ``eval_strategy``/``save_strategy`` ``steps`` every quarter of training, ``save_total_limit`` 2,
    ``warmup_steps`` 0.06 (a ratio), ``weight_decay`` 0.01, ``remove_unused_columns`` False (forced).
    """

    # -- model ------------------------------------------------------------------------------------------
    architecture: str = field(default="cross_encoder", metadata={
        "help": "clause: the clause-reading CSRM (frozen encoder; config split into clauses, content into "
                "windows; small heads trained on cached features; csrm/model/clause_model.py). cross_encoder: one "
                "sequence (config, conversation, response) through a fine-tuned backbone (csrm/model/modeling.py).",
        "choices": ["clause", "cross_encoder"]})
    reader_dim: int = field(default=32, metadata={"help": "clause: width of the config reader's MLP."})
    reader_steps: int = field(default=400, metadata={
        "help": "clause: optimisation steps of the config reader on the structured allow maps (0 = none)."})
    reader_learning_rate: float = field(default=1e-2, metadata={"help": "clause: the reader's learning rate."})
    reader_batch_size: int = field(default=256, metadata={"help": "clause: configs per reader step."})
    distractor_rules: str | None = field(default=None, metadata={
        "help": "clause: JSONL of rule lists ('rules' or 'text' per line; '{data_dir}' = the shared data folder) "
                "whose clauses are appended at random to configs while the reader trains, so that long "
                "policies full of unrelated rules do not read as permissions. null = none."})
    max_distractors: int = field(default=64, metadata={"help": "clause: at most this many distractor clauses "
                                                               "appended per reader batch."})
    pseudo_label_prompts: str | None = field(default=None, metadata={
        "help": "clause: unlabelled prompts (a JSON list of strings, or JSONL with 'prompt' or 'text'; "
                "'{data_dir}' = the shared data folder) labelled by the zero-shot category similarity and used "
                "as category targets for the matcher's residual, so categories without labels keep their "
                "words' meaning. null = none."})
    max_pseudo_prompts: int = field(default=6000, metadata={
        "help": "clause: at most this many pseudo-labelled prompts (a seeded sample)."})
    pseudo_weight: float = field(default=1.0, metadata={"help": "clause: weight of the pseudo-label loss."})
    pseudo_margin: float = field(default=0.03, metadata={
        "help": "clause: keep a pseudo label only when its category's cosine similarity beats the runner-up's "
                "by more than this."})
    aux_weight: float = field(default=1.0, metadata={
        "help": "clause: weight of the content-level targets (categories, severity, refusal) beside the "
                "compliance BCE and the pair loss."})
    model_name_or_path: str = field(default="minilm", metadata={
        "help": "Backbone: a hub id or local path ('minilm' = the bundled all-MiniLM-L6-v2), or a saved CSRM "
                "folder to continue training it."})
    backbone_config: dict | None = field(default=None, metadata={
        "help": "Build a randomly initialised backbone from this config dict (model_type plus sizes, e.g. "
                "{model_type: bert, hidden_size: 32, ...}) instead of loading weights; smoke runs and tests. "
                "vocab_size defaults to the tokenizer's."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={
        "help": "Tokenizer to use; default: model_name_or_path ('minilm' when backbone_config is set)."})
    pooling: str | None = field(default=None, metadata={
        "help": "mean | cls | last; default: last for decoders, mean for encoders.",
        "choices": ["mean", "cls", "last", None]})
    template: str = field(default="plain", metadata={
        "help": "Input template: plain, or chat (decoders with a chat template; config = system message).",
        "choices": ["plain", "chat"]})
    max_length: int = field(default=512, metadata={
        "help": "Token budget of one (config, conversation, response) input, truncated by the formatter's "
                "rule (oldest conversation turns first, the config last and never silently)."})
    head_dropout: float = field(default=0.1, metadata={"help": "Dropout on the pooled vector before both heads."})
    dtype: str = field(default="float32", metadata={
        "help": "Weights dtype when loading the backbone: float32, bfloat16, float16 or auto (the checkpoint's).",
        "choices": ["float32", "bfloat16", "float16", "auto"]})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Allow backbones/tokenizers that ship their own Python code."})
    attn_implementation: str | None = field(default=None, metadata={
        "help": "Attention kernel passed to the backbone's from_pretrained/from_config: eager, sdpa, "
                "flash_attention_2, ... (default: transformers' choice)."})
    peft_config: dict | None = field(default=None, metadata={
        "help": "cross_encoder: train LoRA adapters instead of the whole backbone (heads stay fully trainable; "
                "the final model is merged): {r, lora_alpha (alpha), lora_dropout (dropout), target_modules "
                "(list or 'all-linear'), load_in_4bit (QLoRA, needs bitsandbytes)}. See csrm/training/lora.py."})
    tokenize_cache: bool = field(default=True, metadata={
        "help": "Cache the tokenized splits (datasets.map) under <checkpoint_dir>/tokenized, reused by reruns and "
                "resumes with the same data, tokenizer and length settings."})

    # -- data -------------------------------------------------------------------------------------------
    dataset_path: str | None = field(default=None, metadata={
        "help": "Folder written by 'csrm augment' (holding examples/ and pairs/ DatasetDicts). Required."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default="validation", metadata={
        "help": "Split to evaluate on during training (F1/AUROC/ECE/pair accuracy); null = none."})
    blind_config: bool = field(default=False, metadata={
        "help": "Blank every config text (the config-blind baseline: what reading the config is worth). "
                "Recorded in the saved model's config as blind_config."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Use at most this many training examples."})
    max_train_pairs: int | None = field(default=None, metadata={"help": "Use at most this many training pairs."})
    max_eval_examples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many examples."})
    max_eval_pairs: int | None = field(default=None, metadata={"help": "Evaluate on at most this many pairs."})
    pairs_per_batch: int = field(default=8, metadata={
        "help": "Preference pairs per device batch (P), next to per_device_train_batch_size examples (B); "
                "one forward runs B + 2P sequences."})
    group_by_length: bool = field(default=True, metadata={
        "help": "Group sequences of similar length into batches (less padding); still seeded and resumable."})
    pad_to_multiple_of: int | None = field(default=None, metadata={
        "help": "Pad each batch to a multiple of this many tokens (e.g. 8 on tensor cores)."})

    # -- objective --------------------------------------------------------------------------------------
    compliance_weight: float = field(default=1.0, metadata={
        "help": "w_c: weight of the compliance BCE (0 disables the pointwise stream)."})
    reward_weight: float = field(default=1.0, metadata={
        "help": "w_r: weight of the Bradley-Terry pair loss (0 disables the pair stream)."})
    margin_scale: float = field(default=0.1, metadata={
        "help": "m in -log sigmoid(r_chosen - r_rejected - m * margin); margin = the pair's error gap. 0 = plain BT."})
    center_rewards_coefficient: float | None = field(default=None, metadata={
        "help": "lambda of the reward-centering term lambda * mean((r_c + r_r)^2) (TRL's idea; e.g. 0.01)."})

    # -- run --------------------------------------------------------------------------------------------
    max_train_minutes: float | None = field(default=None, metadata={
        "help": "Stop training after this many minutes of the training loop (all ranks at the same step), then "
                "evaluate and save as usual: a wall-clock budget on top of max_steps/num_train_epochs."})
    overwrite: bool = field(default=False, metadata={
        "help": "Write into a non-empty output_dir that is not an earlier csrm train output (only the files "
                "training writes are replaced; everything else in it is kept)."})
    checkpoint_dir: str | None = field(default=None, metadata={
        "help": "Where Trainer checkpoints and logs go; default: '<output_dir>-checkpoints'."})
    resume_from_checkpoint: str | bool | None = field(default=None, metadata={
        "help": "A checkpoint folder to resume from, or true/'auto' for the newest complete checkpoint in "
                "checkpoint_dir (starting fresh when there is none)."})

    # -- TrainingArguments defaults changed for this task -----------------------------------------------
    output_dir: str | None = field(default=None, metadata={
        "help": "Final model folder (written atomically at the end; CSRMModel.from_pretrained loads it). Required."})
    learning_rate: float = field(default=3e-5, metadata={"help": "Peak learning rate (AdamW)."})
    per_device_train_batch_size: int = field(default=16, metadata={
        "help": "Pointwise examples per device batch (B)."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Sequences per evaluation batch."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps (or a ratio of all steps if < 1)."})
    eval_strategy: IntervalStrategy | str = field(default="steps", metadata={"help": "no | steps | epoch."})
    eval_steps: float | None = field(default=0.25, metadata={"help": "Evaluate every N steps (or a ratio if < 1)."})
    save_strategy: SaveStrategy | str = field(default="steps", metadata={"help": "no | steps | epoch | best."})
    save_steps: float = field(default=0.25, metadata={"help": "Checkpoint every N steps (or a ratio if < 1)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    warmup_steps: float = field(default=0.06, metadata={"help": "Warm-up steps (or a ratio of all steps if < 1)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Always False for the CSRM collator."})

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
        check_bounds({name: getattr(self, name) for name in FIELD_CHECKS if hasattr(self, name)})
        if self.uses_deepspeed and not self.use_cpu and not _has_gpu():
            # without use_cpu, accelerate finds no backend on a CPU-only machine and counts one process
            # while DeepSpeed runs several (every rank would then see the same batches)
            logger.warning("no GPU: DeepSpeed runs on CPU, use_cpu set to true")
            self.use_cpu = True
        check_steps(self.max_steps, self.num_train_epochs)
        if self.peft_config is not None:
            from csrm.training.lora import check_peft_config

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

    def trainer_arguments(self, **changes: Any) -> CSRMTrainConfig:
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


# -- loading and checking -----------------------------------------------------------------------------------
def check_steps(max_steps: Any, num_train_epochs: Any, *, source: str | None = None) -> None:
    """Refuse a run that would train zero steps (it would save an untrained model and exit 0):
    ``max_steps`` must be positive, or -1 (the default: train ``num_train_epochs``, which must be > 0)."""
    if isinstance(max_steps, int) and not isinstance(max_steps, bool) and (max_steps == 0 or max_steps < -1):
        raise InputError(f"must be > 0, or -1 to train num_train_epochs; got {max_steps}", path=source,
                         field="max_steps")
    if max_steps == -1 and isinstance(num_train_epochs, (int, float)) and num_train_epochs <= 0:
        raise InputError(f"must be > 0 when max_steps is -1 (no training steps otherwise); got {num_train_epochs}",
                         path=source, field="num_train_epochs")


def check_train_config(path: str | Path, overrides: list[str] | None = None, *,
                       overrides_source: str = "command line") -> dict[str, Any]:
    """Everything :func:`load_train_config` checks that needs no ``TrainingArguments`` instance (keys, types,
    choices, training steps), for checking a run's config before any stage; returns the merged values."""
    raw = dict(check_config_dict(load_yaml(path), source=str(path)))
    extra = check_config_dict(parse_overrides(overrides or []), source=overrides_source)
    raw = merge(raw, extra)
    defaults = {f.name: f.default for f in dataclasses.fields(CSRMTrainConfig)}
    source = overrides_source if {"max_steps", "num_train_epochs"} & set(extra) else str(path)
    check_steps(raw.get("max_steps", defaults["max_steps"]), raw.get("num_train_epochs",
                defaults["num_train_epochs"]), source=source)
    return raw


def config_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(CSRMTrainConfig) if f.init}


def fields_help() -> str:
    """``csrm train --help``'s field list: the CSRM's own fields, then every ``TrainingArguments`` field."""
    hints = _type_hints()
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    rows = []
    for name, f in config_fields().items():
        default = "" if f.default is dataclasses.MISSING else f" (default: {f.default!r})"
        rows.append((name in inherited, name, _type_name(hints.get(name, f.type)),
                     " ".join(str(f.metadata.get("help", "")).split()) + default))
    width = min(40, max(len(name) for _, name, _, _ in rows))
    own = [f"  {name:<{width}}  {kind}: {text}" for hf, name, kind, text in rows if not hf]
    hf = [f"  {name:<{width}}  {kind}: {text}" for hf, name, kind, text in rows if hf]
    return "\n".join(["fields (override as key=value, --key value or --key=value; dotted keys reach into "
                      "mappings such as peft_config.r=8):", *own, "", "TrainingArguments fields:", *hf])


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Overrides (any form :mod:`csrm.base.config` takes) -> a mapping; a dotted key becomes a nested mapping
    (merged into the file's by :func:`merge`)."""
    out: dict[str, Any] = {}
    config_system.apply_overrides(out, overrides)
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, mappings merged key by key (``peft_config.r=8`` keeps the other keys)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def check_config_dict(data: dict[str, Any], *, source: str | None = None) -> dict[str, Any]:
    """Check keys and value types against :class:`CSRMTrainConfig`; returns the values (floats written as
    ``1e-4``, which YAML reads as strings, become floats). Raises :class:`InputError` naming the key."""
    fields = config_fields()
    hints = _type_hints()
    checked: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown key{hint}", path=source, field=str(key))
        annotation = hints.get(key, fields[key].type)
        value = _coerce(value, annotation)
        if not _matches(value, annotation):
            raise InputError(f"expected {_type_name(annotation)}, got {type(value).__name__} {value!r}",
                             path=source, field=key)
        choices = fields[key].metadata.get("choices")
        if choices and isinstance(value, str) and value not in choices:
            raise InputError(f"must be one of {[c for c in choices if c is not None]}, got {value!r}",
                             path=source, field=key)
        checked[key] = value
    check_bounds(checked, source=source)
    return checked


def load_train_config(path: str | Path | None, overrides: list[str] | None = None,
                      **extra: Any) -> tuple[CSRMTrainConfig, dict[str, Any]]:
    """YAML file + ``key=value`` overrides (+ keyword values) -> (config, the merged raw dict)."""
    data = load_yaml(path) if path is not None else {}
    raw = dict(check_config_dict(data, source=str(path) if path is not None else None))
    raw = merge(raw, check_config_dict(parse_overrides(overrides or []), source="command line"))
    raw.update(check_config_dict(extra))
    try:
        return CSRMTrainConfig(**raw), raw
    except InputError:
        raise
    except ValueError as err:  # TrainingArguments' own cross-field checks
        raise InputError(str(err), path=str(path) if path is not None else None) from None


def _type_hints() -> dict[str, Any]:
    try:
        return typing.get_type_hints(CSRMTrainConfig)
    except Exception:  # an unresolvable forward reference: fall back to the raw annotations
        return {}


def _members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _coerce(value: Any, annotation: Any) -> Any:
    members = _members(annotation)
    if value is False and bool not in members and _matches("no", annotation):  # YAML 1.1 reads `no` as false
        return "no"
    if isinstance(value, str) and float in members and str not in members and _FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in members and int not in members:
        return float(value)
    return value


def value_matches(value: Any, annotation: Any) -> bool:
    """Does ``value`` (as read from YAML) fit the type ``annotation``? (also used for pipeline recipes)"""
    return _matches(value, annotation)


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is Any or isinstance(annotation, str):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
        if enums and isinstance(value, str):  # "SchedulerType | str": the string must name a member
            return any(value in {e.value for e in m} for m in enums)
        return any(_matches(value, m) for m in members)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return isinstance(value, annotation) or value in {e.value for e in annotation}
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    members = _members(annotation)
    enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
    if enums:
        return "one of " + ", ".join(repr(e.value) for m in enums for e in m)
    return " or ".join("null" if m is type(None) else getattr(m, "__name__", str(m)) for m in members)
