"""aimonk tune: an Optuna study of a recipe scored by cross-validated out-of-fold F1, kept in SQLite so that an
interrupted search continues, ending with a config.json that `aimonk train --config` trains."""
import json

import numpy as np
import pandas as pd
import pytest

import aimonk.tuning as tuning
from aimonk.cli import main
from aimonk.config import TrainConfig, preset
from aimonk.model.checkpoint import Checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")
SMALL = ["--image-size", "48", "--folds", "2"]


def test_tune_writes_the_study_and_train_takes_its_choice(demo_dir, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tune", str(demo_dir), "--trials", "3", "--out", str(out), *SMALL]) == 0
    text = capsys.readouterr().out
    assert "best of 3 trials" in text and "optimistic" in text
    assert {p.name for p in out.iterdir()} == {"study.db", "config.json", "trials.csv", "optimization_history.png",
                                                "param_importances.png"}
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and (trials["state"] == "COMPLETE").all()
    first = trials.iloc[0]
    default = preset("default")  # the preset's own recipe is the first trial
    assert first["params_backbone"] == default.backbone and first["params_head_c"] == pytest.approx(default.head_c)
    chosen = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    best = trials.loc[trials["out_of_fold_macro_f1"].idxmax()]
    assert chosen.backbone == best["params_backbone"] and chosen.image_size == 48
    assert main(["train", str(demo_dir), "--config", str(out / "config.json"), "--out", str(tmp_path / "run")]) == 0
    assert Checkpoint.load(tmp_path / "run" / "model.pt").config == chosen


def test_an_interrupted_study_continues(demo_dir, tmp_path, capsys):
    from conftest import ctrl_c_on_line

    command = ["tune", str(demo_dir), "--trials", "3", "--out", str(tmp_path), *SMALL, "--space",
               str(space_file(tmp_path))]
    with ctrl_c_on_line(": out-of-fold macro F1", nth=2) as first:  # Ctrl-C as the second trial's score is shown
        assert main(command) == 130
    assert "interrupted: 1 finished trial(s) are kept in" in capsys.readouterr().err
    with ctrl_c_on_line(": out-of-fold macro F1", nth=0) as second:  # nth 0: never interrupts, only records
        assert main(command) == 0
    assert "1 done before, continuing" in capsys.readouterr().out
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["state"]) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    scored = [line.split(":")[0] for run in (first, second) for line in run.lines if ": out-of-fold macro F1" in line]
    assert scored == ["trial 0", "trial 1", "trial 2", "trial 3"]  # the interrupted trial is not scored again


def space_file(folder):
    path = folder / "space.yaml"
    path.write_text("head_c: {low: 0.0001, high: 0.1, log: true}\ntta: {choices: [true, false]}\n")
    return path


def test_a_space_file_is_checked_before_any_work(demo_dir, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    for text, error in [("head_cc: {low: 1, high: 2}\n", "'head_cc' is not a TrainConfig field"),
                        ("head_c: [1, 2]\n", "head_c needs {choices: [...]} or {low: L, high: H}"),
                        ("epochs: {low: 0, high: 3}\n", "epochs 0: epochs must be at least 1"),
                        ("backbone: {choices: [efficientnet_lite0, 'timm:resnet10tt']}\n",
                         "backbone 'timm:resnet10tt': unknown timm model 'resnet10tt'"),
                        ("head_c: {low: 1\n", "is not YAML")]:
        bad.write_text(text)
        assert main(["tune", str(demo_dir), "--trials", "1", "--out", str(tmp_path / "t"), "--space", str(bad)]) == 2
        message = capsys.readouterr().err.strip().splitlines()
        assert len(message) == 1 and error in message[0] and str(bad) in message[0]
    assert not (tmp_path / "t").exists()


def test_a_trial_behind_the_others_is_pruned_fold_by_fold(demo_dir, tmp_path):
    import optuna
    from aimonk.data.folder import load_labelled_folder

    data = load_labelled_folder(demo_dir, 48, progress=False)
    objective = tuning.Objective(data, preset("default", image_size=48), {"tta": {"choices": [True]}}, 3)

    class Behind:
        number, params, reported = 0, {}, []

        def suggest_categorical(self, name, choices):
            return choices[0]

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    trial = Behind()
    with pytest.raises(optuna.TrialPruned):
        objective(trial)
    assert [step for step, _ in trial.reported] == [1] and 0 <= trial.reported[0][1] <= 1


def test_a_config_file_is_checked(demo_dir, tmp_path, capsys):
    config = tmp_path / "config.json"
    for text, error in [('{"epochz": 3}', "'epochz' is not a configuration field"),
                        ('{"epochs": 0}', "epochs must be at least 1"), ("not json", "is not a JSON configuration")]:
        config.write_text(text)
        assert main(["train", str(demo_dir), "--config", str(config), "--out", str(tmp_path / "r")]) == 2
        message = capsys.readouterr().err.strip().splitlines()
        assert len(message) == 1 and error in message[0] and str(config) in message[0]


def test_tune_refuses_a_folder_holding_other_outputs(demo_dir, tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")  # e.g. a training run's
    assert main(["tune", str(demo_dir), "--trials", "1", "--out", str(tmp_path)]) == 2
    assert "already holds config.json" in capsys.readouterr().err
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), ["config.json"])
