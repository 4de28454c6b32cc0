"""K-fold cross-validation: out-of-fold probabilities for every labelled image, and the final model after it.

Each image is predicted by the one model that did not train on it, at the end of a fixed schedule (no
epoch is picked on the images being scored: TrainConfig.for_fold). aimonk.evaluation.tables scores them
honestly; the decision rule of the final model is fitted on them.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aimonk.config import FINAL_MODELS, TrainConfig
from aimonk.data.folder import LabelledImages
from aimonk.data.split import kfold_splits
from aimonk.decision.calibration import cross_fitted
from aimonk.decision.rule import DecisionRule
from aimonk.decision.thresholds import HeldOut
from aimonk.distributed import Processes
from aimonk.metrics import majority_classes
from aimonk.model.checkpoint import Checkpoint, OutOfFold, Provenance
from aimonk.model.features import cached_features
from aimonk.model.inference import place_model
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.model.registry import build_model
from aimonk.runtime import select_device
from aimonk.training.loop import fit
from aimonk.training.state import new_history

log = logging.getLogger(__name__)


@dataclass
class CrossValidation:
    probabilities: np.ndarray  # (N, K) out-of-fold
    folds: np.ndarray  # (N,) the fold that scored each row
    targets: np.ndarray
    attributes: list[str]
    names: list[str]
    histories: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    fold_states: list[dict] = field(default_factory=list)  # each fold's weights, for the fold ensemble
    _calibrated: dict = field(default_factory=dict, repr=False, compare=False)

    def calibrated(self, method: str = "platt") -> np.ndarray:
        """The out-of-fold probabilities calibrated, each row by a map fitted on other rows only (computed once
        per method: the report's calibration error, the reliability plot and the NA suggestions share it)."""
        if method not in self._calibrated:
            self._calibrated[method] = cross_fitted(self.targets, self.probabilities, method)
        return self._calibrated[method]


def run_folds(config: TrainConfig, data: LabelledImages, folds: int = 5, seed: int | None = None,
              keep_models: bool = False, rows=None, processes: Processes = Processes(),
              after_fold=None, callbacks=()) -> CrossValidation:
    """Train one model per fold (config.epochs each, the last epoch kept) and collect its predictions.

    rows: the images to cross-validate (default all); the result's rows are these, in this order.
    processes: under torchrun the folds are spread over the processes (fold f trains in process f mod world)
    and every process gets the whole result. after_fold(fold, its rows, the out-of-fold probabilities so far,
    the fold of each row so far (-1: not yet)) is called after each fold in a single process (e.g. to prune
    a hyperparameter trial); an exception it raises stops the cross-validation. callbacks: what follows each
    fold's fit (aimonk.training.loop.Callback).
    """
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=int)
    values = data.values[rows]
    splits = kfold_splits(values, folds, config.seed if seed is None else seed)
    if processes.distributed:
        share_features(config, data, processes)  # computed once by all, not once per process
    # the linear probe writes every weight of its head and no other: its folds can share one model
    shared = build_model(config, data.attributes) if decide_recipe(config) is Recipe.LINEAR_PROBE and \
        not keep_models else None
    trained = {}
    for fold, (train_part, val_part) in enumerate(splits):
        if fold % processes.world != processes.rank:
            continue
        log.info(f"fold {fold + 1}/{folds}: training on {len(train_part)} images, scoring {len(val_part)}"
                 + (f" (and {processes.world - 1} more folds at once in the other processes)"
                    if processes.distributed else ""))
        # a fold cannot be resumed: Ctrl-C in one (TrainingInterrupted) stops the cross-validation
        result = fit(config.for_fold(), data, (rows[train_part], rows[val_part]), model=shared,
                     validate_each_epoch=False, callbacks=callbacks)
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()} if keep_models else None
        trained[fold] = (result.val_probabilities, result.history, state)
        if after_fold is not None and not processes.distributed:
            probabilities, fold_of_row = gathered(splits, trained, values.shape)
            after_fold(fold, val_part, probabilities, fold_of_row)
    for part in processes.gather_objects(trained):
        trained.update(part)
    probabilities, fold_of_row = gathered(splits, trained, values.shape)
    return CrossValidation(probabilities, fold_of_row, values.copy(), list(data.attributes),
                           [data.filenames[i] for i in rows], [trained[f][1] for f in range(folds)], config.to_dict(),
                           [trained[f][2] for f in range(folds)] if keep_models else [])


def gathered(splits, trained: dict, shape) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold probabilities, the fold of each row) of the folds trained so far (NaN and -1 elsewhere)."""
    probabilities, fold_of_row = np.full(shape, np.nan, dtype=np.float32), np.full(shape[0], -1)
    for fold, (_, val_part) in enumerate(splits):
        if fold in trained:
            probabilities[val_part], fold_of_row[val_part] = trained[fold][0], fold
    return probabilities, fold_of_row


def out_of_fold(cv: CrossValidation) -> HeldOut:
    """Every out-of-fold prediction: what the thresholds and calibration of the final model are fitted on."""
    return HeldOut(cv.targets, cv.probabilities, f"the out-of-fold predictions of {len(cv.names)} images "
                                                 f"({len(np.unique(cv.folds))}-fold cross-validation)",
                   cv.names, cv.folds)


def share_features(config: TrainConfig, data: LabelledImages, processes: Processes) -> None:
    """For a head-only recipe, the features of all of `data` computed by the processes together and kept on
    `data`, so that the models each process then trains alone (the folds) find them there."""
    if decide_recipe(config).head_only:
        device = processes.device(select_device(config.device))
        model = place_model(build_model(config, data.attributes), device, config.channels_last)
        cached_features(model, data, config, device, processes)


def final_model(cv: CrossValidation, config: TrainConfig, data: LabelledImages, how: str, rule: DecisionRule | None,
                processes: Processes = Processes(), callbacks=()) -> Checkpoint | None:
    """The model to use after cross-validation, with the decision rule fitted on the out-of-fold predictions.

    retrain: one model trained on every image for the same schedule (config.for_final_model()), by all the
    processes (the others return None); ensemble: the fold models, their logits averaged.
    """
    if how not in FINAL_MODELS[:2]:
        raise ValueError(f"final model must be one of {', '.join(FINAL_MODELS[:2])}")
    if how == "retrain":
        result = fit(config.for_final_model(), data, processes=processes, callbacks=callbacks)
        if not processes.main:  # it trained the model with the others; the main process keeps it
            return None
        model, history, recipe = result.model, result.history, result.recipe
    else:
        if not cv.fold_states:
            raise ValueError("the cross-validation kept no fold models (keep_models=False)")
        members = {f"members.{index}.{key}": value for index, state in enumerate(cv.fold_states)
                   for key, value in state.items()}
        model = build_model(config, cv.attributes, members, members=len(cv.fold_states))
        history, recipe = new_history(), decide_recipe(config)
    provenance = Provenance(final_model=how, majority=majority_classes(cv.targets).tolist(),
                            split={"train": list(data.filenames), "val": [],
                                   "label_file": data.label_file, "train_digests": data.digests()})
    return Checkpoint.of_model(model, config, cv.attributes, history, recipe, rule=rule, provenance=provenance,
                               out_of_fold=OutOfFold.of(out_of_fold(cv)))


def save_cv(cv: CrossValidation, path) -> Path:
    """Out-of-fold predictions, folds, labels and configuration in one .npz file (no weights)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, probabilities=cv.probabilities, folds=cv.folds, targets=cv.targets,
                        attributes=np.array(cv.attributes), names=np.array(cv.names),
                        config=np.array(json.dumps(cv.config)), histories=np.array(json.dumps(cv.histories)))
    return path


def load_cv(path) -> CrossValidation:
    with np.load(path) as saved:
        return CrossValidation(saved["probabilities"], saved["folds"], saved["targets"], saved["attributes"].tolist(),
                               saved["names"].tolist(), json.loads(str(saved["histories"])),
                               json.loads(str(saved["config"])))
