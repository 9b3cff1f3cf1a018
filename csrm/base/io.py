"""File helpers: strict JSONL/YAML reading with located errors, atomic writes, and output folders that
never delete what a user put there.

JSONL lines are split on ``\n`` only (a trailing ``\r`` is dropped): U+2028, U+2029, U+0085 and the other
characters ``str.splitlines`` treats as line breaks are legal inside JSON strings, and our own writer
(``ensure_ascii=False``) emits them raw. Files written here get the permissions the process umask gives a new
file (``0o666 & ~umask``), not the ``0o600`` of :func:`tempfile.mkstemp` (nor that of safetensors), and so does every
file of a folder put in place by :func:`replace_dir`.

**Output folders** (:func:`check_output_dir`, :func:`replace_dir`). A command that writes a whole folder
(``csrm train``, ``augment``, ``export``, ``calibrate``, a run's evaluation) records what it wrote in a marker
file, :data:`OUTPUT_MARKER` (``{"command", "files"}``). Before anything loads, the command refuses an
``output_dir`` that is an input folder, inside one or holding one, and a non-empty folder that is not an
earlier output of the same command (its marker, or for outputs written before markers existed the files the
command always writes), unless ``overwrite``. When the finished folder replaces the old one, only the entries
the old marker lists (and any of the same name) go: everything else in the old folder is moved into the new
one, so a user's file inside an output folder survives a rerun. A symlinked output folder is written through
(its target is replaced, the link kept).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from csrm.base.errors import InputError

logger = logging.getLogger(__name__)


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
    folders); returns how many. Call it where one writer owns ``final`` (a pipeline stage), before writing.
    A temporary folder holding entries its marker does not list (a user's files being carried over when the
    writer was killed) is kept, with a warning, never removed."""
    final = real_path(final)
    removed = 0
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            if stale.is_dir() and _foreign_entries(stale):
                logger.warning("%s holds files csrm did not write (a rerun killed while keeping them): left "
                               "in place; move them back into %s", stale, final)
                continue
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
            removed += 1
    return removed


# -- output folders ------------------------------------------------------------------------------------
OUTPUT_MARKER = ".csrm-output.json"


def real_path(path: str | Path) -> Path:
    """``path`` with ``~`` expanded and every symbolic link resolved: where a write really lands (a symlinked
    output folder is written through, the link itself is kept)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The :data:`OUTPUT_MARKER` of ``folder`` (``{"command", "files"}``), or None when absent or unreadable."""
    try:
        data = json.loads((Path(folder) / OUTPUT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _written(marker: dict[str, Any] | None) -> set[str]:
    files = marker.get("files") if marker else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def _foreign_entries(folder: Path) -> list[Path]:
    """Entries of ``folder`` its marker does not list (none when it has no marker: nothing is known)."""
    marker = read_marker(folder)
    if marker is None:
        return []
    ours = _written(marker) | {OUTPUT_MARKER}
    return [p for p in folder.iterdir() if p.name not in ours]


def check_output_dir(output: str | Path, command: str, *, overwrite: bool = False,
                     inputs: dict[str, str | Path | None] | None = None, legacy: tuple[str, ...] = (),
                     field: str = "output_dir") -> Path:
    """Check that ``csrm <command>`` may write the folder ``output`` (module doc); returns its real path.

    ``inputs``: field name -> a file or folder the command reads; ``output`` may not be it, lie inside it or
    hold it (any of them is an error, ``overwrite`` or not). ``legacy``: file names that, all present, mark an
    earlier output of the command written before markers existed. Raises :class:`InputError` naming ``field``.
    """
    out = real_path(output)
    for name, given in (inputs or {}).items():
        if given is None or str(given) == "":
            continue
        source = real_path(given)
        if out == source or source in out.parents:
            raise InputError(f"is the input {name} ({given}) or a folder inside it: csrm {command} never "
                             "writes into what it reads; choose another folder", path=str(output), field=field)
        if out in source.parents:
            raise InputError(f"holds the input {name} ({given}): csrm {command} replaces its output folder; "
                             "choose another folder", path=str(output), field=field)
    if not out.exists():
        return out
    if not out.is_dir():
        raise InputError("exists and is not a folder", path=str(output), field=field)
    if overwrite or not any(out.iterdir()):
        return out
    marker = read_marker(out)
    if marker is not None and marker.get("command") == command:
        return out
    if marker is None and legacy and all((out / name).exists() for name in legacy):
        return out
    owner = f" (its {OUTPUT_MARKER} names csrm {marker.get('command')})" if marker is not None else ""
    raise InputError(f"is not empty and is not an earlier output of csrm {command}{owner}: nothing in it is "
                     "deleted; choose an empty or new folder, or pass --overwrite to write into it (only the "
                     f"files csrm {command} writes are replaced, everything else is kept)", path=str(output),
                     field=field)


def check_not_input(input_path: str | Path, outputs: dict[str, str | Path]) -> None:
    """Refuse an output file that is the input file (by its real path: a link to the input counts too);
    ``outputs``: field name -> a path the command writes."""
    source = real_path(input_path)
    for field, path in outputs.items():
        if real_path(path) == source:
            raise InputError(f"is the input file ({input_path}): writing it would destroy the input; choose "
                             "another output file", path=str(path), field=field)


def record_output(folder: str | Path, command: str, names: list[str]) -> None:
    """Add ``names`` (entries ``csrm <command>`` wrote one by one into ``folder``) to its :data:`OUTPUT_MARKER`,
    for writers that put files into a folder rather than replacing it (``csrm calibrate``)."""
    folder = real_path(folder)
    files = sorted(_written(read_marker(folder)) | set(names))
    with atomic_path(folder / OUTPUT_MARKER) as tmp:
        tmp.write_text(json.dumps({"command": command, "files": files}, indent=1) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_path(final: str | Path, *, is_dir: bool = False, command: str = "csrm") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success it is renamed over ``final``, on failure removed.

    Readers never see a half-written file or folder. A folder is put in place by :func:`replace_dir`
    (``command`` goes into its marker): entries of the old folder that the old marker does not list are kept.
    A symlinked ``final`` is written through.
    """
    final = real_path(final)
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
            replace_dir(tmp, final, command=command)
        else:
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def replace_dir(tmp: str | Path, final: str | Path, *, command: str = "csrm") -> None:
    """Put the finished folder ``tmp`` in place of ``final`` (a folder cannot be ``os.replace``d over a non-empty
    one), replacing only what the writer owns (module doc).

    ``tmp`` gets an :data:`OUTPUT_MARKER` listing its entries (``command`` = the writer). Entries of the old
    ``final`` that its marker does not list and ``tmp`` does not have (a user's files) are moved into ``tmp``
    first (moved back if anything fails); then the old ``final`` steps aside as ``.<name>.old`` and is removed
    once ``tmp`` is in place. A symlinked ``final`` is written through: its target is replaced."""
    tmp, final = Path(tmp), real_path(final)
    _umask_tree(tmp)
    files = sorted(p.name for p in tmp.iterdir() if p.name != OUTPUT_MARKER)
    marker = tmp / OUTPUT_MARKER
    marker.write_text(json.dumps({"command": command, "files": files}, indent=1) + "\n", encoding="utf-8")
    _umask_mode(marker, is_dir=False)
    if not final.exists():
        tmp.rename(final)
        return
    ours = _written(read_marker(final)) | {OUTPUT_MARKER}
    kept = [p for p in final.iterdir() if p.name not in ours and p.name not in files]
    moved: list[Path] = []
    backup = final.with_name(f".{final.name}.old")
    try:
        for entry in kept:
            entry.rename(tmp / entry.name)
            moved.append(entry)
        if backup.is_symlink() or backup.is_file():
            backup.unlink()
        shutil.rmtree(backup, ignore_errors=True)
        final.rename(backup)
        try:
            tmp.rename(final)
        except BaseException:
            backup.rename(final)
            raise
    except BaseException:
        for entry in moved:  # the user's files go back where they were
            with contextlib.suppress(OSError):
                (tmp / entry.name).rename(entry)
        raise
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


def load_tensor_cache(path: str | Path, classes: tuple[type, ...] = ()) -> Any:
    """A cache written by ``torch.save``, read with ``torch.load(weights_only=True)``: tensors, plain containers
    and the given record ``classes`` (dataclasses of tensors) only, so a file planted where a cache is expected
    cannot run code. Anything else (a pickle naming another global, a file torch cannot read) raises
    :class:`InputError` naming the file; it is left in place for its owner to inspect."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(list(classes)):
            return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if "Unsupported global" in line), lines[0] if lines else repr(err))
        raise InputError(f"refused to load this cache: it is not a plain tensor file ({reason[:200]}). csrm "
                         "writes its caches with tensors only; remove the file if you did not put it there",
                         path=str(path)) from None


def _umask_tree(folder: Path) -> None:
    """Give every file and folder under ``folder`` the mode a plain ``open``/``mkdir`` would: some writers
    create private files (safetensors 0.8 writes ``model.safetensors`` 0600), which another user serving the
    model could not read."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            _umask_mode(path, is_dir=path.is_dir())


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
