"""Finding the labels to check: known labels the cross-validated model confidently contradicts, and NA cells
it predicts with high confidence, from out-of-fold predictions (`aimonk evaluate DATA --cv K`).

Label issues follow confident learning (Northcutt et al., JAIR 2021), per attribute as a two-class problem,
as cleanlab's `find_label_issues(filter_by="confident_learning", ranked_by_label_quality="self_confidence")`
does: each class's threshold is the mean predicted probability of that class among the images labelled with
it; an image is counted as confidently of a class when its probability for that class reaches the threshold
(the larger margin wins when both do); a label is an issue when the image is confidently of the *other*
class. Issues are ranked by self-confidence, the predicted probability of the given label, lowest first.
(cleanlab itself is not a dependency: its wheels are not available offline here, and the binary case is
these few lines.)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from aimonk.decision.thresholds import decide

ISSUE_COLUMNS = ["attribute", "filename", "given", "suggested", "probability", "self_confidence", "rank"]


def confident_label_issues(truth: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Indices (into these known labels) whose label is confidently contradicted, most doubtful first."""
    truth = truth.astype(int)
    if len(truth) == 0 or truth.min() == truth.max():
        return np.array([], dtype=int)
    of_class = np.column_stack([1 - probability, probability])  # predicted probability of class 0 and 1
    thresholds = np.array([of_class[truth == c, c].mean() for c in (0, 1)])
    margin = of_class - thresholds
    confident = np.where(margin.max(1) >= 0, margin.argmax(1), -1)
    issues = np.flatnonzero((confident >= 0) & (confident != truth))
    self_confidence = of_class[issues, truth[issues]]
    return issues[np.argsort(self_confidence, kind="stable")]


def label_issues(targets: np.ndarray, probabilities: np.ndarray, filenames, attributes) -> pd.DataFrame:
    """Every confidently contradicted known label, per attribute in rank order (ISSUE_COLUMNS)."""
    rows = []
    for column, name in enumerate(attributes):
        known = np.flatnonzero(~np.isnan(targets[:, column]))
        truth, probability = targets[known, column], probabilities[known, column]
        for rank, index in enumerate(confident_label_issues(truth, probability), start=1):
            given = int(truth[index])
            rows.append({"attribute": name, "filename": filenames[known[index]], "given": given,
                         "suggested": 1 - given, "probability": float(probability[index]),
                         "self_confidence": float(probability[index] if given else 1 - probability[index]),
                         "rank": rank})
    return pd.DataFrame(rows, columns=ISSUE_COLUMNS)


def na_suggestions(targets: np.ndarray, probabilities: np.ndarray, filenames, attributes,
                   confidence: float = 0.95) -> pd.DataFrame:
    """NA cells whose (calibrated) probability is at least `confidence` for one value, most confident first."""
    rows = []
    for column, name in enumerate(attributes):
        for index in np.flatnonzero(np.isnan(targets[:, column])):
            probability = float(probabilities[index, column])
            if max(probability, 1 - probability) >= confidence:
                rows.append({"attribute": name, "filename": filenames[index],
                             "suggested": int(decide(probability, 0.5)), "probability": probability,
                             "confidence": max(probability, 1 - probability)})
    table = pd.DataFrame(rows, columns=["attribute", "filename", "suggested", "probability", "confidence"])
    return table.sort_values(["attribute", "confidence"], ascending=[True, False], kind="stable").reset_index(drop=True)


def top_issue_rows(issues: pd.DataFrame, filenames, attributes, per_attribute: int = 4) -> dict[int, list[int]]:
    """{attribute column: the rows (positions in `filenames`) of its first issues}, for a gallery."""
    position = {name: row for row, name in enumerate(filenames)}
    return {column: [position[name] for name in issues.loc[issues["attribute"] == attribute, "filename"][:per_attribute]]
            for column, attribute in enumerate(attributes)}
