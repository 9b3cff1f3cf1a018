"""Train a cross-encoder CSRM (:mod:`csrm.model.cross_encoder.modeling`) with the transformers ``Trainer``.

``csrm train CONFIG`` with ``architecture: cross_encoder`` lands in :func:`train` through
:mod:`csrm.model.registry`; the settings are :class:`~csrm.model.cross_encoder.args.CrossEncoderTrainConfig`.
Runs as is (one process) and under ``accelerate launch``, ``torchrun`` and the ``deepspeed`` launcher
(``python -m csrm train`` is the module to launch). Raises
:class:`~csrm.model.cross_encoder.trainer.NonFiniteLossError` when the loss diverges.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoConfig, TrainerCallback, set_seed

from csrm.base.errors import InputError
from csrm.base.paths import resolve_model_name
from csrm.model.cross_encoder.args import CrossEncoderTrainConfig
from csrm.model.cross_encoder.modeling import DTYPES, CSRMModel, is_decoder_config, load_tokenizer
from csrm.model.cross_encoder.trainer import CSRMTrainer, last_checkpoint
from csrm.model.data import TokenizedSplit, load_augmented

logger = logging.getLogger(__name__)

def _is_csrm_dir(path: str) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "csrm"
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _without_zero3_init(cfg: CrossEncoderTrainConfig) -> Iterator[None]:
    """Build a random-init backbone outside ZeRO-3's ``zero.Init`` (transformers' weight init indexes the
    partitioned, empty embedding then); the DeepSpeed engine partitions the parameters when it starts.

    The global DeepSpeed config transformers consults is the one ``TrainingArguments`` registered
    (``cfg.hf_deepspeed_config``): unset here, registered again afterwards, both through public functions."""
    from transformers.integrations import deepspeed as hf_ds

    registered = getattr(cfg, "hf_deepspeed_config", None)
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if registered is not None:
            hf_ds.set_hf_deepspeed_config(registered)


def build_model(cfg: CrossEncoderTrainConfig) -> tuple[CSRMModel, Any]:
    """(model, tokenizer) from the config: a saved CSRM, a pretrained backbone, or a backbone built from
    ``backbone_config`` (random weights)."""
    name = resolve_model_name(cfg.model_name_or_path)
    head = {"max_length": cfg.max_length, "template": cfg.template, "head_dropout": cfg.head_dropout}
    if cfg.backbone_config is not None:
        tokenizer_name = cfg.tokenizer_name_or_path or "minilm"
        spec = dict(cfg.backbone_config)
        model_type = spec.pop("model_type", None)
        if not model_type:
            raise InputError("needs a model_type (e.g. bert, llama)", field="backbone_config")
        backbone_config = AutoConfig.for_model(model_type, **spec)
        tokenizer = load_tokenizer(tokenizer_name, decoder=is_decoder_config(backbone_config),
                                   trust_remote_code=cfg.trust_remote_code)
        if "vocab_size" not in spec:
            backbone_config.vocab_size = len(tokenizer)
        if tokenizer.pad_token_id is not None and hasattr(backbone_config, "pad_token_id"):
            backbone_config.pad_token_id = tokenizer.pad_token_id
        with _without_zero3_init(cfg):
            model = CSRMModel.from_backbone_config(backbone_config, **head,
                                                   **({"pooling": cfg.pooling} if cfg.pooling else {}))
        if cfg.attn_implementation:
            try:
                model.backbone.set_attn_implementation(cfg.attn_implementation)
            except (ValueError, ImportError) as err:
                raise InputError(str(err).splitlines()[0], field="attn_implementation") from None
    elif _is_csrm_dir(name):
        model = CSRMModel.from_pretrained(name, dtype=DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code,
                                          **_load_kwargs(cfg))
        model.config.max_length, model.config.template = cfg.max_length, cfg.template
        tokenizer = load_tokenizer(cfg.tokenizer_name_or_path or name, decoder=model.config.is_decoder_backbone,
                                   trust_remote_code=cfg.trust_remote_code)
    else:
        model = CSRMModel.from_backbone(name, pooling=cfg.pooling, dtype=DTYPES[cfg.dtype],
                                        trust_remote_code=cfg.trust_remote_code, load_kwargs=_load_kwargs(cfg),
                                        **head)
        tokenizer = load_tokenizer(cfg.tokenizer_name_or_path or name, decoder=model.config.is_decoder_backbone,
                                   trust_remote_code=cfg.trust_remote_code)
    if cfg.uses_deepspeed:
        # DeepSpeed runs the whole module in one dtype and ZeRO-3 requires it of the partitions; the heads are
        # built in float32 beside a backbone that zero.Init may already hold in bf16/fp16
        dtype = torch.bfloat16 if cfg.bf16 else torch.float16 if cfg.fp16 else torch.float32
        model.compliance_head.to(dtype)
        model.reward_head.to(dtype)
    if model.config.is_decoder_backbone and hasattr(model.backbone.config, "use_cache"):
        model.backbone.config.use_cache = False  # no KV cache while training (and with checkpointing)
    if cfg.blind_config:
        model.config.blind_config = True
    if cfg.peft_config:
        from csrm.model.cross_encoder.lora import apply_lora

        apply_lora(model, cfg.peft_config, gradient_checkpointing=cfg.gradient_checkpointing)
    return model, tokenizer


def _load_kwargs(cfg: CrossEncoderTrainConfig) -> dict[str, Any]:
    """Backbone ``from_pretrained`` arguments: the attention kernel and QLoRA's 4-bit quantization."""
    from csrm.model.cross_encoder.lora import quantization_kwargs

    out = quantization_kwargs(cfg.peft_config)
    if cfg.attn_implementation:
        out["attn_implementation"] = cfg.attn_implementation
    return out


def build_data(cfg: CrossEncoderTrainConfig, formatter) -> tuple[TokenizedSplit, TokenizedSplit | None]:
    """Tokenized train and eval splits; logs the formatter's truncation counters."""
    from collections import Counter

    from csrm.model.token_cache import tokenize_split

    splits = [cfg.train_split] + ([cfg.eval_split] if cfg.eval_split else [])
    data = load_augmented(cfg.dataset_path, splits)
    cache_dir = str(Path(cfg.checkpoint_dir).expanduser() / "tokenized") if cfg.tokenize_cache else None
    counters: Counter = Counter()

    def tokenize(kind: str, split: str, use: bool, limit: int | None):
        return tokenize_split(data[kind][split] if use else None, kind, formatter, cache_dir=cache_dir,
                              blind_config=cfg.blind_config, limit=limit, stats=counters)

    # datasets.map, cached: the main process of each node tokenizes and writes the cache, the others load it
    with cfg.main_process_first(desc="csrm tokenization"):
        train = TokenizedSplit(tokenize("examples", cfg.train_split, cfg.compliance_weight > 0,
                                        cfg.max_train_examples),
                               tokenize("pairs", cfg.train_split, cfg.reward_weight > 0, cfg.max_train_pairs))
        evaluation = None
        if cfg.eval_split:
            evaluation = TokenizedSplit(tokenize("examples", cfg.eval_split, True, cfg.max_eval_examples),
                                        tokenize("pairs", cfg.eval_split, True, cfg.max_eval_pairs))
    if not len(train.examples) and not len(train.pairs):
        raise InputError(f"no training examples or pairs in split {cfg.train_split!r}", field="dataset_path")
    if evaluation is not None and not len(evaluation.examples) and not len(evaluation.pairs):
        evaluation = None
    stats = dict(counters)
    logger.info("tokenized: %d train examples, %d train pairs; truncation counters %s",
                len(train.examples), len(train.pairs), stats)
    if stats.get("config_truncated"):
        logger.warning("%d inputs had their safety config cut: raise max_length (now %d)",
                       stats["config_truncated"], cfg.max_length)
    return train, evaluation


def resolve_resume(cfg: CrossEncoderTrainConfig) -> str | None:
    """The checkpoint to resume from: an explicit folder, or for true/'auto' the newest complete one."""
    value = cfg.resume_from_checkpoint
    if value in (None, False):
        return None
    if value is True or value == "auto":
        found = last_checkpoint(cfg.checkpoint_dir)
        logger.info("resume: %s", found or f"no checkpoint in {cfg.checkpoint_dir}, starting fresh")
        return found
    if not Path(str(value), "trainer_state.json").is_file():
        raise InputError(f"{value} is not a complete checkpoint folder", field="resume_from_checkpoint")
    return str(value)


def train(cfg: CrossEncoderTrainConfig, *, raw_config: dict[str, Any] | None = None,
          callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Train, evaluate and save the final model to ``cfg.output_dir``; returns a summary (metrics, throughput,
    peak memory). Raises :class:`~csrm.model.cross_encoder.trainer.NonFiniteLossError` if the loss diverges."""
    set_seed(cfg.seed)
    resume = resolve_resume(cfg)
    if "wandb" in cfg.report_to:  # offline runs (WANDB_MODE=offline) land beside the checkpoints
        os.environ.setdefault("WANDB_PROJECT", "csrm")
        os.environ.setdefault("WANDB_DIR", str(Path(cfg.checkpoint_dir).expanduser().resolve()))
        Path(os.environ["WANDB_DIR"]).mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_model(cfg)
    train_data, eval_data = build_data(cfg, model.make_formatter(tokenizer))
    changes: dict[str, Any] = {}
    if eval_data is None and cfg.eval_strategy != "no":
        logger.warning("no evaluation data: evaluation during training is off")
        changes["eval_strategy"] = "no"
    trainer = CSRMTrainer(model=model, args=cfg.trainer_arguments(**changes), train_data=train_data,
                          eval_data=eval_data, processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_incomplete_checkpoints()
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - start
    eval_in_loop = trainer.eval_seconds
    eval_metrics = final_eval(trainer) if eval_data is not None else {}
    seen = _gather_counts(trainer)
    # the Trainer's loop time (no model/DeepSpeed set-up) without the evaluations inside it
    loop_seconds = max(float(result.metrics.get("train_runtime", train_seconds)) - eval_in_loop, 1e-9)
    summary = {
        "output_dir": str(Path(cfg.output_dir).expanduser().resolve()),
        "checkpoint_dir": str(Path(cfg.checkpoint_dir).expanduser().resolve()),
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_seconds": round(train_seconds, 2),
        "train_loop_seconds": round(float(result.metrics.get("train_runtime", train_seconds)), 2),
        "eval_seconds_in_loop": round(eval_in_loop, 2),
        "examples_seen": seen["examples"],
        "pairs_seen": seen["pairs"],
        "sequences_per_second": round((seen["examples"] + 2 * seen["pairs"]) / loop_seconds, 2),
        "items_per_second": round((seen["examples"] + seen["pairs"]) / loop_seconds, 2),
        "tokens_per_second": round(seen["tokens"] / loop_seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "eval": eval_metrics,
    }
    if torch.cuda.is_available():
        summary["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    extra = {"train_results.json": json.dumps(summary, indent=2, default=str) + "\n"}
    if raw_config is not None:
        extra["train_config.yaml"] = yaml.safe_dump(raw_config, sort_keys=False)
    wandb_run = _wandb_run() if "wandb" in cfg.report_to else None
    if wandb_run is not None:
        summary["wandb_run_dir"] = str(Path(wandb_run.dir).parent)
    if cfg.peft_config:
        from csrm.model.cross_encoder.lora import merge_lora

        merge_lora(model)  # the final folder is a plain CSRM (csrm.load, csrm export need no peft)
    trainer.save_final_model(cfg.output_dir, extra_files=extra)
    if wandb_run is not None:
        wandb_run.finish()
    return summary


def _wandb_run() -> Any:
    try:
        import wandb
    except ImportError:
        return None
    return wandb.run


def final_eval(trainer: CSRMTrainer) -> dict[str, Any]:
    """Metrics of the final weights: those logged at the last step if an evaluation ran there, else new."""
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry:
            if entry.get("step") == trainer.state.global_step:
                return {k: v for k, v in entry.items() if k.startswith("eval_")}
            break
    return trainer.evaluate()


def _gather_counts(trainer: CSRMTrainer) -> dict[str, int]:
    counts = torch.tensor([trainer.items_seen[k] for k in ("examples", "pairs", "tokens")], dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        counts = counts.to(trainer.args.device)
        torch.distributed.all_reduce(counts)
    return dict(zip(("examples", "pairs", "tokens"), (int(v) for v in counts.tolist()), strict=True))


def leave_process_group() -> None:
    """Destroy the process group (after a barrier) before the interpreter exits. Left to interpreter
    teardown, a rank can destroy the backend's threads while they still run ("terminate called without an
    active exception", SIGABRT after the model was saved), which fails the whole launch."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()

