"""The training route: fit, then thresholds chosen on predictions for images the model did not learn from."""
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from aimonk.data.folder import load_labelled_folder
from aimonk.model.checkpoint import Checkpoint
from aimonk.training.loop import TrainingInterrupted, fit
from aimonk.workflows import cross_validate, train
from conftest import Interrupt

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture(scope="module")
def data(demo_dir):
    return load_labelled_folder(demo_dir, 48, progress=False)


def scores_of(probabilities):
    """Probabilities as the rule scores them: clipped to [1e-6, 1 - 1e-6] (its calibration works on logits)."""
    return np.clip(np.asarray(probabilities, dtype=np.float64), 1e-6, 1 - 1e-6)


def cut_by_hand(truth, scores, strategy):
    """Computed here, without the package: among the distinct scores as cuts (present at score >= cut), the one
    of highest F1 (the lowest of equals), or the highest whose recall is at least R ("recall:R"); None when the
    known labels hold one class only (nothing to tune: the rule keeps 0.5)."""
    truth = truth.astype(int)
    if truth.min() == truth.max():
        return None
    cuts = np.unique(scores)
    predicted = scores[None, :] >= cuts[:, None]
    true_positives = (predicted & (truth == 1)).sum(1)
    precision = true_positives / predicted.sum(1)
    recall = true_positives / (truth == 1).sum()
    if strategy == "f1":
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return cuts[np.argmax(f1)]
    floor = float(strategy.split(":")[1])
    return cuts[np.flatnonzero(recall >= floor)[-1]]


def check_decisions(rule, targets, probabilities, strategy):
    """The stored rule (calibration, then thresholds) decides every held-out image as the cut computed by hand
    on the uncalibrated scores does (Platt scaling is increasing: it keeps their order)."""
    decided = rule.decide(rule.calibrate(probabilities))
    assert (rule.calibration_.scale > 0).all()
    for column in range(targets.shape[1]):
        known = ~np.isnan(targets[:, column])
        scores = scores_of(probabilities[known, column])
        cut = cut_by_hand(targets[known, column], scores, strategy)
        expected = scores >= cut if cut is not None else probabilities[known, column] >= 0.5
        np.testing.assert_array_equal(decided[known, column], expected, err_msg=f"attribute {column}")


def platt_log_loss(truth, probabilities, scale, bias):
    z = scale * np.log(probabilities / (1 - probabilities)) + bias
    return float(np.mean(np.logaddexp(0, z) - truth * z))


@pytest.fixture(scope="module")
def probe_config(tiny_config):
    """The default recipe's kind of run (frozen backbone, the head solved as a linear probe), tiny."""
    return tiny_config.replace(backbone="resnet18", weights="none", freeze="all", augment="flip", amp=False,
                               head_solver="lbfgs", head_c=0.01, threshold_source="cv", threshold_folds=3)


def test_the_linear_probe_run_solves_the_head_in_one_pass(data, probe_config):
    result = fit(probe_config, data)
    untrained = torch.nn.Linear(512, 4)
    assert result.history["epochs"] == [] and result.best_epoch is None  # one solve, no epoch
    assert len(result.history["iteration_loss"]) > 3
    assert result.history["iteration_loss"][-1] < result.history["iteration_loss"][0]
    assert result.history["head_c"] == [0.01] * 4
    assert result.model.head[-1].weight.abs().sum() > 0 and result.model.head[-1].weight.shape == untrained.weight.shape
    assert result.val_probabilities.shape == (len(result.val_rows), 4)


def test_cv_thresholds_come_from_out_of_fold_predictions_on_the_training_rows(data, probe_config, tmp_path):
    fits = Interrupt(at=0, on="fit_started")  # never interrupts: records the rows of every fit
    trained = train(data, probe_config, tmp_path, progress=False, callbacks=[fits])
    result = trained.result
    model_fit, *folds = fits.calls  # the model's fit, then the threshold cross-validation's folds
    np.testing.assert_array_equal(model_fit[0], result.train_rows)
    assert len(folds) == 3 and len(result.val_rows) > 0
    scored = np.concatenate([val_part for _, val_part in folds])
    assert sorted(scored) == sorted(result.train_rows) and len(scored) == len(set(scored))  # each once
    for train_part, val_part in folds:
        assert sorted([*train_part, *val_part]) == sorted(result.train_rows)  # never a validation image
    saved = Checkpoint.load(tmp_path / "model.pt")
    stored = saved.rule
    names = [data.filenames[i] for i in result.train_rows]
    assert sorted(saved.out_of_fold.names) == sorted(names)
    rows = [list(data.filenames).index(name) for name in saved.out_of_fold.names]
    targets, probabilities = data.values[rows], saved.out_of_fold.probabilities
    fold_of_name = {data.filenames[i]: f for f, (_, val_part) in enumerate(folds) for i in val_part}
    assert [fold_of_name[n] for n in saved.out_of_fold.names] == saved.out_of_fold.folds.tolist()  # as it scored
    check_decisions(stored, targets, probabilities, "f1")
    assert not np.allclose(stored.thresholds, 0.5)
    assert "out-of-fold predictions of" in stored.source_ and stored.source_ == trained.rule.source_
    for column in range(4):  # Platt scaling fitted on these predictions: no worse a log loss than none
        known = ~np.isnan(targets[:, column])
        truth, scores = targets[known, column], scores_of(probabilities[known, column])
        assert platt_log_loss(truth, scores, stored.calibration_.scale[column], stored.calibration_.bias[column]) \
            <= platt_log_loss(truth, scores, 1.0, 0.0) + 1e-9


def test_val_thresholds_are_tuned_on_the_validation_predictions(data, probe_config, tmp_path):
    trained = train(data, probe_config.replace(threshold_source="val", threshold_strategy="recall:0.9"), tmp_path,
                    progress=False)
    result = trained.result
    targets = data.values[result.val_rows]
    stored = Checkpoint.load(tmp_path / "model.pt").rule
    check_decisions(stored, targets, result.val_probabilities, "recall:0.9")
    decided = stored.decide(stored.calibrate(result.val_probabilities))
    for column in range(4):  # the floor met on the images it was tuned on
        known = ~np.isnan(targets[:, column])
        positives = targets[known, column] == 1
        if positives.any() and not positives.all():
            assert decided[known, column][positives].mean() >= 0.9
    assert "recall:0.9" in trained.rule.source_ and "validation images" in trained.rule.source_


def test_no_tuning_keeps_one_half(data, probe_config, tmp_path):
    trained = train(data, probe_config.replace(threshold_source="none"), tmp_path, progress=False)
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


def test_a_one_pass_run_plots_its_validation_scores_per_attribute(data, probe_config, tmp_path):
    trained = train(data, probe_config.replace(threshold_source="none"), tmp_path, progress=False)
    result = trained.result
    assert (tmp_path / "one_pass_validation.png").is_file() and not (tmp_path / "epoch_curves.png").exists()
    targets = data.values[result.val_rows]
    by_hand = []
    for column in range(4):  # F1 at 0.5 on the known validation labels, by scikit-learn
        known = ~np.isnan(targets[:, column])
        by_hand.append(f1_score(targets[known, column].astype(int),
                                (result.val_probabilities[known, column] >= 0.5).astype(int), zero_division=0))
    np.testing.assert_allclose(trained.validation_metrics["f1"].tolist(), [*by_hand, np.mean(by_hand)])
    how, table = trained.measured()
    assert how.startswith("the validation split") and table is trained.validation_metrics


def test_a_run_without_validation_plots_its_training_loss_without_warnings(data, tiny_config):
    import warnings

    from aimonk.plots import plot_epoch_curves

    result = fit(tiny_config.replace(val_fraction=0.0, threshold_source="cv", epochs=2), data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "No artists with labels found to put in legend"
        figure = plot_epoch_curves(result.history)
    assert len(figure.axes) == 1 and "no validation split" in figure.axes[0].get_title()


def test_a_run_on_every_image_ends_by_printing_the_f1_evaluate_then_reports(data, probe_config, tmp_path, capsys):
    """The out-of-fold F1 printed as training ends is what `aimonk evaluate` on the folder reports."""
    import re

    from aimonk.evaluation.folder import evaluate_checkpoint

    train(data, probe_config.replace(val_fraction=0.0), tmp_path)  # progress=True: its lines on stderr
    printed = re.search(r"out-of-fold F1 \(each fold decided by thresholds from the other folds\): (.*)",
                        capsys.readouterr().err).group(1)
    scores = {name: float(value) for name, value in (item.split() for item in printed.split(", "))}
    evaluation = evaluate_checkpoint(data, tmp_path / "model.pt")
    assert evaluation.subset == "out-of-fold" and list(scores) == [*data.attributes, "macro"]
    assert list(scores.values()) == pytest.approx(evaluation.table["f1"].tolist(), abs=5e-4)


def test_the_predictor_reports_calibrated_probabilities(data, probe_config, tmp_path):
    from aimonk.serve.predictor import Predictor

    import dataclasses

    trained = train(data, probe_config, tmp_path, progress=False)
    predictor = Predictor.load(tmp_path / "model.pt", "cpu")
    calibrated = predictor.probabilities(data.images[:8])
    predictor.rule = dataclasses.replace(predictor.rule, calibration_=None)
    raw = predictor.probabilities(data.images[:8])
    np.testing.assert_allclose(calibrated, trained.rule.calibration_(raw), atol=1e-5)
    assert not np.allclose(calibrated, raw, atol=1e-3)


def test_ctrl_c_in_the_threshold_folds_keeps_the_model_with_untuned_thresholds_and_says_so(
        data, probe_config, tmp_path, capsys):
    fits = Interrupt(at=0, on="fit_started")
    with pytest.raises(TrainingInterrupted) as stopped:  # the model, fold 1, then Ctrl-C as fold 2 starts
        train(data, probe_config.replace(val_fraction=0.0), tmp_path, callbacks=[fits, Interrupt(3, on="fit_started")])
    assert len(fits.calls) == 3  # no fold trained after the interruption
    assert stopped.value.result is not None  # the trained model is kept
    saved = Checkpoint.load(tmp_path / "model.pt")
    assert saved.rule.thresholds == [0.5] * 4 and saved.out_of_fold is None
    assert "threshold cross-validation was interrupted" in saved.rule.source_
    message = str(stopped.value)
    assert f"kept with 0.5 thresholds in {tmp_path / 'model.pt'}: train again to tune them" in message
    captured = capsys.readouterr()
    assert "epoch None" not in message + captured.out + captured.err


def test_a_cross_validation_stops_at_the_interrupted_fold(data, probe_config):
    fits = Interrupt(at=0, on="fit_started")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C as fold 2 starts
        cross_validate(data, probe_config, 3, progress=False, callbacks=[fits, Interrupt(2, on="fit_started")])
    assert len(fits.calls) == 2
