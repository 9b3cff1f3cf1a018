"""The one config system: dataclasses with help text, read from YAML plus command-line overrides.

Every command that takes a config (``csrm augment``, ``train``, ``run``, ``align``) reads it the same way:

- **fields** are dataclass fields whose ``metadata["help"]`` is the help text; a field whose type is another
  dataclass is a section (``policy.name_or_path``), a list of dataclasses is indexed (``sources.0.limit``);
- **overrides** after the YAML file take any of ``key=value``, ``--key value`` and ``--key=value`` (a bare
  ``--flag`` means ``flag=true``), with dotted keys for nested fields;
- **one coercion rule**: an override's value is read as YAML (``3``, ``1e-5``, ``true``, ``[a, b]``), an
  empty value is ``null``, and text YAML cannot parse stays text; then the field's type decides: ``null`` in
  a text field is ``""``, an integer in a float field is a float, ``1e-5`` (a string to YAML 1.1) in a float
  field is a float;
- **errors** are :class:`~csrm.base.errors.InputError`\\ s naming the file, the line (from the YAML's own
  positions) and the dotted field; overrides name ``command line``;
- ``--help`` lists every field with its type, default and help; ``--print-config`` prints the resolved config
  as YAML and exits.

Why not jsonargparse or OmegaConf: both would add a dependency for what ~200 lines do here, and neither keeps the
YAML line of a bad key in its error; HfArgumentParser covers flat configs only (``csrm train``'s
``TrainingArguments`` keeps its own field checks in :mod:`csrm.training.config`, fed by this module's
override parser).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from csrm.base.errors import InputError
from csrm.base.io import load_yaml, read_text

KeyPath = tuple[str | int, ...]
COMMAND_LINE = "command line"
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


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
def normalize_overrides(args: Sequence[str]) -> list[str]:
    """``key=value``, ``--key value``, ``--key=value`` and a bare ``--flag`` (= ``flag=true``) as ``key=value``
    strings; ``-`` in a key becomes ``_`` (``--max-steps`` is ``max_steps``)."""
    out: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            key, sep, value = item[2:].partition("=")
            if not sep:
                following = items[i + 1] if i + 1 < len(items) else None
                if following is not None and not following.startswith("--") and "=" not in following:
                    value, i = following, i + 1
                elif following is not None and not following.startswith("--") and "=" in following:
                    raise InputError(f"{item} needs a value (or write {key}=VALUE)", path=COMMAND_LINE, field=key)
                else:
                    value = "true"
            item = f"{key.replace('-', '_')}={value}"
        out.append(item)
        i += 1
    return out


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


# -- dataclasses -----------------------------------------------------------------------------------------
def build(cls: type, data: Any, *, path: str | Path | None = None, lines: dict[KeyPath, int] | None = None,
          overridden: frozenset[KeyPath] = frozenset(), prefix: KeyPath = ()) -> Any:
    """An instance of the dataclass ``cls`` from a nested mapping; unknown, missing and mistyped keys raise
    :class:`InputError` naming file, line and dotted field."""
    lines = lines or {}
    where = {"path": path, "lines": lines, "overridden": overridden}
    if not isinstance(data, dict):
        raise fail(f"expected a mapping, got {type(data).__name__}", key=prefix, **where)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            raise fail(f"unknown key {key!r}; expected one of {', '.join(names)}", key=(*prefix, str(key)),
                       **where)
    for f in fields:
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data:
            raise fail("missing", key=(*prefix, f.name), **where)
    kwargs = {name: coerce(value, hints[name], key=(*prefix, name), **where) for name, value in data.items()}
    return cls(**kwargs)


def coerce(value: Any, hint: Any, *, path: str | Path | None = None, lines: dict[KeyPath, int] | None = None,
           overridden: frozenset[KeyPath] = frozenset(), key: KeyPath = ()) -> Any:
    """``value`` checked against (and converted to) the type ``hint``: the one coercion rule (module doc)."""
    where = {"path": path, "lines": lines or {}, "overridden": overridden}
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        if value is None and type(None) in members:
            return None
        errors = []
        for member in (m for m in members if m is not type(None)):
            try:
                return coerce(value, member, key=key, **where)
            except InputError as err:
                errors.append(err)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return build(hint, {} if value is None else value, prefix=key, **where)
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        if isinstance(value, str) and not dataclasses.is_dataclass(inner):
            value = [value]
        if not isinstance(value, list):
            raise fail(f"expected a list, got {type(value).__name__}", key=key, **where)
        return [coerce(v, inner, key=(*key, i), **where) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise fail(f"expected a mapping, got {type(value).__name__}", key=key, **where)
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise fail(f"expected true/false, got {value!r}", key=key, **where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected an integer, got {value!r}", key=key, **where)
        return value
    if hint is float:
        if isinstance(value, str) and _FLOAT.match(value.strip()):  # YAML 1.1 reads 1e-5 (no dot) as text
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"expected a number, got {value!r}", key=key, **where)
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise fail(f"expected a string, got {value!r}", key=key, **where)
        return str(value)
    raise TypeError(f"unsupported config field type {hint!r}")  # pragma: no cover - a programming error


def read(path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The YAML file's mapping (``{}`` without a file) with the overrides applied, and the keyword arguments
    for :func:`build` that locate an error (file and line, or the command line for an overridden key)."""
    data: dict[str, Any] = {}
    lines: dict[KeyPath, int] = {}
    if path is not None:
        data, lines = load_yaml_with_lines(path)
    overridden = apply_overrides(data, overrides)
    return data, {"path": str(path) if path is not None else None, "lines": lines, "overridden": overridden}


def load(cls: type, path: str | Path | None, overrides: Sequence[str] = ()) -> Any:
    """``cls`` from a YAML file (optional) plus overrides; errors name file and line, or the command line."""
    data, where = read(path, overrides)
    return build(cls, data, **where)


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain data (what ``--print-config`` prints, and what a run records)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def dump(config: Any) -> str:
    """The config as YAML, in field order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if m is type(None) else type_name(m) for m in typing.get_args(hint))
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        return f"list[{type_name(inner)}]"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def field_help(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(dotted name, type, help with default)`` for every field, sections expanded (lists as ``name.N.``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint, name = hints[f.name], prefix + f.name
        inner = typing.get_args(hint)[0] if typing.get_origin(hint) is list and typing.get_args(hint) else None
        if dataclasses.is_dataclass(hint):
            out.append((name, "section", f.metadata.get("help", "")))
            out += field_help(hint, name + ".")
            continue
        if inner is not None and dataclasses.is_dataclass(inner):
            out.append((name, f"list of {inner.__name__}", f.metadata.get("help", "")))
            out += field_help(inner, name + ".N.")
            continue
        if f.default is not dataclasses.MISSING:
            default = f" (default: {f.default!r})"
        elif f.default_factory is not dataclasses.MISSING:
            default = f" (default: {f.default_factory()!r})"
        else:
            default = " (required)"
        out.append((name, type_name(hint), f.metadata.get("help", "") + default))
    return out


def help_text(cls: type) -> str:
    """The ``--help`` epilog listing every field."""
    rows = field_help(cls)
    width = min(40, max((len(n) for n, _, _ in rows), default=0))
    lines = ["fields (override as key=value, --key value or --key=value; dotted keys reach into sections):"]
    lines += [f"  {name:<{width}}  {kind}: {text}" for name, kind, text in rows]
    return "\n".join(lines)


def command_parser(prog: str, description: str, fields: str, *, config_help: str,
                   config_optional: bool = False) -> argparse.ArgumentParser:
    """The parser every config-driven command shares: the YAML file, ``--print-config``, and ``fields`` (see
    :func:`help_text`) in ``--help``. Overrides are whatever the parser does not know (:func:`parse_command`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=fields, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{prog} {'[CONFIG.yaml]' if config_optional else 'CONFIG.yaml'} [key=value | --key value | "
              "--key=value ...] [--print-config]")
    parser.add_argument("config", nargs="?" if config_optional else None, help=config_help)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return parser


def add_print_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--print-config`` for a command whose options are flags (``calibrate``, ``score``, ``serve``, ``eval``,
    ``export``): with :func:`print_options`, the resolved options print as YAML, as for the config commands."""
    parser.add_argument("--print-config", action="store_true", help="print the resolved options as YAML and exit")
    return parser


def print_options(args: argparse.Namespace) -> None:
    """The parsed options (``--print-config`` itself left out) as YAML on stdout."""
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "print_config"}
    print(yaml.safe_dump(options, sort_keys=False, allow_unicode=True), end="")


def parse_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the parser's own options, the overrides as ``key=value`` strings). The config file comes first."""
    args, rest = parser.parse_known_args(list(argv))
    return args, normalize_overrides(rest)
