"""The Bradley-Terry pairwise loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin), averaged over pairs.

    P(chosen > rejected) = sigmoid(r_chosen - r_rejected) under Bradley-Terry; the optional margin
    asks for a larger gap on pairs labelled as clearer.
    """
    return -F.logsigmoid(chosen - rejected - margin).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    return (chosen > rejected).float().mean().item()
