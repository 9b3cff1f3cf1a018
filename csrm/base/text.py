"""Text hygiene before tokenization: one rule for lone surrogates and one character cap, used by the library,
``csrm score`` and ``csrm serve`` alike.

**Lone surrogates are rejected, never repaired.** JSON can spell ``"\\ud800"`` and Python strings can hold it,
but it is not a Unicode character: tokenizers raise on it and UTF-8 writers cannot write it. Replacing it
with U+FFFD would score a text the client did not send, so every surface stops with an error naming the
field (:func:`find_lone_surrogate`, :func:`check_strings`).

**The character cap** bounds the work and memory per item *before* tokenization. A 20 MB response used to be
tokenized whole (4M tokens, seconds and gigabytes) only for the formatter to keep its first few hundred
tokens. :func:`cap_text` keeps the first and last ``cap`` characters of a longer field, joined by
:data:`ELISION`; :func:`char_cap` derives ``cap`` from the model's ``max_length`` as ``max_length *
CHARS_PER_TOKEN``. The formatter keeps only a prefix of the response and the config and only the newest tail
of the conversation (:mod:`csrm.model.formatting`), so as long as the kept characters hold at least ``max_length``
tokens (true unless the text averages more than 32 characters per token, e.g. runs of 100-character unknown
"words") a capped item encodes to exactly the ids of the uncapped one. :func:`cap_messages` also drops the
oldest turns beyond ``2 * cap`` characters in all, so a conversation of a million short turns is bounded too.
The model rewrite (long content in chunks) can call :func:`cap_text` / :func:`cap_item` with its own cap.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from csrm.base.errors import InputError

CHARS_PER_TOKEN = 32  # far above real averages (~4 for English): the cap never bites on text the model keeps
ELISION = " \u2026 "


def char_cap(max_length: int) -> int:
    """Characters kept at each end of an over-long field for a model reading ``max_length`` tokens."""
    return max(int(max_length), 1) * CHARS_PER_TOKEN


def cap_text(text: str, cap: int) -> str:
    """``text`` if it has at most ``2 * cap`` characters, else its first and last ``cap`` joined by
    :data:`ELISION` (deterministic, so a capped config still shares its prefix across responses)."""
    if cap < 1 or len(text) <= 2 * cap:
        return text
    return text[:cap] + ELISION + text[-cap:]


def cap_messages(messages: list[dict[str, str]], cap: int) -> list[dict[str, str]]:
    """Each turn capped by :func:`cap_text`, and only the newest turns that fit in ``2 * cap`` characters in
    all (at least the last one): the formatter drops the oldest tokens first anyway."""
    kept: list[dict[str, str]] = []
    total = 0
    for message in reversed(messages):
        content = cap_text(message["content"], cap)
        if kept and total + len(content) > 2 * cap:
            break
        total += len(content)
        kept.append(message if content is message["content"] else {**message, "content": content})
    kept.reverse()
    return kept


def cap_item(item: Any, cap: int) -> Any:
    """A :class:`csrm.base.score_types.ScoreItem` with config, turns and response capped (the same object when
    nothing is over the cap)."""
    config = cap_text(item.config, cap)
    messages = cap_messages(item.messages, cap)
    response = None if item.response is None else cap_text(item.response, cap)
    if config is item.config and response is item.response and len(messages) == len(item.messages) and all(
            a is b for a, b in zip(messages, item.messages, strict=True)):
        return item
    return dataclasses.replace(item, config=config, messages=messages, response=response)


def find_lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate (U+D800-U+DFFF) in ``text``, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def surrogate_message(text: str, index: int) -> str:
    return (f"lone surrogate U+{ord(text[index]):04X} at character {index}: not valid Unicode text "
            "(encode the real character, or drop it)")


def check_strings(value: Any, field: str, *, path: str | None = None, line: int | None = None) -> None:
    """Raise :class:`InputError` naming ``field`` (dotted, e.g. ``messages.1.content``) if any string inside
    ``value`` (dict keys included) holds a lone surrogate."""
    if isinstance(value, str):
        index = find_lone_surrogate(value)
        if index is not None:
            raise InputError(surrogate_message(value, index), path=path, line=line, field=field)
    elif isinstance(value, dict):
        for key, inner in value.items():
            name = f"{field}.{key}" if field else str(key)
            check_strings(key, name, path=path, line=line)
            check_strings(inner, name, path=path, line=line)
    elif isinstance(value, (list, tuple)):
        for i, inner in enumerate(value):
            check_strings(inner, f"{field}.{i}" if field else str(i), path=path, line=line)


WINDOW_OVERLAP_CHARS = 80  # characters shared by consecutive windows, so a phrase cut by one is whole in the next


def windows(text: str, max_chars: int, overlap: int = WINDOW_OVERLAP_CHARS) -> list[str]:
    """``text`` cut into windows of at most ``max_chars`` at word boundaries, consecutive windows overlapping
    by about ``overlap`` characters; every character is in some window."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + max_chars)
        if end < len(text):
            space = text.rfind(" ", start + max_chars // 2, end)
            end = space if space > start else end
        out.append(text[start:end].strip())
        if end >= len(text):
            break
        back = text.rfind(" ", max(start + 1, end - overlap), end)
        start = back + 1 if back > start else end
    return [w for w in out if w]


# a sentence ends at ".", "!" or "?" (a closing quote or bracket may follow) before a capital or a digit:
# "... Guardian. If a guest ...", not "U.S. law" or "lip sync vs. individual numbers"
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
MIN_REPEAT_CHARS = 20  # shorter pieces ("Yes.", "Step 1.", the "Dr." of "Dr. Who") may repeat: they are kept
_PIECE_END = re.compile(r"((?<=[.!?])\s+|\s*\n\s*)")  # any sentence or line end: repeats are whole pieces


def distinct_sentences(text: str) -> str:
    """``text`` without the sentences (or lines) of at least :data:`MIN_REPEAT_CHARS` characters that repeat an
    earlier one word for word, case and spacing aside; everything else, separators included, is kept as it was.

    A judge that reads a turn in windows reads the same sentence again in every copy, and a sentence repeated
    three times in one window reads to a cross-encoder trained on short turns like a broken reply: a benign
    115-character answer repeated to 20,000 characters moved two rule judges' P(complies) by 0.09 and 0.18
    (issue 28's length test), through a tone rule. A verbatim repeat holds nothing new to judge against a
    rule; rules about length and repetition are counted by code on the whole turn, not read from windows."""
    parts = _PIECE_END.split(text)  # sentence, separator, sentence, ...
    seen: set[str] = set()
    kept = []
    for i in range(0, len(parts), 2):
        key = " ".join(parts[i].lower().split())
        if key in seen and len(key) >= MIN_REPEAT_CHARS:
            continue
        seen.add(key)
        kept.append(parts[i] + (parts[i + 1] if i + 1 < len(parts) else ""))
    return "".join(kept).strip() if len(kept) < (len(parts) + 1) // 2 else text
