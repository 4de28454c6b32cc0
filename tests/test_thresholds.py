import numpy as np
import pytest

from aimonk.config import parse_strategy
from aimonk.decision.rule import DecisionRule
from aimonk.decision.thresholds import decide, tune_threshold, tune_thresholds


def test_a_probability_at_its_threshold_is_present_and_nan_is_absent():
    probabilities = np.array([[0.3, 0.7], [0.29, np.nan], [1.0, 0.0]])
    expected = [[True, False], [False, False], [True, False]]
    assert decide(probabilities, [0.3, 0.71]).tolist() == expected
    assert decide(probabilities, 0.3).tolist() == [[True, True], [False, False], [True, False]]


def test_the_rule_decides_at_its_stored_thresholds_unless_given_others():
    rule = DecisionRule.untuned(2, "a test")
    probabilities = np.array([[0.5, 0.49], [0.2, 0.9]])
    assert rule.decide(probabilities).tolist() == [[True, False], [False, True]]
    assert rule.decide(probabilities, [0.1, 0.95]).tolist() == [[True, False], [True, False]]


def test_f1_threshold_separates_a_separable_attribute():
    truth = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.9])
    threshold = tune_threshold(truth, scores, "f1")
    assert 0.3 < threshold <= 0.35


def test_precision_floor_gives_the_best_recall_meeting_it():
    truth = np.array([1, 0, 1, 0, 1, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    threshold = tune_threshold(truth, scores, "precision:0.6")
    chosen = scores >= threshold
    assert truth[chosen].mean() >= 0.6 and chosen.sum() == 6  # everything: precision 4/6


def test_recall_floor():
    truth = np.array([1, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    threshold = tune_threshold(truth, scores, "recall:0.6")
    assert threshold == pytest.approx(0.75)  # keeps 0.9 and 0.8, halfway to the next score


def test_single_class_keeps_half():
    assert tune_threshold(np.array([1, 1]), np.array([0.2, 0.3])) == 0.5


def test_bad_strategy():
    with pytest.raises(ValueError, match="threshold_strategy"):
        parse_strategy("precision:2")


def test_nan_targets_are_ignored():
    targets = np.array([[1], [0], [np.nan], [1]], dtype=np.float32)
    probabilities = np.array([[0.8], [0.3], [0.99], [0.6]])
    assert tune_thresholds(targets, probabilities)[0] == pytest.approx(0.45)  # between 0.3 and 0.6


def test_a_floor_met_only_by_calling_everything_present_is_named_and_warned(rng):
    """An attribute 95% positive meets precision >= 0.8 by calling every image PRESENT: the rule says so."""
    from aimonk.decision.rule import DecisionRule
    from aimonk.decision.thresholds import HeldOut

    targets = np.column_stack([rng.random(200) < 0.95, rng.random(200) < 0.5]).astype(float)
    probabilities = np.column_stack([rng.random(200), np.clip(targets[:, 1] * 0.6 + rng.random(200) * 0.4, 0, 1)])
    held_out = HeldOut(targets, probabilities, "test rows")
    with pytest.warns(UserWarning, match=r"precision:0.8 decides every known held-out image the same way for "
                                         r"common \(PRESENT\)"):
        rule = DecisionRule("precision:0.8", "none").fit(held_out, ["common", "ranked"])
    assert "common (PRESENT)" in rule.source_ and "ranked" not in rule.source_.split("same way for")[1]
    assert "same way" not in DecisionRule("f1", "none").fit(held_out, ["common", "ranked"]).source_
