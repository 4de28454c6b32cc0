"""A training run as `aimonk train` and notebook 02 start it: fit, then decision thresholds chosen on
predictions for images the model did not learn from, stored in the checkpoint with how they were chosen."""
from __future__ import annotations

import numpy as np

from .checkpoint import update_thresholds
from .config import TrainConfig
from .crossval import cross_validate, out_of_fold_thresholds
from .dataset import LabelledImages
from .thresholds import Thresholds, tune_thresholds
from .training import TrainResult, fit


def train(config: TrainConfig, data: LabelledImages, out_dir=None, progress: bool = True) -> TrainResult:
    """fit(), then held_out_thresholds(); with out_dir the checkpoint keeps the thresholds."""
    result = fit(config, data, out_dir, progress)
    if result.interrupted:
        result.thresholds = untuned(len(data.attributes), "the run was interrupted")
    else:
        result.thresholds = held_out_thresholds(config, data, result, progress)
    if result.checkpoint and result.checkpoint.is_file():
        update_thresholds(result.checkpoint, result.thresholds.values, result.thresholds.source)
    if progress:
        print("thresholds " + ", ".join(f"{name} {value:.3f}" for name, value in
                                         zip(data.attributes, result.thresholds.values))
              + f": {result.thresholds.source}")
    return result


def held_out_thresholds(config: TrainConfig, data: LabelledImages, result: TrainResult,
                        progress: bool = True) -> Thresholds:
    """Per-attribute thresholds tuned (config.threshold_strategy) on held-out predictions, per config.threshold_source:

    cv: out-of-fold predictions of a config.threshold_folds-fold cross-validation of the same recipe on the
        training images (each fold trained for the whole schedule; cheap when only the head learns);
    val: the kept model's predictions for the validation split (the epoch was also chosen on them);
    none: 0.5 for every attribute.
    """
    strategy, attributes = config.threshold_strategy, len(data.attributes)
    if config.threshold_source == "cv":
        if progress:
            print(f"thresholds: {config.threshold_folds}-fold cross-validation on the {len(result.train_rows)} "
                  "training images", flush=True)
        cv = cross_validate(config, data, config.threshold_folds, progress=False, rows=result.train_rows)
        return out_of_fold_thresholds(cv, strategy)
    if config.threshold_source == "val":
        if result.val_probabilities is None:
            return untuned(attributes, "no validation split")
        return Thresholds(tune_thresholds(data.values[result.val_rows], result.val_probabilities, strategy),
                          f"tuned ({strategy}) on the predictions for {len(result.val_rows)} validation images")
    return untuned(attributes, "--threshold-source none")


def untuned(attributes: int, why: str) -> Thresholds:
    return Thresholds(np.full(attributes, 0.5), f"0.5, not tuned ({why})")
