"""LoRA / QLoRA for the cross-encoder CSRM (``peft_config`` in :class:`csrm.model.cross_encoder.args.CrossEncoderTrainConfig`).

``peft_config: {r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules: [q_proj, v_proj]}`` wraps the
*backbone* in a peft LoRA model; the backbone's own weights are frozen, and the compliance and reward heads
(which sit on the CSRM, outside the backbone) stay fully trainable: the heads are the ``modules_to_save`` of
this design. Checkpoints during training hold the adapter and head weights next to the frozen base (so
``resume_from_checkpoint`` rebuilds the same wrapped model and loads them); the **final model is merged**
(``merge_and_unload``) before it is saved, so the output folder is a plain CSRM that ``csrm.load`` and
``csrm export`` read like any other, with no peft needed at inference.

``load_in_4bit: true`` (QLoRA) loads the backbone in 4-bit NF4 through bitsandbytes (compute dtype bf16) and
prepares it for k-bit training; it needs bitsandbytes (and in practice a CUDA GPU): without it the config is
refused with an :class:`~csrm.base.errors.InputError` before anything loads. The merged final model is written
dequantized in bf16.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from csrm.base.errors import InputError

logger = logging.getLogger(__name__)

ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
KEYS = {"r": int, "lora_alpha": (int, float), "lora_dropout": (int, float), "target_modules": (list, str),
        "load_in_4bit": bool, "bias": str, "use_rslora": bool}
DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear", "load_in_4bit": False}


def check_peft_config(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """The normalised LoRA settings (aliases resolved, defaults filled); an :class:`InputError` naming
    ``peft_config.<key>`` for an unknown key, a wrong type, a bad value, or QLoRA without bitsandbytes."""
    if spec is None:
        return None
    out = dict(DEFAULTS)
    for key, value in spec.items():
        name = ALIASES.get(key, key)
        if name not in KEYS:
            raise InputError(f"unknown key (expected {sorted(set(KEYS) | set(ALIASES))})",
                             field=f"peft_config.{key}")
        if not isinstance(value, KEYS[name]) or (KEYS[name] is int and isinstance(value, bool)):
            raise InputError(f"wrong type {type(value).__name__}: {value!r}", field=f"peft_config.{key}")
        out[name] = value
    if out["r"] < 1:
        raise InputError(f"must be >= 1, got {out['r']}", field="peft_config.r")
    if not 0 <= out["lora_dropout"] < 1:
        raise InputError(f"must be in [0, 1), got {out['lora_dropout']}", field="peft_config.lora_dropout")
    if importlib.util.find_spec("peft") is None:
        raise InputError("LoRA needs peft: pip install 'csrm[align]' (or pip install peft)", field="peft_config")
    if out["load_in_4bit"] and importlib.util.find_spec("bitsandbytes") is None:
        raise InputError("load_in_4bit (QLoRA) needs bitsandbytes, which is not installed: pip install "
                         "bitsandbytes (CUDA), or drop load_in_4bit for plain LoRA", field="peft_config.load_in_4bit")
    return out


def quantization_kwargs(spec: dict[str, Any] | None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for QLoRA (empty unless ``load_in_4bit``)."""
    if not spec or not spec.get("load_in_4bit"):
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_compute_dtype=torch.bfloat16,
                                                      bnb_4bit_use_double_quant=True)}


def apply_lora(model, spec: dict[str, Any], *, gradient_checkpointing: bool = False) -> dict[str, int]:
    """Wrap ``model.backbone`` in LoRA adapters (in place); only adapters and heads train. Returns parameter
    counts ``{"trainable", "total"}``."""
    from peft import LoraConfig, get_peft_model

    if spec.get("load_in_4bit"):
        from peft import prepare_model_for_kbit_training

        model.backbone = prepare_model_for_kbit_training(model.backbone,
                                                         use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(r=spec["r"], lora_alpha=spec["lora_alpha"], lora_dropout=spec["lora_dropout"],
                        target_modules=spec["target_modules"], bias=spec.get("bias", "none"),
                        use_rslora=spec.get("use_rslora", False))
    try:
        model.backbone = get_peft_model(model.backbone, config)
    except ValueError as err:  # e.g. target modules not found in the backbone
        raise InputError(str(err).splitlines()[0], field="peft_config.target_modules") from None
    for head in (model.compliance_head, model.reward_head):
        head.requires_grad_(True)
    if gradient_checkpointing and hasattr(model.backbone, "enable_input_require_grads"):
        model.backbone.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still get grads
    counts = {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "total": sum(p.numel() for p in model.parameters())}
    logger.info("LoRA r=%d on %s: %d of %d parameters train (adapters + heads)", spec["r"],
                spec["target_modules"], counts["trainable"], counts["total"])
    return counts


def has_lora(model) -> bool:
    from csrm.model.cross_encoder.modeling import CSRMModel

    backbone = model.backbone if isinstance(model, CSRMModel) else None
    return backbone is not None and hasattr(backbone, "merge_and_unload") and hasattr(backbone, "peft_config")


def merge_lora(model) -> None:
    """Fold the adapters into the backbone (in place): the model saves as a plain CSRM."""
    if not has_lora(model):
        return
    quantized = getattr(model.backbone.get_base_model(), "is_quantized", False)
    model.backbone = model.backbone.merge_and_unload()
    if quantized and hasattr(model.backbone, "dequantize"):
        model.backbone = model.backbone.dequantize()
        model.config.backbone.quantization_config = None
    model.backbone.requires_grad_(True)
