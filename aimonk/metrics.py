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


def majority_baseline_f1(train_targets: np.ndarray, eval_targets: np.ndarray) -> np.ndarray:
    """F1 of always predicting each attribute's majority class in the training labels."""
    scores = []
    for column in range(eval_targets.shape[1]):
        train_known = train_targets[_known(train_targets, column), column]
        majority = int(train_known.mean() >= 0.5) if len(train_known) else 0
        truth = eval_targets[_known(eval_targets, column), column].astype(int)
        _, _, f1, _ = precision_recall_fscore_support(truth, np.full_like(truth, majority), average="binary",
                                                      zero_division=0)
        scores.append(f1)
    return np.array(scores)

