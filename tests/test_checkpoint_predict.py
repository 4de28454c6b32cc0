import json

import numpy as np
import pytest
import torch

from aimonk.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from aimonk.predict import Predictions, Predictor, parse_thresholds


def test_checkpoint_holds_everything_and_loads_safely(trained_run):
    out, result = trained_run
    payload = load_checkpoint(out / "model.pt")  # torch.load(weights_only=True) inside
    for key in ("config", "attributes", "thresholds", "normalization", "image_size", "history", "version",
                "split", "majority", "state_dict"):
        assert key in payload
    assert payload["config"]["image_size"] == 48 and len(payload["attributes"]) == 4
    assert len(payload["history"]["iteration_loss"]) > 0
    model = model_from_checkpoint(payload)
    x = torch.randint(0, 255, (2, 48, 48, 3), dtype=torch.uint8)
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model(x))


def test_a_save_that_fails_halfway_keeps_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = save_checkpoint({"format": "aimonk-checkpoint/1", "x": torch.ones(2)}, tmp_path / "m.pt")
    before = path.read_bytes()

    def crash_after_half_a_file(payload, target):
        with open(target, "wb") as stream:
            stream.write(before[: len(before) // 2])
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", crash_after_half_a_file)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"format": "aimonk-checkpoint/1", "x": torch.zeros(2)}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_saved_files_get_the_mode_of_any_new_file(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        save_checkpoint({"format": "aimonk-checkpoint/1"}, tmp_path / "m.pt")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o644


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an aimonk checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


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
    assert "✗ Attr2: ABSENT   (confidence: 20.0%)" in report
    assert "Attributes present: Attr1" in report


def test_json_and_csv_formats_agree():
    predictions = Predictions(["a", "b"], ["x"], np.array([[0.7], [0.2]]), [0.5])
    records = json.loads(predictions.format("json"))
    assert records[0]["present"] == ["x"] and records[1]["attributes"]["x"]["present"] is False
    assert predictions.format("csv").splitlines() == ["image,x_probability,x", "a,0.7,1", "b,0.2,0"]


def test_predictor_on_an_array_of_any_size(trained_run):
    predictor = Predictor.load(trained_run[0] / "model.pt", device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (100, 70, 3), dtype=np.uint8)
    predictions = predictor.predict_array(image, thresholds=[0.0] * 4)
    assert predictions.probabilities.shape == (1, 4) and predictions.present.all()
    assert not predictor.predict_array(image, thresholds=np.ones(4)).present.any()  # arrays work too
    assert predictor.predict_array(image).thresholds == predictor.thresholds
