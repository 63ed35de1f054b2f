"""The Bradley-Terry pairwise loss, with an optional margin and reward centering."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0,
                       center_coefficient: float = 0.0) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin), averaged over pairs.

    P(chosen > rejected) = sigmoid(r_chosen - r_rejected) under Bradley-Terry; the optional margin
    asks for a larger gap on pairs labelled as clearer. Reward centering adds
    center_coefficient * mean((r_chosen + r_rejected)^2), which pins the rewards' mean near zero
    (Bradley-Terry alone leaves it free, and it drifts).
    """
    loss = -F.logsigmoid(chosen - rejected - margin).mean()
    if center_coefficient:
        loss = loss + center_coefficient * ((chosen + rejected) ** 2).mean()
    return loss


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    return (chosen > rejected).float().mean().item()
