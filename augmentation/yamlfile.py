"""YAML loading that remembers where each key is, so errors can name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from csrm.base.errors import InputError
from csrm.base.io import load_yaml, read_text

KeyPath = tuple[str | int, ...]


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


def fail(message: str, *, path: str | Path | None, lines: dict[KeyPath, int], key: tuple[str | int, ...]) -> InputError:
    """An :class:`InputError` naming file, line and dotted field for ``key``."""
    return InputError(message, path=str(path) if path is not None else None, line=line_of(lines, *key),
                      field=".".join(str(k) for k in key) or None)
