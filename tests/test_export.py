"""ONNX export: uint8 images in, the Predictor's probabilities out, metadata inside; run by onnxruntime alone."""
import json
import subprocess
import sys

import numpy as np
import pytest

from aimonk.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture(scope="module")
def calibrated_run(demo_dir, tmp_path_factory):
    """A tiny head-only run with flip TTA, tuned thresholds and a calibration map."""
    out = tmp_path_factory.mktemp("export_run")
    assert main(["train", str(demo_dir), "--out", str(out), "--backbone", "efficientnet_lite0", "--image-size", "64",
                 "--threshold-folds", "2"]) == 0
    return out


def test_onnx_and_pytorch_agree(calibrated_run, tmp_path):
    from aimonk.serve.onnx_predictor import OnnxPredictor
    from aimonk.serve.predictor import Predictor

    assert main(["export", "--model", str(calibrated_run / "model.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    predictor = Predictor.load(calibrated_run / "model.pt", "cpu")
    assert predictor.rule.calibration_ is not None and predictor.config.tta and predictor.config.amp
    images = np.random.default_rng(0).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    exported = OnnxPredictor(tmp_path / "m.onnx")
    np.testing.assert_allclose(exported.probabilities(images), predictor.probabilities(images), atol=2e-5)
    assert exported.attributes == predictor.attributes and exported.image_size == 64
    np.testing.assert_allclose(exported.thresholds, predictor.thresholds)


def test_aimonk_predict_gives_one_answer_with_the_checkpoint_and_its_export(calibrated_run, demo_dir, tmp_path,
                                                                          capsys):
    """The route a user runs, both ways, with the run's own settings (amp on, as by default)."""
    onnx_model = tmp_path / "m.onnx"
    assert main(["export", "--model", str(calibrated_run / "model.pt"), "--out", str(onnx_model)]) == 0
    answers = []
    for model in (calibrated_run / "model.pt", onnx_model):
        capsys.readouterr()
        assert main(["predict", str(demo_dir / "images"), "--model", str(model), "--format", "json"]) == 0
        records = json.loads(capsys.readouterr().out)
        answers.append([[(name, value["probability"], value["present"]) for name, value in record["attributes"].items()]
                        for record in records])
    probabilities = [np.array([[p for _, p, _ in row] for row in answer]) for answer in answers]
    assert probabilities[0].shape == (57, 4)
    assert np.abs(probabilities[0] - probabilities[1]).max() <= 1e-4 + 1e-9  # printed to 4 decimals
    assert [[d for *_, d in row] for row in answers[0]] == [[d for *_, d in row] for row in answers[1]]


def test_predict_with_an_onnx_model_needs_no_torch(calibrated_run, demo_dir, tmp_path):
    assert main(["export", "--model", str(calibrated_run / "model.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    script = ("import sys, builtins; real = builtins.__import__\n"
              "def guard(name, *a, **k):\n"
              "    if name == 'torch' or name.startswith('torch.'): raise ImportError('torch is not allowed here')\n"
              "    return real(name, *a, **k)\n"
              "builtins.__import__ = guard\n"
              "from aimonk.cli import main\n"
              f"sys.exit(main(['predict', {str(demo_dir / 'images')!r}, '--model', {str(tmp_path / 'm.onnx')!r}, "
              "'--format', 'json']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    records = json.loads(done.stdout)
    assert len(records) == 57 and set(records[0]["attributes"]) == {"Attr1", "Attr2", "Attr3", "Attr4"}


def test_export_refuses_to_replace_a_file(calibrated_run, tmp_path, capsys):
    (tmp_path / "m.onnx").write_text("mine")
    assert main(["export", "--model", str(calibrated_run / "model.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "m.onnx").read_text() == "mine"


def test_predict_cli_reads_onnx(calibrated_run, demo_dir, tmp_path, capsys):
    assert main(["export", "--model", str(calibrated_run / "model.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    image = next((demo_dir / "images").glob("*.jpg"))
    assert main(["predict", str(image), "--model", str(tmp_path / "m.onnx")]) == 0
    assert capsys.readouterr().out.count("(confidence: ") == 4


def test_the_export_and_csv_writers_refuse_an_existing_file_unless_told_to_replace_it(calibrated_run, demo_dir,
                                                                                      tmp_path):
    """What notebook 04 writes (model.onnx, predictions.csv) through the package: a file already there is kept,
    with a one-line error naming it, unless overwrite=True."""
    import aimonk
    from aimonk.files import OutputExistsError

    predictor = aimonk.load_predictor(calibrated_run / "model.pt")
    onnx_path, csv_path = tmp_path / "model.onnx", tmp_path / "predictions.csv"
    onnx_path.write_text("another run's model")
    csv_path.write_text("another run's predictions")
    predictions = predictor.predict_paths(sorted((demo_dir / "images").glob("*.jpg"))[:3], progress=False)
    with pytest.raises(OutputExistsError, match=f"^{onnx_path} already exists;.*overwrite=True"):
        aimonk.export_onnx(predictor, onnx_path)
    with pytest.raises(OutputExistsError, match=f"^{csv_path} already exists;.*overwrite=True"):
        predictions.save_csv(csv_path)
    assert onnx_path.read_text() == "another run's model" and csv_path.read_text() == "another run's predictions"
    assert aimonk.export_onnx(predictor, onnx_path, overwrite=True).stat().st_size > 10_000
    assert predictions.save_csv(csv_path, overwrite=True).read_text() == predictions.to_csv()
    assert predictions.save_csv(tmp_path / "new.csv").read_text().startswith("image,Attr1_probability")
