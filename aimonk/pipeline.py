"""A training run as `aimonk train` and notebook 02 start it: fit, then decision thresholds chosen on
predictions for images the model did not learn from, stored in the checkpoint with how they were chosen."""
from __future__ import annotations

import numpy as np

from .checkpoint import update_checkpoint
from .config import TrainConfig
from .crossval import cross_validate, out_of_fold
from .dataset import LabelledImages
from .distributed import Processes
from .thresholds import HeldOut, Thresholds, calibrated_thresholds, metrics_decided_by_fold
from .training import TrainResult, fit


def train(config: TrainConfig, data: LabelledImages, out_dir=None, progress: bool = True,
          resume: dict | None = None, processes: Processes = Processes()) -> TrainResult:
    """fit() (from an interrupted run's state with resume), then the decision rule (thresholds and
    calibration) fitted on held_out_predictions(); with out_dir the checkpoint keeps them. processes: those
    torchrun started, which train the model together and spread the threshold folds among themselves."""
    progress = progress and processes.main
    result = fit(config, data, out_dir, progress, resume=resume, processes=processes)
    held_out, why = None, "the run was interrupted"
    if not result.interrupted:
        try:
            held_out = held_out_predictions(config, data, result, progress, processes)
            why = "no validation split" if config.threshold_source == "val" else "--threshold-source none"
        except KeyboardInterrupt:  # the trained model is kept; only its thresholds are missing
            result.interrupted, why = True, "the threshold cross-validation was interrupted: train again to tune them"
    if held_out is None:
        result.thresholds, result.calibration = untuned(len(data.attributes), why), None
    else:
        result.thresholds, result.calibration = calibrated_thresholds(held_out, config.threshold_strategy,
                                                                      config.calibration)
    out_of_fold_kept = held_out if held_out is not None and held_out.folds is not None else None
    if result.checkpoint and result.checkpoint.is_file():
        update_checkpoint(result.checkpoint, thresholds=[float(t) for t in result.thresholds.values],
                          thresholds_source=result.thresholds.source,
                          calibration=result.calibration.to_dict() if result.calibration else None,
                          held_out=out_of_fold_kept.to_dict() if out_of_fold_kept else None)
    if progress:
        print("thresholds " + ", ".join(f"{name} {value:.3f}" for name, value in
                                         zip(data.attributes, result.thresholds.values))
              + f": {result.thresholds.source}")
        if out_of_fold_kept:
            print(describe_out_of_fold(out_of_fold_kept, config.threshold_strategy, data.attributes))
    return result


def describe_out_of_fold(held_out: HeldOut, strategy: str, attributes) -> str:
    """The out-of-fold F1 per attribute and macro, each fold decided by thresholds tuned on the others: how
    good the recipe is on images it did not learn from, printed as the run ends."""
    f1 = metrics_decided_by_fold(held_out.targets, held_out.probabilities, held_out.folds, strategy, attributes)["f1"]
    return ("out-of-fold F1 (each fold decided by thresholds from the other folds): "
            + ", ".join(f"{name} {value:.3f}" for name, value in f1.items()))


def held_out_predictions(config: TrainConfig, data: LabelledImages, result: TrainResult,
                         progress: bool = True, processes: Processes = Processes()) -> HeldOut | None:
    """Predictions for images the model did not learn from, per config.threshold_source:

    cv: out-of-fold predictions of a config.threshold_folds-fold cross-validation of the same recipe on the
        training images (each fold trained for the whole schedule; cheap when only the head learns);
    val: the kept model's predictions for the validation split (the epoch was also chosen on them);
    none: None (thresholds stay at 0.5, probabilities uncalibrated).
    """
    if config.threshold_source == "cv":
        if progress:
            print(f"thresholds: {config.threshold_folds}-fold cross-validation on the {len(result.train_rows)} "
                  "training images", flush=True)
        return out_of_fold(cross_validate(config, data, config.threshold_folds, progress=False,
                                          rows=result.train_rows, processes=processes))
    if config.threshold_source == "val" and result.val_probabilities is not None:
        return HeldOut(data.values[result.val_rows], result.val_probabilities,
                       f"the predictions for {len(result.val_rows)} validation images")
    return None


def untuned(attributes: int, why: str) -> Thresholds:
    return Thresholds(np.full(attributes, 0.5), f"0.5, not tuned ({why})")
