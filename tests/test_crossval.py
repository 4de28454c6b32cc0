import numpy as np
import pytest

from aimonk.decision.rule import DecisionRule
from aimonk.evaluation.tables import cv_report, fold_tuned_decisions
from aimonk.training.crossval import CrossValidation, out_of_fold, run_folds
from aimonk.metrics import attribute_metrics, bootstrap_f1
from conftest import calls_of

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


def synthetic_cv(n=200, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 3)) < [0.85, 0.5, 0.1]).astype(np.float32)
    targets[rng.random(targets.shape) < 0.09] = np.nan
    probabilities = np.clip(np.nan_to_num(targets, nan=0.5) * 0.8 + 0.1 + rng.normal(0, noise, targets.shape), 0.01, 0.98)
    probabilities += np.arange(n)[:, None] * 1e-5  # every row distinct, so rows can be recognised
    return CrossValidation(probabilities.astype(np.float32), np.arange(n) % 5, targets, ["a", "b", "c"],
                           [f"{i}.jpg" for i in range(n)])


def test_a_perfect_predictor_scores_one_with_a_degenerate_interval():
    cv = synthetic_cv()
    table, thresholds = cv_report(cv, rounds=200), DecisionRule(calibration="none").fit(out_of_fold(cv)).thresholds_
    for column in ("f1", "ap", "roc_auc"):
        assert table[column].tolist() == pytest.approx([1.0] * 4)
    assert (table["f1_low"] == 1.0).all() and (table["f1_high"] == 1.0).all()
    assert ((0.1 < thresholds) & (thresholds < 0.9)).all()


def test_intervals_cover_the_point_estimate():
    table = cv_report(synthetic_cv(noise=0.3), rounds=300)
    assert ((table["f1_low"] <= table["f1"]) & (table["f1"] <= table["f1_high"])).all()
    assert (table["f1_high"] - table["f1_low"] > 0).all()


def test_thresholds_are_never_tuned_on_the_rows_they_score():
    from aimonk.decision.thresholds import tune_thresholds

    cv = synthetic_cv(noise=0.3)
    with calls_of(tune_thresholds) as tunings:
        fold_tuned_decisions(cv)
    calls = [call["probabilities"] for call in tunings]  # the rows each fold's thresholds were tuned on
    assert len(calls) == len(np.unique(cv.folds))
    for fold, tuned_on in enumerate(calls):
        scored = cv.probabilities[cv.folds == fold]
        assert len(tuned_on) == (cv.folds != fold).sum()
        assert not any((row == tuned_on).all(axis=1).any() for row in scored)


def test_bootstrap_point_estimate_is_sklearns_f1_and_seeds_average(rng):
    targets = (rng.random((300, 3)) < 0.4).astype(float)
    targets[rng.random(targets.shape) < 0.1] = np.nan
    decisions = [((np.nan_to_num(targets) + rng.normal(0, 0.6, targets.shape)) > 0.5).astype(int) for _ in range(2)]
    expected = [attribute_metrics(targets, d, 0.5, ["a", "b", "c"])["f1"].to_numpy() for d in decisions]
    point, low, high = bootstrap_f1(targets, decisions[0], rounds=200)
    np.testing.assert_allclose(point, expected[0])
    assert (low < point).all() and (point < high).all()
    np.testing.assert_allclose(bootstrap_f1(targets, np.stack(decisions), rounds=0)[0], np.mean(expected, axis=0))


def test_bootstrap_is_reproducible():
    cv = synthetic_cv(noise=0.3)
    decisions = (cv.probabilities >= 0.5).astype(int)
    first = bootstrap_f1(cv.targets, decisions, rounds=50, seed=3)
    second = bootstrap_f1(cv.targets, decisions, rounds=50, seed=3)
    np.testing.assert_array_equal(first[0], second[0])


def test_cross_validate_scores_every_image_once(demo_dir, tiny_config):
    from aimonk.data.folder import load_labelled_folder

    data = load_labelled_folder(demo_dir, 48, progress=False)
    cv = run_folds(tiny_config, data, folds=3)
    assert not np.isnan(cv.probabilities).any()
    assert sorted(np.unique(cv.folds)) == [0, 1, 2] and len(cv.histories) == 3
    table, rule = cv_report(cv, rounds=50), DecisionRule().fit(out_of_fold(cv))
    assert list(table.index) == ["Attr1", "Attr2", "Attr3", "Attr4", "macro"] and len(rule.thresholds) == 4
    assert "out-of-fold predictions of 57 images (3-fold" in rule.source_
    assert "after platt calibration" in rule.source_ and len(rule.calibration_.scale) == 4


def test_cross_validate_on_some_rows_keeps_their_order(demo_dir, tiny_config):
    from aimonk.data.folder import load_labelled_folder

    data = load_labelled_folder(demo_dir, 48, progress=False)
    rows = np.arange(len(data))[::-1][:30]  # a subset, in another order
    cv = run_folds(tiny_config, data, folds=3, rows=rows)
    assert cv.names == [data.filenames[i] for i in rows]
    np.testing.assert_array_equal(cv.targets, data.values[rows])
    assert not np.isnan(cv.probabilities).any() and len(cv.probabilities) == 30


def test_save_and_load_round_trip(tmp_path):
    from aimonk.training.crossval import load_cv, save_cv

    cv = synthetic_cv(noise=0.2)
    cv.config = {"backbone": "x"}
    loaded = load_cv(save_cv(cv, tmp_path / "cv.npz"))
    np.testing.assert_array_equal(loaded.probabilities, cv.probabilities)
    np.testing.assert_array_equal(loaded.targets, cv.targets)
    assert loaded.attributes == cv.attributes and loaded.config == cv.config and loaded.names == cv.names


def test_calibrated_out_of_fold_probabilities_are_cross_fitted_once_per_method():
    from aimonk.decision.calibration import cross_fitted

    cv = synthetic_cv(noise=0.3)
    expected = cross_fitted(cv.targets, cv.probabilities, "platt")
    with calls_of(cross_fitted) as fits:
        first = cv.calibrated("platt")
        cv_report(cv, rounds=20, calibration="platt")  # its calibration error reuses them
        again = cv.calibrated("platt")
    assert np.array_equal(first, expected)
    assert again is first and [call["method"] for call in fits] == ["platt"]
    with calls_of(cross_fitted) as fits:
        assert not np.array_equal(cv.calibrated("temperature"), first)
    assert [call["method"] for call in fits] == ["temperature"]
