import numpy as np

from aimonk.metrics import attribute_metrics, majority_baseline_f1, majority_classes


def test_perfect_predictor_scores_one_and_nan_rows_are_ignored():
    targets = np.array([[1, 0], [0, np.nan], [1, 1], [np.nan, 0]], dtype=np.float32)
    probabilities = np.nan_to_num(targets, nan=0.77)  # whatever is predicted for unknown labels
    table = attribute_metrics(targets, probabilities, 0.5, ["a", "b"])
    assert table.loc["macro", "f1"] == 1.0
    assert table.loc["a", "known"] == 3 and table.loc["b", "known"] == 3


def test_per_attribute_thresholds_are_used():
    targets = np.array([[1], [0]], dtype=np.float32)
    probabilities = np.array([[0.3], [0.1]])
    assert attribute_metrics(targets, probabilities, [0.2], ["a"]).loc["a", "f1"] == 1.0
    assert attribute_metrics(targets, probabilities, [0.5], ["a"]).loc["a", "f1"] == 0.0


def test_majority_baseline_f1_formula():
    targets = np.array([[1, 0]] * 8 + [[0, 1]] * 2, dtype=np.float32)
    majority = majority_classes(targets)
    assert majority.tolist() == [1, 0]
    p = 0.8  # always-positive F1 = 2p / (1 + p); always-negative scores 0 on the positive class
    np.testing.assert_allclose(majority_baseline_f1(majority, targets), [2 * p / (1 + p), 0.0])
