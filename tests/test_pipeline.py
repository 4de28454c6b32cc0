"""The training route: fit, then thresholds chosen on predictions for images the model did not learn from."""
import numpy as np
import pytest
import torch

import aimonk.training.run as pipeline
from aimonk.data.folder import load_labelled_folder
from aimonk.decision.rule import DecisionRule
from aimonk.model.checkpoint import Checkpoint
from aimonk.training.loop import TrainingInterrupted, fit
from conftest import interrupt_call

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture(scope="module")
def data(demo_dir):
    return load_labelled_folder(demo_dir, 48, progress=False)


@pytest.fixture(scope="module")
def probe_config(tiny_config):
    """The default recipe's kind of run (frozen backbone, the head solved as a linear probe), tiny."""
    return tiny_config.replace(backbone="resnet18", weights="none", freeze="all", augment="flip", amp=False,
                               head_solver="lbfgs", head_c=0.01, threshold_source="cv", threshold_folds=3)


def test_the_linear_probe_run_solves_the_head_in_one_pass(data, probe_config):
    result = fit(probe_config, data, progress=False)
    untrained = torch.nn.Linear(512, 4)
    assert len(result.history["epochs"]) == 1 and len(result.history["iteration_loss"]) > 3
    assert result.history["iteration_loss"][-1] < result.history["iteration_loss"][0]
    assert result.history["head_c"] == [0.01] * 4
    assert result.model.head[-1].weight.abs().sum() > 0 and result.model.head[-1].weight.shape == untrained.weight.shape
    assert result.val_probabilities.shape == (len(result.val_rows), 4)


def test_cv_thresholds_come_from_out_of_fold_predictions_on_the_training_rows(data, probe_config, tmp_path,
                                                                               monkeypatch):
    seen = {}
    real = pipeline.cross_validate

    def spy(config, data, folds, **options):
        seen["rows"], seen["folds"] = options["rows"], folds
        cv = real(config, data, folds, **options)
        seen["oof"] = cv
        return cv

    monkeypatch.setattr(pipeline, "cross_validate", spy)
    trained = pipeline.train(probe_config, data, tmp_path, progress=False)
    result = trained.result
    np.testing.assert_array_equal(seen["rows"], result.train_rows)
    assert seen["folds"] == 3 and not set(seen["rows"]) & set(result.val_rows)
    expected_rule = DecisionRule("f1", "platt").fit(pipeline.out_of_fold(seen["oof"]))
    expected = expected_rule.thresholds_
    stored = Checkpoint.load(tmp_path / "model.pt").rule
    np.testing.assert_allclose(stored.thresholds, expected)
    assert not np.allclose(expected, 0.5)
    assert "out-of-fold predictions of" in stored.source_
    assert stored.source_ == trained.rule.source_
    np.testing.assert_allclose(stored.calibration_.scale, expected_rule.calibration_.scale)  # the same predictions


def test_val_thresholds_are_tuned_on_the_validation_predictions(data, probe_config, tmp_path):
    from aimonk.decision.thresholds import tune_thresholds

    trained = pipeline.train(probe_config.replace(threshold_source="val", threshold_strategy="recall:0.9"), data,
                             tmp_path, progress=False)
    result = trained.result
    from aimonk.decision.calibration import fit_calibration

    targets = data.values[result.val_rows]
    calibrated = fit_calibration(targets, result.val_probabilities, "platt")(result.val_probabilities)
    expected = tune_thresholds(targets, calibrated, "recall:0.9")
    np.testing.assert_allclose(Checkpoint.load(tmp_path / "model.pt").rule.thresholds, expected)
    assert "recall:0.9" in trained.rule.source_ and "validation images" in trained.rule.source_


def test_no_tuning_keeps_one_half(data, probe_config, tmp_path):
    trained = pipeline.train(probe_config.replace(threshold_source="none"), data, tmp_path, progress=False)
    stored = Checkpoint.load(tmp_path / "model.pt").rule
    assert stored.thresholds == [0.5] * 4 and stored.calibration_ is None
    assert trained.rule.source_.startswith("0.5, not tuned")


@pytest.mark.parametrize("change, message", [
    ({"threshold_source": "test"}, "threshold_source must be one of cv, val, none"),
    ({"head_solver": "sgd"}, "head_solver must be one of lbfgs, adam"),
    ({"head_c": -1.0}, "head_c must be at least 0.0"),
    ({"threshold_folds": 1}, "threshold_folds must be at least 2"),
    ({"threshold_source": "val", "val_fraction": 0.0}, "threshold_source val needs a validation split"),
])
def test_bad_threshold_and_probe_options_fail_when_the_configuration_is_built(probe_config, change, message):
    with pytest.raises(ValueError, match=message):
        probe_config.replace(**change)


def test_a_one_pass_run_plots_its_validation_scores_per_attribute(data, probe_config):
    from aimonk.plots import plot_epoch_curves

    result = fit(probe_config, data, progress=False)
    history = result.history
    figure = plot_epoch_curves(history, result.recipe)
    bars = figure.axes[0].containers
    assert len(bars) == 3 and len(bars[2]) == 4  # precision, recall, F1 for each of the 4 attributes
    np.testing.assert_allclose([b.get_height() for b in bars[2]], list(history["epochs"][0]["val_f1"].values()))


def test_a_run_without_validation_plots_its_training_loss_without_warnings(data, probe_config):
    import warnings

    from aimonk.plots import plot_epoch_curves

    result = fit(probe_config.replace(val_fraction=0.0), data, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "No artists with labels found to put in legend"
        figure = plot_epoch_curves(result.history, result.recipe)
    assert len(figure.axes) == 1 and "no validation split" in figure.axes[0].get_title()


def test_a_run_on_every_image_ends_by_printing_the_f1_evaluate_then_reports(data, probe_config, tmp_path, capsys):
    """The out-of-fold F1 printed as training ends is what `aimonk evaluate` on the folder reports."""
    import re

    from aimonk.evaluation.folder import evaluate_checkpoint

    pipeline.train(probe_config.replace(val_fraction=0.0), data, tmp_path)
    printed = re.search(r"out-of-fold F1 \(each fold decided by thresholds from the other folds\): (.*)",
                        capsys.readouterr().out).group(1)
    scores = {name: float(value) for name, value in (item.split() for item in printed.split(", "))}
    evaluation = evaluate_checkpoint(data, tmp_path / "model.pt", progress=False)
    assert evaluation.subset == "out-of-fold" and list(scores) == [*data.attributes, "macro"]
    assert list(scores.values()) == pytest.approx(evaluation.table["f1"].tolist(), abs=5e-4)


def test_the_predictor_reports_calibrated_probabilities(data, probe_config, tmp_path):
    from aimonk.serve.predictor import Predictor

    import dataclasses

    trained = pipeline.train(probe_config, data, tmp_path, progress=False)
    predictor = Predictor.load(tmp_path / "model.pt", "cpu")
    calibrated = predictor.probabilities(data.images[:8])
    predictor.rule = dataclasses.replace(predictor.rule, calibration_=None)
    raw = predictor.probabilities(data.images[:8])
    np.testing.assert_allclose(calibrated, trained.rule.calibration_(raw), atol=1e-5)
    assert not np.allclose(calibrated, raw, atol=1e-3)


def interrupt_solve(monkeypatch, call: int) -> list:
    """Ctrl-C in the call-th linear-probe solve; returns the calls made."""
    calls = []
    interrupt_call(monkeypatch, "solve_head", call, calls)
    return calls


def test_ctrl_c_in_the_threshold_folds_keeps_the_model_with_untuned_thresholds_and_says_so(
        data, probe_config, tmp_path, monkeypatch, capsys):
    calls = interrupt_solve(monkeypatch, 3)  # the final model, fold 1, then Ctrl-C in fold 2
    with pytest.raises(TrainingInterrupted) as stopped:
        pipeline.train(probe_config.replace(val_fraction=0.0), data, tmp_path)
    assert len(calls) == 3  # no fold trained after the interruption
    assert stopped.value.result is not None  # the trained model is kept
    saved = Checkpoint.load(tmp_path / "model.pt")
    assert saved.rule.thresholds == [0.5] * 4 and saved.out_of_fold is None
    assert "threshold cross-validation was interrupted" in saved.rule.source_
    message = str(stopped.value)
    assert f"kept with 0.5 thresholds in {tmp_path / 'model.pt'}: train again to tune them" in message
    assert "epoch None" not in message + capsys.readouterr().out


def test_a_cross_validation_stops_at_the_interrupted_fold(data, probe_config, monkeypatch):
    from aimonk.training.crossval import cross_validate

    calls = interrupt_solve(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        cross_validate(probe_config, data, 3, progress=False)
    assert len(calls) == 2
