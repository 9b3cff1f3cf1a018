"""The items ``csrm align`` trains and evaluates on: (config, conversation) rows in ``data/*.jsonl``.

``data.source`` picks where they come from: request-level prompts with synthesized configs from the
augmentation stage (split ``train`` and ``validation``: its split rule keeps prompts and config policies
disjoint), CoSAlign's own construction on CoSAlign-Test (:func:`items_from_cosalign_rows`), or user JSONL
files; written once per run, then read back by every round.

The first two read :mod:`augmentation` and :mod:`eval`, which this layer never imports: the application
layer (:data:`csrm.app.align.ITEM_SOURCES`) passes their readers in as ``item_sources``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from csrm.alignment.config import AlignConfig
from csrm.alignment.judge import system_prompt_messages
from csrm.base.errors import InputError
from csrm.base.io import iter_jsonl, write_jsonl
from csrm.base.paths import data_dir
from csrm.base.records import Message, as_messages, stable_id
from csrm.base.safety_config import SafetyConfig
from csrm.base.text import check_strings
from csrm.base.validation import check_fields, parse_config
from csrm.scoring.thresholds import config_key

logger = logging.getLogger(__name__)


# -- items ---------------------------------------------------------------------------------------------
def _item_row(config_text: str, messages: list[Message], *, prompt_id: str = "", name: str = "",
              allow: dict[str, int] | None = None, mode: str = "", label: int = -1,
              categories: list[str] | None = None) -> dict[str, Any]:
    config_id = config_key(config_text)
    prompt_id = prompt_id or stable_id(messages)
    return {"item_id": stable_id(config_id, prompt_id), "prompt_id": prompt_id, "config_id": config_id,
            "config": config_text, "config_name": name, "allow": allow, "mode": mode, "label": label,
            "categories": list(categories or []), "messages": messages}


def items_from_pairs(pairs: Iterable[tuple[Any, Any]]) -> list[dict]:
    """Items from the augmentation stage's ``(request record, synthesized config)`` pairs
    (:func:`augmentation.prompts_with_configs`; the application layer calls it, see
    :func:`csrm.app.align.items_from_augmentation`)."""
    return [_item_row(s.config.text, as_messages(r.messages), prompt_id=r.prompt_id, name=s.config.name,
                      allow=s.config.allow, mode=s.mode, label=s.label, categories=list(r.categories))
            for r, s in pairs]


# (train items, eval items) for an AlignConfig: how a data.source the application layer provides is read
ItemSource = Callable[[AlignConfig], tuple[list[dict], list[dict]]]
# the data.source values read through an ItemSource (the others, 'files', are read here)
PASSED_IN_SOURCES = ("augmentation", "cosalign_test")


def cosalign_data_dir(cfg: AlignConfig) -> Path:
    """``data.data_dir``, else the shared data folder ($CSRM_DATA_DIR or ../shared/data)."""
    return Path(cfg.data.data_dir) if cfg.data.data_dir else data_dir()


def cosalign_files(cfg: AlignConfig) -> list[Path]:
    """The CoSAlign-Test files ``data.source=cosalign_test`` reads (for the run's fingerprint)."""
    folder = cosalign_data_dir(cfg) / "cosalign_test"
    return [folder / f"cosalign_test_{s}.jsonl" for s in ("seen", "unseen")]


def items_from_cosalign_rows(cfg: AlignConfig, train_rows: list[dict], eval_rows: list[dict]
                             ) -> tuple[list[dict], list[dict]]:
    """(train, eval) items in CoSAlign's construction from the rows of
    :func:`eval.benchmarks.cosalign_test.alignment_items` (the application layer reads them:
    :func:`csrm.app.align.items_from_cosalign_test`). ``train_items`` counts items, taken as whole
    contrast pairs (the same prompt under a config that allows it and one that does not); the held-out
    unseen-config items are drawn evenly from each (config, situation) stratum."""
    def as_item(row: dict) -> dict:
        return _item_row(row["config"], as_messages(row["prompt"]), name=row["config_name"], allow=row["allow"],
                         mode=f"situation {row['situation']}", label=row["label"], categories=row["categories"])

    by_prompt: dict[str, list[dict]] = {}
    for row in train_rows:
        by_prompt.setdefault(row["prompt"], []).append(row)
    prompts = list(by_prompt)[:cfg.data.train_items // 2] if cfg.data.train_items > 0 else list(by_prompt)
    train = [as_item(row) for prompt in prompts for row in by_prompt[prompt]]
    strata: dict[tuple, list[dict]] = {}
    for row in eval_rows:
        strata.setdefault((row["config_name"], row["situation"]), []).append(row)
    per_stratum = -(-cfg.data.eval_items // len(strata)) if cfg.data.eval_items > 0 else None
    held_out = [as_item(row) for key in sorted(strata) for row in strata[key][:per_stratum]]
    return train, held_out


ALIGN_ITEM_FIELDS = ("id", "config", "prompt", "messages", "prompt_id", "label", "categories")


def items_from_file(path: str) -> list[dict]:
    """Items from JSONL: ``config`` (text, or ``{name, text, allow}``) and ``prompt`` or ``messages``, plus
    optional ``id``, ``prompt_id``, ``label``, ``categories``; checked by :mod:`csrm.base.validation` (unknown
    fields, categories and lone surrogates are errors naming file, line and field)."""
    rows = []
    for line, obj in iter_jsonl(path):
        check_fields(obj, ALIGN_ITEM_FIELDS, path=path, line=line)
        if obj.get("config") is None:
            raise InputError("needs a config (text or {name, text, allow})", path=path, line=line, field="config")
        parsed = parse_config(obj["config"], path=path, line=line)
        config = parsed if isinstance(parsed, SafetyConfig) else SafetyConfig(text=parsed)
        prompt = obj.get("messages") if obj.get("messages") is not None else obj.get("prompt")
        if not prompt:
            raise InputError("needs a prompt or messages", path=path, line=line, field="prompt")
        try:
            messages = as_messages(prompt)
        except (ValueError, TypeError, AttributeError) as err:
            raise InputError(str(err), path=path, line=line, field="messages") from None
        check_strings(messages, "messages", path=path, line=line)
        rows.append(_item_row(config.render(), messages, prompt_id=str(obj.get("prompt_id") or ""),
                              name=config.name, allow=config.allow, label=int(obj.get("label", -1)),
                              categories=list(obj.get("categories") or [])))
    return rows


def _subsample(rows: list[dict], n: int, seed: int) -> list[dict]:
    rows = sorted(rows, key=lambda r: r["item_id"])
    random.Random(seed).shuffle(rows)
    return rows if n <= 0 else rows[:n]


def prepare_items(cfg: AlignConfig, folder: Path, item_sources: Mapping[str, ItemSource] | None = None
                  ) -> dict[str, Any]:
    """Write ``data/train.jsonl`` and ``data/eval.jsonl`` and return a summary (overlap counts included).

    ``data.source`` ``augmentation`` and ``cosalign_test`` read their items through ``item_sources`` (source
    name -> :data:`ItemSource`): this layer never imports :mod:`augmentation` or :mod:`eval`; ``csrm align``
    passes :data:`csrm.app.align.ITEM_SOURCES` in."""
    source = cfg.data.source
    if source in PASSED_IN_SOURCES:
        read = (item_sources or {}).get(source)
        if read is None:
            raise InputError(f"data.source={source} is read by the application layer: run `csrm align`, or pass "
                             "item_sources (csrm.app.align.ITEM_SOURCES)", field="data.source")
        train, held_out = read(cfg)
    else:
        train = items_from_file(cfg.data.train_file)
        held_out = items_from_file(cfg.data.eval_file) if cfg.data.eval_file else []
    if source != "cosalign_test":  # that source draws its own (contrast pairs, strata)
        train = _subsample(train, cfg.data.train_items, cfg.data.seed)
        held_out = _subsample(held_out, cfg.data.eval_items, cfg.data.seed + 1)
    if not train:
        raise InputError("no training items", field="data")
    shared_prompts = {r["prompt_id"] for r in train} & {r["prompt_id"] for r in held_out}
    shared_configs = {r["config_id"] for r in train} & {r["config_id"] for r in held_out}
    if shared_prompts or shared_configs:
        logger.warning("held-out items share %d prompts and %d configs with training items",
                       len(shared_prompts), len(shared_configs))
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "eval.jsonl", held_out)
    return {"train_items": len(train), "eval_items": len(held_out), "shared_prompts": len(shared_prompts),
            "shared_configs": len(shared_configs), "train_configs": len({r["config_id"] for r in train}),
            "eval_configs": len({r["config_id"] for r in held_out})}


def read_items(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)] if path.is_file() else []


def prompt_messages(item: dict) -> list[Message]:
    """The conversation the policy answers: the config as system message (csrm.alignment.judge's layout)."""
    return system_prompt_messages(item["config"], item["messages"])
