"""Calibrated probabilities: a per-attribute map from the model's logit to a probability that means what it
says ("confidence 62%" right about 62% of the time), fitted on predictions for images the model did not
learn from, stored in the checkpoint, and measured by the expected calibration error (ECE).

A class-balanced head (our default) weighs a rare attribute's positives up, which shifts its probabilities
up as a whole; temperature scaling (one divisor per attribute, Guo et al. 2017) cannot move them back, so
the default map is Platt scaling (a scale and a shift of the logit, the same family with a bias term).
Both are increasing maps, so the decisions at the (equally mapped) thresholds do not change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from aimonk.config import CALIBRATIONS
from aimonk.data.split import kfold_splits

EPSILON = 1e-6


def logit(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return expit(x)  # exact where 1 / (1 + exp(-x)) overflows (a steep map on a confident logit)


@dataclass
class Calibration:
    """probability = sigmoid(scale * logit + bias), per attribute."""

    method: str
    scale: np.ndarray
    bias: np.ndarray

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        return sigmoid(self.scale * logit(probabilities) + self.bias)

    def to_dict(self) -> dict:
        return {"method": self.method, "scale": self.scale.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, values: dict | None) -> "Calibration | None":
        if not values:
            return None
        return cls(values["method"], np.asarray(values["scale"], float), np.asarray(values["bias"], float))


def fit_calibration(targets: np.ndarray, probabilities: np.ndarray, method: str = "platt") -> Calibration | None:
    """Per attribute, the map minimising the log loss on the known labels; None for method 'none'. An
    attribute with one known class keeps the identity map."""
    if method not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, not {method!r}")
    if method == "none":
        return None
    attributes = targets.shape[1]
    scale, bias = np.ones(attributes), np.zeros(attributes)
    for column in range(attributes):
        known = ~np.isnan(targets[:, column])
        truth, x = targets[known, column], logit(probabilities[known, column])
        if len(truth) < 2 or truth.min() == truth.max():
            continue
        scale[column], bias[column] = _fit_one(truth, x, method)
    return Calibration(method, scale, bias)


def _fit_one(truth: np.ndarray, x: np.ndarray, method: str) -> tuple[float, float]:
    def log_loss(parameters):
        a, b = parameters if method == "platt" else (parameters[0], 0.0)
        z = a * x + b
        return float(np.mean(np.logaddexp(0, z) - truth * z))

    start = [1.0, 0.0] if method == "platt" else [1.0]
    bounds = [(1e-3, 100.0), (-50.0, 50.0)] if method == "platt" else [(1e-3, 100.0)]
    solution = minimize(log_loss, start, method="L-BFGS-B", bounds=bounds).x
    return float(solution[0]), float(solution[1]) if method == "platt" else 0.0


def cross_fitted(targets: np.ndarray, probabilities: np.ndarray, method: str = "platt", folds: int = 5,
                 seed: int = 0) -> np.ndarray:
    """Calibrated probabilities where each row's map was fitted on the other rows only (to measure the ECE
    after calibration honestly)."""
    calibrated = probabilities.astype(np.float64).copy()
    for fit_rows, apply_rows in kfold_splits(targets, folds, seed):
        calibration = fit_calibration(targets[fit_rows], probabilities[fit_rows], method)
        if calibration is not None:
            calibrated[apply_rows] = calibration(probabilities[apply_rows])
    return calibrated


def reliability(truth: np.ndarray, probabilities: np.ndarray, bins: int = 10):
    """Equal-width bins of predicted probability: (mean predicted, observed positive rate, count) per bin."""
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, probabilities, minlength=bins) / np.maximum(count, 1)
    observed = np.bincount(index, truth, minlength=bins) / np.maximum(count, 1)
    return predicted, observed, count


def expected_calibration_error(targets: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> np.ndarray:
    """Per attribute on known labels: the count-weighted mean |observed rate - mean predicted| over bins."""
    errors = []
    for column in range(targets.shape[1]):
        known = ~np.isnan(targets[:, column])
        if not known.any():
            errors.append(np.nan)
            continue
        predicted, observed, count = reliability(targets[known, column], probabilities[known, column], bins)
        errors.append(float(np.sum(count * np.abs(observed - predicted)) / count.sum()))
    return np.array(errors)
