"""The request and response models of ``csrm serve`` and how a request body becomes validated items.

Validation is :mod:`csrm.base.validation`, the path the library and ``csrm score`` use; a pydantic schema
error is 422 and a semantic one 400, each ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`` with ``loc``
naming the field (e.g. ``["body", "items", 2, "prompt"]``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.text import find_lone_surrogate, surrogate_message
from csrm.base.validation import parse_item

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


def result_json(result: ScoreResult) -> dict[str, Any]:
    return {"p_comply": result.p_comply, "p_violation": result.p_violation, "reward": result.reward,
            "complies": result.complies, "threshold": result.threshold}

