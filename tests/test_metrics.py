import numpy as np

from aimonk.metrics import attribute_metrics, majority_baseline_f1, majority_classes


def test_perfect_predictor_scores_one_and_nan_rows_are_ignored():
    targets = np.array([[1, 0], [0, np.nan], [1, 1], [np.nan, 0]], dtype=np.float32)
    decisions = np.nan_to_num(targets, nan=1).astype(bool)  # whatever is decided for unknown labels
    table = attribute_metrics(targets, decisions, 0.5, ["a", "b"])
    assert table.loc["macro", "f1"] == 1.0
    assert table.loc["a", "known"] == 3 and table.loc["b", "known"] == 3


def test_the_decisions_are_scored_and_their_thresholds_recorded():
    targets = np.array([[1, 1], [0, 1], [1, 0]], dtype=np.float32)
    decisions = np.array([[True, True], [True, False], [False, False]])
    table = attribute_metrics(targets, decisions, [0.2, 0.7], ["a", "b"])
    # a: 1 true positive, 1 false positive, 1 false negative; b: 1 true positive, 1 false negative
    assert table.loc["a", ["precision", "recall", "f1"]].tolist() == [0.5, 0.5, 0.5]
    assert table.loc["b", ["precision", "recall"]].tolist() == [1.0, 0.5] and table.loc["b", "f1"] == 2 / 3
    assert table["threshold"].tolist()[:2] == [0.2, 0.7]


def test_majority_baseline_f1_formula():
    targets = np.array([[1, 0]] * 8 + [[0, 1]] * 2, dtype=np.float32)
    majority = majority_classes(targets)
    assert majority.tolist() == [1, 0]
    p = 0.8  # always-positive F1 = 2p / (1 + p); always-negative scores 0 on the positive class
    np.testing.assert_allclose(majority_baseline_f1(majority, targets), [2 * p / (1 + p), 0.0])
