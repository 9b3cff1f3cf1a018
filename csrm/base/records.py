"""Record types that flow through the pipeline, and their flat row form for `datasets`/JSONL.

- :class:`SourceRecord`: labelled content from a source, before any config: a conversation, a response (or
  ``None`` for a request to screen), its risk categories and severity.
- :class:`Example`: a source record under one safety config, with its compliance label
  (1 = complies, 0 = violates). This is the pointwise training/eval tuple.
- :class:`PreferencePair`: two responses to one conversation under one config, the chosen one with the lower
  error score (``csrm.base.compliance``); ``margin`` is the error gap. A side of ``None`` means "the request
  answered in full" (request screening), so request-level sources yield pairs too.

Conversations are lists of ``{"role": "user"|"assistant"|"system", "content": str}`` ending with a user turn.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]
ROLES = ("system", "user", "assistant")


def stable_id(*parts: Any, length: int = 16) -> str:
    """Deterministic hex id from JSON-serialisable parts."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:length]


def as_messages(prompt_or_messages: str | list[Message]) -> list[Message]:
    """Accept a plain prompt or a conversation; return a conversation (a list of role/content dicts)."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    messages = [dict(m) for m in prompt_or_messages]
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] needs a role in {ROLES} and a string content")
    return messages


def last_user_turn(messages: list[Message]) -> str:
    for m in reversed(messages):
        if m["role"] == "user":
            return m["content"]
    return ""


@dataclass
class SourceRecord:
    """Labelled content from one source (no config yet)."""

    messages: list[Message]
    response: str | None
    categories: tuple[str, ...]
    severity: int
    source: str
    is_refusal: bool = False
    helpful: bool = True
    record_id: str = ""
    prompt_id: str = ""

    def __post_init__(self) -> None:
        self.categories = tuple(self.categories)
        if not self.categories:
            self.severity = 0
        if not self.prompt_id:
            self.prompt_id = stable_id(self.messages)
        if not self.record_id:
            self.record_id = stable_id(self.source, self.messages, self.response)

    @property
    def prompt(self) -> str:
        return last_user_turn(self.messages)


@dataclass
class Example:
    """One (config, conversation, response, categories, severity, label) tuple."""

    config_id: str
    config_text: str
    config_policy: str  # JSON of the structured allow map, "" for free-text configs
    mode: str  # how the config was made: exact, superset, none, drop_one, severity_threshold, source
    messages: list[Message]
    response: str | None
    categories: list[str]
    severity: int
    label: int  # 1 = complies, 0 = violates
    error: float
    source: str
    is_refusal: bool = False
    prompt_id: str = ""
    example_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.example_id:
            self.example_id = stable_id(self.config_id, self.messages, self.response)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["meta"] = json.dumps(self.meta, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        row = dict(row)
        meta = row.get("meta") or "{}"
        row["meta"] = json.loads(meta) if isinstance(meta, str) else dict(meta)
        return cls(**row)


@dataclass
class PreferencePair:
    """Chosen/rejected responses to one conversation under one config (chosen has the lower error)."""

    config_id: str
    config_text: str
    messages: list[Message]
    chosen: str | None
    rejected: str | None
    chosen_error: float
    rejected_error: float
    margin: float
    source: str
    prompt_id: str = ""
    pair_id: str = ""

    def __post_init__(self) -> None:
        if self.chosen_error >= self.rejected_error:
            raise ValueError("chosen must have the lower error")
        if not self.pair_id:
            self.pair_id = stable_id(self.config_id, self.messages, self.chosen, self.rejected)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PreferencePair:
        return cls(**dict(row))
