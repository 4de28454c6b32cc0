"""aimonk tune on hostile input: a --space file that is wrong, an out/study.db that is not this command's study.
Each is refused with one line naming the file or the field before any image is decoded (a profiler sees no call of
training_images), and the study.db is left byte for byte as it was (or absent)."""
import warnings

import numpy as np
import pandas as pd
import pytest

import aimonk.tuning as tuning
from aimonk.cli import main
from aimonk.config import preset
from conftest import calls_of

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")
SMALL = ["--image-size", "48", "--folds", "2"]


@pytest.fixture
def no_data():
    """Fails the test if tune reads any image: every refusal below comes before the data (observed, not patched)."""
    with calls_of(tuning.training_images) as calls:
        yield
    assert not calls, "tune read the data before refusing"


def refused(capsys, *names) -> str:
    """The command's stderr: one line, `aimonk tune: error: ...`, naming each of `names`; no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("aimonk tune: error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert len(lines[0]) < 1000
    return lines[0]


def tune_command(demo_dir, out, *extra):
    return ["tune", str(demo_dir), "--trials", "1", "--out", str(out), *SMALL, *extra]


SPACES = [  # (the file's text, what the one line says besides the file's name)
    ("tta: {choices: true}\n", "tta: choices must be a non-empty list"),
    ("tta: {choices: []}\n", "tta: choices must be a non-empty list"),
    ("calibration: {choices: platt}\n", "calibration: choices must be a non-empty list"),
    ("tta: {choices: [yes, 'no']}\n", "tta 'no': tta must be true or false"),
    ("calibration: {choices: [platt, [none]]}\n", "calibration ['none']: calibration must be text"),
    ("weights: {choices: [{a: 1}]}\n", "weights {'a': 1}: weights must be text"),
    ("calibration: {choices: [" + "x" * 5000 + "]}\n", "calibration 'xxxxx"),  # shortened: the line stays short
    ("head_c: {low: 0.1, high: 0.001}\n", "head_c: low 0.1 must be below high 0.001"),
    ("head_c: {low: 0.01, high: 0.01}\n", "head_c: low 0.01 must be below high 0.01"),
    ("head_c: {low: 0, high: 0.1, log: true}\n", "head_c: a log range must lie above 0"),
    ("warmup_epochs: {low: -1.0, high: 2.0, log: true}\n", "warmup_epochs: a log range must lie above 0"),
    ("head_c: {low: 0.001, high: 0.1, log: 'yes'}\n", "head_c: log must be true or false"),
    ("head_c: {low: true, high: 0.1}\n", "head_c: low must be a finite number, not True"),
    ("head_c: {low: 0.001, high: '0.1'}\n", "head_c: high must be a finite number, not '0.1'"),
    ("head_c: {low: 1e-4, high: 0.1}\n", "head_c: low must be a finite number, not '1e-4'"),  # YAML 1.1: a string
    ("head_c: {low: 0.001, high: .inf}\n", "head_c: high must be a finite number, not inf"),
    ("head_c: {low: .nan, high: 0.1}\n", "head_c: low must be a finite number, not nan"),
    ("tta: {low: 0, high: 1}\n", "tta 0: tta must be true or false"),
    ("backbone: {low: 1, high: 2}\n", "backbone 1: backbone must be text"),
    ("oversample: {low: 1, high: 1.0e+308}\n", "oversample 1e+308: oversample must be at least 1.0 and at most 100"),
    ("head_c: {low: -1.0e+308, high: 1.0e+308}\n", "head_c -1e+308: head_c must be at least 0.0"),
    ("epochs: {low: 1, high: 5.5}\n", "epochs 5.5: epochs must be an integer"),
    ("dropout: {choices: [0.1, 1.0]}\n", "dropout 1.0: dropout must be at least 0.0 and below 1.0"),
    ("freeze: {choices: [1, null]}\n", "freeze None: freeze must be an integer or text"),
    ("threshold_strategy: {choices: [f1, 'precision:2']}\n", "threshold_strategy 'precision:2'"),
    ("threshold_source: {choices: [cv, val]}\n", "threshold_source 'val': threshold_source val needs a validation"),
    ("head_c: {low: 0.001, high: 0.1, step: 0.01}\n", "head_c needs {choices: [...]} or {low: L, high: H}"),
    ("head_c: 0.01\n", "head_c needs {choices: [...]} or {low: L, high: H}"),
    ("1: {choices: [1]}\n", "1 is not a TrainConfig field"),
    ("[head_c, tta]\n", "must map TrainConfig fields to their ranges"),
    ("", "must map TrainConfig fields to their ranges"),
    ("tta: {choices: [true, false]\n", "is not YAML"),
    ("tta: !!python/object:os.system {}\n", "is not YAML"),
]


@pytest.mark.parametrize("text, error", SPACES)
def test_a_wrong_space_file_is_one_line_before_any_data(demo_dir, tmp_path, capsys, no_data, text, error):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    assert main(tune_command(demo_dir, tmp_path / "t", "--space", str(space))) == 2
    refused(capsys, space, error)
    assert not (tmp_path / "t").exists()


def test_a_large_or_binary_space_file_is_refused_unread(demo_dir, tmp_path, capsys, no_data):
    big = tmp_path / "big.yaml"
    big.write_text("tta: {choices: [true, false]}\n" + "# padding\n" * 1_100_000)  # 11 MB of valid YAML
    assert main(tune_command(demo_dir, tmp_path / "t", "--space", str(big))) == 2
    refused(capsys, big, "MB; a search space is a few lines of YAML")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 4096, dtype=np.uint8)))
    assert main(tune_command(demo_dir, tmp_path / "t", "--space", str(binary))) == 2
    refused(capsys, binary, "is not YAML")
    assert not (tmp_path / "t").exists()
    assert main(tune_command(demo_dir, tmp_path / "t", "--space", str(tmp_path))) == 2
    refused(capsys, tmp_path, "is a folder, not a YAML file")


def test_after_a_refusal_the_corrected_command_runs(demo_dir, tmp_path, capsys):
    space, db = tmp_path / "space.yaml", tmp_path / "t" / "study.db"
    space.write_text("tta: {choices: true}\n")
    assert main(tune_command(demo_dir, tmp_path / "t", "--space", str(space))) == 2
    refused(capsys, space, "tta")
    db.parent.mkdir()
    random_bytes(db)
    space.write_text("tta: {choices: [true, false]}\n")
    assert main(tune_command(demo_dir, tmp_path / "t", "--space", str(space))) == 2
    refused(capsys, db)
    db.unlink()
    assert main(tune_command(demo_dir, tmp_path / "t", "--space", str(space))) == 0
    assert "best of 1 trials" in capsys.readouterr().out
    written = {p.name for p in db.parent.iterdir()}
    assert {"study.db", "config.json", "trials.csv", "optimization_history.png"} <= written


def optuna_study(db, name="aimonk", direction="maximize", params=None, value=0.5):
    """An Optuna study in `db` with one finished trial, made by Optuna itself (no training)."""
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{db}", direction=direction)
    params = params or {"head_c": 0.01}
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions={k: FloatDistribution(1e-4, 0.1, log=True) for k in params}, value=value))
    return db


def random_bytes(db):
    db.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 8192, dtype=np.uint8)))


def truncated(db):
    optuna_study(db)
    whole = db.read_bytes()
    db.write_bytes(whole[:len(whole) // 2])


def foreign_sqlite(db):
    import sqlite3

    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        connection.execute("INSERT INTO notes (text) VALUES ('mine')")
    connection.close()


def optuna_and_more(db):
    import sqlite3

    optuna_study(db)
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    connection.close()


STUDIES = [  # (how study.db is made, what the one line says besides its name)
    (lambda db: db.mkdir(), "is a folder, not the study"),
    (random_bytes, "is not a study of aimonk tune (SQLite: file is not a database)"),
    (truncated, "(SQLite: database disk image is malformed)"),
    (lambda db: db.write_bytes(b""), "an SQLite database with no tables"),
    (foreign_sqlite, "table(s) notes, not Optuna's"),
    (optuna_and_more, "table(s) notes, not Optuna's"),
    (lambda db: optuna_study(db, name="mine"), "the study(ies) 'mine', not 'aimonk'"),
    (lambda db: optuna_study(db, direction="minimize"), "direction is minimize, not maximize"),
    (lambda db: optuna_study(db, value=5.0), "a trial's value is 5.0"),
    (lambda db: optuna_study(db, params={"learning_rate": 0.01}), "searched 'learning_rate', not a TrainConfig field"),
]


@pytest.mark.parametrize("make, error", STUDIES)
def test_a_study_db_not_of_this_command_is_refused_untouched(demo_dir, tmp_path, capsys, no_data, make, error):
    db = tmp_path / "study.db"
    make(db)
    before = db.read_bytes() if db.is_file() else None
    assert main(tune_command(demo_dir, tmp_path)) == 2
    refused(capsys, db, error)
    if before is None:
        assert db.is_dir() and not any(db.iterdir())
    else:
        assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]  # no journal, no outputs


def test_a_study_searched_over_another_kind_of_range_is_refused(demo_dir, tmp_path, capsys, no_data):
    db = optuna_study(tmp_path / "study.db")  # head_c: a log float range
    before = db.read_bytes()
    space = tmp_path / "space.yaml"
    for text in ["head_c: {choices: [0.001, 0.01]}\n", "head_c: {low: 0.0001, high: 0.1}\n"]:
        space.write_text(text)
        assert main(tune_command(demo_dir, tmp_path, "--space", str(space))) == 2
        refused(capsys, space, "head_c", db, "searched it over another range")
    assert db.read_bytes() == before


def test_after_a_failed_first_trial_the_recipe_runs_and_the_outputs_read_well(demo_dir, tmp_path, capsys):
    import optuna

    db = tmp_path / "study.db"
    study = optuna.create_study(study_name="aimonk", storage=f"sqlite:///{db}", direction="maximize")
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # e.g. interrupted before a single trial ended
    space = tmp_path / "space.yaml"
    space.write_text("head_c: {low: 0.0001, high: 0.1, log: true}\ntta: {choices: [true, false]}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(tune_command(demo_dir, tmp_path, "--space", str(space))) == 0
    captured = capsys.readouterr()
    assert "experimental" not in captured.err + captured.out
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["state"]) == ["FAIL", "COMPLETE"]
    default = preset("default")  # the preset's own recipe ran, though trial 0 had failed
    assert trials.iloc[1]["params_head_c"] == pytest.approx(default.head_c)
    assert trials.iloc[1]["params_tta"] == default.tta

    study = optuna.load_study(study_name="aimonk", storage=f"sqlite:///{db}")
    axes = tuning.history_figure(study)
    axes.figure.canvas.draw()
    assert axes.get_xlabel() == "trial" and axes.get_ylabel() == "out-of-fold macro F1"
    ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks)
