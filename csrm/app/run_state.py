"""Stage fingerprints for ``csrm run``: a stage is reused only when nothing it depends on has changed.

A stage's **fingerprint** is the SHA-256 of a canonical JSON document holding

- ``settings``: the stage's resolved settings (the augmentation recipe after overrides, the merged training
  config, the benchmarks and limits, ...), minus paths that only say where *this* run writes;
- ``upstream``: the fingerprints of the stages whose outputs it reads (train <- augment, calibrate <- train,
  eval <- calibrate or train), so a change anywhere reruns every stage after it;
- ``inputs``: the SHA-256 of every file it reads from outside the run (source corpora, label mappings, the
  taxonomy, benchmark files), so edited data is noticed even when no setting changed;
- the csrm version.

Each finished stage is recorded in ``output_dir/stages.json`` (fingerprint, the parts above, seconds). On the
next run a stage is **reused** iff its output exists and its recorded fingerprint equals the one computed now;
otherwise it **reruns**, and the log names what changed (``settings.learning_rate``, ``upstream.augment``,
``inputs.<file>``, or "no record"). Output that exists without a record (a run by an older csrm, or a kill
between writing the output and recording it) cannot be vouched for, so it is rerun too.

File and folder digests come from :mod:`csrm.base.fingerprint`, the one home of the resume fingerprints that
``csrm score`` and ``csrm align`` check too.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csrm import __version__
from csrm.base.fingerprint import path_digest
from csrm.base.io import write_json

STATE_FILE = "stages.json"


def canonical(obj: Any) -> Any:
    """JSON-stable form: tuples as lists, paths and other objects as strings, dict keys sorted on dump."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


@dataclass
class StageSpec:
    """What a stage depends on; :attr:`fingerprint` hashes it (module doc)."""

    name: str
    settings: dict[str, Any]
    upstream: dict[str, str] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.record = canonical({"settings": self.settings, "upstream": self.upstream,
                                 "inputs": {str(p): path_digest(p) for p in sorted(set(map(Path, self.inputs)))},
                                 "version": __version__})
        payload = json.dumps({"stage": self.name, **self.record}, sort_keys=True, ensure_ascii=False)
        self.fingerprint = hashlib.sha256(payload.encode("utf-8")).hexdigest()


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Dotted names of what differs between a recorded stage and the current spec (for the log)."""
    if old is None:
        return ["no record"]
    out = []
    for part in ("settings", "upstream", "inputs"):
        before, after = old.get(part) or {}, new.get(part) or {}
        out += [f"{part}.{key}" for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    if old.get("version") != new.get("version"):
        out.append("csrm version")
    return out or ["fingerprint"]


class RunState:
    """``output_dir/stages.json``: the record of every finished stage, plus this invocation's decisions."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / STATE_FILE
        self.records: dict[str, dict[str, Any]] = (json.loads(self.path.read_text(encoding="utf-8"))
                                                   if self.path.is_file() else {})
        self.status: dict[str, str] = {}  # stage -> ran | reused | off, in the order decided

    def reusable(self, spec: StageSpec, output: Path) -> tuple[bool, list[str]]:
        """(reuse?, what changed) for a stage whose output would be ``output``."""
        record = self.records.get(spec.name)
        if record is not None and record.get("fingerprint") == spec.fingerprint and output.exists():
            return True, []
        if record is not None and record.get("fingerprint") == spec.fingerprint:
            return False, ["output missing"]
        return False, changes(record, spec.record)

    def finish(self, spec: StageSpec, seconds: float) -> None:
        self.records[spec.name] = {"fingerprint": spec.fingerprint, **spec.record, "seconds": seconds,
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.status[spec.name] = "ran"
        write_json(self.path, self.records)

    def forget(self, name: str) -> None:
        """Drop a stage's record (its output was removed)."""
        if self.records.pop(name, None) is not None:
            write_json(self.path, self.records)

    def fingerprint(self, name: str) -> str:
        return (self.records.get(name) or {}).get("fingerprint", "")
