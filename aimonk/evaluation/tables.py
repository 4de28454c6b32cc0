"""Score tables: per attribute and macro, beside the always-present baseline (the F1 of calling every image
positive, 2p / (1 + p) for a positive rate p)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from aimonk.decision.calibration import expected_calibration_error
from aimonk.decision.thresholds import decide, decisions_by_fold, metrics_at
from aimonk.metrics import always_present_f1, bootstrap_f1, ranking_scores, with_macro

BASELINE = "always_present_f1"  # the baseline's column, and the lift's reference
from aimonk.training.crossval import CrossValidation


def macro_of(values: np.ndarray) -> float:
    """The macro mean over the attributes that could be scored (as the F1's macro: an attribute with no known
    label is NaN, left out, and named in the evaluation's notes)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def score(targets, probabilities, thresholds, attributes) -> pd.DataFrame:
    """Precision, recall and F1 at the thresholds, the ECE, the always-present F1 and the lift over it."""
    table = metrics_at(targets, probabilities, thresholds, attributes)
    table["ece"] = with_macro(expected_calibration_error(targets, probabilities))
    baseline = always_present_f1(np.asarray(targets, dtype=float))
    table[BASELINE] = list(baseline) + [macro_of(baseline)]
    table["lift"] = table["f1"] - table[BASELINE]
    return table


def compare_thresholds(targets, probabilities, thresholds, attributes) -> pd.DataFrame:
    """Precision, recall and F1 at 0.5 beside those at the given thresholds (the ones stored with the model),
    and the always-present baseline's F1."""
    at_half = score(targets, probabilities, 0.5, attributes)
    stored = metrics_at(targets, probabilities, thresholds, attributes)
    return pd.DataFrame({
        "precision@0.5": at_half["precision"], "recall@0.5": at_half["recall"], "f1@0.5": at_half["f1"],
        "precision@stored": stored["precision"], "recall@stored": stored["recall"], "f1@stored": stored["f1"],
        BASELINE: at_half[BASELINE], "threshold": stored["threshold"],
    })


def worst_mistakes(targets, probabilities, thresholds, per_attribute: int = 4) -> dict[int, list[int]]:
    """For each attribute, the rows wrong with the most confidence (known labels only)."""
    worst, decisions = {}, decide(probabilities, thresholds)
    for column in range(targets.shape[1]):
        truth, predicted = targets[:, column], decisions[:, column]
        wrong = np.flatnonzero(~np.isnan(truth) & (predicted != (truth == 1)))
        confidence = np.abs(probabilities[wrong, column] - truth[wrong])
        worst[column] = wrong[np.argsort(-confidence)][:per_attribute].tolist()
    return worst


def fold_tuned_decisions(cv: CrossValidation, strategy: str = "f1") -> tuple[np.ndarray, np.ndarray]:
    """Decisions where each fold's rows use thresholds tuned on the other folds' out-of-fold rows."""
    return decisions_by_fold(cv.targets, cv.probabilities, cv.folds, strategy)


def cv_report(cv: CrossValidation, strategy: str = "f1", rounds: int = 1000, seed: int = 0,
              calibration: str = "platt"):
    """Per attribute and macro: precision, recall, F1 (honestly tuned thresholds) with 95% CI, F1 at 0.5,
    AP, ROC-AUC, the expected calibration error of the raw out-of-fold probabilities and after calibration
    (each fold's map fitted on the other folds), the always-present F1 and the lift over it (one row
    per attribute, and "macro")."""
    decisions, _ = fold_tuned_decisions(cv, strategy)
    tuned = score(cv.targets, decisions.astype(float), 0.5, cv.attributes)
    at_half = metrics_at(cv.targets, cv.probabilities, 0.5, cv.attributes)
    _, low, high = bootstrap_f1(cv.targets, decisions, rounds, seed)
    ap, auc = ranking_scores(cv.targets, cv.probabilities)
    ece = expected_calibration_error(cv.targets, cv.probabilities)
    ece_calibrated = expected_calibration_error(cv.targets, cv.calibrated(calibration))
    table = pd.DataFrame({
        "precision": tuned["precision"], "recall": tuned["recall"], "f1": tuned["f1"],
        "f1_low": low, "f1_high": high, "f1@0.5": at_half["f1"],
        "ap": with_macro(ap), "roc_auc": with_macro(auc), "ece": with_macro(ece),
        "ece_calibrated": with_macro(ece_calibrated),
        BASELINE: tuned[BASELINE], "positives": tuned["positives"], "known": tuned["known"],
        "lift": tuned["lift"],
    }, index=tuned.index)
    return table


