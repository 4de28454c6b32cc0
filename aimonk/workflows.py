"""What a command or a notebook does, end to end, with the outputs it writes: a training run, a
cross-validation run, an evaluation. `aimonk train|evaluate` parse options and call these; the notebooks and
the Python API (`aimonk.train`, `aimonk.cross_validate`, `aimonk.evaluate`) call the same functions.

Each checks its output folder before any work (no file it would write may exist yet unless overwrite) and
returns what it computed; progress lines go to stdout when `progress` is on.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aimonk.config import FINAL_MODELS, TrainConfig, preset
from aimonk.data.folder import LabelledImages, load_labelled_folder
from aimonk.decision.rule import DecisionRule
from aimonk.distributed import Processes
from aimonk.evaluation.folder import Evaluation, evaluate_checkpoint
from aimonk.evaluation.label_issues import label_issues, na_suggestions
from aimonk.evaluation.tables import cv_report
from aimonk.files import check_output_folder, folder_lock, write_csv, write_text
from aimonk.model.checkpoint import Checkpoint
from aimonk.model.registry import build_model, check_names
from aimonk.plots import TRAINING_FIGURES, plot_epoch_curves, plot_loss_curve, save_figure, save_training_figure
from aimonk.runtime import select_device
from aimonk.serve.predictions import parse_thresholds
from aimonk.serve.predictor import Predictor
from aimonk.tracking import open_tracker
from aimonk.training.crossval import CrossValidation, cross_validate as run_folds, final_model, out_of_fold
from aimonk.training.loop import TrainingInterrupted
from aimonk.training.run import TrainedModel, records, train as train_and_fit_rule
from aimonk.training.runlog import load_last

TRAIN_OUTPUTS = ("model.pt", "last.pt", "config.json", "history.json", "metrics.json", "loss_curve.png",
                 "tensorboard", *TRAINING_FIGURES)
INCOMPLETE = "INCOMPLETE.txt"  # what an interrupted `evaluate --cv --out` leaves to say so
INCOMPLETE_NOTE = ("This cross-validation was interrupted while its final model ({final}) trained: cv_metrics, "
                   "oof_predictions, label_issues and na_suggestions are complete; model.pt is missing.\n"
                   "Run the same `aimonk evaluate --cv` again with --overwrite to finish it.\n")
CV_OUTPUTS = ("model.pt", "config.json", "cv_metrics.csv", "metrics.json", "oof_predictions.csv",
              "label_issues.csv", "na_suggestions.csv", INCOMPLETE)
EVALUATE_OUTPUTS = ("metrics.csv", "metrics.json")


def train(data, config: TrainConfig | None = None, out=None, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> TrainedModel:
    """Train `config` (default: the default preset) on the labelled folder `data` (a path, or a LabelledImages
    already decoded at config.image_size), fit its decision rule, and with `out` write model.pt, config.json,
    history.json and the loss and epoch figures there. resume=True continues the interrupted run in `out` with
    its own configuration. Ctrl-C raises aimonk.training.loop.TrainingInterrupted, saying what was kept."""
    resumed = None
    if resume:
        if out is None or config is not None:
            raise ValueError("resume continues the interrupted run in `out` with its own configuration: give out, "
                             "not a configuration")
        resumed = load_last(out)
        config = TrainConfig.from_dict(resumed["config"])
    config = config or preset("default")
    if out is not None and not resume:
        out = check_output_folder(out, overwrite, names=TRAIN_OUTPUTS)
    processes = training_processes(config)
    with locked(out, processes), open_tracker(config.log, out if processes.main else None) as tracker:
        tracker.log_params(config.to_dict())
        data = training_images(data, config, processes)
        check_folds(data, config)
        if resumed is not None:
            check_same_data(data, resumed, Path(out))
        if progress and processes.main:
            print(f"training {config.backbone} on {len(data)} images, {len(data.attributes)} attributes"
                  + (f" -> {out}" if out else "")
                  + (f" (resumed after epoch {resumed['state']['epoch']})" if resumed else "")
                  + (f"; {processes.world} processes" if processes.distributed else ""), flush=True)
            print_notes(data)
        try:
            trained = train_and_fit_rule(config, data, out, progress, resumed, processes, tracker)
        except TrainingInterrupted as stopped:
            if stopped.result is not None and out is not None and processes.main:
                write_run_outputs(config, stopped.result.history, Path(out))
                if stopped.result.recipe.by_epochs and stopped.result.history["epochs"]:
                    save_figure(plot_epoch_curves(stopped.result.history, stopped.result.recipe),
                                Path(out) / "epoch_curves.png", show=False)
            raise
        if out is not None and processes.main:
            write_run_outputs(config, trained.history, Path(out))
            figure = save_training_figure(trained, out, show=False)
            measured = trained.measured()
            write_metrics(Path(out), measured, data.notes())
            track_run(tracker, trained, measured, [Path(out) / "loss_curve.png", figure])
            trained.tracked = tracker.where
        return trained


def track_run(tracker, trained: TrainedModel, measured: dict, figures) -> None:
    """What a run reports to its tracker once it has finished: its measured scores, figures and checkpoint."""
    step = len(trained.history["epochs"])
    scores = {f"{kind}/{row['attribute']}": row[kind] for row in measured["metrics"]
              for kind in ("f1", "precision", "recall") if row[kind] is not None}
    label = "out_of_fold" if trained.out_of_fold_metrics is not None else "held_out"
    tracker.log_metrics({f"{label}/{name}": value for name, value in scores.items()}, step)
    for figure in figures:
        if figure is not None and Path(figure).is_file():
            tracker.log_figure(Path(figure), step)
    if trained.path is not None:
        tracker.log_artifact(Path(trained.path))


def write_config(config: TrainConfig, out: Path) -> Path:
    """out/config.json: the configuration as `aimonk train --config` reads it back."""
    return write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))


def write_run_outputs(config: TrainConfig, history: dict, out: Path) -> None:
    """config.json and the loss curve of a run (history.json is the run log's; the files of the run folder, so
    not shown in a notebook)."""
    write_config(config, out)
    if history["iteration_loss"]:
        save_figure(plot_loss_curve(history), out / "loss_curve.png", show=False)


def training_processes(config: TrainConfig) -> Processes:
    """The processes torchrun started, or this one alone, checked against the batch size before any work; as
    in torchvision's references only the main process prints (errors still show from every process)."""
    processes = Processes.join(select_device(config.device))
    processes.batch_size(config.batch_size)
    if not processes.main:
        sys.stdout = open(os.devnull, "w")
        warnings.simplefilter("ignore")
    return processes


def training_images(data, config: TrainConfig, processes: Processes) -> LabelledImages:
    """The labelled folder decoded for training (the main process decodes into the cache first), after the
    configuration's backbone was built with its weights (found, downloaded or read from a file and fitted: kept
    for the run to copy), so that a missing weights file or an offline download stops it before any work."""
    if config.weights == "none":
        check_names(config.backbone)
    else:
        pretrained = build_model(config.backbone, 1, weights=config.weights, image_size=config.image_size)
        if pretrained.pretrained_size not in (None, config.image_size):
            print(f"note: {config.backbone} was pretrained at {pretrained.pretrained_size}px (timm's pretrained "
                  f"config); this run trains at {config.image_size}px (--image-size {pretrained.pretrained_size} "
                  "to match)", flush=True)
    if isinstance(data, LabelledImages):
        if data.images.shape[1] != config.image_size:
            raise ValueError(f"the images were decoded at {data.images.shape[1]}px, the configuration trains at "
                             f"{config.image_size}px: load the folder at --image-size {config.image_size}")
        return data
    with processes.main_first():
        return load_labelled_folder(data, config.image_size, config.unknown_as_na, trainable=True)


def locked(out, processes: Processes = Processes()):
    """The run's output folder held for it alone (the main process holds it), or nothing without one."""
    return folder_lock(out) if out is not None and processes.main else contextlib.nullcontext()


def check_folds(data: LabelledImages, config: TrainConfig, folds: int | None = None) -> None:
    """Before any training: no more folds than images (--cv, and --threshold-folds where thresholds are
    cross-validated)."""
    asked = [("--cv", folds), ("--threshold-folds", config.threshold_folds if config.threshold_source == "cv" else None)]
    for option, count in asked:
        if count is not None and count > len(data):
            raise ValueError(f"{option} {count} asks for more folds than the {len(data)} images of "
                             f"{data.labels.source}: at most {len(data)}")


def print_notes(data: LabelledImages) -> None:
    for note in data.notes():
        print(f"note: {note}", flush=True)


def check_same_data(data: LabelledImages, resumed: dict, out: Path) -> None:
    """A run resumes on the images, attributes and labels it was trained on (one line saying what differs)."""
    if list(data.filenames) != list(resumed["filenames"]):
        raise ValueError(f"{out} was trained on {resumed['label_file']} with other images than {data.labels.source}: "
                         "resume it with the same data folder")
    attributes = resumed.get("attributes", list(data.attributes))  # training states before 0.2 kept no labels
    if list(data.attributes) != list(attributes):
        raise ValueError(f"{out} was trained on the attributes {', '.join(attributes)}; {data.labels.source} has "
                         f"{', '.join(data.attributes)}: resume it with the same labels")
    if "labels" in resumed:
        stored = resumed["labels"].numpy()
        changed = ~((stored == data.values) | (np.isnan(stored) & np.isnan(data.values)))
        if changed.any():
            rows, columns = np.nonzero(changed)
            raise ValueError(f"{out} was trained on other labels than {data.labels.source} holds: {int(changed.sum())} "
                             f"changed, e.g. {data.filenames[rows[0]]} {data.attributes[columns[0]]} "
                             f"(was {stored[rows[0], columns[0]]:g}, now {data.values[rows[0], columns[0]]:g}): resume "
                             "it with the labels it was trained on, or train anew with --overwrite")


@dataclass
class CrossValidationRun:
    """A cross-validation of a recipe: the out-of-fold predictions, the report, the decision rule fitted on them,
    the labels to check, and the final model (None with final='none')."""

    cv: CrossValidation
    table: pd.DataFrame
    rule: DecisionRule
    label_issues: pd.DataFrame
    na_suggestions: pd.DataFrame
    checkpoint: Checkpoint | None = None
    written: list[Path] = field(default_factory=list)


def cross_validate(data, config: TrainConfig | None = None, folds: int = 5, out=None, *, final: str = "retrain",
                   overwrite: bool = False, progress: bool = True,
                   on_report: Callable[[CrossValidationRun], None] | None = None) -> CrossValidationRun | None:
    """K-fold cross-validation of `config` (default: the default preset) on `data` (a folder or a
    LabelledImages): every image predicted by the fold model that did not learn from it, the honest report
    (thresholds tuned on the other folds), the decision rule fitted on all out-of-fold predictions, the
    labels to check, and the final model (final: retrain on every image, ensemble the folds, or none). With
    `out` the tables, oof_predictions.csv, label_issues.csv, na_suggestions.csv and model.pt are written there.
    on_report(run) is called once the report is ready, before the final model trains. Under torchrun only the
    main process returns the run (the others return None)."""
    config = config or preset("default")
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"--cv must be at least 2 folds, not {folds}")
    if final not in FINAL_MODELS:
        raise ValueError(f"--final must be one of {', '.join(FINAL_MODELS)}, not {final!r}")
    if out is not None:
        out = check_output_folder(out, overwrite, names=CV_OUTPUTS)
    processes = training_processes(config)
    with locked(out, processes):
        data = training_images(data, config, processes)
        check_folds(data, config, folds)
        if progress and processes.main:
            print(f"{folds}-fold cross-validation of {config.backbone} on {len(data)} images"
                  + (f" -> {out}" if out else "")
                  + (f"; folds spread over {processes.world} processes" if processes.distributed else ""), flush=True)
            print_notes(data)
        cv = run_folds(config, data, folds, keep_models=final == "ensemble", progress=progress, processes=processes)
        rule = DecisionRule.of(config).fit(out_of_fold(cv), cv.attributes)
        if not processes.main:
            if final == "retrain":  # the final model trains in every process
                final_model(cv, config, data, final, rule, progress=False, processes=processes)
            return None
        calibrated = cv.calibrated(config.calibration)
        run = CrossValidationRun(cv, cv_report(cv, config.threshold_strategy, calibration=config.calibration), rule,
                                 label_issues(cv.targets, cv.probabilities, cv.names, cv.attributes),
                                 na_suggestions(cv.targets, calibrated, cv.names, cv.attributes))
        if out is not None:
            run.written += write_cv_tables(run, data, out)
        if on_report is not None:
            on_report(run)
        if final != "none":
            try:
                run.checkpoint = final_model(cv, config, data, final, rule, progress=progress, processes=processes)
            except KeyboardInterrupt:
                if out is not None and processes.main:
                    run.written.append(write_text(out / INCOMPLETE, INCOMPLETE_NOTE.format(final=final)))
                    raise KeyboardInterrupt(f"interrupted while the final model trained: the cross-validation's "
                                            f"tables are complete in {out}, model.pt is missing ({out / INCOMPLETE} "
                                            "says so); run again with --overwrite for it") from None
                raise
            if out is not None:
                (out / INCOMPLETE).unlink(missing_ok=True)  # an earlier interrupted run's note
                run.written += [run.checkpoint.save(out / "model.pt"),
                                write_config(config, out)]
        return run


def write_cv_tables(run: CrossValidationRun, data: LabelledImages, out: Path) -> list[Path]:
    probabilities = pd.DataFrame(run.cv.probabilities, columns=[f"{name}_probability" for name in run.cv.attributes])
    oof = pd.concat([data.labels.to_frame(), probabilities, pd.DataFrame({"fold": run.cv.folds})], axis=1)
    how = (f"out-of-fold: each of the {len(run.cv.names)} images predicted by the model of the "
           f"{len(set(run.cv.folds.tolist()))}-fold cross-validation that did not learn from it, each fold decided by "
           "thresholds tuned on the other folds; F1 with its 95% bootstrap interval")
    return [write_csv(out / "cv_metrics.csv", run.table),
            write_metrics(out, {"measured": how, "metrics": records(run.table)}),
            write_csv(out / "oof_predictions.csv", oof, index=False),
            write_csv(out / "label_issues.csv", run.label_issues, index=False),
            write_csv(out / "na_suggestions.csv", run.na_suggestions, index=False)]


def evaluate(data, model, *, subset: str = "auto", thresholds=None, out=None, overwrite: bool = False,
             device: str = "auto", progress: bool = True) -> Evaluation:
    """Score `model` (a checkpoint's path, or a loaded Predictor) on the labelled folder `data` at its stored
    thresholds, or at `thresholds` (one value, one per attribute, or their comma-separated text). With `out`
    the table is written as metrics.csv and metrics.json."""
    if out is not None:
        out = check_output_folder(out, overwrite, names=EVALUATE_OUTPUTS)
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, device)
    if thresholds is not None:
        text = thresholds if isinstance(thresholds, str) else ",".join(map(str, np.atleast_1d(thresholds).astype(float)))
        thresholds = parse_thresholds(text, len(predictor.attributes))
    with locked(out):
        evaluation = evaluate_checkpoint(data, predictor, subset, thresholds, progress=progress)
        if out is not None:
            how = (f"{len(evaluation.names)} images ({evaluation.subset} rows) of {data}, thresholds "
                   f"{evaluation.thresholds_source}")
            write_csv(out / "metrics.csv", evaluation.table)
            write_metrics(out, {"measured": how, "metrics": records(evaluation.table)}, evaluation.notes)
    return evaluation


def write_metrics(out: Path, measured: dict, notes=()) -> Path:
    """metrics.json: the scores per attribute and macro and how they were measured ({"measured", "metrics"}: see
    aimonk.training.run.records), and what to know about them."""
    return write_text(out / "metrics.json", json.dumps({**measured, "notes": list(notes)}, indent=2))
