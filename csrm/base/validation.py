"""One validation path for safety configs and score items, used by the library, ``csrm score``, ``csrm serve``
and ``csrm align`` (so a bad input fails the same way, with the same message, wherever it enters).

Rules (each failure is an :class:`~csrm.base.errors.InputError` naming file, line and field):

- **configs**: a non-empty string, or ``{name, text, allow, deny}``. Categories must be in the taxonomy (the
  model's own, else the default CoSA taxonomy) *even when* ``text`` is given (the structured part feeds
  thresholds and labels, so a typo there must not pass silently), and a category the taxonomy marks never
  allowable ("Other Harms") cannot be allowed;
- **items**: only the fields ``id, config, prompt, messages, response`` (a misspelled ``respnse`` would
  otherwise turn an item into request screening); exactly one of ``prompt`` / ``messages``; ``response`` a
  string or null;
- **text**: no lone surrogates anywhere (:mod:`csrm.base.text`).

Also :func:`check_model_dir`, which names a folder that is not a saved CSRM before anything tries to load it.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.base.records import as_messages
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem
from csrm.base.taxonomy import RiskCategory, RiskTaxonomy
from csrm.base.text import check_strings

ITEM_FIELDS = ("id", "config", "prompt", "messages", "response")


@functools.lru_cache(maxsize=1)
def default_taxonomy() -> RiskTaxonomy:
    return RiskTaxonomy.default()


def taxonomy_from_dict(data: Mapping[str, Any] | None) -> RiskTaxonomy | None:
    """The taxonomy a saved model carries in its ``config.json`` (``None`` if it has none)."""
    if not data or not data.get("categories"):
        return None
    return RiskTaxonomy(str(data.get("name", "model")), tuple(
        RiskCategory(c["name"], c["definition"], bool(c.get("allowable", True))) for c in data["categories"]))


def model_taxonomy(model: str | Path) -> RiskTaxonomy:
    """The taxonomy of a saved CSRM folder, read from its ``config.json`` without loading weights; the
    default taxonomy for hub ids and models without one."""
    config = Path(model) / "config.json"
    if config.is_file():
        try:
            found = taxonomy_from_dict(json.loads(config.read_text(encoding="utf-8")).get("taxonomy"))
        except (OSError, ValueError, KeyError, TypeError):
            found = None
        if found is not None:
            return found
    return default_taxonomy()


# -- configs -------------------------------------------------------------------------------------------
def check_config(config: SafetyConfig, taxonomy: RiskTaxonomy | None = None, *, path: str | None = None,
                 line: int | None = None, field: str = "config") -> SafetyConfig:
    """A :class:`SafetyConfig` built in code: its categories known and allowable, its text valid Unicode."""
    taxonomy = taxonomy or default_taxonomy()
    where = {"path": path, "line": line}
    check_strings(config.text, f"{field}.text", **where)
    check_strings(config.name, f"{field}.name", **where)
    for category in config.allow or {}:
        if category not in taxonomy:
            raise InputError(f"unknown category {category!r}; known: {', '.join(taxonomy.names)}",
                             field=f"{field}.allow.{category}", **where)
        if not taxonomy[category].allowable:
            raise InputError(f"category {category!r} can never be allowed", field=f"{field}.allow.{category}",
                             **where)
    return config


def parse_config(raw: Any, taxonomy: RiskTaxonomy | None = None, *, path: str | None = None,
                 line: int | None = None, field: str = "config") -> str | SafetyConfig:
    """A config as given in JSON: a non-empty string, or a mapping checked against ``taxonomy``."""
    where = {"path": path, "line": line}
    check_strings(raw, field, **where)
    if isinstance(raw, str):
        if not raw.strip():
            raise InputError("empty", field=field, **where)
        return raw
    if isinstance(raw, SafetyConfig):
        return check_config(raw, taxonomy, field=field, **where)
    if not isinstance(raw, Mapping):
        raise InputError(f"expected str or mapping, got {type(raw).__name__}", field=field, **where)
    try:
        return SafetyConfig.from_dict(raw, taxonomy=taxonomy or default_taxonomy(), **where)
    except InputError as err:
        raise InputError(err.reason, field=f"{field}.{err.field or 'text'}", **where) from None


def render_config(config: str | SafetyConfig, taxonomy: RiskTaxonomy | None = None) -> str:
    return config if isinstance(config, str) else config.render(taxonomy or default_taxonomy())


# -- items ---------------------------------------------------------------------------------------------
@dataclass
class ParsedItem:
    """One validated input object: its id (``None`` where ids are optional), the item to score (config text
    rendered) and the config as given (a string or a :class:`SafetyConfig`, for threshold lookup)."""

    id: str | None
    item: ScoreItem
    config: str | SafetyConfig


def check_fields(obj: Mapping[str, Any], allowed: tuple[str, ...] = ITEM_FIELDS, *, path: str | None = None,
                 line: int | None = None) -> None:
    """Unknown keys fail naming the key (with a close match for typos)."""
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InputError(f"unknown field; {hint}expected {', '.join(allowed)}", path=path, line=line,
                             field=str(key))


def parse_item(obj: Any, taxonomy: RiskTaxonomy | None = None, *, path: str | None = None,
               line: int | None = None, require_id: bool = True) -> ParsedItem:
    """Validate one ``{id, config, prompt | messages, response}`` object (module doc)."""
    from csrm.base.io import require

    where = {"path": path, "line": line}
    if not isinstance(obj, Mapping):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}", field="(line)", **where)
    check_fields(obj, **where)
    item_id = None
    if require_id or obj.get("id") is not None:
        item_id = str(require(obj, "id", (str, int), **where))
        check_strings(item_id, "id", **where)
    config = parse_config(require(obj, "config", (str, dict), **where), taxonomy, **where)
    if ("prompt" in obj) == ("messages" in obj):
        raise InputError("give exactly one of 'prompt' or 'messages'", field="prompt", **where)
    if "prompt" in obj:
        prompt = require(obj, "prompt", str, **where)
        check_strings(prompt, "prompt", **where)
        messages = as_messages(prompt)
    else:
        raw = require(obj, "messages", list, **where)
        try:
            messages = as_messages(raw)
        except (ValueError, TypeError, AttributeError) as err:
            raise InputError(str(err), field="messages", **where) from None
        check_strings(messages, "messages", **where)
    response = obj.get("response")
    if response is not None and not isinstance(response, str):
        raise InputError(f"expected str or null, got {type(response).__name__}", field="response", **where)
    check_strings(response, "response", **where)
    text = render_config(config, taxonomy)
    return ParsedItem(item_id, ScoreItem(text, messages, response, item_id=item_id or ""), config)


def check_score_item(item: ScoreItem, index: int | None = None) -> None:
    """A :class:`ScoreItem` built in code: valid Unicode throughout (the field names the item's index)."""
    prefix = "" if index is None else f"items.{index}."
    check_strings(item.config, prefix + "config")
    check_strings(item.messages, prefix + "messages")
    check_strings(item.response, prefix + "response")


# -- model folders ---------------------------------------------------------------------------------------
CSRM_MODEL_TYPES = ("csrm", "csrm_clause", "csrm_rule", "csrm_policy")  # cross-encoder, clause, rule, policy judge


def check_model_dir(model: str | Path, *, what: str = "model") -> None:
    """A local path must be a saved CSRM folder (``config.json`` with ``model_type: csrm``); anything that
    is not a local path (a hub id) is left to the loader."""
    path = Path(model)
    if not path.exists():
        if str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
            raise InputError(f"{what} folder not found", path=str(model))
        return
    if not path.is_dir():
        raise InputError(f"not a saved CSRM folder ({what} must be a folder)", path=str(model))
    config = path / "config.json"
    if not config.is_file():
        raise InputError("not a saved CSRM folder (no config.json); train one with 'csrm train'",
                         path=str(model))
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise InputError("config.json is not a JSON object", path=str(config)) from None
    if model_type not in CSRM_MODEL_TYPES:
        raise InputError(f"not a saved CSRM folder (model_type {model_type!r}, expected 'csrm'); train one "
                         "with 'csrm train'", path=str(model))
