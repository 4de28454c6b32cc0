"""Per-attribute decision thresholds, tuned on some rows and only ever scored on others."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from aimonk.config import parse_strategy
from aimonk.metrics import attribute_metrics


@dataclass
class HeldOut:
    """Predictions for labelled images the model did not learn from, and what they are (for the record)."""

    targets: np.ndarray
    probabilities: np.ndarray
    description: str  # e.g. "the out-of-fold predictions of 826 images (5-fold cross-validation)"
    names: list[str] | None = None  # the images, when out-of-fold predictions are kept with the model
    folds: np.ndarray | None = None  # the fold that predicted each image


def decide(probabilities, thresholds) -> np.ndarray:
    """present: each probability at or above its attribute's threshold (thresholds (K,) or one for all; a NaN
    probability is absent). The one place a probability meets a threshold."""
    return np.asarray(probabilities) >= np.asarray(thresholds)


def metrics_at(targets: np.ndarray, probabilities: np.ndarray, thresholds, attributes) -> pd.DataFrame:
    """Precision, recall and F1 per attribute (and macro) of the decisions at `thresholds`."""
    return attribute_metrics(targets, decide(probabilities, thresholds), thresholds, attributes)


def tune_threshold(truth: np.ndarray, scores: np.ndarray, strategy: str = "f1") -> float:
    """The threshold for one attribute's known labels; 0.5 when there is nothing to tune on."""
    name, floor = parse_strategy(strategy)
    if len(truth) == 0 or truth.min() == truth.max():
        return 0.5
    cut = _best_cut(truth, scores, name, floor)
    below = scores[scores < cut]
    # halfway to the next lower score: the same decisions on these rows, a margin for new ones
    return float((cut + below.max()) / 2) if len(below) else cut


def _best_cut(truth, scores, name, floor) -> float:
    precision, recall, cuts = precision_recall_curve(truth, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if name == "f1":
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(cuts[np.argmax(f1)])
    if name == "precision":
        ok = np.flatnonzero(precision >= floor)
        return float(cuts[ok[0]]) if len(ok) else float(cuts[-1])  # lowest cut meeting the floor
    ok = np.flatnonzero(recall >= floor)
    return float(cuts[ok[-1]]) if len(ok) else float(cuts[0])  # highest cut meeting the floor


def tune_thresholds(targets: np.ndarray, probabilities: np.ndarray, strategy: str = "f1") -> np.ndarray:
    """One threshold per attribute, tuned on the known labels of every given row."""
    thresholds = []
    for column in range(targets.shape[1]):
        known = ~np.isnan(targets[:, column])
        thresholds.append(tune_threshold(targets[known, column].astype(int), probabilities[known, column], strategy))
    return np.array(thresholds)


def decisions_by_fold(targets: np.ndarray, probabilities: np.ndarray, fold_of_row: np.ndarray,
                      strategy: str = "f1") -> tuple[np.ndarray, np.ndarray]:
    """Each fold's rows decided by thresholds tuned on the other folds' rows, never on their own.

    Returns (decisions (N, K) of 0/1, thresholds (folds, K)).
    """
    decisions = np.zeros(probabilities.shape, dtype=np.int8)
    per_fold = []
    for fold in np.unique(fold_of_row):
        scored = fold_of_row == fold
        thresholds = tune_thresholds(targets[~scored], probabilities[~scored], strategy)
        decisions[scored] = decide(probabilities[scored], thresholds)
        per_fold.append(thresholds)
    return decisions, np.array(per_fold)


def metrics_decided_by_fold(targets: np.ndarray, probabilities: np.ndarray, fold_of_row: np.ndarray,
                            strategy: str, attributes) -> pd.DataFrame:
    """Precision, recall and F1 per attribute (and macro) with each fold's rows decided by thresholds tuned on
    the other folds only (decisions_by_fold): the honest score of out-of-fold predictions."""
    decisions, _ = decisions_by_fold(targets, probabilities, fold_of_row, strategy)
    return attribute_metrics(targets, decisions, 0.5, attributes)
