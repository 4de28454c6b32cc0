import numpy as np
import pytest

from aimonk.metrics import always_present_f1, attribute_metrics, majority_classes


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


def test_the_always_present_baseline_is_2p_over_1_plus_p_on_known_labels():
    targets = np.array([[1, 0, np.nan]] * 8 + [[0, 1, np.nan]] * 2 + [[np.nan, np.nan, np.nan]] * 5,
                       dtype=np.float32)
    assert majority_classes(targets[:, :2]).tolist() == [1, 0]
    # 80% and 20% positive among the 10 known labels (the NA rows left out); the minority attribute scores
    # 2 * 0.2 / 1.2 = 0.333, not the majority class's 0.0; no known label: NaN
    np.testing.assert_allclose(always_present_f1(targets), [2 * 0.8 / 1.8, 2 * 0.2 / 1.2, np.nan])
    truth = targets[:10, 1].astype(int)  # it is the F1 of deciding "present" everywhere
    from sklearn.metrics import f1_score
    assert always_present_f1(targets)[1] == pytest.approx(f1_score(truth, np.ones_like(truth)))
