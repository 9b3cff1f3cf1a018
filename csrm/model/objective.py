"""The CSRM training objective: a proper scoring rule for compliance plus Bradley–Terry for the reward.

    L = w_c · BCE(σ(z), y)                                    over the batch's examples (y = 1: complies)
      + w_r · mean[ −log σ(r_chosen − r_rejected − m · margin) ]    over its preference pairs
      + λ · mean[ (r_chosen + r_rejected)² ]                  (optional reward centering, as TRL's
                                                               ``center_rewards_coefficient``)

BCE is a strictly proper scoring rule, so the compliance head is pushed towards calibrated probabilities
(no class re-weighting or label smoothing, which would bias them). The pair term ranks responses: ``margin`` is
the augmentation's error gap, so pairs that differ more in severity must be separated by a wider reward gap.
A term whose batch part is empty contributes 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossParts(NamedTuple):
    """The total loss and its (unweighted) parts; ``pair_accuracy`` is a detached diagnostic."""

    loss: torch.Tensor
    bce: torch.Tensor
    bradley_terry: torch.Tensor
    centering: torch.Tensor
    pair_accuracy: torch.Tensor


def csrm_loss(compliance_logits: torch.Tensor, labels: torch.Tensor, rewards_chosen: torch.Tensor,
              rewards_rejected: torch.Tensor, margins: torch.Tensor | None = None, *,
              compliance_weight: float = 1.0, reward_weight: float = 1.0, margin_scale: float = 0.0,
              center_rewards_coefficient: float | None = None) -> LossParts:
    """Joint objective over ``B`` examples (logits, labels ``[B]``) and ``P`` pairs (rewards, margins ``[P]``)."""
    zero = compliance_logits.new_zeros(()) if compliance_logits.numel() else rewards_chosen.new_zeros(())
    bce = zero
    if compliance_logits.numel():
        bce = F.binary_cross_entropy_with_logits(compliance_logits.float(), labels.float())
    bt, centering, accuracy = zero, zero, zero.detach()
    if rewards_chosen.numel():
        gap = rewards_chosen.float() - rewards_rejected.float()
        if margins is not None and margin_scale:
            gap = gap - margin_scale * margins.float()
        bt = -F.logsigmoid(gap).mean()
        centering = ((rewards_chosen.float() + rewards_rejected.float()) ** 2).mean()
        accuracy = (rewards_chosen > rewards_rejected).float().mean().detach()
    loss = compliance_weight * bce + reward_weight * bt
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * centering
    return LossParts(loss, bce, bt, centering, accuracy)
