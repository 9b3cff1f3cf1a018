"""The one config system: dataclasses with help text, read from YAML plus command-line overrides.

Every ``csrm`` command reads its settings the same way: the recipe commands (``augment``, ``train``, ``run``,
``align``) from a YAML file, the model commands (``score``, ``serve``, ``eval``, ``calibrate``, ``export``) from
an optional one (:func:`load_command`), both plus overrides:

- **fields** are dataclass fields whose ``metadata["help"]`` is the help text; a field whose type is another
  dataclass is a section (``policy.name_or_path``), a list of dataclasses is indexed (``sources.0.limit``);
- **overrides** after the YAML file take any of ``key=value``, ``--key value`` and ``--key=value`` (a bare
  ``--flag`` means ``flag=true``), with dotted keys for nested fields; ``-`` in a key is ``_``, so the dashed
  flags of argparse days (``--batch-tokens 512``) still read; for a boolean field ``X`` of a model command,
  ``--no-X`` means ``X=false`` (``--no-progress``, ``--no-bf16``) and a bare ``--X`` never takes the next
  word as its value;
- **one coercion rule**: an override's value is read as YAML (``3``, ``1e-5``, ``true``, ``[a, b]``), an
  empty value is ``null``, and text YAML cannot parse stays text; then the field's type decides: ``null`` in
  a text field is ``""``, an integer in a float field is a float, ``1e-5`` (a string to YAML 1.1) in a float
  field is a float; a ``Literal[...]`` or ``Enum`` field takes one of its values (``SchedulerType | str``
  too: the text must name a member); a field's ``metadata["check"]`` (e.g. :func:`at_least`) then vets the
  value;
- **one way to declare a field**: ``setting(default, help=..., check=...)`` (a class's ``check_fields(values)``
  static method checks across fields, returning ``(field, message)`` of a bad one); a class may add ``RENAMED``
  (old key -> new key: accepted for one release with a deprecation message on stderr) and ``REFUSED`` (key ->
  why it is not offered: the error says so instead of "unknown key");
- **errors** are :class:`~csrm.base.errors.InputError`\\ s naming the file, the line (from the YAML's own
  positions) and the dotted field; overrides name ``command line``;
- ``--help`` lists every field with its type, default and help; ``--print-config`` prints the resolved config
  as YAML and exits.

The model commands name their model positionally (``csrm score MODEL``, ``csrm export MODEL OUTPUT_DIR``): a
positional is simply its field's value, so ``model=M`` works too, and a first positional ending in ``.yaml``
is the optional YAML file.

Why not jsonargparse or OmegaConf: both would add a dependency for what ~200 lines do here, and neither keeps the
YAML line of a bad key in its error; HfArgumentParser covers flat configs only. ``csrm train``'s configs
(:mod:`csrm.model.cross_encoder.args`, a ``TrainingArguments`` subclass, and :mod:`csrm.model.clause.args`)
are built and checked here like every other command's.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from csrm.base.errors import InputError
from csrm.base.overrides import (  # noqa: F401  (re-exported: the one config system's public names)
    COMMAND_LINE,
    KeyPath,
    apply_overrides,
    fail,
    line_of,
    load_yaml_with_lines,
    normalize_overrides,
    parse_overrides,
    parse_value,
    split_command_line,
)

Check = Callable[[Any], str | None]  # a field's metadata["check"]: the error message for a bad value, else None
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


# -- dataclasses -----------------------------------------------------------------------------------------
def build(cls: type, data: Any, *, path: str | Path | None = None, lines: dict[KeyPath, int] | None = None,
          overridden: frozenset[KeyPath] = frozenset(), prefix: KeyPath = (), instantiate: bool = True) -> Any:
    """An instance of the dataclass ``cls`` from a nested mapping; unknown, missing and mistyped keys raise
    :class:`InputError` naming file, line and dotted field. ``instantiate=False`` checks everything but
    returns the checked keyword arguments instead of calling ``cls`` (whose ``__post_init__`` may be costly:
    ``TrainingArguments`` sets up devices), for checking a recipe before any stage runs."""
    lines = lines or {}
    where = {"path": path, "lines": lines, "overridden": overridden}
    if not isinstance(data, dict):
        raise fail(f"expected a mapping, got {type(data).__name__}", key=prefix, **where)
    data = _renamed(cls, data, prefix)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            raise fail(_unknown(cls, str(key), names), key=(*prefix, str(key)), **where)
    for f in fields:
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in data:
            raise fail("missing", key=(*prefix, f.name), **where)
    kwargs = {name: coerce(value, hints[name], key=(*prefix, name), **where) for name, value in data.items()}
    for f in fields:
        check = f.metadata.get("check")
        message = check(kwargs[f.name]) if check is not None and f.name in kwargs else None
        if message:
            raise fail(message, key=(*prefix, f.name), **where)
    across = getattr(cls, "check_fields", None)  # checks across fields: (field, message) of the first bad one
    found = across({**{f.name: f.default for f in fields if f.default is not dataclasses.MISSING}, **kwargs}) \
        if across is not None else None
    if found:
        raise fail(found[1], key=(*prefix, found[0]), **where)
    return cls(**kwargs) if instantiate else kwargs


def _unknown(cls: type, key: str, names: list[str]) -> str:
    """The message for an unknown key: why the class refuses it (its ``REFUSED``), else a close match and the
    known names."""
    refused = getattr(cls, "REFUSED", {})
    if key in refused:
        return f"not supported here: {refused[key]}"
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; expected one of {', '.join(names)}"


def _renamed(cls: type, data: dict[str, Any], prefix: KeyPath) -> dict[str, Any]:
    """``data`` with the keys of ``cls.RENAMED`` (old name -> new name, or (new name, value map) where the
    value changes too, e.g. ``quiet`` -> ``progress`` flips it) under their new names, each with a deprecation
    message on stderr naming old and new. Old names are accepted for one release; giving both is an error."""
    renamed = getattr(cls, "RENAMED", {})
    if not renamed or not set(renamed) & set(data):
        return data
    out = dict(data)
    for old, spec in renamed.items():
        if old not in out:
            continue
        new, convert = (spec, None) if isinstance(spec, str) else spec
        dotted = ".".join(map(str, (*prefix, old)))
        if new in out:
            raise InputError(f"give {new!r} only ({old!r} is its deprecated name)", field=dotted)
        value = out.pop(old)
        out[new] = convert(value) if convert is not None else value
        how = f" ({getattr(convert, '__doc__', None) or 'converted'})" if convert is not None else ""
        sys.stderr.write(f"csrm: deprecated: {dotted!r} is now {'.'.join(map(str, (*prefix, new)))!r}{how}; "
                         "the old name goes in the next release\n")
    return out


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
        enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
        if enums and (isinstance(value, str) or value is False):
            # ``SchedulerType | str``: the text must name a member (YAML 1.1 reads a bare ``no`` as false)
            return coerce("no" if value is False else value, enums[0], key=key, **where)
        errors = []
        for member in (m for m in members if m is not type(None)):
            try:
                return coerce(value, member, key=key, **where)
            except InputError as err:
                errors.append(err)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return build(hint, {} if value is None else value, prefix=key, **where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = [m.value for m in hint]
        if isinstance(value, hint):
            return value
        if value not in choices:
            raise fail(f"expected one of {', '.join(map(str, choices))}, got {value!r}", key=key, **where)
        return value
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise fail(f"expected one of {', '.join(map(str, choices))}, got {value!r}", key=key, **where)
        return value
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
    if isinstance(hint, type):  # a class YAML cannot write (e.g. accelerate's ParallelismConfig): as given
        if isinstance(value, hint):
            return value
        raise fail(f"expected a {hint.__name__}, got {value!r}", key=key, **where)
    raise TypeError(f"unsupported config field type {hint!r}")  # pragma: no cover - a programming error


def setting(default: Any = dataclasses.MISSING, help: str = "", *, check: Check | None = None,
            default_factory: Callable[[], Any] | Any = dataclasses.MISSING) -> Any:
    """The one way to declare a config field: its default (or ``default_factory`` for a list or a section;
    neither: required), its help text and an optional :data:`Check`."""
    metadata = {"help": help, **({"check": check} if check is not None else {})}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def inverted(value: Any) -> Any:
    """inverted"""  # the text of a RENAMED entry's deprecation message
    return not value if isinstance(value, bool) else value


def at_least(low: int) -> Check:
    """A :data:`Check`: ``None`` (unset) or a number >= ``low``."""
    return lambda value: None if value is None or value >= low else f"must be >= {low}, got {value}"


def above(low: float) -> Check:
    """A :data:`Check`: ``None`` (unset) or a number > ``low`` (a learning rate, a time budget)."""
    return lambda value: None if value is None or value > low else f"must be > {low}, got {value}"


def within(low: float, high: float, *, high_open: bool = False) -> Check:
    """A :data:`Check`: ``None`` or a number in ``[low, high]`` (``[low, high)`` with ``high_open``)."""
    def check(value: float | None) -> str | None:
        if value is None or (low <= value < high if high_open else low <= value <= high):
            return None
        return f"must be in [{low}, {high}{')' if high_open else ']'}, got {value}"
    return check


def open_fraction(value: float | None) -> str | None:
    """A :data:`Check`: ``None`` or a number strictly between 0 and 1."""
    return None if value is None or 0.0 < value < 1.0 else f"must be between 0 and 1 (exclusive), got {value}"


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
    if origin is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(hint))) + "}"
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


def parse_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the parser's own options, the overrides as ``key=value`` strings). The config file comes first."""
    args, rest = parser.parse_known_args(list(argv))
    return args, normalize_overrides(rest)


# -- the model commands -------------------------------------------------------------------------------
def boolean_fields(cls: type) -> frozenset[str]:
    """Names of the ``bool`` (or ``bool | None``) fields of ``cls``: the flags of :func:`split_command_line`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)
             if hints[f.name] is bool or set(typing.get_args(hints[f.name])) == {bool, type(None)}}
    renamed = getattr(cls, "RENAMED", {})
    return frozenset(names | {old for old, new in renamed.items() if (new if isinstance(new, str) else new[0]) in names})


def load_command(cls: type, prog: str, description: str, argv: Sequence[str],
                 positionals: Sequence[str] = ("model",)) -> tuple[Any, bool]:
    """(config, whether ``--print-config`` was given) of a model command: ``prog [CONFIG.yaml] POSITIONALS
    [overrides]``. argparse does ``--help`` (fields listed by :func:`help_text`) and ``--print-config``; the
    rest is :func:`split_command_line` with ``cls``'s boolean fields as flags, each positional becoming the
    value of the field of the same place in ``positionals`` (a string as given, never read as YAML)."""
    metavars = " ".join(name.upper() for name in positionals)
    parser = argparse.ArgumentParser(
        prog=prog, description=description, allow_abbrev=False,
        epilog=help_text(cls) + "\n\na boolean field X is set by --X and cleared by --no-X",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{prog} [CONFIG.yaml] {metavars} [key=value | --key value | --key=value ...] [--print-config]")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    args, rest = parser.parse_known_args(list(argv))
    words, overrides = split_command_line(rest, boolean_fields(cls))
    path = words.pop(0) if words and words[0].endswith((".yaml", ".yml")) else None
    if len(words) > len(positionals):
        raise InputError(f"unexpected argument {words[len(positionals)]!r} (usage: {parser.usage})",
                         path=COMMAND_LINE)
    given = [f"{name}={json.dumps(word)}" for name, word in zip(positionals, words, strict=False)]
    return load(cls, path, [*given, *overrides]), args.print_config
