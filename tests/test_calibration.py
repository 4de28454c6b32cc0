"""Calibration maps fitted on held-out predictions, and the expected calibration error."""
import numpy as np
import pytest

from aimonk.decision.calibration import Calibration, cross_fitted, expected_calibration_error, fit_calibration, logit, sigmoid


def skewed(n=4000, seed=0):
    """Labels drawn from true probabilities, and a model that reports them pushed up and over-confident
    (what a class-balanced head does to a rare attribute)."""
    rng = np.random.default_rng(seed)
    true = sigmoid(rng.normal(-2.0, 1.5, (n, 2)))
    targets = (rng.random((n, 2)) < true).astype(np.float32)
    targets[rng.random(targets.shape) < 0.1] = np.nan
    return targets, sigmoid(2.0 * logit(true) + 1.5)


def test_ece_is_zero_for_a_calibrated_model_and_large_for_a_skewed_one():
    rng = np.random.default_rng(1)
    p = rng.random((20000, 1))
    truth = (rng.random((20000, 1)) < p).astype(float)
    assert expected_calibration_error(truth, p)[0] < 0.02
    assert expected_calibration_error(truth, np.clip(p + 0.3, 0, 1))[0] > 0.2


def test_platt_scaling_recovers_the_skew_and_lowers_the_error():
    targets, reported = skewed()
    calibration = fit_calibration(targets, reported, "platt")
    np.testing.assert_allclose(calibration.scale, 0.5, atol=0.08)  # the inverse of the skew
    np.testing.assert_allclose(calibration.bias, -0.75, atol=0.25)
    before = expected_calibration_error(targets, reported)
    after = expected_calibration_error(targets, cross_fitted(targets, reported, "platt"))
    assert (after < before / 3).all()


def test_temperature_only_scales_and_none_is_no_map():
    targets, reported = skewed()
    temperature = fit_calibration(targets, reported, "temperature")
    assert (temperature.bias == 0).all() and (temperature.scale > 0).all()
    assert fit_calibration(targets, reported, "none") is None
    with pytest.raises(ValueError, match="calibration must be one of platt, temperature, none"):
        fit_calibration(targets, reported, "isotonic")


def test_the_map_keeps_the_order_of_the_scores_and_round_trips():
    targets, reported = skewed()
    calibration = fit_calibration(targets, reported)
    mapped = calibration(reported)
    for column in range(2):
        order = np.argsort(reported[:, column])
        assert (np.diff(mapped[order, column]) >= 0).all()  # the same decisions at a mapped threshold
    again = Calibration.from_dict(calibration.to_dict())
    np.testing.assert_allclose(again(reported), mapped)


def test_an_attribute_with_one_known_class_keeps_the_identity():
    targets = np.array([[1, 0], [1, 1], [np.nan, 0], [1, 1]], dtype=float)
    calibration = fit_calibration(targets, np.full((4, 2), 0.7))
    assert calibration.scale[0] == 1 and calibration.bias[0] == 0


def test_a_steep_map_on_a_confident_logit_gives_0_or_1_without_an_overflow_warning():
    import warnings

    from aimonk.decision.calibration import Calibration

    steep = Calibration("platt", np.array([100.0]), np.array([-50.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in exp" was printed in evaluate
        mapped = steep(np.array([[1e-9], [0.5], [1 - 1e-9]]))
    assert mapped[0, 0] == 0.0 and mapped[2, 0] == 1.0 and 0 < mapped[1, 0] < 1e-20


def test_the_rule_applies_to_extreme_logits_without_an_overflow_warning():
    import warnings

    from aimonk.decision.rule import DecisionRule

    rule = DecisionRule.untuned(2, "a test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 exp(200) overflowed in the rule's own sigmoid
        probabilities, present = rule.apply(np.array([[-200.0, 200.0]], dtype=np.float32))
    assert probabilities.tolist() == [[0.0, 1.0]] and present.tolist() == [[False, True]]
