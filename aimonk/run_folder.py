"""The run folder and its one owner (timm's CheckpointSaver's role): RunFolder checks the folder before any work,
holds it while the run works (.aimonk.lock), writes every file of a training run, a cross-validation or an
evaluation, and is the only code that knows their names. Everything is written atomically (a temporary file
renamed into place); what a message says was saved is on disk. Under torchrun only the main process writes.
"""
from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aimonk.config import TrainConfig
from aimonk.data.folder import LABEL_FILE_NAMES, LabelledImages
from aimonk.files import atomic_path, check_output_folder, folder_lock, json_text, write_csv, write_text
from aimonk.model.checkpoint import Checkpoint, read_torch_file
from aimonk.plots import TRAINING_FIGURES, plot_epoch_curves, plot_loss_curve, save_figure, save_training_figure
from aimonk.tracking import Tracker, open_tracker
from aimonk.training.loop import Callback
from aimonk.training.state import TrainState

MODEL, LAST, CONFIG, HISTORY, METRICS = "model.pt", "last.pt", "config.json", "history.json", "metrics.json"
LOSS_CURVE, EPOCH_CURVES, INCOMPLETE = "loss_curve.png", "epoch_curves.png", "INCOMPLETE.txt"
TRAIN_OUTPUTS = (MODEL, LAST, CONFIG, HISTORY, METRICS, LOSS_CURVE, "tensorboard", *TRAINING_FIGURES)
CV_TABLES = ("cv_metrics.csv", "oof_predictions.csv", "label_issues.csv", "na_suggestions.csv")
CV_OUTPUTS = (MODEL, CONFIG, METRICS, *CV_TABLES, INCOMPLETE)
EVALUATE_OUTPUTS = ("metrics.csv", METRICS)
LAST_FORMAT = "aimonk-training-state/1"
INCOMPLETE_NOTE = ("This cross-validation was interrupted while its final model ({final}) trained: cv_metrics, "
                   "oof_predictions, label_issues and na_suggestions are complete; model.pt is missing.\n"
                   "Run the same `aimonk evaluate --cv` again with --overwrite to finish it.\n")


@dataclass
class TrainingContext:
    """What the training state saved after each epoch needs beside the state: to resume on the same data."""

    config: TrainConfig
    data: LabelledImages
    rows: dict


class RunFolder(Callback):
    """One run's output folder, or none (path None: nothing is written). `outputs`: the names the run may write,
    none of which may exist yet unless overwrite (resume=True: an interrupted training run continued in place)."""

    def __init__(self, out=None, outputs=TRAIN_OUTPUTS, *, overwrite: bool = False, resume: bool = False,
                 main: bool = True):
        if out is not None and not resume:
            out = check_output_folder(out, overwrite, names=outputs)
        self.path = Path(out) if out is not None and main else None
        self.training: TrainingContext | None = None
        self.tracker: Tracker = Tracker()
        self.steps_tracked = 0
        self.saved: list[Path] = []
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> "RunFolder":
        if self.path is not None:
            self.stack.enter_context(folder_lock(self.path))
        return self

    def __exit__(self, *exception) -> None:
        self.stack.__exit__(*exception)

    def file(self, name: str) -> Path:
        return self.path / name

    def write(self, name: str, text: str) -> Path | None:
        if self.path is None:
            return None
        self.saved.append(write_text(self.file(name), text))
        return self.saved[-1]

    # a training run

    def load_last(self) -> dict:
        """The training state an interrupted run left here, for fit(resume=...)."""
        path = self.file(LAST)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: only an interrupted run can be resumed (a finished run "
                                    "removes its last.pt)")
        return read_torch_file(path, (LAST_FORMAT,), "aimonk training state")

    def open_tracker(self, config: TrainConfig) -> Tracker:
        """The run's tracker (--log), opened before any work and closed with the folder."""
        self.tracker = self.stack.enter_context(open_tracker(config.log, self.path))
        self.tracker.log_params(config.to_dict())
        return self.tracker

    def start_training(self, config: TrainConfig, data: LabelledImages, rows, steps_done: int = 0) -> None:
        """Before the first epoch: what each epoch's state is saved with."""
        self.training = TrainingContext(config, data, {"train": [int(i) for i in rows[0]],
                                                       "val": [int(i) for i in rows[1]]})
        self.steps_tracked = steps_done  # a resumed run's earlier steps were tracked by the run it continues

    def epoch_ended(self, state: TrainState, record: dict, improved: bool) -> None:
        """After every epoch: its steps and scores tracked, history.json and last.pt (the whole state) written."""
        self.track_steps(state.history)
        self.tracker.log_metrics(epoch_metrics(record), record["epoch"])
        if self.path is None:
            return
        write_text(self.file(HISTORY), json_text(state.history, indent=1))
        context = self.training
        with atomic_path(self.file(LAST)) as temporary:
            torch.save({"format": LAST_FORMAT, "config": context.config.to_dict(), "rows": context.rows,
                        "label_file": context.data.label_file, "filenames": list(context.data.filenames),
                        "attributes": list(context.data.attributes),
                        "labels": torch.from_numpy(context.data.values.copy()), "state": state.state_dict()},
                       temporary)

    def track_steps(self, history: dict) -> None:
        """The steps not tracked yet (their losses, numbered from the run's first step)."""
        losses = history["iteration_loss"]
        for step, loss in enumerate(losses[self.steps_tracked:], start=self.steps_tracked + 1):
            self.tracker.log_metrics({"train/loss": loss}, step)
        self.steps_tracked = len(losses)

    def save_run(self, checkpoint: Checkpoint, trained=None, notes=()) -> Path | None:
        """The run's files: model.pt (its one writer), config.json, history.json, the loss curve and the figure of
        how it learned; with a finished run (`trained`, aimonk.training.run.TrainedModel) metrics.json and the
        tracker's record too, and last.pt removed (only an unfinished run needs it)."""
        self.track_steps(checkpoint.history)
        if self.path is None:
            return None
        model = checkpoint.save(self.file(MODEL))
        self.saved.append(model)
        self.write_config(checkpoint.config)
        self.write(HISTORY, json_text(checkpoint.history, indent=1))
        figures = [self.save_figure(plot_loss_curve(checkpoint.history), LOSS_CURVE)
                   if checkpoint.history["iteration_loss"] else None]
        if trained is None:
            if checkpoint.history["epochs"]:
                figures.append(self.save_figure(plot_epoch_curves(checkpoint.history), EPOCH_CURVES))
            return model
        figures.append(save_training_figure(trained, self.path, show=False))
        how, table = trained.measured()
        self.write_metrics(how, table, notes)
        self.track_run(trained, table, figures, model)
        self.file(LAST).unlink(missing_ok=True)
        return model

    def save_figure(self, figure, name: str) -> Path:
        save_figure(figure, self.file(name), show=False)
        self.saved.append(self.file(name))
        return self.file(name)

    def track_run(self, trained, table: pd.DataFrame | None, figures, model: Path) -> None:
        """What a finished run reports to its tracker: its measured scores, figures and checkpoint."""
        step = len(trained.history["epochs"])
        label = "out_of_fold" if trained.out_of_fold_metrics is not None else "held_out"
        if table is not None:
            self.tracker.log_metrics({f"{label}/{kind}/{name}": float(row[kind]) for name, row in table.iterrows()
                                      for kind in ("f1", "precision", "recall") if np.isfinite(row[kind])}, step)
        for figure in figures:
            if figure is not None and Path(figure).is_file():
                self.tracker.log_figure(Path(figure), step)
        self.tracker.log_artifact(model)
        trained.tracked = self.tracker.where

    def interrupted(self, saved_epoch: int | None, data: LabelledImages) -> str:
        """What an interruption leaves, checked on disk, and how to continue."""
        if self.path is None:
            return "interrupted"
        if saved_epoch is None or not self.file(MODEL).is_file():
            return "interrupted before the first epoch ended: nothing was saved"
        return (f"interrupted: the best checkpoint so far (epoch {saved_epoch}) is kept in {self.file(MODEL)}"
                + (f"; continue with: aimonk train {data_argument(data)} --out {shlex.quote(str(self.path))} "
                   "--resume" if self.file(LAST).is_file() else ""))

    def write_config(self, config: TrainConfig) -> Path | None:
        """config.json: the configuration as `aimonk train --config` reads it back."""
        return self.write(CONFIG, json_text(config.to_dict()))

    def write_metrics(self, how: str, table: pd.DataFrame | None, notes=()) -> Path | None:
        """metrics.json: the scores per attribute and macro, how they were measured, and what to know of them."""
        return self.write(METRICS, json_text({"measured": how, "metrics": [] if table is None else records(table),
                                              "notes": list(notes)}))

    # a cross-validation

    def write_cv_tables(self, run, data: LabelledImages) -> None:
        """cv_metrics.csv, metrics.json, oof_predictions.csv, label_issues.csv and na_suggestions.csv of a
        cross-validation (aimonk.workflows.CrossValidationRun)."""
        if self.path is None:
            return
        probabilities = pd.DataFrame(run.cv.probabilities, columns=[f"{name}_probability" for name in run.cv.attributes])
        oof = pd.concat([data.labels.to_frame(), probabilities, pd.DataFrame({"fold": run.cv.folds})], axis=1)
        how = (f"out-of-fold: each of the {len(run.cv.names)} images predicted by the model of the "
               f"{len(set(run.cv.folds.tolist()))}-fold cross-validation that did not learn from it, each fold decided "
               "by thresholds tuned on the other folds; F1 with its 95% bootstrap interval")
        self.saved.append(write_csv(self.file("cv_metrics.csv"), run.table))
        self.write_metrics(how, run.table)
        for name, frame in (("oof_predictions.csv", oof), ("label_issues.csv", run.label_issues),
                            ("na_suggestions.csv", run.na_suggestions)):
            self.saved.append(write_csv(self.file(name), frame, index=False))

    def mark_incomplete(self, final: str) -> Path | None:
        return self.write(INCOMPLETE, INCOMPLETE_NOTE.format(final=final))

    def save_final_model(self, checkpoint: Checkpoint) -> None:
        """A cross-validation's final model and its configuration; an earlier interrupted run's note removed."""
        if self.path is None:
            return
        self.file(INCOMPLETE).unlink(missing_ok=True)
        self.saved.append(checkpoint.save(self.file(MODEL)))
        self.write_config(checkpoint.config)

    # an evaluation

    def write_evaluation(self, table: pd.DataFrame, how: str, notes=()) -> None:
        if self.path is None:
            return
        self.saved.append(write_csv(self.file("metrics.csv"), table))
        self.write_metrics(how, table, notes)


def epoch_metrics(record: dict) -> dict:
    """An epoch's record as tracked scalars: its losses, macro F1 and F1 per attribute."""
    metrics = {"epoch/train_loss": record["train_loss"]}
    if "val_loss" in record:
        metrics.update({"val/loss": record["val_loss"], "val/macro_f1": record["val_macro_f1"]})
        metrics.update({f"val/f1/{name}": value for name, value in record["val_f1"].items()})
    return metrics


def records(table: pd.DataFrame) -> list[dict]:
    """A table per attribute (and macro) as JSON records, the attribute named; null where nothing was scored."""
    def value(column, number):
        if isinstance(number, (str, bool, np.bool_)):
            return number if isinstance(number, str) else bool(number)
        if not np.isfinite(number):
            return None
        return int(number) if column in ("positives", "known") else float(number)

    return [{"attribute": str(name), **{column: value(column, number) for column, number in row.items()}}
            for name, row in table.iterrows()]


def data_argument(data: LabelledImages) -> str:
    """The data folder as `aimonk train` takes it (the label file where it has a name of its own), quoted for a
    shell."""
    if not data.labels.source:  # labels made in memory, not read from a file
        return "DATA"
    source = Path(data.label_file)
    return shlex.quote(str(source.parent if source.name.lower() in LABEL_FILE_NAMES else source))
