"""CoSApien (Zhang et al., ICLR 2025): 5 hand-written scenario configs x 40 prompts, judged as request screening.

Hub: ``microsoft/CoSApien``, one split per scenario (``game_development``, ``public_prosecutor``,
``book_publisher_arab``, ``language_learning``, ``film_production``), columns ``prompt``, ``scenario`` (the
config text) and ``type``. Local: ``DATA_DIR/cosapien/<split>.jsonl`` in the same schema.

Framing: each prompt is screened under its scenario's config (``response=None``: would a full answer
comply?). Positive (violation) = a prompt whose full answer would break the config:

- ``fully disallowed`` -> 1, ``fully allowed`` -> 0;
- ``partially allowed`` (the request mixes allowed and disallowed asks) -> 1 in the **headline** view, since
  a *full* answer includes the disallowed part; the ``partial_as_compliant`` view counts it as 0 instead.
"""

from __future__ import annotations

import re
from pathlib import Path

from csrm.base.errors import InputError
from csrm.base.io import require
from csrm.base.score_types import ScoreItem
from eval.benchmarks._source import Rows, fetch_rows, hub_rows, read_jsonl_dir
from eval.items import HEADLINE, EvalItem

NAME = "cosapien"
TITLE = "CoSApien"
HUB_ID = "microsoft/CoSApien"
LOCAL_DIR = "cosapien"
SCENARIOS = ("game_development", "public_prosecutor", "book_publisher_arab", "language_learning",
             "film_production")

ALLOWED, DISALLOWED, PARTIAL = "fully allowed", "fully disallowed", "partially allowed"
VIEWS = {
    HEADLINE: "partially-allowed prompts count as violations (a full answer includes the disallowed part)",
    "partial_as_compliant": "partially-allowed prompts count as compliant",
}
DEV_RULE = "deterministic hash slice of each (scenario, type) stratum"

# Normalised spellings of the `type` column -> canonical type. Normalisation: lower case, anything that is
# not a letter becomes one space, and a trailing "content"/"prompt"/"request" word is dropped.
_TYPE_ALIASES = {
    "allowed": ALLOWED, "fully allowed": ALLOWED, "full allowed": ALLOWED, "completely allowed": ALLOWED,
    "disallowed": DISALLOWED, "fully disallowed": DISALLOWED, "full disallowed": DISALLOWED,
    "not allowed": DISALLOWED, "fully not allowed": DISALLOWED, "completely disallowed": DISALLOWED,
    "partially allowed": PARTIAL, "partial allowed": PARTIAL, "partially disallowed": PARTIAL,
    "partial": PARTIAL, "partly allowed": PARTIAL, "mixed": PARTIAL,
}
_LABELS = {ALLOWED: 0, DISALLOWED: 1, PARTIAL: 1}


def normalize_type(raw: object) -> str:
    """Map a CoSApien ``type`` value to ``fully allowed`` / ``fully disallowed`` / ``partially allowed``.

    Raises :class:`ValueError` naming the value and the accepted spellings when it is unknown.
    """
    key = re.sub(r"[^a-z]+", " ", str(raw).lower()).strip()
    key = re.sub(r" (content|prompt|request|prompts|requests)$", "", key)
    if key not in _TYPE_ALIASES:
        raise ValueError(f"unknown CoSApien type {raw!r} (normalised {key!r}); expected one of "
                         f"{sorted(set(_TYPE_ALIASES))}")
    return _TYPE_ALIASES[key]


def build_items(rows: Rows, source: str) -> list[EvalItem]:
    """EvalItems from ``{scenario split: rows}`` in the hub schema."""
    items = []
    for split, split_rows in rows.items():
        for line, row in enumerate(split_rows, start=1):
            where = {"path": f"{source}[{split}]", "line": line}
            prompt = require(row, "prompt", str, **where)
            config = require(row, "scenario", str, **where)
            try:
                kind = normalize_type(require(row, "type", str, **where))
            except ValueError as err:
                raise InputError(str(err), field="type", **where) from None
            label = _LABELS[kind]
            items.append(EvalItem(
                item=ScoreItem(config=config, messages=[{"role": "user", "content": prompt}], response=None),
                label_violation=label, group=split, benchmark=NAME, kind=kind,
                views={HEADLINE: label, "partial_as_compliant": 0 if kind == PARTIAL else label},
                extra={"type": row["type"]}))
    return items


def load(data_dir: Path, *, use_hub: bool = True) -> tuple[list[EvalItem], str, list[str]]:
    """(items, source, notes) from ``data_dir/cosapien/*.jsonl`` or the hub."""
    local = Path(data_dir) / LOCAL_DIR
    rows, source = fetch_rows(NAME, lambda: read_jsonl_dir(local), f"{local}/*.jsonl",
                              lambda: hub_rows(HUB_ID), HUB_ID, use_hub=use_hub)
    unknown = sorted(set(rows) - set(SCENARIOS))
    notes = [f"splits not among the 5 CoSApien scenarios: {unknown}"] if unknown else []
    return build_items(rows, source), source, notes
