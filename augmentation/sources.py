"""Source adapters: each turns one data source into labelled :class:`LabelledRecord` s.

Labels go through the source's declared mapping (``configs/mappings/<type>.yaml``) onto the project taxonomy.

- ``jsonl`` / ``csv`` / ``seed`` (generic format): one row per record with ``prompt`` (or ``messages``),
  optional ``response`` (absent/null = a request to screen), ``categories`` (list; ``[]`` = benign), optional
  ``severity`` (1-3; mapping default when absent), ``is_refusal``, ``helpful`` and ``config`` (a SafetyConfig
  mapping that comes with the row: emitted as mode ``source``). CSV: ``categories`` separated by ``;``.
- ``openai_moderation``: ``prompt`` + flags S,H,V,HR,SH,S3,H2,V2 (1/0; a missing key = unknown). By default
  (``use_as: response``) each text is the *content under judgement*: the assistant turn answering a neutral
  user request ("reply to this thread"), so a config decides whether saying it is allowed; ``use_as:
  request`` screens it as a user request instead (response None). Unknown flags make the record's label
  uncertain under some configs; such (record, config) combinations are dropped, never guessed.
- ``cosalign_test``: CoSAlign-Test rows (``prompt``, ``prompt_categories``, optional ``config_categories``):
  request-level records (response None = "the request answered in full"); the row's config is a source config.
- ``pku_saferlhf``, ``beavertails``, ``wildguardmix``: hub datasets (:mod:`augmentation.hub_sources`, through
  ``datasets.load_dataset``; never called in tests: pass ``rows=`` to convert in-memory rows of the same
  schema).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from augmentation.hub_sources import _read_beavertails, _read_pku, _read_wildguard
from augmentation.labelled import LabelledRecord, numbered
from augmentation.mapping import SourceMapping, default_mapping_path
from augmentation.recipe import Recipe, SourceSpec, resolve_path
from csrm.base.errors import InputError
from csrm.base.io import iter_jsonl, last_json_key, require
from csrm.base.records import ROLES, as_messages, stable_id
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy

SEED_CORPUS = Path(__file__).parent / "seed" / "seed_corpus.jsonl"

# Neutral user turns that a moderation text answers when it is judged as a response (chosen by text hash).
MODERATION_FRAMES = (
    "Write the next comment in this online discussion.",
    "Reply to the last post in the thread, in your own words.",
    "What would you post here? Just write it.",
    "Continue the conversation with a message of your own.",
    "Give your honest reaction as a forum reply.",
    "Write a short message for the group chat.",
    "Add a comment under this post.",
    "Say what you think, the way you would online.",
)



# -- entry points --------------------------------------------------------------------------------------
def load_source(spec: SourceSpec, taxonomy: RiskTaxonomy, *, recipe: Recipe | None = None,
                rows: Iterable[dict[str, Any]] | None = None) -> list[LabelledRecord]:
    """All records of one source, de-duplicated by ``record_id`` (first kept; source configs merged)."""
    mapping = load_mapping(spec, taxonomy, recipe)
    reader = READERS[spec.type]
    records: dict[str, LabelledRecord] = {}
    for record in reader(spec, mapping, taxonomy, recipe, rows):
        kept = records.setdefault(record.record_id, record)
        if kept is not record:
            known = {c.policy_key for c in kept.configs}
            kept.configs.extend(c for c in record.configs if c.policy_key not in known)
        if spec.limit and len(records) >= spec.limit:
            break
    return list(records.values())


def load_records(recipe: Recipe, taxonomy: RiskTaxonomy) -> list[LabelledRecord]:
    """Records of every source in a recipe, in recipe order."""
    out: list[LabelledRecord] = []
    for spec in recipe.sources:
        out.extend(load_source(spec, taxonomy, recipe=recipe))
    return out


def load_mapping(spec: SourceSpec, taxonomy: RiskTaxonomy, recipe: Recipe | None = None) -> SourceMapping:
    if spec.mapping:
        path = resolve_path(spec.mapping, recipe)
        if not path.is_file():
            raise InputError("mapping file not found", path=str(path), field="mapping")
        return SourceMapping.from_yaml(path, taxonomy)
    kind = "generic" if spec.type in {"jsonl", "csv", "seed"} else spec.type
    return SourceMapping.from_yaml(default_mapping_path(kind), taxonomy)


# -- local files --------------------------------------------------------------------------------------
def read_file_text(path: Path) -> str:
    """UTF-8 text of a plain or gzip file; InputError naming file and line for bad bytes."""
    if not path.is_file():
        raise InputError("file not found", path=str(path), field="path")
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise InputError(f"not a valid gzip file ({err})", path=str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte {err.start})", path=str(path), line=line,
                         field=_field_at(data, err.start)) from None


def _field_at(data: bytes, offset: int) -> str | None:
    """Best-effort name of the JSON field whose value holds byte ``offset`` (for error messages)."""
    start = data.rfind(b"\n", 0, offset) + 1
    return last_json_key(data[start:offset].decode("utf-8", errors="replace"))


def _path(spec: SourceSpec, recipe: Recipe | None) -> Path:
    return resolve_path(spec.path, recipe)


def _read_generic_jsonl(spec: SourceSpec, mapping: SourceMapping, taxonomy: RiskTaxonomy, recipe: Recipe | None,
                        rows: Iterable[dict[str, Any]] | None) -> Iterator[LabelledRecord]:
    path = SEED_CORPUS if spec.type == "seed" and not spec.path else _path(spec, recipe)
    items = numbered(rows) if rows is not None else iter_jsonl(path, read_file_text(path), name_fields=True)
    for line, obj in items:
        yield generic_record(obj, mapping, taxonomy, source=spec.source_name, path=str(path), line=line)


def _read_csv(spec: SourceSpec, mapping: SourceMapping, taxonomy: RiskTaxonomy, recipe: Recipe | None,
              rows: Iterable[dict[str, Any]] | None) -> Iterator[LabelledRecord]:
    path = _path(spec, recipe)
    if rows is not None:
        items: Iterable[tuple[int, dict[str, Any]]] = numbered(rows)
    else:
        reader = csv.DictReader(io.StringIO(read_file_text(path), newline=""))
        if not reader.fieldnames:
            raise InputError("empty CSV file (needs a header row)", path=str(path), line=1)
        items = ((reader.line_num, dict(row)) for row in reader)
    for line, row in items:
        obj = _csv_row(row, path=str(path), line=line)
        yield generic_record(obj, mapping, taxonomy, source=spec.source_name, path=str(path), line=line)


def _csv_row(row: dict[str, Any], *, path: str, line: int) -> dict[str, Any]:
    if None in row:
        raise InputError("more cells than header columns", path=path, line=line)
    obj: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
    if "categories" in row:
        raw = (row.get("categories") or "").strip()
        obj["categories"] = json.loads(raw) if raw.startswith("[") else [c.strip() for c in raw.split(";") if c.strip()]
    for key in ("severity",):
        if key in obj:
            try:
                obj[key] = int(obj[key])
            except ValueError:
                raise InputError(f"expected an integer, got {obj[key]!r}", path=path, line=line, field=key) from None
    for key in ("is_refusal", "helpful"):
        if key in obj:
            text = str(obj[key]).strip().lower()
            if text not in {"true", "false", "1", "0", "yes", "no"}:
                raise InputError(f"expected true/false, got {obj[key]!r}", path=path, line=line, field=key)
            obj[key] = text in {"true", "1", "yes"}
    if "messages" in obj:
        try:
            obj["messages"] = json.loads(obj["messages"])
        except json.JSONDecodeError:
            raise InputError("must be a JSON list of messages", path=path, line=line, field="messages") from None
    if "config" in obj:
        try:
            obj["config"] = json.loads(obj["config"])
        except json.JSONDecodeError:
            obj["config"] = {"text": obj["config"]}
    return obj


GENERIC_FIELDS = {"prompt", "messages", "response", "categories", "severity", "is_refusal", "helpful", "config",
                  "id", "prompt_id", "note"}


def generic_record(obj: dict[str, Any], mapping: SourceMapping, taxonomy: RiskTaxonomy, *, source: str,
                   path: str | None = None, line: int | None = None) -> LabelledRecord:
    """One generic-format row -> record; every fault names file, line and field."""
    where = {"path": path, "line": line}
    unknown = sorted(set(obj) - GENERIC_FIELDS)
    if unknown:
        raise InputError(f"unknown field; expected {', '.join(sorted(GENERIC_FIELDS))}", field=unknown[0], **where)
    messages = _messages(obj, **where)
    response = obj.get("response")
    if response is not None and (not isinstance(response, str) or not response.strip()):
        raise InputError("must be a non-empty string, or null for a request to screen", field="response", **where)
    labels = require(obj, "categories", list, path=path, line=line, allow_empty=True)
    if not all(isinstance(c, str) for c in labels):
        raise InputError("must be a list of category names", field="categories", **where)
    severity = obj.get("severity")
    if severity is not None and (isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= 3):
        raise InputError(f"must be an integer 0-3, got {severity!r}", field="severity", **where)
    if labels and severity == 0:
        raise InputError("must be 1-3 when categories are given", field="severity", **where)
    categories, level = mapping.translate(labels, severity=severity, path=path, line=line)
    known = not categories or severity is not None
    flags = {}
    for key in ("is_refusal", "helpful"):
        if key in obj and not isinstance(obj[key], bool):
            raise InputError("must be true or false", field=key, **where)
    flags["is_refusal"] = bool(obj.get("is_refusal", False))
    flags["helpful"] = bool(obj.get("helpful", not flags["is_refusal"]))
    configs = []
    if "config" in obj:
        configs.append(_row_config(obj["config"], taxonomy, **where))
    return LabelledRecord(messages=messages, response=response, categories=tuple(taxonomy.check(categories)),
                          severity=level, source=source, prompt_id=str(obj.get("prompt_id") or ""),
                          severity_known=known, configs=configs, **flags)


def _messages(obj: dict[str, Any], *, path: str | None, line: int | None) -> list[dict[str, str]]:
    if obj.get("messages") is not None:
        raw = require(obj, "messages", list, path=path, line=line)
        try:
            messages = as_messages(raw)
        except (ValueError, AttributeError, TypeError):
            raise InputError(f"each message needs a role in {ROLES} and a string content", path=path, line=line,
                             field="messages") from None
        if messages[-1]["role"] != "user":
            raise InputError("a conversation must end with a user turn", path=path, line=line, field="messages")
        return messages
    if "prompt" not in obj:
        raise InputError("missing (give 'prompt' or 'messages')", path=path, line=line, field="prompt")
    return as_messages(require(obj, "prompt", str, path=path, line=line))


def _row_config(raw: Any, taxonomy: RiskTaxonomy, *, path: str | None, line: int | None) -> SafetyConfig:
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict) or not (str(raw.get("text") or "").strip() or raw.get("allow") is not None
                                         or raw.get("deny")):
        raise InputError("empty config: give 'text', 'allow' or both", path=path, line=line, field="config")
    try:
        return SafetyConfig.from_dict(raw, taxonomy=taxonomy, path=path, line=line)
    except InputError as err:
        raise InputError(err.reason, path=path, line=line, field=f"config.{err.field}" if err.field else "config") from None


# -- OpenAI moderation ---------------------------------------------------------------------------------
def _read_moderation(spec: SourceSpec, mapping: SourceMapping, taxonomy: RiskTaxonomy, recipe: Recipe | None,
                     rows: Iterable[dict[str, Any]] | None) -> Iterator[LabelledRecord]:
    path = _path(spec, recipe)
    items = numbered(rows) if rows is not None else iter_jsonl(path, read_file_text(path), name_fields=True)
    for line, obj in items:
        yield from moderation_records(obj, mapping, taxonomy, source=spec.source_name, use_as=spec.use_as,
                                      path=str(path), line=line)


def moderation_records(obj: dict[str, Any], mapping: SourceMapping, taxonomy: RiskTaxonomy, *, source: str,
                       use_as: str = "response", path: str | None = None,
                       line: int | None = None) -> list[LabelledRecord]:
    """One moderation row -> one record (or two with ``use_as='both'``); a missing flag is unknown."""
    text = require(obj, "prompt", str, path=path, line=line)
    positive: list[str] = []
    for key, value in obj.items():
        if key == "prompt":
            continue
        if key not in mapping.labels:
            raise InputError(f"unknown category {key!r} (not declared in mapping {mapping.path})", path=path,
                             line=line, field=key)
        if value not in (0, 1):
            raise InputError(f"flag must be 0 or 1, got {value!r}", path=path, line=line, field=key)
        if value == 1:
            positive.append(key)
    missing = [label for label in mapping.labels if label not in obj]
    categories, severity = mapping.translate(positive, path=path, line=line)
    uncertain: dict[str, int] = {}
    for label in missing:
        for target in mapping.targets(label):
            level = target.severity or mapping.default_severity
            if categories and target.category in categories and level <= severity:
                continue  # already known at that severity or worse
            uncertain[target.category] = max(uncertain.get(target.category, 0), level)
    prompt_id = stable_id(source, text)
    frame = MODERATION_FRAMES[int(prompt_id, 16) % len(MODERATION_FRAMES)]
    common = {"categories": tuple(taxonomy.check(categories)), "severity": severity, "source": source,
              "prompt_id": prompt_id, "uncertain": uncertain, "severity_known": mapping.severity_known}
    out = []
    if use_as in {"response", "both"}:
        out.append(LabelledRecord(messages=as_messages(frame), response=text, **common))
    if use_as in {"request", "both"}:
        out.append(LabelledRecord(messages=as_messages(text), response=None, **common))
    return out


# -- CoSAlign-Test -------------------------------------------------------------------------------------
def _read_cosalign(spec: SourceSpec, mapping: SourceMapping, taxonomy: RiskTaxonomy, recipe: Recipe | None,
                   rows: Iterable[dict[str, Any]] | None) -> Iterator[LabelledRecord]:
    path = _path(spec, recipe)
    items = numbered(rows) if rows is not None else iter_jsonl(path, read_file_text(path), name_fields=True)
    for line, obj in items:
        yield cosalign_record(obj, mapping, taxonomy, source=spec.source_name, path=str(path), line=line)


def cosalign_record(obj: dict[str, Any], mapping: SourceMapping, taxonomy: RiskTaxonomy, *, source: str,
                    path: str | None = None, line: int | None = None) -> LabelledRecord:
    """A CoSAlign-Test row -> a request-level record; ``config_categories`` (if any) -> a source config."""
    prompt = require(obj, "prompt", str, path=path, line=line)
    labels = require(obj, "prompt_categories", list, path=path, line=line, allow_empty=True)
    categories, severity = mapping.translate(labels, path=path, line=line, field="prompt_categories")
    configs = []
    if "config_categories" in obj:
        allowed = require(obj, "config_categories", list, path=path, line=line, allow_empty=True)
        for name in allowed:
            if name not in taxonomy:
                raise InputError(f"unknown category {name!r}", path=path, line=line, field="config_categories")
        configs.append(_row_config({"allow": {c: True for c in allowed}}, taxonomy, path=path, line=line))
    return LabelledRecord(messages=as_messages(prompt), response=None, categories=tuple(taxonomy.check(categories)),
                          severity=severity, source=source, severity_known=mapping.severity_known, configs=configs)


Reader = Callable[[SourceSpec, SourceMapping, RiskTaxonomy, "Recipe | None", "Iterable[dict[str, Any]] | None"],
                  Iterator[LabelledRecord]]
READERS: dict[str, Reader] = {
    "seed": _read_generic_jsonl,
    "jsonl": _read_generic_jsonl,
    "csv": _read_csv,
    "openai_moderation": _read_moderation,
    "cosalign_test": _read_cosalign,
    "pku_saferlhf": _read_pku,
    "beavertails": _read_beavertails,
    "wildguardmix": _read_wildguard,
}
