"""Per-attribute metrics on known labels only (NaN targets are left out)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score


def _known(targets, column):
    return ~np.isnan(targets[:, column])


def attribute_metrics(targets: np.ndarray, decisions: np.ndarray, thresholds, attributes) -> pd.DataFrame:
    """Precision, recall, F1 per attribute of the decisions (N, K) made at its threshold (recorded in the
    table), and their macro mean."""
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (targets.shape[1],))
    rows = []
    for column, name in enumerate(attributes):
        known = _known(targets, column)
        truth = targets[known, column].astype(int)
        predicted = np.asarray(decisions)[known, column].astype(int)
        precision = recall = f1 = np.nan  # no known label to score: NaN, and left out of the macro mean
        if known.any():
            precision, recall, f1, _ = precision_recall_fscore_support(
                truth, predicted, average="binary", zero_division=0
            )
        if not truth.any():  # no known positive: recall and F1 are undefined (0 would score a perfect model 0)
            precision, recall, f1 = (0.0 if predicted.any() else np.nan), np.nan, np.nan
        rows.append({"attribute": name, "precision": precision, "recall": recall, "f1": f1,
                     "positives": int(truth.sum()), "known": int(known.sum()), "threshold": thresholds[column]})
    table = pd.DataFrame(rows).set_index("attribute")
    table.loc["macro"] = table[["precision", "recall", "f1"]].mean().tolist() + [
        table["positives"].sum(), table["known"].sum(), np.nan]
    return table


def with_macro(per_attribute) -> np.ndarray:
    """Per-attribute values followed by their mean over the attributes that have one (NaN if none has)."""
    values = np.asarray(per_attribute, dtype=float)
    return np.append(values, np.nanmean(values) if not np.isnan(values).all() else np.nan)


def majority_classes(train_targets: np.ndarray) -> np.ndarray:
    """Each attribute's majority class (1 or 0) among known training labels."""
    rates = np.nanmean(train_targets, axis=0)
    return (np.nan_to_num(rates, nan=0.0) >= 0.5).astype(int)


def always_present_f1(targets: np.ndarray) -> np.ndarray:
    """The informative baseline per attribute: the F1 of calling it present on every image, 2p / (1 + p) with p
    its positive rate among the known labels of `targets` (NaN where none is known). Unlike the majority class,
    which scores 0 for every attribute under 50% positive, it is what a model must beat to have learned
    anything about a rare attribute."""
    known = ~np.isnan(targets)
    counts = known.sum(axis=0)
    positives = np.where(known, targets, 0).sum(axis=0)
    rate = np.divide(positives, counts, out=np.full(targets.shape[1], np.nan), where=counts > 0)
    return 2 * rate / (1 + rate)


def bootstrap_f1(targets: np.ndarray, decisions: np.ndarray, rounds: int = 1000, seed: int = 0):
    """F1 per attribute and macro with 95% percentile intervals, resampling images (known labels only).

    decisions: (N, K) of 0/1, or (S, N, K) for S models scored on the same images (e.g. training seeds):
    then each F1 is the mean over the S models, on every resample. Returns (f1, low, high), each (K + 1,);
    with rounds=0 the intervals are NaN.
    """
    decisions = np.asarray(decisions, dtype=float)
    decisions = decisions[None] if decisions.ndim == 2 else decisions
    known = ~np.isnan(targets)
    truth = np.where(known, targets, 0.0)
    # per model, image and attribute: a true positive, a false positive, a false negative (0 or 1)
    tp, fp, fn = decisions * truth, decisions * (1 - truth) * known, (1 - decisions) * truth

    def f1(weights: np.ndarray) -> np.ndarray:  # weights (R, N): how often each image is drawn
        counts = [np.tensordot(weights, c, axes=([1], [1])) for c in (tp, fp, fn)]  # (R, S, K)
        scores = 2 * counts[0] / np.maximum(2 * counts[0] + counts[1] + counts[2], 1e-12)
        scores = scores.mean(axis=1)
        return np.column_stack([scores, scores.mean(axis=1)])

    point = f1(np.ones((1, len(targets))))[0]
    if rounds <= 0:
        return point, np.full_like(point, np.nan), np.full_like(point, np.nan)
    rng = np.random.default_rng(seed)
    draws = np.stack([np.bincount(rng.integers(0, len(targets), len(targets)), minlength=len(targets))
                      for _ in range(rounds)]).astype(float)
    samples = np.concatenate([f1(chunk) for chunk in np.array_split(draws, max(1, rounds // 100))])
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return point, low, high


def ranking_scores(targets: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and ROC-AUC per attribute on known labels (NaN where only one class is known)."""
    ap, auc = [], []
    for column in range(targets.shape[1]):
        known = _known(targets, column)
        truth, scores = targets[known, column].astype(int), probabilities[known, column]
        both = len(truth) > 0 and truth.min() != truth.max()
        ap.append(average_precision_score(truth, scores) if both else np.nan)
        auc.append(roc_auc_score(truth, scores) if both else np.nan)
    return np.array(ap), np.array(auc)
