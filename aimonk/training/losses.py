"""Masked multilabel losses: NaN targets (unknown labels) give no loss and no gradient."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aimonk.config import LOSSES


def positive_weights(values: np.ndarray, attributes=None) -> torch.Tensor:
    """Per-attribute pos_weight = negatives / positives over known labels.

    An attribute with no positives or no negatives gets weight 1 (and a warning): the ratio
    would be infinite or zero and would silence or explode that attribute's loss.
    """
    positives = np.nansum(values == 1, axis=0).astype(float)
    negatives = np.nansum(values == 0, axis=0).astype(float)
    weights = np.ones(values.shape[1])
    usable = (positives > 0) & (negatives > 0)
    weights[usable] = negatives[usable] / positives[usable]
    if not usable.all():
        names = attributes or [f"column {i + 1}" for i in range(values.shape[1])]
        bad = [names[i] for i in np.flatnonzero(~usable)]
        warnings.warn(f"pos_weight set to 1 for {bad}: the training split has no positives or no negatives",
                      UserWarning, stacklevel=2)
    return torch.tensor(weights, dtype=torch.float32)


def _known(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of known labels, targets with the unknown ones zeroed so that no NaN reaches the loss)."""
    known = ~torch.isnan(targets)
    return known, torch.where(known, targets, torch.zeros_like(targets))


def masked_mean(loss: torch.Tensor, mask: torch.Tensor, *dims: int) -> torch.Tensor:
    """The mean of `loss` where `mask` holds, over `dims` (all when none), 0 where it holds nowhere.
    Multiplying by the mask (not indexing) keeps shapes static; the loss must be finite where it does not hold."""
    return (loss * mask).sum(*dims) / mask.sum(*dims).clamp(min=1)


class MaskedBCEWithLogits(nn.Module):
    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known, targets = _known(targets)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=self.pos_weight,
                                                  reduction="none")
        return masked_mean(loss, known)


class MaskedFocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) on known labels; pos_weight scales the positive term."""

    def __init__(self, gamma: float = 2.0, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known, targets = _known(targets)
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_true = torch.exp(-bce)  # probability given to the true class
        loss = (1 - p_true) ** self.gamma * bce
        if self.pos_weight is not None:
            loss = loss * torch.where(targets > 0, self.pos_weight.expand_as(loss), torch.ones_like(loss))
        return masked_mean(loss, known)


class MaskedAsymmetricLoss(nn.Module):
    """Asymmetric loss (Ridnik et al. 2021) on known labels: negatives are focused harder than positives
    (gamma_negative > gamma_positive), and a negative whose probability is below `clip` costs nothing,
    so the many easy negatives of a rare attribute stop dominating. pos_weight scales the positive term."""

    def __init__(self, gamma_positive: float = 0.0, gamma_negative: float = 4.0, clip: float = 0.05,
                 pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma_positive, self.gamma_negative, self.clip = gamma_positive, gamma_negative, clip
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known, targets = _known(targets)
        logits = logits.float()
        p = torch.sigmoid(logits)
        positive = (1 - p) ** self.gamma_positive * -F.logsigmoid(logits)
        if self.pos_weight is not None:
            positive = positive * self.pos_weight
        shifted = (p - self.clip).clamp(min=0)
        negative = shifted ** self.gamma_negative * -torch.log((1 - shifted).clamp(min=1e-8))
        return masked_mean(torch.where(targets > 0, positive, negative), known)


def make_loss(name: str, train_values: np.ndarray, use_pos_weight: bool = True, focal_gamma: float = 2.0,
              attributes=None) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
    weights = positive_weights(train_values, attributes) if use_pos_weight else None
    if name == "bce":
        return MaskedBCEWithLogits(weights)
    if name == "asymmetric":
        return MaskedAsymmetricLoss(pos_weight=weights)
    return MaskedFocalLoss(focal_gamma, weights)
