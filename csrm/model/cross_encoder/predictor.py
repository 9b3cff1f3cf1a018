"""The cross-encoder family's forward pass for :class:`csrm.scoring.scorer.Scorer`: tokenize, batch, run.

Speed: ``torch.inference_mode``; items are tokenized up front, sorted by length and packed into batches whose
padded size (rows x longest) stays under ``max_tokens`` (default 8192 on GPU; 2048 on CPU, where bigger
batches spill out of cache, except for shared-prefix batches); bf16 autocast on CUDA with bf16 support (on CPU
only when ``bf16=True``); on CUDA, attention avoids the cuDNN kernel, which builds a graph for every new batch
shape; ``num_threads`` sets torch's (process-wide) intra-op threads. Decoder backbones reuse the key/value
cache of each shared config + conversation prefix across its responses (:mod:`csrm.model.prefix_cache`;
measured 1.6x on 2 CPU threads, 1.3x for a 1B model on an H100, but slower for a tiny model on a GPU, where
launches dominate: ``prefix_cache=False`` turns it off).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from csrm.base.errors import InputError
from csrm.base.score_types import ScoreItem
from csrm.base.text import cap_item, char_cap
from csrm.base.validation import check_score_item
from csrm.model.batching import DEFAULT_MAX_ROWS, DEFAULT_MAX_TOKENS, default_max_tokens, token_budget_batches
from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer
from csrm.model.formatting import Encoded, pad_batch
from csrm.model.prefix_cache import plan_prefix_batches, run_prefix_batch, supports_prefix_cache

Batch = tuple[list[int], list[float], list[float]]  # (item indices, p_comply, rewards) of one forward batch


def resolve_bf16(bf16: bool | None, device: torch.device) -> bool:
    """Autocast to bf16? ``None`` = only on CUDA devices that support bf16."""
    if bf16 is None:
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bool(bf16)


class CrossEncoderPredictor:
    """A :class:`CSRMModel` and tokenizer in eval mode, with token-budget batching (module doc)."""

    def __init__(self, model: CSRMModel, tokenizer, *, device: str | torch.device | None = None,
                 max_tokens: int | None = None, max_rows: int = DEFAULT_MAX_ROWS, bf16: bool | None = None,
                 num_threads: int | None = None, prefix_cache: bool | None = None):
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.formatter = model.make_formatter(tokenizer)
        self.max_tokens = max_tokens or default_max_tokens(self.device.type)
        # a prefix batch's rows x width overstates its work (each prefix runs once per group), so on CPU it keeps
        # the larger default: at 2048 a group of 8 responses to a ~300-token prefix would run its prefix twice
        self.prefix_max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self.max_rows = max_rows
        self.bf16 = resolve_bf16(bf16, self.device)
        supported = supports_prefix_cache(model)
        if prefix_cache and not supported:
            raise InputError("prefix_cache=True needs a causal full-attention decoder backbone (pooling 'last')",
                             field="prefix_cache")
        self.prefix_cache = supported if prefix_cache is None else bool(prefix_cache)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad or 0)
        self.char_cap = char_cap(model.config.max_length)  # csrm.base.text: bounded work per item before tokenizing

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None,
                        **options) -> CrossEncoderPredictor:
        """Load a saved cross-encoder CSRM (folder or hub id) and its tokenizer; ``options`` as for the
        constructor."""
        try:
            model = CSRMModel.from_pretrained(str(path), trust_remote_code=trust_remote_code, dtype=dtype)
            tokenizer = load_tokenizer(path, decoder=model.config.pooling == "last",
                                       trust_remote_code=trust_remote_code)
        except OSError as err:  # not a local folder and not on the hub (or offline): a located error, not a traceback
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot load a CSRM from here: {first}", path=str(path)) from None
        return cls(model, tokenizer, **options)

    def encode(self, items: Sequence[ScoreItem]) -> list[Encoded]:
        """Token ids of ``items`` under the model's template and truncation rule. Every item is checked first
        (a lone surrogate is an :class:`~csrm.base.errors.InputError` naming ``items.<i>.<field>``) and capped to
        :attr:`char_cap` characters per field (:mod:`csrm.base.text`), so the work per item is bounded."""
        if not items:
            return []
        for index, item in enumerate(items):
            check_score_item(item, index)
        items = [cap_item(item, self.char_cap) for item in items]
        return self.formatter.encode_batch([i.config for i in items], [i.messages for i in items],
                                           [i.response for i in items])

    def _context(self) -> contextlib.ExitStack:
        """inference mode, bf16 autocast when enabled, and on CUDA attention kernels that need no per-shape
        set-up (cuDNN attention builds a graph for every new batch shape, which dynamic batches keep making)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.bf16:
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.bfloat16))
        if self.device.type == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                                             SDPBackend.MATH]))
        return stack

    def _raw(self, items: Sequence[ScoreItem]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """``(item indices, compliance logits, rewards)`` per forward batch (logits before the temperature)."""
        encoded = self.encode(items)
        plain = list(range(len(encoded)))
        prefix_batches = []
        if self.prefix_cache:
            prefix_batches, plain = plan_prefix_batches(encoded, self.prefix_max_tokens, self.max_rows)
        lengths = [len(encoded[i].input_ids) for i in plain]
        plain_batches = [[plain[j] for j in b] for b in token_budget_batches(lengths, self.max_tokens, self.max_rows)]
        extra = {"use_cache": False} if self.model.config.pooling == "last" else {}
        for batch in prefix_batches:  # the context is entered per batch: no state leaks into the caller's code
            with self._context():
                logits, rewards = run_prefix_batch(self.model, batch, self.pad_id, self.device)
                logits, rewards = logits.float(), rewards.float()
            yield batch.items, logits, rewards
        for indices in plain_batches:
            with self._context():
                inputs = pad_batch([encoded[i].input_ids for i in indices], self.pad_id)
                out = self.model(**{k: v.to(self.device) for k, v in inputs.items()}, **extra)
                logits, rewards = out.compliance_logits.float(), out.rewards.float()
            yield indices, logits, rewards

    def forward(self, items: Sequence[ScoreItem]) -> Iterator[Batch]:
        """Yield ``(item indices, calibrated p_comply, rewards)`` per forward batch."""
        for indices, logits, rewards in self._raw(items):
            with torch.inference_mode():
                probs = self.model.calibrated_probability(logits)
            yield indices, probs.tolist(), rewards.tolist()

    def raw_outputs(self, items: Sequence[ScoreItem]) -> tuple[np.ndarray, np.ndarray]:
        """(compliance logits before temperature, rewards) for ``items``, in input order."""
        logits, rewards = np.zeros(len(items)), np.zeros(len(items))
        for indices, z, r in self._raw(items):
            logits[indices], rewards[indices] = z.cpu().numpy(), r.cpu().numpy()
        return logits, rewards
