"""The default head: a linear probe solved exactly.

When the backbone stays frozen, the head is a logistic regression on the backbone's pooled features.
We solve it as one: features standardised, each attribute's loss class-balanced (positives and negatives
weigh half each, so a rare attribute is not ignored) and masked (unknown labels count for nothing), an
L2 penalty of strength 1 / (C x known labels) per attribute as in scikit-learn, minimised to convergence
with L-BFGS. C is chosen per attribute by cross-validation on the training images unless it is given.
The solution is folded back into the model's Linear head, so the model and its checkpoint are unchanged.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

from aimonk.data.split import kfold_splits
from aimonk.runtime import one_thread
from aimonk.training.losses import masked_mean

C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def balanced_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per attribute: half the mean loss of its known positives plus half that of its known negatives."""
    known, positive = ~torch.isnan(targets), targets == 1
    negative = known & ~positive
    per_entry = functional.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets), reduction="none")
    return (masked_mean(per_entry, positive, 0) + masked_mean(per_entry, negative, 0)) / 2


def solve(inputs: torch.Tensor, targets: torch.Tensor, c: torch.Tensor, start=None, max_iter: int = 100):
    """Weights (K, F) and biases (K,) minimising balanced_losses + |w_k|^2 / (2 c_k n_k) on standardised
    inputs (n, F); targets (n, K) with NaN for unknown; `start` (weights, biases) warm-starts the solver.
    Returns (weights, biases, the loss at each evaluation)."""
    known = (~torch.isnan(targets)).sum(0).clamp(min=1)
    penalty = 1 / (2 * c * known)
    if start is None:
        start = torch.zeros(targets.shape[1], inputs.shape[1]), torch.zeros(targets.shape[1])
    weights, biases = (tensor.clone().to(inputs.dtype).requires_grad_() for tensor in start)
    optimizer = torch.optim.LBFGS([weights, biases], lr=1, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = (balanced_losses(inputs @ weights.T + biases, targets) + penalty * (weights ** 2).sum(1)).sum()
        loss.backward()
        losses.append(float(loss.detach()))
        return loss

    with one_thread():
        optimizer.step(closure)
    return weights.detach(), biases.detach(), losses


def standardised(features: torch.Tensor):
    """(inputs standardised per feature, mean, std); constant features get std 1."""
    mean, std = features.mean(0), features.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return (features - mean) / std, mean, std


def training_inputs(features: torch.Tensor, targets: np.ndarray, flip: bool):
    """Rows of features (2, n, F) as samples: the images, and their mirror images too with flip."""
    inputs = torch.cat([features[0], features[1]]) if flip else features[0]
    labels = torch.from_numpy(np.concatenate([targets, targets]) if flip else targets)
    return inputs.float(), labels.float()


def choose_c(features: torch.Tensor, targets: np.ndarray, flip: bool, folds: int = 5, seed: int = 0,
             grid=C_GRID) -> np.ndarray:
    """Per attribute, the C of `grid` with the lowest cross-validated balanced loss (each fold standardised
    on its own training part)."""
    scores = np.zeros((len(grid), targets.shape[1]))
    for train_part, val_part in kfold_splits(targets, folds, seed):
        inputs, labels = training_inputs(features[:, train_part], targets[train_part], flip)
        inputs, mean, std = standardised(inputs)
        held_out = ((features[0, val_part].float() - mean) / std, torch.from_numpy(targets[val_part]).float())
        start = None
        for row, c in enumerate(sorted(grid)):  # from the strongest penalty up, each solution starting the next
            weights, biases, _ = solve(inputs, labels, torch.full((targets.shape[1],), c), start)
            start = weights, biases
            scores[row] += balanced_losses(held_out[0] @ weights.T + biases, held_out[1]).numpy() / folds
    return np.sort(grid)[scores.argmin(0)]


class LinearProbe:
    """The head as a class-balanced logistic regression on frozen features, solved in one pass (scikit-learn's
    way: `fit` returns self and sets weights_, bias_ (the solution on standardised features, folded back onto
    raw ones), c_ (each attribute's C) and objective_ (the penalised objective at each L-BFGS evaluation)).

    c: the inverse L2 strength, or 0 to choose it per attribute by `folds`-fold cross-validation; flip: the
    mirror images' features are samples too."""

    def __init__(self, c: float = 0.0, flip: bool = True, folds: int = 5, seed: int = 0):
        self.c, self.flip, self.folds, self.seed = c, flip, folds, seed

    def fit(self, features: torch.Tensor, targets: np.ndarray) -> "LinearProbe":
        """Solve it on features (2, n, F) of the training images and their targets (n, K), NaN unknown."""
        self.c_ = np.full(targets.shape[1], self.c) if self.c > 0 else choose_c(features, targets, self.flip,
                                                                                self.folds, self.seed)
        inputs, labels = training_inputs(features, targets, self.flip)
        inputs, mean, std = standardised(inputs)
        weights, biases, self.objective_ = solve(inputs, labels, torch.from_numpy(self.c_).float())
        self.weights_ = weights / std  # logits = w . (x - mean) / std + b, folded into one linear map
        self.bias_ = biases - self.weights_ @ mean
        return self

    def write_into(self, head: torch.nn.Sequential) -> None:
        """The solution as the weights of the head's last layer (Linear)."""
        with torch.no_grad():
            head[-1].weight.copy_(self.weights_)
            head[-1].bias.copy_(self.bias_)
