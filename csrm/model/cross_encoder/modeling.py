"""The CSRM: any Hugging Face backbone, one pooled vector, two linear heads.

- **compliance head** -> a logit; ``sigmoid(logit / temperature)`` is the calibrated P(complies).
- **reward head** -> a scalar that ranks responses (helpful and compliant highest; among violations, the more
  severe the lower).

Design choice: the heads share the backbone and the pooled vector but *no* extra projection. Each is one
linear layer, so (a) the compliance logit stays a linear read-out that temperature scaling can calibrate
without re-fitting a hidden layer, (b) the two objectives still shape one representation through the backbone,
which is where the config-vs-content reasoning has to happen, and (c) the reward head has exactly the shape of
TRL's/transformers' sequence-classification ``score`` layer, so a reward head trained elsewhere drops in.

Pooling: encoders use ``mean`` (masked mean, how sentence-transformers trained MiniLM) or ``cls``; decoders
pool the last non-padding token (the EOS the formatter appends), with left or right padding.

Everything needed to score is saved by ``save_pretrained`` in safetensors: backbone and heads (weights), and in
``config.json`` the template, ``max_length``, pooling, taxonomy, calibration ``temperature``, the default
``threshold`` and per-config thresholds. The tokenizer is saved beside it. ``from_pretrained`` never unpickles
(``use_safetensors=True``) and passes ``trust_remote_code=False`` unless asked.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec

from csrm.base.paths import resolve_model_name
from csrm.model.formatting import InputFormatter
from csrm.model.outputs import CSRMOutput

POOLINGS = ("mean", "cls", "last")
# backbones whose position embeddings are indexed 0..n-1 from the left edge (so left padding would shift them)
ABSOLUTE_POSITION_MODELS = frozenset({"bert", "distilbert", "electra", "albert", "gpt2"})


class CSRMConfig(PretrainedConfig):
    """Configuration of a CSRM: the backbone's own config plus how to read and score inputs."""

    model_type = "csrm"
    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    backbone: PretrainedConfig | dict | None = None
    pooling: str = "mean"
    template: str = "plain"
    max_length: int = 512
    head_dropout: float = 0.1
    temperature: float = 1.0
    threshold: float = 0.5
    config_thresholds: dict | None = None
    taxonomy: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    def to_dict(self) -> dict[str, Any]:
        """As saved in ``config.json``: without the training machine's local paths (``_name_or_path`` of the
        CSRM or its backbone that is a filesystem path; a hub id is kept as provenance)."""
        out = super().to_dict()
        for block in (out, out.get("backbone")):
            if isinstance(block, dict) and _is_local_path(block.get("_name_or_path")):
                block["_name_or_path"] = ""
        return out

    @property
    def is_decoder_backbone(self) -> bool:
        return self.backbone is not None and self.pooling == "last"

    @property
    def hidden_size(self) -> int:
        """The backbone's hidden size (the pooled vector's width). transformers reads ``config.hidden_size``
        to fill DeepSpeed's ``auto`` bucket sizes; without it those would fail for a CSRM."""
        size = getattr(self.backbone, "hidden_size", None) if self.backbone is not None else None
        if size is None:
            raise AttributeError("hidden_size: this CSRM config has no backbone with a hidden_size")
        return size


def _is_local_path(name: Any) -> bool:
    text = str(name or "")
    return bool(text) and (text.startswith((".", "/", "~", "\\")) or ":" in text[:3] or Path(text).exists())


def is_decoder_config(config: PretrainedConfig) -> bool:
    """True for causal-LM backbones (Llama, Qwen, SmolLM, GPT-2, ...)."""
    architectures = getattr(config, "architectures", None) or []
    if any("CausalLM" in a or "LMHead" in a for a in architectures):
        return True
    return config.model_type in {"llama", "qwen2", "qwen3", "mistral", "gpt2", "gpt_neox", "phi3", "gemma",
                                 "gemma2", "gemma3_text", "olmo2", "smollm3", "granite"}


class CSRMModel(PreTrainedModel):
    """Backbone + pooling + compliance and reward heads."""

    config_class = CSRMConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []

    def __init__(self, config: CSRMConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.backbone)
        hidden = config.backbone.hidden_size
        self.dropout = nn.Dropout(config.head_dropout)
        self.compliance_head = nn.Linear(hidden, 1)
        self.reward_head = nn.Linear(hidden, 1)
        self._no_split_modules = getattr(self.backbone, "_no_split_modules", None) or []
        self._derive_position_ids = (getattr(self.backbone.config, "model_type", None) in ABSOLUTE_POSITION_MODELS
                                     and "position_ids" in inspect.signature(self.backbone.forward).parameters)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "compliance_head", None) or module is getattr(self, "reward_head", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, name_or_path: str, *, pooling: str | None = None, template: str | None = None,
                      max_length: int = 512, taxonomy: dict | None = None, dtype: torch.dtype | None = None,
                      trust_remote_code: bool = False, load_kwargs: dict[str, Any] | None = None,
                      **config_kwargs: Any) -> CSRMModel:
        """New CSRM on a pretrained backbone (hub id or local path; ``minilm`` = the bundled MiniLM);
        ``load_kwargs`` go to the backbone's ``from_pretrained`` (``attn_implementation``, quantization)."""
        path = resolve_model_name(name_or_path)
        backbone = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code,
                                             **(load_kwargs or {}))
        decoder = is_decoder_config(backbone.config)
        config = CSRMConfig(backbone=backbone.config.to_dict(), pooling=pooling or ("last" if decoder else "mean"),
                            template=template or "plain", max_length=max_length, taxonomy=taxonomy,
                            **config_kwargs)
        config.backbone = backbone.config
        return cls(config, backbone=backbone)

    @classmethod
    def from_backbone_config(cls, backbone_config: PretrainedConfig, **config_kwargs: Any) -> CSRMModel:
        """New CSRM on a randomly initialised backbone (tests, tiny models)."""
        decoder = is_decoder_config(backbone_config)
        config_kwargs.setdefault("pooling", "last" if decoder else "mean")
        config = CSRMConfig(backbone=backbone_config.to_dict(), **config_kwargs)
        return cls(config)

    @classmethod
    def from_pretrained(cls, path: str | Path, *args: Any, trust_remote_code: bool = False, **kwargs: Any):
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(path, *args, trust_remote_code=trust_remote_code, **kwargs)

    # -- forward -------------------------------------------------------------------------------------
    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "cls":  # the first real token, so left padding works too
            first = attention_mask.long().argmax(dim=1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
        if self.config.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def heads(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(compliance logits, rewards) from pooled states, both shaped ``[batch]`` in float32."""
        pooled = self.dropout(pooled)
        return (self.compliance_head(pooled).squeeze(-1).float(), self.reward_head(pooled).squeeze(-1).float())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **backbone_kwargs: Any) -> CSRMOutput:
        if self._needs_position_ids(input_ids, attention_mask, backbone_kwargs):
            # positions count real tokens only, so a left-padded row reads like its unpadded self
            backbone_kwargs["position_ids"] = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **backbone_kwargs)
        pooled = self.pool(out.last_hidden_state, attention_mask)
        logits, rewards = self.heads(pooled.to(self.compliance_head.weight.dtype))
        return CSRMOutput(compliance_logits=logits, rewards=rewards, pooled=pooled)

    def _needs_position_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            backbone_kwargs: dict[str, Any]) -> bool:
        """Backbones with absolute positions counted from 0 (BERT family, GPT-2) get positions that skip left
        padding, on a plain call only (no cache, none given). Real tokens of right-padded rows keep theirs;
        rotary backbones are shift-invariant and RoBERTa-style ones derive positions from the ids themselves."""
        if not self._derive_position_ids or attention_mask.shape != input_ids.shape:
            return False
        return "position_ids" not in backbone_kwargs and backbone_kwargs.get("past_key_values") is None

    def calibrated_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """P(complies) = sigmoid(logit / temperature)."""
        return torch.sigmoid(logits / self.config.temperature)

    # -- tokenizer / formatter -----------------------------------------------------------------------
    def make_formatter(self, tokenizer) -> InputFormatter:
        return InputFormatter(tokenizer, max_length=self.config.max_length, template=self.config.template,
                              is_decoder=self.config.pooling == "last")


# ``dtype:`` in the train and align configs; "auto" keeps the checkpoint's own dtype
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def load_tokenizer(path: str | Path, *, decoder: bool, trust_remote_code: bool = False):
    """Tokenizer with a pad token (decoders reuse EOS) and right padding for training.

    The one tokenizer loader: a policy (``csrm.alignment.policy.prepare_tokenizer``) starts from this one and switches to
    left padding and a chat template for generation."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(str(path)), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


AutoConfig.register("csrm", CSRMConfig)
AutoModel.register(CSRMConfig, CSRMModel)
