"""Read what an offline wandb run recorded (``offline-run-*/run-*.wandb``), to check what was logged.

The file is wandb's transaction log: a 7-byte header (``:W&B``, magic, version), then LevelDB-log records
(32 KiB blocks; each chunk = crc32, length, type; FULL/FIRST/MIDDLE/LAST) holding ``wandb.proto`` ``Record``
messages. wandb 0.2x+ ships no Python reader, so the tests parse it here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
            pending = b""
    return records


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """``{"job_type", "name", "history": {key: [values]}, "summary": {key: value}, "files": [relative paths]}``."""
    from wandb.proto import wandb_internal_pb2

    run_dir = Path(run_dir)
    log = next(run_dir.glob("run-*.wandb"))
    out: dict[str, Any] = {"history": {}, "summary": {}, "job_type": None, "name": None}
    for raw in raw_records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["job_type"], out["name"] = record.run.job_type, record.run.display_name
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                out["history"].setdefault(key, []).append(json.loads(item.value_json))
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    out["files"] = sorted(str(p.relative_to(run_dir / "files")) for p in (run_dir / "files").rglob("*") if p.is_file())
    return out
