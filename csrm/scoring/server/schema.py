"""The request and response models of ``csrm serve`` and how a request body becomes validated items.

Validation is :mod:`csrm.base.validation`, the path the library and ``csrm score`` use; a pydantic schema
error is 422 and a semantic one 400, each ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`` with ``loc``
naming the field (e.g. ``["body", "items", 2, "prompt"]``).
"""

from __future__ import annotations

import array
import itertools
import re
from typing import Annotated, Any, Literal

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.text import find_lone_surrogate, surrogate_message
from csrm.base.validation import parse_item
from csrm.scoring.openrlhf import QueryError, get_reward_body

NonEmpty = Annotated[str, Field(min_length=1)]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    text: str = ""
    allow: dict[str, int | bool] | list[str] | None = None
    deny: list[str] | None = None


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: NonEmpty | ConfigIn
    prompt: NonEmpty | None = None
    messages: list[MessageIn] | None = None


class ItemIn(Conversation):
    id: str | int | None = None
    response: str | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemIn] = Field(min_length=1)


class RankRequest(Conversation):
    responses: list[str] = Field(min_length=1)


class GetRewardRequest(BaseModel):
    """OpenRLHF's body; other keys its versions and forks send (``labels``, ``metadata``, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")
    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None


def bad_field(status: int, loc: list[str | int], msg: str) -> HTTPException:
    return HTTPException(status, detail=[{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])


def field_loc(field: str | None) -> list[str | int]:
    """``"messages.1.content"`` -> ``["messages", 1, "content"]`` (the dotted field of an InputError)."""
    if not field:
        return []
    return [int(part) if part.isdigit() else part for part in field.split(".")]


def to_item(entry: Conversation, response: str | None, loc: list[str | int], taxonomy
            ) -> tuple[ScoreItem, str | SafetyConfig]:
    """Validated :class:`ScoreItem` and the config as given (:func:`csrm.base.validation.parse_item`); 400
    naming the field otherwise."""
    if (entry.prompt is None) == (entry.messages is None):
        raise bad_field(400, [*loc, "prompt"], "give exactly one of 'prompt' or 'messages'")
    if entry.messages is not None and not entry.messages:
        raise bad_field(400, [*loc, "messages"], "empty conversation")
    obj: dict[str, Any] = {"config": entry.config if isinstance(entry.config, str)
                           else entry.config.model_dump(exclude_none=True)}
    if entry.prompt is not None:
        obj["prompt"] = entry.prompt
    else:
        obj["messages"] = [m.model_dump() for m in entry.messages or []]
    if response is not None:
        obj["response"] = response
    item_id = getattr(entry, "id", None)
    if item_id is not None:
        obj["id"] = item_id
    try:
        parsed = parse_item(obj, taxonomy, require_id=False)
    except InputError as err:
        raise bad_field(400, [*loc, *field_loc(err.field)], err.reason) from None
    return parsed.item, parsed.config


async def schema_error(_request, exc: RequestValidationError) -> JSONResponse:
    """422 for schema errors, without echoing the input (FastAPI's default does: a 2 MB field would come back,
    and a lone surrogate in it made the error response itself fail with 500). Text that is not valid Unicode
    is 400 with the message the library and ``csrm score`` give (:mod:`csrm.base.text`)."""
    detail, status = [], 422
    for error in exc.errors():
        entry = {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": error.get("type", "")}
        value = error.get("input")
        index = find_lone_surrogate(value) if isinstance(value, str) else None
        if error.get("type") == "string_unicode" and index is not None:
            entry.update(msg=surrogate_message(value, index), type="value_error")
            status = 400
        detail.append(entry)
    return JSONResponse({"detail": detail}, status_code=status)


def reward_items(request: GetRewardRequest, default_config: str | dict[str, Any] | None, taxonomy
                 ) -> list[tuple[ScoreItem, str | SafetyConfig]]:
    """Validated items of a ``/get_reward`` body and their configs: each query is split by
    :func:`csrm.scoring.openrlhf.get_reward_body` (config from its leading system turns only) and then checked
    by :func:`csrm.base.validation.parse_item` like a ``/score`` item; 400 naming ``["body", "query", i]``."""
    try:
        parsed = get_reward_body(request.query, request.prompts, default_config)
    except QueryError as err:
        raise bad_field(400, list(err.loc), err.reason) from None
    out = []
    for i, (config, messages, response) in enumerate(parsed):
        try:
            item = parse_item({"config": config, "messages": messages, "response": response}, taxonomy,
                              require_id=False)
        except InputError as err:
            raise bad_field(400, ["query", i], f"{err.field}: {err.reason}" if err.field else err.reason) from None
        out.append((item.item, item.config))
    return out


async def structured_http_error(_request, exc: StarletteHTTPException) -> JSONResponse:
    """Every HTTP error in the one shape ``{"detail": [{"loc", "msg", "type"}]}``: FastAPI's own (a body it
    cannot parse, an unknown path or method) come with a plain-string detail."""
    detail = exc.detail
    if not isinstance(detail, list):
        loc = ["path"] if exc.status_code in (404, 405) else ["body"]
        detail = [{"loc": loc, "msg": str(detail), "type": "http_error"}]
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def result_json(result: ScoreResult) -> dict[str, Any]:
    return result.as_json()



MAX_JSON_DEPTH = 32  # the deepest valid body (/score's items.N.config.allow.X) is 5 levels
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included
_OTHER_BYTES = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # read as signed bytes: +1 / -1


def json_body_error(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """(message, type) when a JSON body is not valid UTF-8 or nests deeper than ``max_depth``, else ``None``.

    Checked on the raw bytes before FastAPI parses them: its own answer for both is a 400 with a plain-string
    detail and no ``loc``, and Python's parser raises RecursionError on deep nesting instead of refusing it.
    The depth is counted in C (regex, ``bytes.translate``, ``itertools.accumulate``): about 0.1 s for a 2 MB
    body of brackets, without a Python loop per byte."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        return (f"body is not valid UTF-8: byte 0x{body[err.start]:02x} at offset {err.start} ({err.reason}); "
                "send UTF-8 JSON", "invalid_utf8")
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return None
    steps = array.array("b", _JSON_STRING.sub(b'""', body).translate(None, _OTHER_BYTES).translate(_DEPTH_STEP))
    depth = max(itertools.accumulate(steps), default=0)
    if depth > max_depth:
        return f"JSON nested {depth} levels deep; at most {max_depth}", "too_deep"
    return None
