"""File helpers: strict JSONL/YAML reading with located errors, and atomic writes.

JSONL lines are split on ``\n`` only (a trailing ``\r`` is dropped): U+2028, U+2029, U+0085 and the other
characters ``str.splitlines`` treats as line breaks are legal inside JSON strings, and our own writer
(``ensure_ascii=False``) emits them raw. Files written here get the permissions the process umask gives a new
file (``0o666 & ~umask``), not the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from csrm.base.errors import InputError


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file, raising :class:`InputError` (with the byte offset) if it is not UTF-8."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path=str(path))
    if path.is_dir():
        raise InputError("is a folder, expected a file", path=str(path))
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte {err.start})", path=str(path), line=line) from None


def last_json_key(before: str) -> str | None:
    """The last ``"key":`` in a fragment of a JSON line (best effort, for naming the field at fault)."""
    quote = before.rfind('":')
    if quote == -1:
        return None
    opening = before.rfind('"', 0, quote)
    return before[opening + 1: quote] if opening != -1 else None


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text: split on ``\n`` only (module doc), a trailing ``\r`` removed."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def iter_jsonl(path: str | Path, text: str | None = None, *, name_fields: bool = False
               ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; every object must be a JSON object.
    ``name_fields``: errors also name the field a malformed line broke in (``(line)`` when none)."""
    text = read_text(path) if text is None else text
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            field = (last_json_key(line[: err.pos]) or "(line)") if name_fields else None
            raise InputError(f"malformed JSON ({err.msg}, column {err.colno})", path=str(path), line=number,
                             field=field) from None
        if not isinstance(obj, dict):
            raise InputError("each line must be a JSON object", path=str(path), line=number,
                             field="(line)" if name_fields else None)
        yield number, obj


def require(obj: dict[str, Any], field: str, kind: type | tuple[type, ...], *, path: str | Path | None = None,
            line: int | None = None, allow_empty: bool = False) -> Any:
    """Return ``obj[field]``, checking presence, type and (for strings/lists) non-emptiness."""
    where = {"path": str(path) if path is not None else None, "line": line, "field": field}
    if field not in obj or obj[field] is None:
        raise InputError("missing", **where)
    value = obj[field]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = "/".join(t.__name__ for t in _as_tuple(kind))
        raise InputError(f"expected {names}, got {type(value).__name__}", **where)
    if not allow_empty and isinstance(value, (str, list, dict)) and not (value.strip() if isinstance(value, str) else value):
        raise InputError("empty", **where)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping from a UTF-8 file with a located error on bad syntax."""
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"invalid YAML: {getattr(err, 'problem', err)}", path=str(path),
                         line=mark.line + 1 if mark else None) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("top level must be a mapping", path=str(path))
    return data


def remove_stale_temps(final: str | Path) -> int:
    """Remove what a killed :func:`atomic_path` writer left beside ``final`` (``.<name>.*.tmp``, files or
    folders); returns how many. Call it where one writer owns ``final`` (a pipeline stage), before writing."""
    final = Path(final)
    removed = 0
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(final: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it is renamed over ``final``, on failure removed.

    Readers never see a half-written file or folder.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    _umask_mode(tmp, is_dir=is_dir)
    try:
        yield tmp
        if is_dir:
            replace_dir(tmp, final)
        else:
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def replace_dir(tmp: str | Path, final: str | Path) -> None:
    """Rename the finished folder ``tmp`` over ``final`` (a folder cannot be ``os.replace``d over a non-empty
    one): the old ``final`` steps aside as ``.<name>.old`` and is removed once ``tmp`` is in place."""
    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        tmp.rename(final)
        return
    backup = final.with_name(f".{final.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    final.rename(backup)
    tmp.rename(final)
    shutil.rmtree(backup, ignore_errors=True)


def process_umask() -> int:
    """The process umask: from ``/proc/self/status`` where there is one (a read with no side effect), else by
    setting and restoring it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _umask_mode(path: Path, *, is_dir: bool) -> None:
    """Give a temporary file/folder the mode a plain ``open``/``mkdir`` would (mkstemp/mkdtemp use 0600/0700)."""
    with contextlib.suppress(OSError):
        path.chmod((0o777 if is_dir else 0o666) & ~process_umask())


def write_jsonl(path: str | Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    """Atomically write rows as JSONL; returns the number written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write one JSON document (indented)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
