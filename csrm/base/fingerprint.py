"""Fingerprints of what produced a partial result, so a resumed run never mixes two runs' outputs.

A fingerprint is a small JSON mapping of named parts (``model``, ``input``, ``settings``, ...), each a
digest or a plain value. Resumable commands write it beside their partial output *before* the first result
and compare it on every rerun; a difference stops the run naming the parts that changed
(:func:`check_fingerprint`), unless the user asked to start over.

Model digests read the folder's small files (config, tokenizer) whole and the weight files whole up to
64 MiB; larger weight files are sampled (size plus 64 blocks of 1 MiB spread over the file), so an 8B model
is fingerprinted in well under a second while any retrained or recalibrated model (new weights, or a new
temperature/threshold in ``config.json``) still differs. A name that is not a local folder (a hub id) is
fingerprinted by the name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.base.io import write_json

WHOLE_FILE_BYTES = 64 * 2**20
SAMPLE_BLOCKS, BLOCK_BYTES = 64, 2**20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def file_digest(path: str | Path, *, sample: bool = False) -> str:
    """sha256 of a file's bytes; with ``sample``, files over 64 MiB are sampled (module doc)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if not sample or size <= WHOLE_FILE_BYTES:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:
            for i in range(SAMPLE_BLOCKS):
                handle.seek((size - BLOCK_BYTES) * i // (SAMPLE_BLOCKS - 1))
                digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()


def model_digest(model: str | Path) -> str:
    """Digest of a model folder's files (weights sampled when large), or of the name for a hub id."""
    path = Path(model)
    if not path.is_dir():
        return "name:" + str(model)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path).as_posix()
        if relative.startswith(".") or "/." in relative:
            continue  # temporary and hidden files
        digest.update(relative.encode() + b"\0")
        digest.update(file_digest(file, sample=file.suffix in WEIGHT_SUFFIXES).encode())
    return digest.hexdigest()


def path_digest(path: str | Path) -> str:
    """A file's digest (:func:`file_digest`), a folder's (:func:`model_digest`: its files by relative path), or
    ``missing``: what ``csrm run`` records for a stage's input files and benchmark folders."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        return model_digest(path)
    return "missing"


def tensors_digest(model: Any) -> str:
    """Digest of an in-memory torch module's parameters and buffers (when there is no folder to read)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the parts that differ (or exist on one side only)."""
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))


def check_fingerprint(path: Path, current: dict[str, Any], *, partial: Path, what: str,
                      restart_hint: str, write: bool = True) -> None:
    """Compare ``current`` with the fingerprint stored at ``path`` for the partial output ``partial``.

    No partial output: ``current`` is recorded and the run starts fresh. A partial output without a readable
    fingerprint, or with a different one, raises :class:`InputError` naming the differing parts and how to
    start over (``restart_hint``)."""
    if not partial.exists():
        write_json(path, current)
        return
    if not path.is_file():
        raise InputError(f"{what} has no fingerprint file ({path.name}), so it cannot be matched to this run "
                         f"(written by an older csrm, or the file was removed); {restart_hint}",
                         path=str(partial), field="fingerprint")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise ValueError
    except ValueError:
        raise InputError(f"unreadable fingerprint file; {restart_hint}", path=str(path),
                         field="fingerprint") from None
    changed = differences(stored, current)
    if changed:
        details = "; ".join(f"{k}: {_short(stored.get(k))} then, {_short(current.get(k))} now" for k in changed)
        raise InputError(f"{what} was made by a different run ({details}). Mixing the two would mix results; "
                         f"{restart_hint}", path=str(partial), field=changed[0])


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:16] + "..." + text[-8:]
