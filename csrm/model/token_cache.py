"""Tokenization of training data through ``datasets.map``, cached on disk and run once per machine.

:func:`tokenize_split` maps a split's rows to token ids (the model's :class:`~csrm.model.formatting.InputFormatter`,
so the layout and truncation rule are scoring's) with ``cache_file_name`` under ``<checkpoint_dir>/tokenized/``.
The file name carries a key over everything the ids depend on: the dataset's fingerprint (and its arrow
files' sizes and modification times), the tokenizer
(class, vocabulary, special tokens), ``max_length``, template, decoder flag, ``blind_config`` and the row
limit; so a rerun or a resume loads the arrow file instead of tokenizing again, and a change to any of them
writes a new one. The formatter's truncation counters are stored beside it (``.stats.json``) so a cached run
still logs them. :func:`csrm.model.cross_encoder.train.build_data` calls it under ``TrainingArguments.main_process_first``: on a
multi-process run the main process of each node tokenizes and writes the cache, the others then load it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.model.data import EXAMPLE_COLUMNS, PAIR_COLUMNS, ExampleFeatures, PairFeatures
from csrm.model.formatting import InputFormatter


def formatter_key(formatter: InputFormatter) -> str:
    """A hash of what the token ids depend on, on the formatter's side."""
    from datasets.fingerprint import Hasher

    tok = formatter.tokenizer
    return Hasher.hash([type(tok).__name__, sorted(tok.get_vocab().items()), tok.all_special_tokens,
                        formatter.max_length, formatter.template, formatter.is_decoder, formatter.head,
                        formatter.middle, formatter.tail, getattr(tok, "chat_template", None)])


def tokenize_split(dataset: Any, kind: str, formatter: InputFormatter, *, cache_dir: str | Path | None,
                   blind_config: bool = False, limit: int | None = None,
                   stats: Counter | None = None) -> ExampleFeatures | PairFeatures:
    """Token ids of ``examples`` or ``pairs`` rows, through a cached ``datasets.map`` (module doc)."""
    if dataset is None:
        return ExampleFeatures() if kind == "examples" else PairFeatures()
    columns = EXAMPLE_COLUMNS if kind == "examples" else PAIR_COLUMNS
    n = len(dataset) if limit is None else min(limit, len(dataset))
    rows = dataset.select_columns(list(columns))
    if n < len(dataset):
        rows = rows.select(range(n))
    fn = _encode_examples if kind == "examples" else _encode_pairs
    kwargs = {"formatter": formatter, "blind_config": blind_config}
    cache_file = None
    if cache_dir is not None:
        from datasets.fingerprint import Hasher

        files = [(f["filename"], *_stat(f["filename"])) for f in dataset.cache_files]
        key = Hasher.hash([rows._fingerprint, files, kind, blind_config, n, formatter_key(formatter)])
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file = str(Path(cache_dir) / f"{kind}-{key}.arrow")
    before = Counter(formatter.stats)
    mapped = rows.map(fn, batched=True, batch_size=1000, fn_kwargs=kwargs, remove_columns=list(columns),
                      cache_file_name=cache_file, load_from_cache_file=cache_file is not None,
                      new_fingerprint=Path(cache_file).stem if cache_file else None,
                      desc=f"tokenizing {kind}")
    ran = Counter(formatter.stats) - before
    if cache_file is not None:
        side = Path(cache_file + ".stats.json")
        if ran:
            side.write_text(json.dumps(dict(ran)), encoding="utf-8")
        elif side.is_file():
            ran = Counter(json.loads(side.read_text(encoding="utf-8")))
    if stats is not None:
        stats.update(ran)
    table = mapped.with_format(None).data

    def column(name: str) -> list:
        return table.column(name).to_pylist()

    if kind == "examples":
        return ExampleFeatures(input_ids=column("input_ids"), labels=column("label"))
    return PairFeatures(chosen_ids=column("chosen_ids"), rejected_ids=column("rejected_ids"),
                        margins=column("margin"))


def _stat(path: str) -> tuple[int, int]:
    try:
        info = Path(path).stat()
    except OSError:
        return (0, 0)
    return (info.st_size, info.st_mtime_ns)


def _encode_examples(batch: dict[str, list], formatter: InputFormatter, blind_config: bool) -> dict[str, list]:
    configs = [""] * len(batch["label"]) if blind_config else batch["config_text"]
    for label in batch["label"]:
        if label not in (0, 1):
            raise InputError(f"label must be 0 or 1, got {label!r}", field="label")
    encoded = formatter.encode_batch(configs, batch["messages"], batch["response"])
    return {"input_ids": [e.input_ids for e in encoded], "label": [int(v) for v in batch["label"]]}


def _encode_pairs(batch: dict[str, list], formatter: InputFormatter, blind_config: bool) -> dict[str, list]:
    configs = [""] * len(batch["margin"]) if blind_config else batch["config_text"]
    chosen = formatter.encode_batch(configs, batch["messages"], batch["chosen"])
    rejected = formatter.encode_batch(configs, batch["messages"], batch["rejected"])
    return {"chosen_ids": [e.input_ids for e in chosen], "rejected_ids": [e.input_ids for e in rejected],
            "margin": [float(m) for m in batch["margin"]]}
