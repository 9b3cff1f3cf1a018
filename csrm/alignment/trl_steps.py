"""The training steps of ``csrm align`` on TRL: SFT on the chosen responses, DPO against a frozen reference,
optional LoRA (merged after training), and the policy's ``logp(chosen) - logp(rejected)`` before and after.

``trl`` and ``peft`` (the ``[align]`` extra) are imported where used, so the rest of the loop runs without them.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM
from transformers.integrations.deepspeed import unset_hf_deepspeed_config

from csrm.alignment.config import AlignConfig
from csrm.alignment.distributed import barrier, free_memory, is_main
from csrm.alignment.policy import completion_logps, load_policy_tokenizer, save_policy
from csrm.base.io import atomic_path
from csrm.model.cross_encoder.modeling import DTYPES


# -- TRL glue -------------------------------------------------------------------------------
def _use_cpu(cfg: AlignConfig) -> bool:
    return cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())


def _trainer_args(cfg: AlignConfig, cls: type, output_dir: Path, *, learning_rate: float, epochs: float,
                  batch_size: int, grad_accum: int, seed: int, **extra: Any):
    """TRL config with this project's conventions (no checkpoints, explicit CPU/bf16, optional DeepSpeed)."""
    checkpointing = bool(extra.pop("checkpointing", False))
    if any(f.name == "activation_checkpointing" for f in dataclasses.fields(cls)):  # transformers >= 5.x rename
        extra.update(activation_checkpointing=checkpointing, gradient_checkpointing=None)
    else:
        extra.update(gradient_checkpointing=checkpointing)
    return cls(output_dir=str(output_dir), learning_rate=learning_rate, num_train_epochs=epochs,
               per_device_train_batch_size=batch_size, gradient_accumulation_steps=grad_accum,
               logging_steps=cfg.logging_steps, save_strategy="no", report_to=cfg.report_to, seed=seed,
               use_cpu=_use_cpu(cfg), bf16=cfg.bf16, fp16=False, deepspeed=cfg.deepspeed or None,
               dataloader_num_workers=0, **extra)


def _lora_config(cfg: AlignConfig, model=None):
    """peft LoraConfig from the recipe; ``last_layers`` restricts it to the model's top layers."""
    lora = cfg.dpo.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig

    targets: Any = lora.target_modules
    extra: dict[str, Any] = {}
    if lora.last_layers > 0 and model is not None:
        layers = int(model.config.get_text_config().num_hidden_layers)
        extra["layers_to_transform"] = list(range(max(0, layers - lora.last_layers), layers))
        if targets == ["all-linear"]:  # peft needs explicit names with layers_to_transform
            targets = sorted(_linear_names(model))
    elif targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      task_type="CAUSAL_LM", **extra)


def _linear_names(model) -> set[str]:
    """Leaf names of the linear layers inside the transformer blocks (not the LM head or embeddings)."""
    output = model.get_output_embeddings()
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output and ".layers." in f".{name}"}


def _load_for_training(cfg: AlignConfig, path: str):
    p = cfg.policy
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[p.dtype], trust_remote_code=p.trust_remote_code)
    tokenizer = load_policy_tokenizer(path, chat_template=p.chat_template, trust_remote_code=p.trust_remote_code)
    return model, tokenizer


def _save_trained(trainer, tokenizer, dest: Path, *, base: str, cfg: AlignConfig) -> None:
    """Save the trained policy as a plain checkpoint (LoRA merged), atomically, from the main process."""
    if not trainer.is_deepspeed_enabled:
        if is_main():
            save_policy(trainer.model, tokenizer, dest)
        barrier()
        return
    staging = dest.parent / f".{dest.name}.deepspeed.tmp"
    trainer.save_model(str(staging))  # gathers ZeRO-3 shards (needs stage3_gather_16bit_weights_on_model_save)
    _release_deepspeed()  # plain from_pretrained from here on (merging, and the next round's sampling)
    if is_main():
        if cfg.dpo.lora.enabled:
            from peft import PeftModel

            model, _ = _load_for_training(cfg, base)
            save_policy(PeftModel.from_pretrained(model, str(staging)), tokenizer, dest)
            shutil.rmtree(staging, ignore_errors=True)
        else:
            tokenizer.save_pretrained(str(staging))
            (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; the policy folder needs none
            with atomic_path(dest, is_dir=True) as tmp:
                shutil.rmtree(tmp)
                staging.rename(tmp)
    barrier()


def _release_deepspeed() -> None:
    """Forget the trainer's global ZeRO-3 config: while it is set, every ``from_pretrained`` (the next round's
    sampling policy, the evaluation policy) would be partitioned by ``zero.Init``."""
    unset_hf_deepspeed_config()


def _train_summary(trainer, output) -> dict[str, Any]:
    history = [dict(h) for h in trainer.state.log_history]
    logs = [h for h in history if "loss" in h]
    summary: dict[str, Any] = {"train_loss": float(output.training_loss), "steps": int(trainer.state.global_step),
                               "log_history": history}
    if logs:
        for key in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"):
            if key in logs[-1]:
                summary["last_" + key.replace("/", "_")] = float(logs[-1][key])
    return summary


def run_sft(cfg: AlignConfig, pairs, start: str, dest: Path, *, seed: int) -> dict[str, Any]:
    """SFT (trl.SFTTrainer, completion-only loss) on the best chosen response of each (config, prompt)."""
    from trl import SFTConfig, SFTTrainer

    best: dict[str, dict] = {}
    for row in pairs:
        key = row["prompt_id"]
        if key not in best or row["chosen_reward"] > best[key]["chosen_reward"]:
            best[key] = row
    data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"]} for r in best.values()])
    s = cfg.sft
    args = _trainer_args(cfg, SFTConfig, dest.parent / "_sft_trainer", learning_rate=s.learning_rate,
                         epochs=s.epochs, batch_size=s.batch_size, grad_accum=s.grad_accum, seed=seed,
                         max_length=s.max_length, packing=False, checkpointing=cfg.dpo.gradient_checkpointing)
    model, tokenizer = _load_for_training(cfg, start)  # after the args: ZeRO-3 shards at load
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                         peft_config=_lora_config(cfg, model))
    output = trainer.train()
    _save_trained(trainer, tokenizer, dest, base=start, cfg=cfg)
    summary = _train_summary(trainer, output)
    shutil.rmtree(dest.parent / "_sft_trainer", ignore_errors=True)
    return {"sft_examples": len(data), "sft_loss": summary["train_loss"], "sft_steps": summary["steps"]}


def pair_margins(model, tokenizer, pairs, *, max_length: int | None = None, batch_size: int = 8) -> list[float]:
    """``logp(chosen) - logp(rejected)`` under ``model`` for each pair (conversational TRL rows)."""
    prompts = [row["prompt"] for row in pairs]
    chosen = completion_logps(model, tokenizer, prompts, [row["chosen"][0]["content"] for row in pairs],
                              batch_size=batch_size, max_length=max_length)
    rejected = completion_logps(model, tokenizer, prompts, [row["rejected"][0]["content"] for row in pairs],
                                batch_size=batch_size, max_length=max_length)
    return [c - r for c, r in zip(chosen, rejected, strict=True)]


def run_dpo(cfg: AlignConfig, pairs, start: str, dest: Path, *, seed: int) -> dict[str, Any]:
    """trl.DPOTrainer from ``start`` with a frozen copy of ``start`` as the reference; saves to ``dest``.

    Returns the training summary plus the mean ``logp(chosen) - logp(rejected)`` on (up to
    ``dpo.margin_pairs`` of) the pairs before and after training, and the implied DPO reward margin
    ``beta * (after - before)`` (the reference is the starting policy).
    """
    from trl import DPOConfig, DPOTrainer

    d = cfg.dpo
    args = _trainer_args(cfg, DPOConfig, dest.parent / "_dpo_trainer", learning_rate=d.learning_rate,
                         epochs=d.epochs, batch_size=d.batch_size, grad_accum=d.grad_accum, seed=seed,
                         beta=d.beta, max_length=d.max_length, loss_type=list(d.loss_type),
                         loss_weights=list(d.loss_weights) if d.loss_weights else None,
                         checkpointing=d.gradient_checkpointing, warmup_steps=d.warmup_ratio,
                         weight_decay=d.weight_decay)
    model, tokenizer = _load_for_training(cfg, start)  # after the args: ZeRO-3 shards at load
    ref_model, _ = _load_for_training(cfg, start)
    ref_model.requires_grad_(False).eval()
    measure = not args.deepspeed and is_main()
    subset = pairs.select(range(min(len(pairs), d.margin_pairs or len(pairs))))
    before: list[float] = []
    if measure:
        ref_model.to(args.device)
        before = pair_margins(ref_model, tokenizer, subset, max_length=d.max_length)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=pairs,
                         processing_class=tokenizer, peft_config=_lora_config(cfg, model))
    output = trainer.train()
    summary = _train_summary(trainer, output)
    if measure:
        after = pair_margins(trainer.model, tokenizer, subset, max_length=d.max_length)
        mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
        summary.update(logp_margin_before=mean_before, logp_margin_after=mean_after,
                       implicit_reward_margin=d.beta * (mean_after - mean_before),
                       margin_improved_fraction=sum(a > b for a, b in zip(after, before, strict=True)) / len(after),
                       margin_pairs=len(after))
    _save_trained(trainer, tokenizer, dest, base=start, cfg=cfg)
    shutil.rmtree(dest.parent / "_dpo_trainer", ignore_errors=True)
    summary["dpo_pairs"] = len(pairs)
    del trainer, model, ref_model
    free_memory()
    return summary
