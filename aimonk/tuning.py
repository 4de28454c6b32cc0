"""Hyperparameter search on Optuna: `aimonk tune DATA --trials N --out DIR`.

Each trial is a recipe (the preset with some fields changed, as SPACE says), scored by its cross-validated
out-of-fold macro F1 with every fold decided by thresholds tuned on the other folds, never on the rows it
scores; Optuna's median pruner stops a trial fold by fold once it falls behind. The study lives in
DIR/study.db (SQLite), so an interrupted search continues where it stopped when the same command runs again.
Before any image is read, the space is checked field by field and an existing DIR/study.db read-only (this
command's study, or refused with one line naming it, left as it was).
The preset's own recipe is the first trial, so the table always shows what the search gained over it.
At the end: DIR/config.json (the best recipe, for `aimonk train --config`), DIR/trials.csv, and Optuna's
optimisation history and parameter importances as figures. The best trial's score is optimistic (it is the
best of many on the same folds): score the chosen recipe on images the search never saw.
"""
from __future__ import annotations

import logging
import math
import os
import sqlite3
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aimonk.config import (AUGMENTATIONS, LOSSES, TrainConfig, check_backbone, check_field, check_freeze,
                           parse_strategy, preset)
from aimonk.data.folder import LabelledImages
from aimonk.decision.thresholds import metrics_decided_by_fold
from aimonk.files import check_output_folder, folder_lock, write_csv
from aimonk.model.registry import check_names
from aimonk.plots import save_figure
from aimonk.progress import progress_shown, quiet
from aimonk.run_folder import RunFolder
from aimonk.training.crossval import run_folds
from aimonk.workflows import log_notes, training_images, training_processes

log = logging.getLogger(__name__)

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SPACES = {  # the fields each preset's search changes, and their ranges (a --space file replaces them)
    "default": {"backbone": {"choices": ["+".join(LITES), *LITES, "+".join(LITES[:2]), "+".join(LITES[1:]),
                                         "+".join(LITES[::2])]},
                "head_c": {"low": 1e-4, "high": 0.1, "log": True},
                "tta": {"choices": [True, False]},
                "calibration": {"choices": ["platt", "temperature", "none"]}},
    "finetune": {"lr": {"low": 1e-4, "high": 3e-3, "log": True}, "epochs": {"low": 4, "high": 12},
                 "freeze": {"choices": [0, 1, 2, 3]}, "augment": {"choices": list(AUGMENTATIONS)},
                 "loss": {"choices": list(LOSSES)}, "oversample": {"low": 1.0, "high": 4.0}},
}
OUTPUTS = ("config.json", "trials.csv", "optimization_history.png", "param_importances.png")


SPACE_BYTES = 1 << 20  # a search space is a few lines of YAML; a larger --space file is refused unread
FIELD_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),)}
TYPE_WORDS = {"str": "text", "int": "an integer", "float": "a number", "bool": "true or false", "None": "null"}


class Space(dict):
    """A search space read from a file: `source` names it in the errors found later (against the recipe, or
    against a study that searched other ranges)."""

    source = "the search space"


def load_space(path) -> dict:
    """A search space from a YAML file: `field: {choices: [...]}` or `field: {low: L, high: H[, log: true]}` for
    TrainConfig fields; every field checked before any data is read, one-line errors naming the file and the
    field."""
    import yaml

    path = Path(path)
    if path.exists() and not path.is_file():
        raise ValueError(f"--space {path} is {'a folder' if path.is_dir() else 'not a file'}, not a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"--space {path}: no such file")
    size = path.stat().st_size
    if size > SPACE_BYTES:
        raise ValueError(f"--space {path} is {size / 2**20:.1f} MB; a search space is a few lines of YAML "
                         f"(at most {SPACE_BYTES // 2**20} MB)")
    try:
        space = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"--space {path} is not YAML: not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ValueError(f"--space {path} is not YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"--space {path} is not YAML: nested too deeply") from None
    if not isinstance(space, dict) or not space:
        raise ValueError(f"--space {path} must map TrainConfig fields to their ranges")
    space = Space(space)
    space.source = f"--space {path}"
    check_space(space)
    return space


def check_space(space: dict) -> None:
    """Every field of `space` a TrainConfig field, with a range Optuna can search and values the field allows;
    one-line ValueErrors naming the space's file (Space.source) and the field."""
    source = getattr(space, "source", Space.source)
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{source} must map TrainConfig fields to their ranges")
    for name, spec in space.items():
        check_range(source, name, spec)


def check_range(source, name, spec) -> None:
    """One field's range: {choices: [non-empty list]} or {low, high[, log]} with finite numbers, low < high, a
    log range above 0, each value one the field allows."""
    if not isinstance(name, str) or name not in TrainConfig.__dataclass_fields__:
        raise ValueError(f"{source}: {shown(name)} is not a TrainConfig field")
    where = f"{source}: {name}"
    ranged = isinstance(spec, dict) and ({"choices"} == set(spec) or {"low", "high"} <= set(spec) <= {"low", "high",
                                                                                                    "log"})
    if not ranged:
        raise ValueError(f"{where} needs {{choices: [...]}} or {{low: L, high: H}} (log: true optional)")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: choices must be a non-empty list of values, not {shown(choices)}")
        for value in choices:
            check_value(where, name, value)
    else:
        low, high, log = spec["low"], spec["high"], spec.get("log", False)
        for bound, value in (("low", low), ("high", high)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{where}: {bound} must be a finite number, not {shown(value)}")
        if not isinstance(log, bool):
            raise ValueError(f"{where}: log must be true or false, not {shown(log)}")
        if not low < high:
            raise ValueError(f"{where}: low {shown(low)} must be below high {shown(high)} "
                             f"(one value: {{choices: [{shown(low)}]}})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range must lie above 0, not start at {shown(low)}")
        for value in (low, high):
            check_value(where, name, value)
        if not math.isfinite(float(high) - float(low)):  # numpy's uniform draw overflows
            raise ValueError(f"{where}: the range {shown(low)} to {shown(high)} is too wide to sample")
    try:
        distribution(name, spec)
    except ImportError:
        pass  # tune() says Optuna is missing
    except (ValueError, TypeError, OverflowError) as error:  # Optuna's own rules, should ours miss one
        raise ValueError(f"{where}: {' '.join(str(error).split())}") from None


def shown(value, quoted: bool = True, width: int = 80) -> str:
    """A value of a hostile file in a one-line message: its repr (or text), at most `width` characters."""
    text = " ".join((repr(value) if quoted else str(value)).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def field_types(name: str) -> list[str]:
    """The field's type names as annotated ('int | str' -> ['int', 'str'])."""
    return [word.strip() for word in str(TrainConfig.__dataclass_fields__[name].type).split("|")]


def check_value(where: str, name: str, value) -> None:
    """One value of a field, checked as TrainConfig checks it, alone (one-line ValueError)."""
    words = field_types(name)
    types = tuple(kind for word in words for kind in FIELD_TYPES.get(word, (object,)))
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise ValueError(f"{where} {shown(value)}: {name} must be {' or '.join(TYPE_WORDS.get(w, w) for w in words)}")
    try:
        check_field(TrainConfig.__dataclass_fields__[name], value)
        if name == "freeze":
            check_freeze(value)
        elif name == "threshold_strategy":
            parse_strategy(value)
        elif name == "backbone":
            check_backbone(value)
            check_names(value)  # timm's names too, before any trial runs
    except (ValueError, TypeError, ImportError) as error:
        raise ValueError(f"{where} {shown(value)}: {shown(error, False, 300)}") from None


def is_integer_field(name: str) -> bool:
    return "int" in field_types(name) and "float" not in field_types(name)


def distribution(name: str, spec: dict):
    """The Optuna distribution that suggest() draws the field from."""
    import optuna

    if "choices" in spec:
        return optuna.distributions.CategoricalDistribution(spec["choices"])
    if is_integer_field(name):
        return optuna.distributions.IntDistribution(spec["low"], spec["high"], log=bool(spec.get("log")))
    return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))


def check_space_for(space: dict, config: TrainConfig) -> None:
    """Each value of the space in `config` (a recipe may refuse one that the field alone allows: threshold_source
    val without a validation split); one line naming the space and the field."""
    source = getattr(space, "source", Space.source)
    for name, spec in space.items():
        for value in spec["choices"] if "choices" in spec else (spec["low"], spec["high"]):
            try:
                config.replace(**{name: value})
            except (ValueError, TypeError) as error:
                raise ValueError(f"{source}: {name} {shown(value)}: {shown(error, False, 300)}") from None


def suggest(trial, space: dict, default) -> dict:
    """The trial's values of the space's fields."""
    values = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif is_integer_field(name):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            values[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return values


def starting_values(space: dict, config: TrainConfig) -> dict:
    """The preset's own values of the space's fields, where the space holds them: the first trial."""
    values = {}
    for name, spec in space.items():
        value = getattr(config, name)
        inside = value in spec["choices"] if "choices" in spec else spec["low"] <= value <= spec["high"]
        if inside:
            values[name] = value
    return values


@dataclass
class TuningRun:
    study: object  # optuna.Study
    best: TrainConfig
    best_score: float
    written: list


def tune(data, trials: int, out, config: TrainConfig | None = None, space: dict | None = None, preset_name="default",
         folds: int = 5, progress: bool = True) -> TuningRun:
    """Search `space` (default: SPACES[preset_name]) around `config` for `trials` trials in all (an interrupted
    study in out/study.db continues), each scored by its `folds`-fold out-of-fold macro F1."""
    try:
        import optuna
    except ImportError:
        raise ValueError("aimonk tune needs Optuna: pip install optuna (or aimonk[tune])") from None
    config = config or preset(preset_name)
    space = space or SPACES.get(preset_name) or SPACES["default"]
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"--trials must be at least 1, not {trials}")
    check_space(space)
    check_space_for(space, config)
    out = study_folder(out)
    processes = training_processes(config)
    with progress_shown(progress), folder_lock(out):
        check_study(out / "study.db", space)  # before any image is decoded; never written when refused
        data = training_images(data, config, processes)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{(out / 'study.db').resolve()}",
                                    load_if_exists=True, direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=config.seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC])  # the table's column
        done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)]
        waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
        if not done and not waiting:  # also after a first trial that failed or was interrupted
            study.enqueue_trial(starting_values(space, config))
        log.info(f"tuning {len(space)} fields ({', '.join(space)}) of the {preset_name} recipe on {len(data)} images: "
                 f"{trials} trials, {folds}-fold out-of-fold macro F1 each"
                 + (f"; {len(done)} done before, continuing {out / 'study.db'}" if done else ""))
        log_notes(data)
        objective = Objective(data, config, space, folds)
        try:
            study.optimize(objective, n_trials=max(0, trials - len(done)))
        except KeyboardInterrupt:
            kept = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
            raise KeyboardInterrupt(f"interrupted: {kept} finished trial(s) are kept in {out / 'study.db'}; run the "
                                    "same command again to continue the study") from None
        best = config.replace(**study.best_trial.params)
        return TuningRun(study, best, study.best_value, write_outputs(study, best, out))


def study_folder(out) -> Path:
    """`out` for a study: new, empty, or holding an earlier study of this command (its study.db), whose outputs
    its end replaces; never a folder holding other outputs of that name (a training run's config.json)."""
    out = check_output_folder(out, True, names=OUTPUTS)
    if not (out / "study.db").is_file():
        check_output_folder(out, False, names=OUTPUTS)  # one-line error naming what is there
    return out


STUDY, METRIC = "aimonk", "out-of-fold macro F1"
OPTUNA_TABLES = {"studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials",
                 "trial_params", "trial_values", "trial_intermediate_values", "trial_user_attributes",
                 "trial_system_attributes", "trial_heartbeats", "version_info", "alembic_version"}


def check_study(db: Path, space: dict) -> None:
    """`db` (DIR/study.db) absent, or Optuna's SQLite storage of this command's study: one study named aimonk that
    maximises one value, out-of-fold macro F1 between 0 and 1, whose trials searched TrainConfig fields, and the
    fields of `space` over the same kind of range. Read-only (SQLite's mode=ro): a file refused is never
    written; one-line ValueErrors naming it."""
    if not os.path.lexists(db):
        return
    advice = "move it away or choose another --out"
    if db.is_dir():
        raise ValueError(f"{db} is a folder, not the study (an SQLite file) of aimonk tune; {advice}")
    if not db.is_file():
        raise ValueError(f"{db} is not a file, not the study (an SQLite file) of aimonk tune; {advice}")
    foreign = f"{db} is not a study of aimonk tune"
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise ValueError(f"{db} is damaged (SQLite: {' '.join(str(problems[0]).split())}); {advice}")
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                      if not name.startswith("sqlite_")}
            if not tables:
                raise ValueError(f"{foreign}: an SQLite database with no tables; {advice}")
            if tables - OPTUNA_TABLES or not {"studies", "study_directions", "trials", "trial_params",
                                               "trial_values", "version_info"} <= tables:
                other = sorted(tables - OPTUNA_TABLES) or sorted(tables)
                raise ValueError(f"{foreign}: an SQLite database with table(s) {', '.join(other[:3])}"
                                 f"{' and more' if len(other) > 3 else ''}, not Optuna's; {advice}")
            studies = connection.execute("SELECT study_id, study_name FROM studies").fetchall()
            if [name for _, name in studies] not in ([], [STUDY]):
                names = ", ".join(repr(name) for _, name in studies[:3])
                raise ValueError(f"{foreign}: Optuna's storage of the study(ies) {names}, not {STUDY!r}; {advice}")
            directions = [row[0] for row in connection.execute("SELECT direction FROM study_directions")]
            if studies and directions != ["MAXIMIZE"]:
                directions = ", ".join(map(str, directions)).lower() or "none"
                raise ValueError(f"{foreign}: its study's direction is {directions}, not maximize (out-of-fold "
                                 f"macro F1); {advice}")
            check_trials(connection, db, foreign, advice, space)
    except sqlite3.Error as error:
        raise ValueError(f"{foreign} (SQLite: {' '.join(str(error).split())}); {advice}") from None


def check_trials(connection, db: Path, foreign: str, advice: str, space: dict) -> None:
    """The study's trials: values that are macro F1s, parameters that are TrainConfig fields, and the space's
    fields searched over the same kind of range as before (Optuna refuses another one mid-study)."""
    import optuna

    columns = {row[1] for row in connection.execute("PRAGMA table_info(trial_values)")}
    kind = "value_type" if "value_type" in columns else "'FINITE'"
    for objective, value, value_type in connection.execute(f"SELECT objective, value, {kind} FROM trial_values"):
        if objective != 0 or value_type != "FINITE" or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{foreign}: a trial's value is {value if value_type == 'FINITE' else value_type} "
                             f"(objective {objective}), not an out-of-fold macro F1; {advice}")
    fields = TrainConfig.__dataclass_fields__
    for name, text in connection.execute("SELECT DISTINCT param_name, distribution_json FROM trial_params"):
        if name not in fields:
            raise ValueError(f"{foreign}: its trials searched {shown(name)}, not a TrainConfig field; {advice}")
        if name not in space:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(optuna.distributions.json_to_distribution(text),
                                                                  distribution(name, space[name]))
        except (ValueError, TypeError, KeyError) as error:
            source = getattr(space, "source", Space.source)
            raise ValueError(f"{source}: {name}: {db} searched it over another range ({' '.join(str(error).split())}"
                             "); search it as before, or start a new study in another --out") from None


class Objective:
    """One trial: the recipe cross-validated, reported fold by fold to the pruner."""

    def __init__(self, data: LabelledImages, config: TrainConfig, space: dict, folds: int):
        self.data, self.config, self.space, self.folds = data, config, space, folds

    def __call__(self, trial) -> float:
        import optuna

        recipe = self.config.replace(**suggest(trial, self.space, self.config))
        scored = np.zeros(len(self.data), bool)

        def after_fold(fold: int, cv_rows: np.ndarray, probabilities: np.ndarray, fold_of_row: np.ndarray) -> None:
            scored[cv_rows] = True
            if fold >= 1:  # thresholds need another fold to be tuned on
                trial.report(macro_f1(self.data, probabilities[scored], fold_of_row[scored], recipe, scored), fold)
                if trial.should_prune():
                    log.info(f"trial {trial.number}: pruned after fold {fold + 1} of {self.folds}")
                    raise optuna.TrialPruned()

        with quiet():
            cv = run_folds(recipe, self.data, self.folds, after_fold=after_fold)
        score = macro_f1(self.data, cv.probabilities, cv.folds, recipe, slice(None))
        log.info(f"trial {trial.number}: out-of-fold macro F1 {score:.3f}  "
                 + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in trial.params.items()))
        return score


def macro_f1(data: LabelledImages, probabilities, fold_of_row, config: TrainConfig, rows) -> float:
    table = metrics_decided_by_fold(data.values[rows], probabilities, fold_of_row, config.threshold_strategy,
                                    data.attributes)
    return float(table.loc["macro", "f1"])


def write_outputs(study, best: TrainConfig, out: Path) -> list[Path]:
    """config.json, trials.csv and Optuna's two figures (the importances once two trials have finished)."""
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    trials = study.trials_dataframe()
    trials = trials.rename(columns={name: "out_of_fold_macro_f1" for name in trials if name.startswith("value")})
    written = [RunFolder(out, overwrite=True).write_config(best),
               write_csv(out / "trials.csv", trials, index=False)]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        figures = [("optimization_history.png", history_figure)]
        if len(finished) >= 2 and len({tuple(sorted(t.params.items())) for t in finished}) >= 2:
            figures.append(("param_importances.png",
                            lambda study: optuna_plots.plot_param_importances(study, target_name=METRIC)))
        for name, plot in figures:
            save_figure(plot(study).figure, out / name, show=False)
            written.append(out / name)
    return written


def history_figure(study):
    """Optuna's optimisation history, its x axis in whole trials, its y axis the score."""
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization import matplotlib as optuna_plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        axes = optuna_plots.plot_optimization_history(study, target_name=METRIC)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.set_xlabel("trial")
    axes.set_ylabel(METRIC)
    return axes
