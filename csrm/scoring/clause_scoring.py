"""Scoring with a clause-reading CSRM (:mod:`csrm.model.clause_model`): the same API as :class:`CSRMScorer`.

``csrm.load(path)`` returns a :class:`ClauseScorer` for a folder whose ``config.json`` says
``model_type: csrm_clause``. Each call splits every distinct config into clauses and every item into content
windows, encodes each distinct text once (cached across calls, :class:`~csrm.model.clause_features.FeatureEncoder`),
and runs the small heads over chunks of items. Thresholds, per-config thresholds, ranking and
``fit_thresholds`` are inherited unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from csrm.base.paths import resolve_model_name
from csrm.base.score_types import ScoreItem
from csrm.base.validation import taxonomy_from_dict
from csrm.model.batching import default_max_tokens
from csrm.model.clause_features import FeatureEncoder, content_windows
from csrm.model.clause_model import ClauseCSRMModel
from csrm.scoring.scorer import CSRMScorer

ITEMS_PER_CHUNK = 512


class ClauseScorer(CSRMScorer):
    """A :class:`ClauseCSRMModel` and its tokenizer in eval mode (module doc)."""

    def __init__(self, model: ClauseCSRMModel, tokenizer, *, device: str | torch.device | None = None,
                 max_tokens: int | None = None, max_rows: int = 128, num_threads: int | None = None, **_ignored):
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens or default_max_tokens(self.device.type)
        self.max_rows = max_rows
        self.features = FeatureEncoder(self.model, tokenizer, max_tokens=self.max_tokens, max_rows=max_rows)
        self.taxonomy = taxonomy_from_dict(model.config.taxonomy)
        self.prefix_cache = False
        self.bf16 = False
        self._keys: dict[str, str] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None,
                        **kwargs) -> ClauseScorer:
        model = ClauseCSRMModel.from_pretrained(str(path), trust_remote_code=trust_remote_code, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(str(path)), trust_remote_code=trust_remote_code)
        return cls(model, tokenizer, **kwargs)

    def clear_cache(self) -> None:
        """Forget every cached text feature: what follows is scored as by a fresh scorer (``csrm score``
        starts each block so, which makes a resumed run byte-identical to an uninterrupted one)."""
        self.features.clear()

    def encode(self, items: Sequence[ScoreItem]):  # the cross-encoder's token layout does not apply
        raise NotImplementedError("a clause-reading CSRM has no single token sequence per item")

    def raw_outputs(self, items: Sequence[ScoreItem]) -> tuple[np.ndarray, np.ndarray]:
        """(compliance logits before temperature, rewards) for ``items``, in input order."""
        logits, rewards = np.zeros(len(items)), np.zeros(len(items))
        for indices, z, r in self._raw(list(items)):
            logits[indices], rewards[indices] = z, r
        return logits, rewards

    def _raw(self, items: list[ScoreItem]) -> Iterator[tuple[list[int], list[float], list[float]]]:
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

    def _forward(self, items: list[ScoreItem]) -> Iterator[tuple[list[int], list[float], list[float]]]:
        for indices, logits, rewards in self._raw(items):
            probs = self.model.calibrated_probability(
                torch.tensor(logits), [items[i].response is None for i in indices]).tolist()
            yield indices, probs, rewards
