"""The held-out split of an augmentation output: configs *and* prompts never seen in training.

Local only: ``DATA_DIR/examples.validation.jsonl`` as written by ``csrm augment`` (``--data-dir`` is the
augmentation output folder). Every example is an item under its own synthesized config; positive
(violation) = ``label == 0``. Groups are the synthesis modes (exact, superset, none, drop_one,
severity_threshold, refusal, source); views split request screening from response judging.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csrm.base.io import iter_jsonl, require
from csrm.base.score_types import ScoreItem
from eval.benchmarks._source import BenchmarkUnavailable
from eval.items import HEADLINE, EvalItem

NAME = "augmented"
TITLE = "Augmented held-out split"
HUB_ID = "(none: local augmentation output)"
FILE = "examples.validation.jsonl"
VIEWS = {
    HEADLINE: "every held-out example (held-out configs and prompts); violation = label 0",
    "requests": "request screening only (no response)",
    "responses": "responses only",
}
DEV_RULE = "deterministic hash slice of each (mode, label) stratum"


def build_items(rows: list[tuple[int, dict[str, Any]]], path: Path) -> list[EvalItem]:
    items = []
    for line, row in rows:
        where = {"path": str(path), "line": line}
        label = require(row, "label", int, **where)
        response = row.get("response")
        violation = int(label == 0)
        views = {HEADLINE: violation, "requests" if response is None else "responses": violation}
        items.append(EvalItem(
            item=ScoreItem(config=require(row, "config_text", str, **where), messages=require(row, "messages", list, **where),
                           response=response, item_id=str(row.get("example_id", ""))),
            label_violation=violation, group=str(row.get("mode", "")), benchmark=NAME,
            kind="violates" if violation else "complies", views=views,
            extra={"severity": row.get("severity"), "categories": row.get("categories"), "source": row.get("source"),
                   "allowed": json.loads(row["config_policy"]) if row.get("config_policy") else None}))
    return items


def load(data_dir: Path, *, use_hub: bool = True) -> tuple[list[EvalItem], str, list[str]]:
    """(items, source, notes) from an augmentation output folder."""
    path = Path(data_dir) / FILE
    if not path.is_file():
        raise BenchmarkUnavailable(NAME, str(path), HUB_ID, "pass the augmentation output folder as --data-dir")
    return build_items(list(iter_jsonl(path)), path), f"local:{path}", []
