"""Per-attribute metrics on known labels only (NaN targets are left out)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support


def _known(targets, column):
    return ~np.isnan(targets[:, column])


def attribute_metrics(targets: np.ndarray, probabilities: np.ndarray, thresholds, attributes) -> pd.DataFrame:
    """Precision, recall, F1 per attribute at its threshold, and their macro mean."""
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (targets.shape[1],))
    rows = []
    for column, name in enumerate(attributes):
        known = _known(targets, column)
        truth = targets[known, column].astype(int)
        predicted = (probabilities[known, column] >= thresholds[column]).astype(int)
        precision, recall, f1, _ = precision_recall_fscore_support(
            truth, predicted, average="binary", zero_division=0
        )
        rows.append({"attribute": name, "precision": precision, "recall": recall, "f1": f1,
                     "positives": int(truth.sum()), "known": int(known.sum()), "threshold": thresholds[column]})
    table = pd.DataFrame(rows).set_index("attribute")
    table.loc["macro"] = table[["precision", "recall", "f1"]].mean().tolist() + [
        table["positives"].sum(), table["known"].sum(), np.nan]
    return table


def majority_classes(train_targets: np.ndarray) -> np.ndarray:
    """Each attribute's majority class (1 or 0) among known training labels."""
    rates = np.nanmean(train_targets, axis=0)
    return (np.nan_to_num(rates, nan=0.0) >= 0.5).astype(int)


def majority_baseline_f1(majority: np.ndarray, eval_targets: np.ndarray) -> np.ndarray:
    """F1 of always predicting each attribute's majority class."""
    scores = []
    for column in range(eval_targets.shape[1]):
        truth = eval_targets[_known(eval_targets, column), column].astype(int)
        _, _, f1, _ = precision_recall_fscore_support(truth, np.full_like(truth, majority[column]),
                                                      average="binary", zero_division=0)
        scores.append(f1)
    return np.array(scores)
