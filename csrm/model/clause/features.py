"""Per-text features for the clause-reading CSRM, computed once per distinct text and cached.

A config is split into clauses and the judged content into windows (:mod:`csrm.model.clause.clauses`); each distinct
clause or window is encoded by the frozen encoder exactly once per :class:`FeatureEncoder` (an LRU cache keyed
by the text), so scoring one response under 8 configs encodes the response once, and 8 responses under one
config encode the config once. Every window fits the encoder (``max_segment_chars`` is far below
``max_length`` tokens), so nothing judged is truncated; :attr:`FeatureEncoder.stats` counts any window that
still reached ``max_length`` tokens.

**Which content is judged** (:func:`content_windows`):

- request screening (no response): the last user turn, ungated ("would a full answer comply?");
- a response: the response and every earlier assistant turn of the conversation (a rule can be broken in any
  agent turn), each gated by the model's engagement head (a refusal does not violate).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence

import torch

from csrm.base.memory import release_freed_memory
from csrm.base.records import Message, last_user_turn
from csrm.model.batching import token_budget_batches
from csrm.model.clause.clauses import WINDOW_OVERLAP_CHARS, segments, split_clauses, windows
from csrm.model.clause.modeling import ClauseCSRMModel, ClauseFeatures, ContentFeatures, word_mask

CACHE_SIZE = 50_000


def content_windows(messages: Sequence[Message], response: str | None, max_chars: int) -> list[tuple[str, bool]]:
    """``[(window text, gated)]`` for one item (module doc)."""
    if response is None:
        return [(w, False) for w in segments(last_user_turn(list(messages)), max_chars=max_chars)]
    texts = [m["content"] for m in messages if m["role"] == "assistant"] + [response]
    return [(w, True) for text in texts for w in segments(text, max_chars=max_chars)]


class FeatureEncoder:
    """Encodes clause and window texts with the model's frozen encoder, caching each text's features."""

    def __init__(self, model: ClauseCSRMModel, tokenizer, *, max_tokens: int = 4096, max_rows: int = 128,
                 cache_size: int = CACHE_SIZE):
        self.model, self.tokenizer = model, tokenizer
        self.max_tokens, self.max_rows, self.cache_size = max_tokens, max_rows, cache_size
        self._clauses: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
        self._windows: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._split: OrderedDict[str, list[str]] = OrderedDict()
        self.stats: Counter[str] = Counter()

    @property
    def device(self) -> torch.device:
        return self.model.anchors.device

    # -- encoding ------------------------------------------------------------------------------------
    def _encode(self, texts: list[str], *, tokens: bool):
        """Yield ``(index, pooled, token states, token mask)`` per text, in length-sorted token-budget batches."""
        if not texts:
            return
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=True,
                             max_length=self.model.config.max_length)["input_ids"]
        self.stats["encoded"] += len(texts)
        self.stats["at_max_length"] += sum(len(i) >= self.model.config.max_length for i in ids)
        pad = self.tokenizer.pad_token_id or 0
        for batch in token_budget_batches([len(i) for i in ids], self.max_tokens, self.max_rows):
            longest = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            with torch.inference_mode():
                pooled, states = self.model.encode(input_ids.to(self.device), mask.to(self.device))
                if tokens:
                    inner = word_mask(self.tokenizer, input_ids, mask).to(self.device)
                    ms, cos = self.model.clause_scalars(pooled, states, inner)
                    for row, i in enumerate(batch):
                        yield i, pooled[row].clone(), ms[row].clone(), cos[row].clone()
                else:
                    for row, i in enumerate(batch):
                        yield i, pooled[row].clone(), None, None
            del pooled, states
            release_freed_memory()  # batches differ in shape: without this, freed activations stay in the heap

    def _trim(self) -> None:
        """Evict least-recently-used entries beyond ``cache_size`` (only between calls: a call's own texts
        are never evicted while it assembles its batch)."""
        for cache in (self._clauses, self._windows, self._split):
            while len(cache) > self.cache_size:
                cache.popitem(last=False)

    def clear(self) -> None:
        """Empty the caches: a text's features depend on the batch it was first encoded in (padding changes
        the last bits), so a caller that needs scores independent of history starts from an empty cache."""
        for cache in (self._clauses, self._windows, self._split):
            cache.clear()

    def _fit(self, text: str) -> list[str]:
        """``text`` as windows of at most ``max_length`` tokens. Windows are cut by characters (600 for
        content, 400 for clauses), which is ~150 tokens of English; text that tokenizes densely (CJK, digit
        runs) is cut again, so no window loses its end to the encoder's limit."""
        limit = self.model.config.max_length
        if len(text) <= limit // 2 or len(self.tokenizer(text, add_special_tokens=True)["input_ids"]) <= limit:
            return [text]
        half = max(1, len(text) // 2)
        return [piece for w in windows(text, half, overlap=min(WINDOW_OVERLAP_CHARS, half // 4))
                for piece in self._fit(w)]

    def clause_texts(self, config: str) -> list[str]:
        texts = self._split.get(config)
        if texts is None:
            texts = [piece for c in split_clauses(config, max_chars=self.model.config.max_clause_chars)
                     for piece in self._fit(c.text)]
            self._split[config] = texts
        else:
            self._split.move_to_end(config)
        return texts

    def _ensure(self, texts: list[str], *, clauses: bool) -> None:
        """Encode the texts not cached yet (clauses with their per-category scalars, windows pooled only) and
        mark the cached ones as recently used."""
        cache = self._clauses if clauses else self._windows
        for t in texts:
            if t in cache:
                cache.move_to_end(t)
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        for i, pooled, ms, cos in self._encode(todo, tokens=clauses):
            cache[todo[i]] = (pooled, ms, cos) if clauses else pooled

    # -- batches -------------------------------------------------------------------------------------
    def clause_features(self, configs: Sequence[str]) -> ClauseFeatures:
        """Padded features of ``configs`` (one row each; pass distinct configs and index into them)."""
        per_config = [self.clause_texts(c) for c in configs]
        self._ensure([t for texts in per_config for t in texts], clauses=True)
        k = max(1, max(len(t) for t in per_config))  # a blank config (the config-blind model) has no clause
        dim, n_cat = self.model.anchors.shape[1], self.model.anchors.shape[0]
        e = torch.zeros(len(configs), k, dim, device=self.device)
        ms = torch.zeros(len(configs), k, n_cat, device=self.device)
        cos = torch.zeros(len(configs), k, n_cat, device=self.device)
        mask = torch.zeros(len(configs), k, dtype=torch.bool, device=self.device)
        for row, texts in enumerate(per_config):
            for col, text in enumerate(texts):
                e[row, col], ms[row, col], cos[row, col] = self._clauses[text]
                mask[row, col] = True
        self._trim()
        return ClauseFeatures(e, ms, cos, mask)

    def clause_pool(self, texts: Sequence[str]) -> ClauseFeatures:
        """Features of clause texts taken as they are (not split again), as one row: [1, len(texts), ...]."""
        texts = list(dict.fromkeys(texts))
        self._ensure(texts, clauses=True)
        rows = [self._clauses[t] for t in texts]
        pool = ClauseFeatures(*(torch.stack([r[i] for r in rows])[None] for i in range(3)),
                              torch.ones(1, len(rows), dtype=torch.bool, device=self.device))
        self._trim()
        return pool

    def content_features(self, windows: Sequence[list[tuple[str, bool]]]) -> ContentFeatures:
        """Padded features of each item's ``content_windows`` (over-dense windows cut again, :meth:`_fit`)."""
        windows = [[(piece, gate) for text, gate in item  # a cached text was fitted when it was first seen
                    for piece in ([text] if text in self._windows else self._fit(text))] for item in windows]
        self._ensure([t for item in windows for t, _ in item], clauses=False)
        s = max(len(w) for w in windows)
        dim = self.model.anchors.shape[1]
        x = torch.zeros(len(windows), s, dim, device=self.device)
        mask = torch.zeros(len(windows), s, dtype=torch.bool, device=self.device)
        gated = torch.zeros(len(windows), s, dtype=torch.bool, device=self.device)
        for row, item in enumerate(windows):
            for col, (text, gate) in enumerate(item):
                x[row, col] = self._windows[text]
                mask[row, col], gated[row, col] = True, gate
        self._trim()
        return ContentFeatures(x, mask, gated)

    def features(self, configs: Sequence[str], windows: Sequence[list[tuple[str, bool]]]
                 ) -> tuple[ClauseFeatures, ContentFeatures, torch.Tensor]:
        """(features of the distinct configs, content features, each item's config row)."""
        distinct = list(dict.fromkeys(configs))
        row = {c: i for i, c in enumerate(distinct)}
        index = torch.tensor([row[c] for c in configs], dtype=torch.long, device=self.device)
        return self.clause_features(distinct), self.content_features(windows), index
