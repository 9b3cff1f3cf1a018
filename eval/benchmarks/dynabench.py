"""DynaBench (Hoover et al. 2025): hand-written policies of numbered rules and multi-turn transcripts,
labelled PASS/FAIL by whether the agent broke a rule.

Hub: ``tomg-group-umd/DynaBench``, subset ``DynaBench``, split ``test``; fields ``policy``, ``transcript``,
``label`` (PASS/FAIL) and ``metadata``. Local: ``DATA_DIR/dynabench/*.jsonl`` in the same schema.

Framing: config = the policy text; positive (violation) = FAIL. The transcript is parsed into turns
(:func:`parse_transcript`) and split by one rule (:func:`split_transcript`): **the last Agent turn is the
response** (consecutive Agent turns at that point are joined), **every turn before it is the conversation**
(earlier Agent turns stay in it as assistant messages), and User turns after it, if any, are dropped (counted
in ``extra["dropped_turns"]``). A transcript with no Agent turn cannot be judged and is skipped with a note.
Groups are policy sizes (``rules:1``, ``rules:2-4``, ``rules:5-9``, ``rules:10+``): DynaBench has no named
configs, every row brings its own policy. DynaBench (Aug)'s counterfactual copies (``base_id`` ending in
``_safe``: the violated rule removed, label PASS) get the kind ``PASS (counterfactual)``, so the per-kind table
shows the share of them judged PASS.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.base.io import require
from csrm.base.records import Message
from csrm.base.score_types import ScoreItem
from eval.benchmarks._source import Rows, fetch_rows, hub_rows, read_jsonl_dir
from eval.items import HEADLINE, EvalItem

NAME = "dynabench"
TITLE = "DynaBench"
HUB_ID = "tomg-group-umd/DynaBench"
HUB_SUBSET, HUB_SPLIT = "DynaBench", "test"
LOCAL_DIR = "dynabench"
VIEWS = {HEADLINE: "FAIL = violation; the last Agent turn is the response, earlier turns the conversation"}
DEV_RULE = "deterministic hash slice of each (rule-count bucket, label) stratum"

_TURN = re.compile(r"^[ \t]*['\"]?(User|Agent)['\"]?[ \t]*:['\"]?[ \t]*", re.MULTILINE)
_ROLES = {"User": "user", "Agent": "assistant"}
_RULE = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)
_LABELS = {"FAIL": 1, "PASS": 0}


def parse_transcript(text: str) -> list[Message]:
    """Turns of a DynaBench transcript (``User:``/``Agent:`` tags, optionally quoted as ``'User':``, each at
    the start of a line) as role/content messages; consecutive turns of one role are joined with a blank
    line, and text before the first tag becomes a leading user turn."""
    turns: list[Message] = []
    matches = list(_TURN.finditer(text))
    preamble = text[: matches[0].start()] if matches else text
    if preamble.strip():
        turns.append({"role": "user", "content": preamble.strip()})
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        role, content = _ROLES[match.group(1)], text[match.end():end].strip()
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{content}".strip()
        else:
            turns.append({"role": role, "content": content})
    return turns


def split_transcript(text: str) -> tuple[list[Message], str | None, int]:
    """``(conversation, response, dropped)``: the last Agent turn is the response, the turns before it the
    conversation, and ``dropped`` counts the User turns after it. No Agent turn: ``(all turns, None, 0)``."""
    turns = parse_transcript(text)
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        return turns, None, 0
    return turns[:last], turns[last]["content"], len(turns) - last - 1


COUNTERFACTUAL = "PASS (counterfactual)"


def is_counterfactual(row: dict[str, Any]) -> bool:
    """DynaBench (Aug)'s counterfactual copies (the violated rule removed, so the label flipped to PASS) carry
    a ``base_id`` ending in ``_safe``; the report gives the share of them judged PASS."""
    return str(row.get("base_id") or "").endswith("_safe") and str(row.get("label")).strip().upper() == "PASS"


def rule_bucket(policy: str) -> str:
    """Group name from the number of numbered rules in a policy."""
    n = max(1, len(_RULE.findall(policy)))
    return "rules:1" if n == 1 else "rules:2-4" if n <= 4 else "rules:5-9" if n <= 9 else "rules:10+"


def _metadata(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def build_items(rows: Rows, source: str) -> tuple[list[EvalItem], list[str]]:
    """(items, notes) from ``{split: rows}`` in the hub schema."""
    items, notes, skipped, dropped = [], [], 0, 0
    for split, split_rows in rows.items():
        for line, row in enumerate(split_rows, start=1):
            where = {"path": f"{source}[{split}]", "line": line}
            policy = require(row, "policy", str, **where)
            transcript = require(row, "transcript", str, **where)
            raw_label = require(row, "label", str, **where)
            kind = raw_label.strip().upper()
            if kind not in _LABELS:
                raise InputError(f"unknown label {raw_label!r}; expected PASS or FAIL", field="label", **where)
            messages, response, n_dropped = split_transcript(transcript)
            if response is None:
                skipped += 1
                continue
            dropped += bool(n_dropped)
            items.append(EvalItem(
                item=ScoreItem(config=policy, messages=messages, response=response),
                label_violation=_LABELS[kind], group=rule_bucket(policy), benchmark=NAME,
                kind=COUNTERFACTUAL if is_counterfactual(row) else kind,
                extra={"dropped_turns": n_dropped, "turns": len(messages) + 1, "split": split,
                       "metadata": _metadata(row.get("metadata"))}))
    if skipped:
        notes.append(f"{skipped} transcript(s) without an Agent turn skipped")
    if dropped:
        notes.append(f"{dropped} transcript(s) end with User turns after the last Agent turn (dropped)")
    return items, notes


def load(data_dir: Path, *, use_hub: bool = True) -> tuple[list[EvalItem], str, list[str]]:
    """(items, source, notes) from ``data_dir/dynabench/*.jsonl`` or the hub."""
    local = Path(data_dir) / LOCAL_DIR
    rows, source = fetch_rows(NAME, lambda: read_jsonl_dir(local), f"{local}/*.jsonl",
                              lambda: hub_rows(HUB_ID, HUB_SUBSET, split=HUB_SPLIT), HUB_ID, use_hub=use_hub)
    items, notes = build_items(rows, source)
    return items, source, notes
