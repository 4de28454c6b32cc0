"""Hyperparameter search on Optuna: `aimonk tune DATA --trials N --out DIR`.

Each trial is a recipe (the preset with some fields changed, as SPACE says), scored by its cross-validated
out-of-fold macro F1 with every fold decided by thresholds tuned on the other folds, never on the rows it
scores; Optuna's median pruner stops a trial fold by fold once it falls behind. The study lives in
DIR/study.db (SQLite), so an interrupted search continues where it stopped when the same command runs again.
The preset's own recipe is the first trial, so the table always shows what the search gained over it.
At the end: DIR/config.json (the best recipe, for `aimonk train --config`), DIR/trials.csv, and Optuna's
optimisation history and parameter importances as figures. The best trial's score is optimistic (it is the
best of many on the same folds): score the chosen recipe on images the search never saw.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aimonk.config import AUGMENTATIONS, LOSSES, TrainConfig, preset
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


def load_space(path) -> dict:
    """A search space from a YAML file: `field: {choices: [...]}` or `field: {low: L, high: H[, log: true]}` for
    TrainConfig fields; one-line errors naming the file and the field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--space {path}: no such file")
    try:
        space = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"--space {path} is not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(space, dict) or not space:
        raise ValueError(f"--space {path} must map TrainConfig fields to their ranges")
    for name, spec in space.items():
        check_range(path, name, spec)
    return space


def check_range(path, name, spec) -> None:
    fields = TrainConfig.__dataclass_fields__
    if name not in fields:
        raise ValueError(f"--space {path}: {name!r} is not a TrainConfig field")
    ranged = isinstance(spec, dict) and ({"choices"} == set(spec) or {"low", "high"} <= set(spec) <= {"low", "high",
                                                                                                    "log"})
    if not ranged:
        raise ValueError(f"--space {path}: {name} needs {{choices: [...]}} or {{low: L, high: H}} (log: true optional)")
    values = spec["choices"] if "choices" in spec else [spec["low"], spec["high"]]
    for value in values:
        try:
            TrainConfig(**{name: value})
            if name == "backbone":  # timm's names too, before any trial runs
                check_names(value)
        except (ValueError, TypeError, ImportError) as error:
            raise ValueError(f"--space {path}: {name} {value!r}: {error}") from None


def suggest(trial, space: dict, default) -> dict:
    """The trial's values of the space's fields."""
    values = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif isinstance(getattr(default, name), int) and isinstance(spec["low"], int):
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
    out = study_folder(out)
    processes = training_processes(config)
    with progress_shown(progress), folder_lock(out):
        data = training_images(data, config, processes)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name="aimonk", storage=f"sqlite:///{(out / 'study.db').resolve()}",
                                    load_if_exists=True, direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=config.seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
        study.set_metric_names(["out-of-fold macro F1"])  # the figures' axis
        done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)]
        if not study.trials:
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
        figures = [("optimization_history.png", optuna_plots.plot_optimization_history)]
        if len(finished) >= 2 and len({tuple(sorted(t.params.items())) for t in finished}) >= 2:
            figures.append(("param_importances.png", optuna_plots.plot_param_importances))
        for name, plot in figures:
            save_figure(plot(study).figure, out / name, show=False)
            written.append(out / name)
    return written
