"""A run's scores in metrics.json, and the same run tracked by TensorBoard and MLflow, read back with their own
readers (aimonk.tracking)."""
import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from aimonk.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")
TINY = ["--backbone", "efficientnet_lite0", "--image-size", "48"]


@pytest.fixture(scope="module")
def tensorboard_run(demo_dir, tmp_path_factory):
    """A head-only run trained with `--log tensorboard`: (its folder, what the command printed)."""
    out, printed = tmp_path_factory.mktemp("tracked") / "run", io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", str(demo_dir), "--out", str(out), *TINY, "--threshold-folds", "2", "--log",
                     "tensorboard"]) == 0
    return out, printed.getvalue()


def test_train_writes_its_scores_and_tensorboard_events(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, printed = tensorboard_run
    assert f"scores in {out / 'metrics.json'}" in printed
    measured = json.loads((out / "metrics.json").read_text())
    assert measured["measured"].startswith("out-of-fold: each of the 57 training images")
    rows = {row["attribute"]: row for row in measured["metrics"]}
    assert list(rows) == ["Attr1", "Attr2", "Attr3", "Attr4", "macro"] and 0 <= rows["macro"]["f1"] <= 1
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "out_of_fold/f1/macro", "out_of_fold/f1/Attr4"} <= set(scalars)
    assert "epoch/train_loss" not in scalars  # the linear probe's one solve is no epoch
    assert events.Scalars("out_of_fold/f1/macro")[-1].value == pytest.approx(rows["macro"]["f1"], abs=1e-6)
    assert len(events.Scalars("train/loss")) > 1  # every L-BFGS evaluation of the one solve
    assert {"loss_curve", "out_of_fold"} <= set(events.Tags()["images"])
    assert "config/text_summary" in events.Tags()["tensors"]  # the configuration, as text


def test_tensorboard_logdir_run_shows_the_runs_scalars_and_pictures(tensorboard_run):
    """What `tensorboard --logdir RUN` serves: TensorBoard's own multiplexer over the run folder, as its
    scalar and image dashboards list them."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    out, _ = tensorboard_run
    served = EventMultiplexer().AddRunsFromDirectory(str(out)).Reload()
    assert list(served.Runs()) == ["tensorboard"]  # the one run, found under RUN
    scalars = served.PluginRunToTagToContent("scalars")["tensorboard"]
    assert {"train/loss", "out_of_fold/f1/macro", "out_of_fold/f1/Attr1", "out_of_fold/f1/Attr4"} <= set(scalars)
    measured = {row["attribute"]: row for row in json.loads((out / "metrics.json").read_text())["metrics"]}
    [last] = served.Tensors("tensorboard", "out_of_fold/f1/macro")[-1:]
    assert float(last.tensor_proto.float_val[0]) == pytest.approx(measured["macro"]["f1"], abs=1e-6)
    assert {"loss_curve", "out_of_fold"} <= set(served.PluginRunToTagToContent("images")["tensorboard"])
    assert "config/text_summary" in served.PluginRunToTagToContent("text")["tensorboard"]


def without_mlflow_variables() -> dict:
    return {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}


def test_a_run_by_epochs_is_tracked_in_mlflow_and_stock_mlflow_finds_it_with_its_defaults(demo_dir, tmp_path,
                                                                                         monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    for key in [key for key in os.environ if key.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    assert main(["train", str(demo_dir), "--out", "by_epochs", *TINY, "--head-solver", "adam", "--epochs", "2",
                 "--val-fraction", "0.25", "--threshold-source", "val", "--log", "mlflow"]) == 0
    assert not any(key.startswith("MLFLOW_") for key in os.environ)  # none set in the user's process
    assert (tmp_path / "mlflow.db").is_file()  # MLflow's own default store (its artifacts go to ./mlruns)
    found = subprocess.run([sys.executable, "-c", "import mlflow; print(len(mlflow.search_runs("
                            "search_all_experiments=True)))"], cwd=tmp_path, env=without_mlflow_variables(),
                           capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.split()[-1] == "1", found.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("aimonk").experiment_id])
    assert run.info.run_name == "by_epochs" and run.info.status == "FINISHED"
    assert run.data.params["head_solver"] == "adam" and run.data.params["epochs"] == "2"
    assert {"train/loss", "val/macro_f1", "val/f1/Attr1", "held_out/f1/macro"} <= set(run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/macro_f1")] == [1, 2]
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in artifacts and {item.path for item in client.list_artifacts(run.info.run_id, "figures")} \
        == {"figures/loss_curve.png", "figures/epoch_curves.png"}
    measured = json.loads((tmp_path / "by_epochs" / "metrics.json").read_text())
    epochs = json.loads((tmp_path / "by_epochs" / "history.json").read_text())["epochs"]
    best = max(epochs, key=lambda e: (e["val_macro_f1"], -e["val_loss"]))["epoch"]  # highest F1, then lowest loss
    held_out = int(re.search(r"\((\d+) images held out", measured["measured"]).group(1))
    assert abs(held_out - 57 * 0.25) <= 3  # --val-fraction 0.25 of the 57 present, stratified on every attribute
    assert measured["measured"] == (f"the validation split ({held_out} images held out of training) at epoch "
                                    f"{best}, threshold 0.5 (the epoch was chosen and the thresholds were tuned on "
                                    "these images: an optimistic score)")


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "nosuchscheme://x/y"])
def test_an_unusable_tracking_uri_is_one_line_before_any_work(demo_dir, tmp_path, uri, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["train", str(demo_dir), "--out", str(out), *TINY, "--log", "mlflow"]) == 2
    said = capsys.readouterr().err
    assert "Traceback" not in said, said
    [line] = said.strip().splitlines()
    assert line.startswith("aimonk train: error: --log mlflow: the tracking ") and uri in line
    assert not (out / "model.pt").exists()


def test_a_missing_tracking_package_is_one_line_before_any_work(demo_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if it were not installed
    assert main(["train", str(demo_dir), "--out", str(tmp_path / "run"), *TINY, "--log", "mlflow"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["aimonk train: error: --log mlflow needs the mlflow-skinny package: pip install mlflow-skinny "
                     "(or aimonk[tracking])"]
    assert not (tmp_path / "run").exists()


def test_a_tracking_store_that_breaks_mid_run_is_said_once_and_the_run_finishes_with_its_model(demo_dir, tmp_path,
                                                                                               monkeypatch):
    """The MLflow store is damaged after the first epoch (its file overwritten, as a full or failing disk might
    leave it): one warning saying tracking stopped, training goes on, the model and the run's files are written."""
    import warnings

    import aimonk
    from aimonk.training.loop import Callback

    monkeypatch.chdir(tmp_path)
    for key in [key for key in os.environ if key.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)

    class DamageTheStore(Callback):
        def epoch_ended(self, state, record, improved):
            store = tmp_path / "mlflow.db"
            if store.read_bytes()[:6] == b"SQLite":
                store.write_bytes(os.urandom(store.stat().st_size))

    config = aimonk.preset("default", backbone="efficientnet_lite0", image_size=48, head_solver="adam", epochs=3,
                           val_fraction=0.25, threshold_source="val", log="mlflow")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aimonk.train(demo_dir, config, tmp_path / "run", progress=False, callbacks=[DamageTheStore()])
    said = [str(w.message) for w in caught if "--log mlflow" in str(w.message)]
    assert len(said) == 1 and "nothing more is tracked; the run goes on" in said[0], said
    assert "sqlite:///mlflow.db" in said[0] or "mlflow.db" in said[0]
    for name in ("model.pt", "config.json", "history.json", "metrics.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())["epochs"]) == 3
