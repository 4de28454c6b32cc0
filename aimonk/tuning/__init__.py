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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aimonk.config import TrainConfig, preset
from aimonk.data.folder import LabelledImages
from aimonk.decision.thresholds import metrics_decided_by_fold
from aimonk.files import folder_lock, write_csv
from aimonk.plots import save_figure
from aimonk.progress import progress_shown, quiet
from aimonk.run_folder import RunFolder
from aimonk.tuning.space import SPACES, check_space, check_space_for, starting_values, suggest
from aimonk.tuning.study import METRIC, STUDY, check_study, study_folder
from aimonk.training.crossval import run_folds
from aimonk.workflows import log_notes, training_images, training_processes

log = logging.getLogger(__name__)



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
