"""Resume state of ``csrm align``: which steps of a folder (a round, ``baseline``, ``data``) are finished.

Every step writes its output atomically and then records itself in ``state.json`` (finished steps, seconds,
info such as the output policy); a rerun skips finished steps. :func:`clean_stale` removes what a killed step
left, :func:`discard_run` what ``--restart`` discards.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csrm.alignment.distributed import barrier, is_main
from csrm.base.io import write_json

logger = logging.getLogger(__name__)

STEPS = ("generate", "score", "pairs", "sft", "dpo", "eval")
STATE_FILE = "state.json"
FINGERPRINT_FILE = "fingerprint.json"


def discard_run(out: Path) -> None:
    """Remove what ``csrm align`` wrote under ``out`` (and nothing else): ``--restart``."""
    for name in ("data", "baseline", "report.json", "report.md", "align_config.json", FINGERPRINT_FILE):
        path = out / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for folder in out.glob("round_*"):
        if folder.is_dir() and folder.name[len("round_"):].isdigit():
            shutil.rmtree(folder, ignore_errors=True)


# -- state ---------------------------------------------------------------------------------------------
class StepState:
    """Finished steps of one folder (a round, ``baseline`` or ``data``), persisted in ``state.json``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / STATE_FILE
        self.data: dict[str, Any] = {"finished": [], "seconds": {}, "info": {}}
        if self.path.is_file():
            self.data.update(json.loads(self.path.read_text(encoding="utf-8")))

    def done(self, step: str) -> bool:
        return step in self.data["finished"]

    def finish(self, step: str, seconds: float, **info: Any) -> None:
        if step not in self.data["finished"]:
            self.data["finished"].append(step)
        self.data["seconds"][step] = round(seconds, 2)
        self.data["info"].update(info)
        if is_main():
            write_json(self.path, self.data)

    def info(self, key: str, default: Any = None) -> Any:
        return self.data["info"].get(key, default)

    def run(self, step: str, fn: Callable[[], dict[str, Any] | None], *, main_only: bool = False) -> bool:
        """Run ``fn`` unless ``step`` is finished; ``fn`` returns info to record. True if it ran."""
        if self.done(step):
            logger.info("%s/%s: finished earlier, skipped", self.folder.name, step)
            return False
        start = time.perf_counter()
        info: dict[str, Any] | None = None
        if not main_only or is_main():
            info = fn()
        barrier()
        if main_only and not is_main():  # pick up what the main process recorded
            self.__init__(self.folder)
            return True
        self.finish(step, time.perf_counter() - start, **(info or {}))
        return True


def clean_stale(folder: Path) -> None:
    """Remove temporary outputs left by a killed step (``.name.*.tmp`` beside their final paths)."""
    if not folder.is_dir() or not is_main():
        return
    for tmp in folder.glob(".*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
