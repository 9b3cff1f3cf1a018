"""Split a safety config into clauses, and content into judged segments, so that nothing is ever truncated.

A **clause** is the smallest piece of a policy that says one thing: a numbered rule, a bullet, a table row, a
``key: value`` line or one sentence of prose. A list item inherits the line that introduces it (the last
line ending in ``:``), because its meaning depends on it: "- Violence" says nothing alone, but under
"Prohibited content:" it prohibits and under "You may relax safety rules for:" it permits. Clauses longer than
``max_chars`` are cut into overlapping windows at word boundaries, so a 25,000-character policy becomes a few
hundred short inputs that fit any encoder, and every character of it is read.

A **segment** is a window of judged content (a request, a response, an earlier agent turn) cut the same way.

Both splits are pure functions of the text (no tokenizer), so a config is split once and its clauses can be
encoded once for any number of responses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from csrm.base.text import SENTENCE_END, WINDOW_OVERLAP_CHARS, windows  # noqa: F401 - the last two re-exported

MAX_CLAUSE_CHARS = 400
MAX_SEGMENT_CHARS = 600

# a list marker needs a space after it ("3.5 percent" and "U.S. law" are text, not items); a table row a pipe
_ITEM = re.compile(r"^\s*(?:(?:[-*•·]|\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+|\|\s*)")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]+\|?\s*$")
_SENTENCE_END = SENTENCE_END  # the remote copy (remote/modeling_csrm_clause.py) spells it out
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Clause:
    """One clause: ``text`` is what the model reads (with its lead-in line), ``body`` the clause alone."""

    text: str
    body: str
    index: int


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def _table_cells(line: str) -> str:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return ": ".join(c for c in cells if c)


def split_clauses(config: str, *, max_chars: int = MAX_CLAUSE_CHARS) -> list[Clause]:
    """The clauses of a config (module doc). Never empty for a non-empty config."""
    clauses: list[str] = []
    bodies: list[str] = []
    header = ""
    paragraph: list[str] = []

    def flush() -> None:
        for sentence in _sentences(" ".join(paragraph)):
            clauses.append(sentence)
            bodies.append(sentence)
        paragraph.clear()

    for raw in config.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("|") and _TABLE_RULE.match(line):
            continue
        is_item = (bool(_ITEM.match(raw)) and len(_ITEM.sub("", raw, count=1).strip()) > 0) or (
            bool(header) and raw[:1].isspace())  # an indented line under a lead-in (key: value blocks)
        if is_item:
            flush()
            body = _table_cells(line) if line.startswith("|") else _ITEM.sub("", raw, count=1).strip()
            body = _SPACES.sub(" ", body)
            clauses.append(f"{header} {body}".strip() if header else body)
            bodies.append(body)
            if body.endswith(":"):
                header = body
            continue
        if line.endswith(":"):
            flush()
            header = line
            clauses.append(line)
            bodies.append(line)
            continue
        header = ""
        paragraph.append(line)
    flush()
    out: list[Clause] = []
    for text, body in zip(clauses, bodies, strict=True):
        for window in windows(text, max_chars):
            out.append(Clause(window, body, len(out)))
    if not out and config.strip():
        out = [Clause(w, w, i) for i, w in enumerate(windows(_SPACES.sub(" ", config), max_chars))]
    return out


def segments(text: str, *, max_chars: int = MAX_SEGMENT_CHARS) -> list[str]:
    """Judged content cut into windows (module doc); an empty text gives one empty segment."""
    return windows(_SPACES.sub(" ", text), max_chars) or [""]
