"""The judges of ``csrm align``: which CSRM to load, and a replay of stored scores for the pairs step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from csrm.alignment.config import AlignConfig
from csrm.base.errors import InputError
from csrm.base.records import Message

# -- scorer --------------------------------------------------------------------------------------------
DEFAULT_CSRM_PATHS = ("runs/csrm-minilm", "runs/train/latest")


def default_csrm_path(cfg: AlignConfig) -> str:
    """``judge.csrm``, else ``$CSRM_MODEL``, else the first existing of :data:`DEFAULT_CSRM_PATHS`
    (``runs/csrm-minilm`` is where ``configs/train/minilm_cpu.yaml`` saves)."""
    path = cfg.judge.csrm or os.environ.get("CSRM_MODEL") or ""
    if path:
        return path
    for candidate in DEFAULT_CSRM_PATHS:
        if Path(candidate).exists():
            return candidate
    raise InputError("no CSRM given and none found at " + ", ".join(DEFAULT_CSRM_PATHS) + ": train one with "
                     "`csrm train configs/train/minilm_cpu.yaml` or pass judge.csrm=PATH (or set $CSRM_MODEL)",
                     field="judge.csrm")


class ReplayScorer:
    """Answers :func:`csrm.alignment.judge.build_preference_dataset` from stored scores (configs already rendered)."""

    def __init__(self, results: dict[tuple, Any]):
        self.results = results

    @staticmethod
    def key(config: str, messages: list[Message], response: str | None) -> tuple:
        return config, json.dumps(messages, sort_keys=True), response

    def render(self, config: str) -> str:
        return config

    def threshold_for(self, config: str) -> float:
        return 0.5  # unused: stored results carry their own verdicts and thresholds

    def score_items(self, items, thresholds=None):
        return [self.results[self.key(i.config, i.messages, i.response)] for i in items]
