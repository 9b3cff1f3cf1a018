"""Processes of ``csrm align`` under ``accelerate launch``: who is main, waiting for the others, freeing memory.

Sampling, scoring and evaluation run on the main process while the others wait (:func:`barrier`, with a
timeout of hours); SFT and DPO run on every process.
"""

from __future__ import annotations

import gc
import os
from datetime import timedelta

import torch
from accelerate import PartialState


# -- processes -------------------------------------------------------------------------------
def dist():
    """accelerate's PartialState when launched with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    # the other ranks wait while the main one samples and scores: allow hours, not the default minutes
    return PartialState(timeout=timedelta(hours=int(os.environ.get("CSRM_ALIGN_BARRIER_HOURS", "6"))))


def is_main() -> bool:
    state = dist()
    return state is None or state.is_main_process


def barrier() -> None:
    state = dist()
    if state is not None:
        state.wait_for_everyone()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
