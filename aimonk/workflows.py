"""What a command or a notebook does, end to end: a training run, a cross-validation, an evaluation.
`aimonk train|evaluate` parse options and call these; the notebooks and the Python API (`aimonk.train`,
`aimonk.cross_validate`, `aimonk.evaluate`) call the same functions.

Each checks its output folder before any work (aimonk.run_folder.RunFolder, the one writer of a run's files) and
returns what it computed; with progress=True its lines and bars are shown (aimonk.progress).
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aimonk.config import FINAL_MODELS, TrainConfig, preset
from aimonk.data.folder import (LabelledImages, check_trainable_on_disk, load_labelled_folder, present_rows,
                                read_label_folder)
from aimonk.data.split import scarce_class_notes
from aimonk.decision.rule import DecisionRule
from aimonk.decision.thresholds import metrics_decided_by_fold
from aimonk.distributed import Processes
from aimonk.evaluation.folder import Evaluation, evaluate_checkpoint
from aimonk.evaluation.label_issues import label_issues, na_suggestions
from aimonk.evaluation.tables import cv_report
from aimonk.metrics import majority_classes
from aimonk.model.checkpoint import Checkpoint, OutOfFold, Provenance
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.model.registry import build_model
from aimonk.progress import LOGGER, progress_shown
from aimonk.run_folder import CV_OUTPUTS, EVALUATE_OUTPUTS, TRAIN_OUTPUTS, RunFolder
from aimonk.runtime import seed_everything, select_device
from aimonk.serve.predictions import parse_thresholds
from aimonk.serve.predictor import Predictor
from aimonk.training.crossval import CrossValidation, final_model, out_of_fold, run_folds
from aimonk.training.loop import TrainingInterrupted, fit, split_rows
from aimonk.training.run import (TrainedModel, describe_out_of_fold, describe_rule, held_out_predictions,
                                 validation_metrics)

log = logging.getLogger(__name__)


def train(data, config: TrainConfig | None = None, out=None, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, callbacks=()) -> TrainedModel:
    """Train `config` (default: the default preset) on the labelled folder `data` (a path, or a LabelledImages
    already decoded at config.image_size), fit its decision rule on images the model did not learn from, and with
    `out` write the run there (model.pt, config.json, history.json, metrics.json, figures). resume=True continues
    the interrupted run in `out` with its own configuration. callbacks: aimonk.training.loop.Callback objects
    that follow every fit of the run (its model's, then each threshold fold's). Ctrl-C raises
    TrainingInterrupted, saying what was kept."""
    with progress_shown(progress):
        resumed = resumed_state(out, config) if resume else None
        config = TrainConfig.from_dict(resumed["config"]) if resumed else config or preset("default")
        processes = training_processes(config)
        with RunFolder(out, TRAIN_OUTPUTS, overwrite=overwrite, resume=resume, main=processes.main) as run:
            run.open_tracker(config)
            labels = None if isinstance(data, LabelledImages) else read_label_folder(data, config.unknown_as_na)
            seed_everything(config.seed)  # the model's first weights are the seed's
            model = build_model(config, data.attributes if labels is None else labels[0].attributes)
            note_pretrained_size(model, config)
            warn_frozen_random_features(config)
            data = training_images(data, config, processes, labels)
            if resumed is not None:
                check_same_data(data, resumed, Path(out))
            rows = split_rows(config, data, (resumed["rows"]["train"], resumed["rows"]["val"]) if resumed else None)
            log.info(describe_start(config, data, rows, out, resumed, processes))
            log_notes(data, config.threshold_folds if config.threshold_source == "cv" else None,
                      "--threshold-folds", rows[0])
            run.start_training(config, data, rows, len(resumed["state"]["history"]["iteration_loss"]) if resumed else 0)
            try:
                result = fit(config, data, rows, model=model, resume=resumed, processes=processes,
                             callbacks=[run, *callbacks])
            except TrainingInterrupted as stopped:
                raise interrupted_run(run, stopped, config, data) from None
            try:
                held_out = held_out_predictions(config, data, result, processes, callbacks)
            except KeyboardInterrupt:  # Ctrl-C in the threshold cross-validation
                raise kept_untuned(run, config, data, result) from None
            rule = decision_rule(config, data, held_out)
            trained = TrainedModel(result, run_checkpoint(config, data, result, rule, held_out, run.path is not None),
                                   validation_metrics=validation_metrics(data, result))
            if trained.checkpoint.out_of_fold:
                trained.out_of_fold_metrics = metrics_decided_by_fold(
                    held_out.targets, held_out.probabilities, held_out.folds, config.threshold_strategy,
                    data.attributes)
                log.info(describe_out_of_fold(trained.out_of_fold_metrics))
            trained.path = run.save_run(trained.checkpoint, trained, data.notes())
            return trained


def describe_start(config: TrainConfig, data: LabelledImages, rows, out, resumed, processes: Processes) -> str:
    return (f"training {config.backbone} on {len(rows[0])} images"
            + (f" ({len(rows[1])} more held out for validation)" if len(rows[1]) else "")
            + f", {len(data.attributes)} attributes" + (f" -> {out}" if out else "")
            + (f" (resumed after epoch {resumed['state']['epoch']})" if resumed else "")
            + (f"; {processes.world} processes" if processes.distributed else ""))


def kept_untuned(run: RunFolder, config: TrainConfig, data: LabelledImages, result) -> TrainingInterrupted:
    """Ctrl-C in the threshold cross-validation: the model saved with thresholds 0.5, and that said."""
    rule = DecisionRule.untuned(len(data.attributes), "the threshold cross-validation was interrupted: train again "
                                "to tune them", config.threshold_strategy)
    path = run.save_run(run_checkpoint(config, data, result, rule, None, run.path is not None))
    return TrainingInterrupted(f"interrupted: the model is kept with 0.5 thresholds in {path}: train again to tune "
                               "them" if path else "interrupted: train again to tune the thresholds", result)


def resumed_state(out, config: TrainConfig | None) -> dict:
    if out is None or config is not None:
        raise ValueError("resume continues the interrupted run in `out` with its own configuration: give out, "
                         "not a configuration")
    return RunFolder(out, resume=True).load_last()


def decision_rule(config: TrainConfig, data: LabelledImages, held_out) -> DecisionRule:
    """The rule fitted on the held-out predictions, or thresholds 0.5 saying why there were none."""
    if held_out is None:
        why = "no validation split" if config.threshold_source == "val" else "--threshold-source none"
        rule = DecisionRule.untuned(len(data.attributes), why, config.threshold_strategy)
    else:
        rule = DecisionRule.of(config).fit(held_out, data.attributes)
    log.info(describe_rule(rule, data.attributes))
    return rule


def run_checkpoint(config: TrainConfig, data: LabelledImages, result, rule: DecisionRule | None, held_out,
                   with_digests: bool) -> Checkpoint:
    """The run's checkpoint: the kept model, its rule, where it came from, and the out-of-fold predictions the
    rule was fitted on (for `aimonk evaluate` on its own folder)."""
    kept = OutOfFold.of(held_out) if held_out is not None and held_out.folds is not None else None
    split = {"train": [data.filenames[i] for i in result.train_rows],
             "val": [data.filenames[i] for i in result.val_rows],
             "label_file": data.label_file,
             "train_digests": data.digests(result.train_rows)} if with_digests else {}
    provenance = Provenance(epoch=result.best_epoch, split=split,
                            majority=majority_classes(data.values[result.train_rows]).tolist())
    return Checkpoint.of_model(result.model, config, data.attributes, result.history, result.recipe, rule=rule,
                               provenance=provenance, out_of_fold=kept)


def interrupted_run(run: RunFolder, stopped: TrainingInterrupted, config: TrainConfig,
                    data: LabelledImages) -> TrainingInterrupted:
    """Ctrl-C during the epochs: the epoch kept so far saved (no rule fitted yet), and what is on disk said."""
    if stopped.result is None or run.path is None:
        return TrainingInterrupted(run.interrupted(None, data) if str(stopped) == "interrupted" else str(stopped),
                                   stopped.result)
    run.save_run(run_checkpoint(config, data, stopped.result, None, None, True))
    return TrainingInterrupted(run.interrupted(stopped.result.best_epoch, data), stopped.result)


def note_pretrained_size(model, config: TrainConfig) -> None:
    if model.pretrained_size not in (None, config.image_size):
        log.info(f"note: {config.backbone} was pretrained at {model.pretrained_size}px (timm's pretrained config); "
                 f"this run trains at {config.image_size}px (--image-size {model.pretrained_size} to match)")


def warn_frozen_random_features(config: TrainConfig) -> None:
    if config.weights == "none" and decide_recipe(config) is not Recipe.WHOLE_NETWORK:
        warnings.warn("--weights none with a frozen backbone: only the head learns, on random features that say "
                      "little about the images; train the whole network (--preset finetune --weights none, or "
                      "--freeze 0) to learn from scratch", stacklevel=2)


def training_processes(config: TrainConfig) -> Processes:
    """The processes torchrun started, or this one alone, checked against the batch size before any work; as
    in torchvision's references only the main process reports (errors still show from every process)."""
    processes = Processes.join(select_device(config.device))
    processes.batch_size(config.batch_size)
    if not processes.main:
        LOGGER.setLevel(logging.WARNING)
        warnings.simplefilter("ignore")
    return processes


def training_images(data, config: TrainConfig, processes: Processes, labels=None,
                    folds: int | None = None) -> LabelledImages:
    """The labelled folder decoded for training (the main process decodes into the cache first), its folds
    (--cv `folds`, and --threshold-folds) checked against its images before decoding and again after."""
    if isinstance(data, LabelledImages):
        if data.images.shape[1] != config.image_size:
            raise ValueError(f"the images were decoded at {data.images.shape[1]}px, the configuration trains at "
                             f"{config.image_size}px: load the folder at --image-size {config.image_size}")
        check_folds(len(data), data.labels.source, config, folds)
        return data
    labels = labels or read_label_folder(data, config.unknown_as_na)
    table, _, missing = labels
    check_trainable_on_disk(table, missing)  # the labels first: no fold count helps an attribute with one class
    check_folds(len(present_rows(table.filenames, missing)), table.source, config, folds, " on disk" if missing else "")
    with processes.main_first():
        data = load_labelled_folder(data, config.image_size, config.unknown_as_na, trainable=True, labels=labels)
    check_folds(len(data), table.source, config, folds, " that could be read" if data.unreadable else "")
    return data


def check_folds(images: int, source, config: TrainConfig, folds: int | None = None, which: str = "") -> None:
    """No more folds than images (--cv, and --threshold-folds where thresholds are cross-validated)."""
    asked = [("--cv", folds), ("--threshold-folds", config.threshold_folds if config.threshold_source == "cv" else None)]
    for option, count in asked:
        if count is not None and count > images:
            raise ValueError(f"{option} {count} asks for more folds than the {images} images{which} of {source}: at "
                             f"most {images}")


def log_notes(data: LabelledImages, folds: int | None = None, option: str = "", rows=None) -> None:
    """The data's notes, and with `folds` those on attributes with fewer known positives or negatives (among
    `rows`, by default all) than folds."""
    values = data.values if rows is None else data.values[rows]
    for note in data.notes() + (scarce_class_notes(values, data.attributes, folds, option) if folds else []):
        log.info(f"note: {note}")


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
                   on_report: Callable[[CrossValidationRun], None] | None = None,
                   callbacks=()) -> CrossValidationRun | None:
    """K-fold cross-validation of `config` (default: the default preset) on `data` (a folder or a
    LabelledImages): every image predicted by the fold model that did not learn from it, the honest report
    (thresholds tuned on the other folds), the decision rule fitted on all out-of-fold predictions, the
    labels to check, and the final model (final: retrain on every image, ensemble the folds, or none). With
    `out` the tables, oof_predictions.csv, label_issues.csv, na_suggestions.csv and model.pt are written there.
    on_report(run) is called once the report is ready, before the final model trains; callbacks
    (aimonk.training.loop.Callback) follow each fold's fit, then the final model's. Under torchrun only the main
    process returns the run (the others return None)."""
    config = config or preset("default")
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"--cv must be at least 2 folds, not {folds}")
    if final not in FINAL_MODELS:
        raise ValueError(f"--final must be one of {', '.join(FINAL_MODELS)}, not {final!r}")
    with progress_shown(progress):
        processes = training_processes(config)
        with RunFolder(out, CV_OUTPUTS, overwrite=overwrite, main=processes.main) as folder:
            data = training_images(data, config, processes, folds=folds)
            log.info(f"{folds}-fold cross-validation of {config.backbone} on {len(data)} images"
                     + (f" -> {out}" if out else "")
                     + (f"; folds spread over {processes.world} processes" if processes.distributed else ""))
            log_notes(data, folds, "--cv")
            cv = run_folds(config, data, folds, keep_models=final == "ensemble", processes=processes,
                           callbacks=callbacks)
            rule = DecisionRule.of(config).fit(out_of_fold(cv), cv.attributes)
            if not processes.main:
                if final == "retrain":  # the final model trains in every process
                    final_model(cv, config, data, final, rule, processes=processes, callbacks=callbacks)
                return None
            calibrated = cv.calibrated(config.calibration)
            run = CrossValidationRun(cv, cv_report(cv, config.threshold_strategy, calibration=config.calibration),
                                     rule, label_issues(cv.targets, cv.probabilities, cv.names, cv.attributes),
                                     na_suggestions(cv.targets, calibrated, cv.names, cv.attributes))
            folder.write_cv_tables(run, data)
            if on_report is not None:
                on_report(run)
            if final != "none":
                try:
                    run.checkpoint = final_model(cv, config, data, final, rule, processes=processes,
                                                 callbacks=callbacks)
                except KeyboardInterrupt:
                    note = folder.mark_incomplete(final)
                    if note is not None:
                        raise KeyboardInterrupt(f"interrupted while the final model trained: the cross-validation's "
                                                f"tables are complete in {out}, model.pt is missing ({note} says "
                                                "so); run again with --overwrite for it") from None
                    raise
                folder.save_final_model(run.checkpoint)
            run.written = list(folder.saved)
            return run


def evaluate(data, model, *, subset: str = "auto", thresholds=None, out=None, overwrite: bool = False,
             device: str = "auto", progress: bool = True) -> Evaluation:
    """Score `model` (a checkpoint's path, or a loaded Predictor) on the labelled folder `data` at its stored
    thresholds, or at `thresholds` (one value, one per attribute, or their comma-separated text). With `out`
    the table is written as metrics.csv and metrics.json."""
    with progress_shown(progress), RunFolder(out, EVALUATE_OUTPUTS, overwrite=overwrite) as folder:
        predictor = model if isinstance(model, Predictor) else Predictor.load(model, device)
        if thresholds is not None:
            text = thresholds if isinstance(thresholds, str) else ",".join(
                map(str, np.atleast_1d(thresholds).astype(float)))
            thresholds = parse_thresholds(text, len(predictor.attributes))
        evaluation = evaluate_checkpoint(data, predictor, subset, thresholds)
        folder.write_evaluation(evaluation.table, f"{len(evaluation.names)} images ({evaluation.subset} rows) of "
                                                  f"{data}, thresholds {evaluation.thresholds_source}", evaluation.notes)
    return evaluation
