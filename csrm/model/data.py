"""Training data: augmentation rows -> token ids, mixed example/pair batches, and their collators.

The augmentation stage saves ``DIR/examples`` and ``DIR/pairs`` with ``DatasetDict.save_to_disk`` (splits
``train``/``validation``). Rows are tokenized with the model's :class:`~csrm.model.formatting.InputFormatter`, so
training sees exactly the layout and truncation rule that scoring uses.

A training batch is ``B`` pointwise examples plus ``P`` preference pairs, run through the backbone as one
padded block of ``B + 2P`` sequences (one forward, so DDP/ZeRO see a single graph per step):
rows ``[0, B)`` are the examples, ``[B, B+P)`` the chosen and ``[B+P, B+2P)`` the rejected sides.
:class:`MixedBatchSampler` decides which items form each batch, deterministically from ``(seed, epoch)``, so a
resumed run sees the same batches in the same order once the Trainer has skipped the ones already trained on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from csrm.base.errors import InputError
from csrm.model.formatting import InputFormatter, pad_batch

logger = logging.getLogger(__name__)

EXAMPLE_COLUMNS = ("config_text", "messages", "response", "label")
PAIR_COLUMNS = ("config_text", "messages", "chosen", "rejected", "margin")
EXAMPLE, PAIR = 0, 1


# -- loading ------------------------------------------------------------------------------------------------
def load_augmented(path: str | Path, splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{"examples": {split: Dataset | None}, "pairs": {...}}`` from an augmentation output folder.

    Missing folders, splits the caller needs or required columns raise :class:`InputError` naming them.
    A missing ``pairs`` folder is allowed (pointwise-only training); so is a missing split of it.
    """
    from datasets import load_from_disk

    root = Path(path)
    if not (root / "examples").is_dir():
        raise InputError(f"no 'examples' dataset folder in {root} (expected the output of 'csrm augment')",
                         field="dataset_path")
    out: dict[str, dict[str, Any]] = {}
    for kind, columns in (("examples", EXAMPLE_COLUMNS), ("pairs", PAIR_COLUMNS)):
        out[kind] = {split: None for split in splits}
        if not (root / kind).is_dir():
            continue
        loaded = load_from_disk(str(root / kind))
        for split in splits:
            if split not in loaded:
                if kind == "examples" and split == splits[0]:
                    raise InputError(f"split {split!r} not in {root / kind} (has {sorted(loaded)})",
                                     field="train_split")
                continue
            missing = [c for c in columns if c not in loaded[split].column_names]
            if missing:
                raise InputError(f"{kind} split {split!r} lacks column(s) {missing}", path=str(root / kind),
                                 field=missing[0])
            out[kind][split] = loaded[split]
    return out


# -- features -----------------------------------------------------------------------------------------------
@dataclass
class ExampleFeatures:
    """Token ids and compliance labels (1 = complies) of pointwise examples."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


@dataclass
class PairFeatures:
    """Token ids of both sides of preference pairs (chosen has the lower error) and their margins."""

    chosen_ids: list[list[int]] = field(default_factory=list)
    rejected_ids: list[list[int]] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chosen_ids)

    @property
    def lengths(self) -> list[int]:
        return [max(len(c), len(r)) for c, r in zip(self.chosen_ids, self.rejected_ids, strict=True)]


def _rows(dataset: Any, columns: Sequence[str], limit: int | None) -> Iterator[dict[str, list]]:
    """Column batches of up to 1000 rows (only the needed columns, so wide datasets stay cheap)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, n, 1000):
        yield dataset.select_columns(list(columns))[start:min(start + 1000, n)]


def tokenize_examples(dataset: Any, formatter: InputFormatter, *, blind_config: bool = False,
                      limit: int | None = None) -> ExampleFeatures:
    """Encode example rows; ``blind_config`` blanks every config (the config-blind baseline)."""
    feats = ExampleFeatures()
    if dataset is None:
        return feats
    for batch in _rows(dataset, EXAMPLE_COLUMNS, limit):
        configs = [""] * len(batch["label"]) if blind_config else batch["config_text"]
        for enc in formatter.encode_batch(configs, batch["messages"], batch["response"]):
            feats.input_ids.append(enc.input_ids)
        for label in batch["label"]:
            if label not in (0, 1):
                raise InputError(f"label must be 0 or 1, got {label!r}", field="label")
            feats.labels.append(int(label))
    return feats


def tokenize_pairs(dataset: Any, formatter: InputFormatter, *, blind_config: bool = False,
                   limit: int | None = None) -> PairFeatures:
    """Encode both sides of pair rows (a ``None`` side is the request-screening marker)."""
    feats = PairFeatures()
    if dataset is None:
        return feats
    for batch in _rows(dataset, PAIR_COLUMNS, limit):
        configs = [""] * len(batch["margin"]) if blind_config else batch["config_text"]
        chosen = formatter.encode_batch(configs, batch["messages"], batch["chosen"])
        rejected = formatter.encode_batch(configs, batch["messages"], batch["rejected"])
        feats.chosen_ids += [e.input_ids for e in chosen]
        feats.rejected_ids += [e.input_ids for e in rejected]
        feats.margins += [float(m) for m in batch["margin"]]
    return feats


@dataclass
class TokenizedSplit:
    """One split's examples and pairs, ready for :class:`MixedDataset`."""

    examples: ExampleFeatures
    pairs: PairFeatures


# -- dataset, sampler, collator -----------------------------------------------------------------------------
class MixedDataset(Dataset):
    """Examples at indices ``[0, n_examples)``, pairs after them; items say which they are."""

    def __init__(self, split: TokenizedSplit):
        self.examples, self.pairs = split.examples, split.pairs
        self.n_examples = len(self.examples)

    def __len__(self) -> int:
        return self.n_examples + len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < self.n_examples:
            return {"kind": EXAMPLE, "index": index, "input_ids": self.examples.input_ids[index],
                    "label": self.examples.labels[index]}
        j = index - self.n_examples
        return {"kind": PAIR, "index": j, "chosen_ids": self.pairs.chosen_ids[j],
                "rejected_ids": self.pairs.rejected_ids[j], "margin": self.pairs.margins[j]}


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of ``examples_per_batch`` examples + ``pairs_per_batch`` pairs, reproducible per epoch.

    An epoch covers the larger stream (in batches) once; the other stream cycles through fresh permutations
    (no item twice within one permutation's batches). With ``group_by_length``, each permutation is cut into
    mega-batches of ``mega_batch_mult`` batches whose items are sorted by length (as transformers'
    ``LengthGroupedSampler`` does), and the k-th example batch goes with the k-th pair batch, so one padded block
    holds similar lengths. The batch holding the longest sequence comes first, so an out-of-memory shows at
    step 1. The order depends only on ``(seed, epoch)``: call :meth:`set_epoch` before iterating.
    """

    def __init__(self, example_lengths: Sequence[int], pair_lengths: Sequence[int], examples_per_batch: int,
                 pairs_per_batch: int, *, seed: int = 0, group_by_length: bool = True, mega_batch_mult: int = 50):
        self.example_lengths, self.pair_lengths = list(example_lengths), list(pair_lengths)
        self.b = examples_per_batch if self.example_lengths else 0
        self.p = pairs_per_batch if self.pair_lengths else 0
        if self.b <= 0 and self.p <= 0:
            raise ValueError("a batch needs at least one example or one pair: no data, or both batch sizes are 0")
        self.seed, self.group_by_length, self.mega = seed, group_by_length, max(1, mega_batch_mult)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n_e = math.ceil(len(self.example_lengths) / self.b) if self.b else 0
        n_p = math.ceil(len(self.pair_lengths) / self.p) if self.p else 0
        return max(n_e, n_p)

    def _stream(self, lengths: list[int], size: int, n_batches: int, gen: torch.Generator) -> list[list[int]]:
        """``n_batches`` batches from successive permutations, each permutation batched (and length-grouped)
        on its own: no item repeats within a permutation's batches; the last batch of each may be short."""
        if size <= 0:
            return [[] for _ in range(n_batches)]
        batches: list[list[int]] = []
        while len(batches) < n_batches:
            order = torch.randperm(len(lengths), generator=gen).tolist()
            chunk = [order[i:i + size] for i in range(0, len(order), size)]
            batches += self._group(chunk, lengths) if self.group_by_length else chunk
        return batches[:n_batches]

    def _group(self, batches: list[list[int]], lengths: list[int]) -> list[list[int]]:
        grouped: list[list[int]] = []
        for start in range(0, len(batches), self.mega):
            window_batches = batches[start:start + self.mega]
            window = sorted((i for batch in window_batches for i in batch), key=lambda i: -lengths[i])
            cut = 0
            for batch in window_batches:  # same batch sizes, longest items first
                grouped.append(window[cut:cut + len(batch)])
                cut += len(batch)
        return grouped

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self)
        examples = self._stream(self.example_lengths, self.b, n, gen)
        pairs = self._stream(self.pair_lengths, self.p, n, gen)
        offset = len(self.example_lengths)
        batches = [e + [offset + j for j in p] for e, p in zip(examples, pairs, strict=True)]
        if self.group_by_length and n > 1:
            def longest(batch: list[int]) -> int:
                return max(self.example_lengths[i] if i < offset else self.pair_lengths[i - offset] for i in batch)
            top = max(range(n), key=lambda k: longest(batches[k]))
            batches[0], batches[top] = batches[top], batches[0]
        yield from batches


class MixedCollator:
    """Pads a list of :class:`MixedDataset` items into one block: examples, then chosen, then rejected rows.

    Returns ``input_ids``, ``attention_mask``, ``compliance_labels`` (float, 1 = complies; ``[B]``),
    ``margins`` (``[P]``), ``num_examples`` = B, ``num_pairs`` = P (ints), ``example_index`` and ``pair_index``
    (positions in the split, used by evaluation).
    """

    def __init__(self, pad_token_id: int, padding_side: str = "right", pad_to_multiple_of: int | None = None):
        self.pad_token_id, self.padding_side, self.pad_to_multiple_of = pad_token_id, padding_side, pad_to_multiple_of

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        examples = [it for it in items if it["kind"] == EXAMPLE]
        pairs = [it for it in items if it["kind"] == PAIR]
        seqs = ([e["input_ids"] for e in examples] + [p["chosen_ids"] for p in pairs]
                + [p["rejected_ids"] for p in pairs])
        batch: dict[str, Any] = pad_batch(seqs, self.pad_token_id, padding_side=self.padding_side,
                                          pad_to_multiple_of=self.pad_to_multiple_of)
        batch["compliance_labels"] = torch.tensor([float(e["label"]) for e in examples], dtype=torch.float32)
        batch["margins"] = torch.tensor([float(p["margin"]) for p in pairs], dtype=torch.float32)
        batch["example_index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
        batch["pair_index"] = torch.tensor([p["index"] for p in pairs], dtype=torch.long)
        batch["num_examples"], batch["num_pairs"] = len(examples), len(pairs)
        return batch

    def examples(self, input_ids: list[list[int]], labels: Sequence[int] | None = None) -> dict[str, Any]:
        """Pointwise batch from id lists (scoring, calibration)."""
        items = [{"kind": EXAMPLE, "index": i, "input_ids": ids, "label": labels[i] if labels is not None else 0}
                 for i, ids in enumerate(input_ids)]
        return self(items)

    def pairs(self, chosen_ids: list[list[int]], rejected_ids: list[list[int]],
              margins: Sequence[float] | None = None) -> dict[str, Any]:
        """Pair batch from id lists."""
        items = [{"kind": PAIR, "index": i, "chosen_ids": c, "rejected_ids": r,
                  "margin": margins[i] if margins is not None else 0.0}
                 for i, (c, r) in enumerate(zip(chosen_ids, rejected_ids, strict=True))]
        return self(items)


def eval_batches(dataset: MixedDataset, sequences_per_batch: int) -> list[list[int]]:
    """Deterministic evaluation batches of dataset indices, each sorted by length (little padding):
    examples ``sequences_per_batch`` at a time, pairs half as many (two sequences each)."""
    ex_order = sorted(range(dataset.n_examples), key=lambda i: len(dataset.examples.input_ids[i]))
    pair_lengths = dataset.pairs.lengths
    pair_order = sorted(range(len(dataset.pairs)), key=lambda j: pair_lengths[j])
    size, pair_size = max(1, sequences_per_batch), max(1, sequences_per_batch // 2)
    batches = [ex_order[i:i + size] for i in range(0, len(ex_order), size)]
    off = dataset.n_examples
    batches += [[off + j for j in pair_order[i:i + pair_size]] for i in range(0, len(pair_order), pair_size)]
    return batches
