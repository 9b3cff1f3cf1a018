"""The clause family's forward pass for :class:`csrm.scoring.scorer.Scorer` (model: :mod:`csrm.model.clause.modeling`).

:class:`csrm.scoring.scorer.Scorer` wraps a :class:`ClausePredictor` for a folder whose ``config.json`` says
``model_type: csrm_clause`` (:mod:`csrm.model.registry`). Each call splits every distinct config into clauses
and every item into content windows, encodes each distinct text once (cached across calls,
:class:`~csrm.model.clause.features.FeatureEncoder`), and runs the small heads over chunks of items. The
options of the cross-encoder that do not apply here (``bf16``: the frozen encoder runs float32;
``prefix_cache``: there is no single token sequence per item) are refused when set
(:func:`csrm.model.registry.refuse_unsupported`), not dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from csrm.base.paths import resolve_model_name
from csrm.base.score_types import ScoreItem
from csrm.model.batching import default_max_tokens
from csrm.model.clause.features import FeatureEncoder, content_windows
from csrm.model.clause.modeling import ClauseCSRMModel
from csrm.model.registry import refuse_unsupported

ITEMS_PER_CHUNK = 512
Batch = tuple[list[int], list[float], list[float]]  # (item indices, p_comply, rewards) of one chunk


class ClausePredictor:
    """A :class:`ClauseCSRMModel` and its tokenizer in eval mode (module doc)."""

    bf16 = False
    prefix_cache = False

    def __init__(self, model: ClauseCSRMModel, tokenizer, *, device: str | torch.device | None = None,
                 max_tokens: int | None = None, max_rows: int = 128, num_threads: int | None = None,
                 bf16: bool | None = None, prefix_cache: bool | None = None):
        refuse_unsupported("clause", {"bf16": bf16, "prefix_cache": prefix_cache})
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens or default_max_tokens(self.device.type)
        self.max_rows = max_rows
        self.features = FeatureEncoder(self.model, tokenizer, max_tokens=self.max_tokens, max_rows=max_rows)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None,
                        **options) -> ClausePredictor:
        model = ClauseCSRMModel.from_pretrained(str(path), trust_remote_code=trust_remote_code, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(str(path)), trust_remote_code=trust_remote_code)
        return cls(model, tokenizer, **options)

    def clear_cache(self) -> None:
        """Forget every cached text feature: what follows is scored as by a fresh scorer (``csrm score``
        starts each block so, which makes a resumed run byte-identical to an uninterrupted one)."""
        self.features.clear()

    def raw_outputs(self, items: Sequence[ScoreItem]) -> tuple[np.ndarray, np.ndarray]:
        """(compliance logits before temperature, rewards) for ``items``, in input order."""
        logits, rewards = np.zeros(len(items)), np.zeros(len(items))
        for indices, z, r in self._raw(list(items)):
            logits[indices], rewards[indices] = z, r
        return logits, rewards

    def _raw(self, items: list[ScoreItem]) -> Iterator[Batch]:
        max_chars = self.model.config.max_segment_chars
        for start in range(0, len(items), ITEMS_PER_CHUNK):
            chunk = items[start:start + ITEMS_PER_CHUNK]
            configs = ["" if self.model.config.blind_config else i.config for i in chunk]
            windows = [content_windows(i.messages, i.response, max_chars) for i in chunk]
            with torch.inference_mode():
                clauses, content, index = self.features.features(configs, windows)
                out = self.model(clauses, content, index)
            yield (list(range(start, start + len(chunk))), out.compliance_logits.float().tolist(),
                   out.rewards.float().tolist())

    def forward(self, items: Sequence[ScoreItem]) -> Iterator[Batch]:
        """Yield ``(item indices, calibrated p_comply, rewards)`` per chunk of items."""
        items = list(items)
        for indices, logits, rewards in self._raw(items):
            probs = self.model.calibrated_probability(
                torch.tensor(logits), [items[i].response is None for i in indices]).tolist()
            yield indices, probs, rewards
