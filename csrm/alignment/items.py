"""The items ``csrm align`` trains and evaluates on: (config, conversation) rows in ``data/*.jsonl``.

Request-level prompts with synthesized configs from the augmentation stage (split ``train`` and
``validation``: its split rule keeps prompts and config policies disjoint), or user JSONL files; written once
per run, then read back by every round.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from csrm.alignment.config import AlignConfig
from csrm.alignment.judge import system_prompt_messages
from csrm.base.errors import InputError
from csrm.base.io import iter_jsonl, write_jsonl
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
    :func:`csrm.app.align_cli.items_from_augmentation`)."""
    return [_item_row(s.config.text, as_messages(r.messages), prompt_id=r.prompt_id, name=s.config.name,
                      allow=s.config.allow, mode=s.mode, label=s.label, categories=list(r.categories))
            for r, s in pairs]


# (train items, eval items) for an AlignConfig: how data.source=augmentation is read
AugmentationItems = Callable[[AlignConfig], tuple[list[dict], list[dict]]]


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


def prepare_items(cfg: AlignConfig, folder: Path, augmentation_items: AugmentationItems | None = None
                  ) -> dict[str, Any]:
    """Write ``data/train.jsonl`` and ``data/eval.jsonl`` and return a summary (overlap counts included).

    ``data.source=augmentation`` reads its items through ``augmentation_items``: this layer never imports
    :mod:`augmentation`; ``csrm align`` (:mod:`csrm.app.align_cli`) passes it in."""
    if cfg.data.source == "augmentation":
        if augmentation_items is None:
            raise InputError("data.source=augmentation needs the augmentation stage: run `csrm align`, or pass "
                             "augmentation_items (csrm.app.align_cli.items_from_augmentation)", field="data.source")
        train, held_out = augmentation_items(cfg)
    else:
        train = items_from_file(cfg.data.train_file)
        held_out = items_from_file(cfg.data.eval_file) if cfg.data.eval_file else []
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
