"""What every family's model returns: :class:`CSRMOutput` (shared, so no family imports another)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class CSRMOutput(ModelOutput):
    """Raw compliance logits (before temperature), rewards, and the pooled states."""

    compliance_logits: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
