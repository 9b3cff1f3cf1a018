"""Reading a config's sources with positions: YAML with the line of every key, and command-line overrides.

The parsing half of :mod:`csrm.base.config` (which re-exports these names): no dataclasses here, only the
mapping a YAML file and ``key=value`` / ``--key value`` / ``--key=value`` overrides make, with the YAML's own
line numbers, so that :func:`csrm.base.config.build` can name the file, line and field of a bad value.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import yaml

from csrm.base.errors import InputError
from csrm.base.io import load_yaml, read_text

KeyPath = tuple[str | int, ...]
COMMAND_LINE = "command line"
_KEY_VALUE = re.compile(r"^[A-Za-z_][\w.-]*=")  # key=value, not a positional path like runs/a=b


# -- YAML with positions -------------------------------------------------------------------------------
def load_yaml_with_lines(path: str | Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Load a YAML mapping (``csrm.base.io.load_yaml`` rules) plus ``{key path: 1-based line}`` for every key/item."""
    data = load_yaml(path)
    lines: dict[KeyPath, int] = {}
    try:
        node = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    except yaml.YAMLError:  # pragma: no cover - load_yaml already raised for bad syntax
        return data, lines
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            _walk(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = (*prefix, index)
            lines[key] = item.start_mark.line + 1
            _walk(item, key, lines)


def line_of(lines: dict[KeyPath, int], *key: str | int) -> int | None:
    """Line of the longest known prefix of ``key`` (None when unknown)."""
    for end in range(len(key), 0, -1):
        if key[:end] in lines:
            return lines[key[:end]]
    return None


def fail(message: str, *, path: str | Path | None, lines: dict[KeyPath, int], key: KeyPath,
         overridden: frozenset[KeyPath] = frozenset()) -> InputError:
    """An :class:`InputError` naming file, line and dotted field for ``key``; a key (or a section of it) set
    by an override names the command line instead."""
    field = ".".join(str(k) for k in key) or None
    if any(key[:end] in overridden for end in range(len(key), 0, -1)):
        return InputError(message, path=COMMAND_LINE, field=field)
    return InputError(message, path=str(path) if path is not None else None, line=line_of(lines, *key),
                      field=field)


# -- the command line ------------------------------------------------------------------------------------
def split_command_line(args: Sequence[str], flags: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """(positionals, overrides as ``key=value`` strings) of a command line: ``key=value``, ``--key value``,
    ``--key=value`` and a bare ``--flag`` (= ``flag=true``) are overrides, ``-`` in a key becomes ``_``
    (``--max-steps`` is ``max_steps``); any other word is a positional.

    ``flags`` names boolean fields: ``--no-X`` for such an ``X`` is ``X=false``, and a bare ``--X`` takes the
    next word as its value only when that is ``true`` or ``false``, so ``--no-progress MODEL`` leaves MODEL
    positional, as argparse did."""
    positionals: list[str] = []
    out: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--"):
            (out if _KEY_VALUE.match(item) else positionals).append(item)
            i += 1
            continue
        key, sep, value = item[2:].partition("=")
        key = key.replace("-", "_")
        if not sep and key.startswith("no_") and key[3:] in flags and key not in flags:
            key, value, sep = key[3:], "false", "="
        if not sep:
            following = items[i + 1] if i + 1 < len(items) else None
            if key in flags:
                if following is not None and isinstance(parse_value(following), bool):
                    value, i = following, i + 1
                else:
                    value = "true"
            elif following is not None and not following.startswith("--") and "=" not in following:
                value, i = following, i + 1
            elif following is not None and not following.startswith("--") and "=" in following:
                raise InputError(f"{item} needs a value (or write {key}=VALUE)", path=COMMAND_LINE, field=key)
            else:
                value = "true"
        out.append(f"{key}={value}")
        i += 1
    return positionals, out


def normalize_overrides(args: Sequence[str]) -> list[str]:
    """The overrides of :func:`split_command_line` as ``key=value`` strings; a stray positional is kept (and
    :func:`parse_overrides` rejects it as not ``key=value``)."""
    positionals, overrides = split_command_line(args)
    return [*overrides, *positionals]


def parse_value(raw: str) -> Any:
    """One command-line value: YAML, empty = ``None``, unparsable text = the text."""
    if not raw.strip():
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(overrides: Sequence[str]) -> list[tuple[KeyPath, Any]]:
    """``a.b.0.c=value`` (or ``--a.b.0.c value``) -> ``(("a", "b", 0, "c"), parsed value)``."""
    parsed = []
    for item in normalize_overrides(overrides):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise InputError(f"override {item!r} is not key=value (nor --key value)", path=COMMAND_LINE)
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
        if not key or "" in parts:
            raise InputError(f"override {item!r} has an empty key", path=COMMAND_LINE)
        parsed.append((tuple(parts), parse_value(raw)))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> frozenset[KeyPath]:
    """Set each override in the nested ``data`` (in place); returns the key paths set. Missing sections are
    created (the builder then rejects unknown names); list items must exist."""
    done = []
    for key, value in parse_overrides(overrides):
        node: Any = data
        for depth, part in enumerate(key[:-1]):
            if isinstance(node, dict) and node.get(part) is None and not isinstance(part, int):
                node[part] = {}
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                raise InputError("no such setting to override", path=COMMAND_LINE,
                                 field=".".join(map(str, key[: depth + 1]))) from None
        last = key[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last >= len(node):
                raise InputError("no such list item to override", path=COMMAND_LINE, field=".".join(map(str, key)))
        elif not isinstance(node, dict):
            raise InputError("is not a section", path=COMMAND_LINE, field=".".join(map(str, key[:-1])))
        node[last] = value
        done.append(key)
    return frozenset(done)
