import json
import re
import warnings

import numpy as np
import pytest
import torch

from pathlib import Path

from aimonk.model.checkpoint import Checkpoint
from aimonk.model.recipe import Recipe
from aimonk.serve.predictions import Predictions, parse_thresholds
from aimonk.serve.predictor import Predictor

FIXTURES = Path(__file__).parent / "fixtures"


def test_checkpoint_holds_everything_and_loads_safely(trained_run):
    out, trained = trained_run
    result = trained.result
    checkpoint = Checkpoint.load(out / "model.pt")  # torch.load(weights_only=True) inside
    assert checkpoint.image_size == checkpoint.config.image_size == 48 and len(checkpoint.attributes) == 4
    assert len(checkpoint.history["iteration_loss"]) > 0 and checkpoint.recipe is Recipe.WHOLE_NETWORK
    assert checkpoint.provenance.version and checkpoint.provenance.split["train"] and checkpoint.provenance.majority
    assert checkpoint.provenance.epoch == result.best_epoch
    # written once, as the run ended: with the decision rule tuned on the validation split (the finetune preset's)
    assert checkpoint.rule is not None and checkpoint.rule.thresholds == trained.rule.thresholds
    assert "validation images" in checkpoint.rule.source_ and checkpoint.decision_rule.source_ == trained.rule.source_
    model = checkpoint.network()
    x = torch.randint(0, 255, (2, 48, 48, 3), dtype=torch.uint8)
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model(x))


def test_a_checkpoint_of_the_previous_version_predicts_the_same():
    """tests/fixtures/model_v0.1.0.pt was written by aimonk before the typed Checkpoint (format
    aimonk-checkpoint/1; EfficientNet-Lite0 linear probe at 64 px, Platt-calibrated thresholds from a 3-fold
    cross-validation); the .npz holds 8 of its images and the probabilities that version predicted for them."""
    expected = np.load(FIXTURES / "model_v0.1.0_expected.npz")
    predictor = Predictor.load(FIXTURES / "model_v0.1.0.pt", "cpu")
    np.testing.assert_allclose(predictor.probabilities(expected["images"]), expected["probabilities"], atol=1e-6)
    assert predictor.thresholds == pytest.approx(expected["thresholds"].tolist(), abs=0)
    assert predictor.checkpoint.recipe is Recipe.LINEAR_PROBE and predictor.rule.calibration == "platt"
    assert predictor.checkpoint.out_of_fold is not None and "3-fold" in predictor.rule.source_


@pytest.fixture()
def saved(trained_run, tmp_path):
    """A copy of the trained run's checkpoint with a decision rule, and that checkpoint."""
    from aimonk.decision.rule import DecisionRule

    checkpoint = Checkpoint.load(trained_run[0] / "model.pt")
    checkpoint = checkpoint.with_rule(DecisionRule.untuned(4, "a test", "f1"))
    return checkpoint.save(tmp_path / "model.pt"), checkpoint


@pytest.mark.parametrize("thresholds, words", [
    ([float("nan")] * 4, "must be finite in [0, 1]"), ([2.0, 0.5, 0.5, 0.5], "must be finite in [0, 1]"),
    ([-1.0, 0.5, 0.5, 0.5], "must be finite in [0, 1]"), ([float("inf")] * 4, "must be finite in [0, 1]"),
    ([0.5, 0.5], "stores 2 thresholds for 4 attributes"), (["0.5"] * 4, "thresholds are not all numbers")])
def test_stored_thresholds_are_checked_when_the_checkpoint_is_loaded(saved, tmp_path, thresholds, words):
    path, checkpoint = saved
    payload = checkpoint.to_payload()
    payload["decision_rule"]["thresholds"] = thresholds
    torch.save(payload, path)
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}: ") + ".*" + re.escape(words)):
        Checkpoint.load(path)


def test_a_save_that_fails_halfway_keeps_the_old_checkpoint_and_no_temporary_file(saved, tmp_path, monkeypatch):
    path, checkpoint = saved
    before = path.read_bytes()

    def crash_after_half_a_file(payload, target):
        with open(target, "wb") as stream:
            stream.write(before[: len(before) // 2])
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", crash_after_half_a_file)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_saved_files_get_the_mode_of_any_new_file(saved, tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        saved[1].save(tmp_path / "m.pt")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o644


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an aimonk checkpoint"):
        Checkpoint.load(tmp_path / "other.pt")
    torch.save({"format": "aimonk-checkpoint/2", "config": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt is not a complete aimonk checkpoint"):
        Checkpoint.load(tmp_path / "partial.pt")


def test_parse_thresholds():
    assert parse_thresholds("0.3", 3) == [0.3, 0.3, 0.3]
    assert parse_thresholds("0.35,0.4,0.3", 3) == [0.35, 0.4, 0.3]
    with pytest.raises(ValueError, match="expected 1 or 3 thresholds"):
        parse_thresholds("0.1,0.2", 3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_thresholds("1.5", 2)
    with pytest.raises(ValueError, match="must be numbers"):
        parse_thresholds("high", 2)


def test_text_report_keeps_the_reference_form():
    predictions = Predictions(["img.jpg"], ["Attr1", "Attr2"], np.array([[0.619, 0.2]]), [0.5, 0.5])
    report = predictions.report(0)
    assert "Image: img.jpg" in report
    assert "✓ Attr1: PRESENT  (confidence: 61.9%)" in report
    assert "✗ Attr2: ABSENT   (confidence: 80.0%)" in report  # the probability of the answer given: 1 - P(present)
    assert "Attributes present: Attr1" in report


def test_a_frame_of_many_attributes_is_built_whole_without_pandas_fragmentation_warning():
    attributes = [f"attribute_{k}" for k in range(150)]
    predictions = Predictions(["a", "b"], attributes, np.full((2, 150), 0.7), [0.5] * 150)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' PerformanceWarning: 'DataFrame is highly fragmented'
        frame = predictions.to_frame()
    assert frame.shape == (2, 301) and list(frame.columns[:3]) == ["image", "attribute_0_probability", "attribute_0"]


def test_json_and_csv_formats_agree():
    predictions = Predictions(["a", "b"], ["x"], np.array([[0.7], [0.2]]), [0.5])
    records = json.loads(predictions.format("json"))
    assert records[0]["present"] == ["x"] and records[1]["attributes"]["x"]["present"] is False
    assert predictions.format("csv").splitlines() == ["image,x_probability,x", "a,0.7,1", "b,0.2,0"]
    assert all(predictions.format(kind).endswith("\n") for kind in ("json", "csv", "text"))  # a shell prompt after it


def test_predictor_on_an_array_of_any_size(trained_run):
    predictor = Predictor.load(trained_run[0] / "model.pt", device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (100, 70, 3), dtype=np.uint8)
    predictions = predictor.predict_array(image, thresholds=[0.0] * 4)
    assert predictions.probabilities.shape == (1, 4) and predictions.present.all()
    probabilities = predictions.probabilities[0]
    # arrays work too, decided as probability >= threshold (the run's Platt map, fitted on a few validation images,
    # may be steep enough to reach 1.0 in float32: present even at threshold 1)
    np.testing.assert_array_equal(predictor.predict_array(image, thresholds=np.ones(4)).present[0], probabilities >= 1)
    above = np.minimum(np.nextafter(probabilities, np.float32(2)), 1.0)
    np.testing.assert_array_equal(predictor.predict_array(image, thresholds=above).present[0], probabilities >= 1)
    assert predictor.predict_array(image, thresholds=probabilities).present.all()
    assert predictor.predict_array(image).thresholds == predictor.thresholds
