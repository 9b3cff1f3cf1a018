"""Shared-prefix scoring for decoder backbones: run the config + conversation once, reuse its key/value cache.

Every item is ``prefix + suffix`` where the prefix (config and conversation, ``Encoded.prefix_len`` ids) is the
same for all responses to one prompt under one config. A :class:`PrefixBatch` holds a few distinct prefixes and
the suffixes (responses) that continue them; a prefix group that fits one batch whole is never split over two
(its prefix would run twice):

1. the prefixes run once, right-padded, with ``use_cache=True`` -> a ``DynamicCache`` of ``[G, heads, P, d]``;
2. the suffixes are cut into runs of similar length (:func:`suffix_chunks`; on CPU, where padding costs more
   than an extra forward); per run the cache is gathered to one row per suffix, ``[B, heads, P, d]``;
3. the suffixes run right-padded with ``position_ids`` continuing from each row's *own* prefix length and an
   attention mask ``[prefix mask | suffix mask]`` (prefix padding sits in the middle and is masked out);
4. each row pools its last real token (the EOS), exactly the token the plain path pools.

In float32 the scores equal the plain full-sequence path up to float rounding (tested to 1e-4). Only
full-attention caches qualify (no sliding window, no linear-attention layers); other models use the plain path.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicLayer

from csrm.model.formatting import Encoded, pad_batch


@dataclass
class PrefixBatch:
    """Distinct prefixes and the rows (suffixes) that continue them."""

    prefixes: list[list[int]] = field(default_factory=list)
    suffixes: list[list[int]] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # row -> index into prefixes
    items: list[int] = field(default_factory=list)  # row -> index of the scored item

    def cost(self) -> int:
        """Padded size ``rows x (longest prefix + longest suffix)``, the same measure as the plain path."""
        if not self.suffixes:
            return 0
        return len(self.suffixes) * (max(map(len, self.prefixes)) + max(map(len, self.suffixes)))


# padded suffix tokens one more suffix pass must save on CPU (bench/bench_prefix.py on 2 shared cores: 16-64
# best with 1 torch thread; with 2 contending threads every op waits at a barrier, so fewer passes win)
CPU_CHUNK_OVERHEAD = 64


def supports_prefix_cache(model: torch.nn.Module) -> bool:
    """True when ``model`` (a CSRMModel) pools the last token of a causal, full-attention decoder."""
    config = model.config
    if config.pooling != "last":
        return False
    backbone = config.backbone
    if getattr(backbone, "is_causal", True) is False:
        return False
    if any(t != "full_attention" for t in getattr(backbone, "layer_types", None) or []):
        return False
    if getattr(backbone, "sliding_window", None) and getattr(backbone, "use_sliding_window", True):
        return False
    return cache_argument(model.backbone) is not None


def cache_argument(backbone: torch.nn.Module) -> str | None:
    """Name of the KV-cache argument of ``backbone.forward`` (``cache`` since transformers 5.24, before that
    ``past_key_values``), or ``None`` when it takes no cache with ``position_ids`` and ``use_cache``. Read off the
    signature (``inspect.signature`` follows the deprecation wrappers' ``__wrapped__``), not the version."""
    params = set(inspect.signature(backbone.forward).parameters)
    if not {"position_ids", "use_cache"} <= params:
        return None
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def output_cache(output) -> object | None:
    """The cache a backbone returned: the ``cache`` field (5.24+, where ``past_key_values`` is a deprecated alias
    that warns) or, in earlier releases, ``past_key_values``."""
    name = "cache" if "cache" in getattr(output, "__dataclass_fields__", {}) else "past_key_values"
    return getattr(output, name, None)


def split_point(encoded: Encoded) -> int:
    """Where the shared prefix ends, keeping at least one token on each side."""
    return max(1, min(encoded.prefix_len, len(encoded.input_ids) - 1))


def plan_prefix_batches(encoded: Sequence[Encoded], max_tokens: int, max_rows: int, *, min_group: int = 2
                        ) -> tuple[list[PrefixBatch], list[int]]:
    """Group items by identical prefix ids and pack the groups into batches under ``max_tokens``.

    Returns the batches and the indices of items whose prefix is shared by fewer than ``min_group`` items
    (those gain nothing from the cache and go through the plain path).
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, enc in enumerate(encoded):
        groups.setdefault(tuple(enc.input_ids[: split_point(enc)]), []).append(index)
    singles = [i for rows in groups.values() if len(rows) < min_group for i in rows]
    shared = sorted(((p, rows) for p, rows in groups.items() if len(rows) >= min_group), key=lambda g: -len(g[0]))
    batches: list[PrefixBatch] = []
    batch, longest_prefix, longest_suffix = PrefixBatch(), 0, 0
    for prefix, rows in shared:
        rows = sorted(rows, key=lambda i: -len(encoded[i].input_ids))
        owner = -1
        if batch.items:  # a group that fits a batch whole never straddles two (its prefix would run twice)
            group_suffix = len(encoded[rows[0]].input_ids) - len(prefix)
            n, width = len(batch.items) + len(rows), max(longest_prefix, len(prefix)) + max(longest_suffix, group_suffix)
            alone = len(rows) <= max_rows and len(rows) * (len(prefix) + group_suffix) <= max_tokens
            if alone and (n > max_rows or n * width > max_tokens):
                batches.append(batch)
                batch, longest_prefix, longest_suffix = PrefixBatch(), 0, 0
        for index in rows:
            suffix = encoded[index].input_ids[len(prefix):]
            width = max(longest_prefix, len(prefix)) + max(longest_suffix, len(suffix))
            if batch.items and (len(batch.items) >= max_rows or (len(batch.items) + 1) * width > max_tokens):
                batches.append(batch)
                batch, longest_prefix, longest_suffix, owner = PrefixBatch(), 0, 0, -1
            if owner < 0:
                batch.prefixes.append(list(prefix))
                owner = len(batch.prefixes) - 1
            batch.suffixes.append(suffix)
            batch.owners.append(owner)
            batch.items.append(index)
            longest_prefix = max(longest_prefix, len(prefix))
            longest_suffix = max(longest_suffix, len(suffix))
    if batch.items:
        batches.append(batch)
    return batches, sorted(singles)


def suffix_chunks(lengths: Sequence[int], overhead: int | None = None) -> list[list[int]]:
    """Rows (positions in ``lengths``) cut into runs of similar suffix length, longest first, minimising the
    padded suffix size ``sum(rows x longest)`` plus ``overhead`` (in padded tokens) per extra forward; ``None``
    keeps one run. The suffixes of one batch differ a lot in length (8 responses to one prompt), so one
    rectangular suffix pass can be half padding; a few shorter passes over the same prefix cache skip it."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if overhead is None or len(order) < 2:
        return [order]
    n = len(order)
    best, cut = [0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):  # best[j]: cheapest split of the j longest rows; a run order[i:j] is padded to i's
        for i in range(j):
            cost = best[i] + (j - i) * lengths[order[i]] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], n
    while j > 0:
        runs.append(order[cut[j]:j])
        j = cut[j]
    return runs[::-1]


def run_prefix_batch(model: torch.nn.Module, batch: PrefixBatch, pad_id: int, device: torch.device, *,
                     chunk_overhead: int | str | None = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(compliance logits, rewards) of the batch's rows, in row order. ``chunk_overhead``: see
    :func:`suffix_chunks`; ``"auto"`` = :data:`CPU_CHUNK_OVERHEAD` on CPU, one pass elsewhere (on a GPU an
    extra forward of a small batch costs launches, not padding, so splitting rarely pays)."""
    if chunk_overhead == "auto":
        chunk_overhead = CPU_CHUNK_OVERHEAD if torch.device(device).type == "cpu" else None
    cache_arg = cache_argument(model.backbone)
    if cache_arg is None:
        raise RuntimeError("shared-prefix scoring needs a backbone whose forward takes a KV cache")
    prefix = {k: v.to(device) for k, v in pad_batch(batch.prefixes, pad_id).items()}
    cache = output_cache(model.backbone(**prefix, use_cache=True))
    if cache is None or not all(type(layer) is DynamicLayer for layer in cache.layers):
        raise RuntimeError("shared-prefix scoring needs a full-attention DynamicCache; use prefix_cache=False")
    prefix_states = [(layer.keys, layer.values) for layer in cache.layers]
    pooled = None
    for rows in suffix_chunks([len(s) for s in batch.suffixes], chunk_overhead):
        owners = torch.tensor([batch.owners[r] for r in rows], dtype=torch.long, device=device)
        for layer, (keys, values) in zip(cache.layers, prefix_states, strict=True):  # one cache row per suffix
            layer.keys, layer.values = keys[owners], values[owners]
        suffix = {k: v.to(device) for k, v in pad_batch([batch.suffixes[r] for r in rows], pad_id).items()}
        prefix_mask = prefix["attention_mask"][owners]
        width = suffix["input_ids"].shape[1]
        positions = prefix_mask.sum(1, keepdim=True) + torch.arange(width, device=device).unsqueeze(0)
        out = model.backbone(input_ids=suffix["input_ids"],
                             attention_mask=torch.cat([prefix_mask, suffix["attention_mask"]], dim=1),
                             position_ids=positions, use_cache=True, **{cache_arg: cache})
        last = suffix["attention_mask"].sum(1) - 1
        states = out.last_hidden_state[torch.arange(len(rows), device=device), last]
        if pooled is None:
            pooled = states.new_empty((len(batch.items), states.shape[-1]))
        pooled[torch.tensor(rows, dtype=torch.long, device=device)] = states
    return model.heads(pooled.to(model.compliance_head.weight.dtype))
