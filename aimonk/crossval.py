"""K-fold cross-validation: out-of-fold probabilities for every labelled image, and an honest report.

Each image is predicted by the one model that did not train on it, at the end of a fixed schedule (no
epoch is picked on the images being scored). Thresholds are tuned on the out-of-fold predictions of
the *other* folds before they decide an image, so no image is scored by a threshold it helped choose.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .checkpoint import checkpoint_payload, network_from_config, save_checkpoint
from .config import TrainConfig
from .dataset import LabelledImages
from .distributed import Processes
from .evaluation import score
from .metrics import attribute_metrics, bootstrap_f1, majority_classes, ranking_scores, with_macro
from .models import EnsembleClassifier
from .split import kfold_splits
from .calibration import Calibration, cross_fitted, expected_calibration_error
from .thresholds import HeldOut, Thresholds, decisions_by_fold
from .training import fit, new_history, share_features


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


def cross_validate(config: TrainConfig, data: LabelledImages, folds: int = 5, seed: int | None = None,
                   progress: bool = True, keep_models: bool = False, rows=None,
                   processes: Processes = Processes()) -> CrossValidation:
    """Train one model per fold (config.epochs each, the last epoch kept) and collect its predictions.

    rows: the images to cross-validate (default all); the result's rows are these, in this order.
    processes: under torchrun the folds are spread over the processes (fold f trains in process f mod world)
    and every process gets the whole result.
    """
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=int)
    values = data.values[rows]
    splits = kfold_splits(values, folds, config.seed if seed is None else seed)
    if processes.distributed:
        share_features(config, data, processes)  # computed once by all, not once per process
    trained = {}
    for fold, (train_part, val_part) in enumerate(splits):
        if fold % processes.world != processes.rank:
            continue
        if progress and processes.main:
            print(f"fold {fold + 1}/{folds}: training on {len(train_part)} images, scoring {len(val_part)}"
                  + (f" (and {processes.world - 1} more folds at once in the other processes)"
                     if processes.distributed else ""))
        result = fit(config.replace(keep="last"), data, None, progress=progress and processes.main,
                     rows=(rows[train_part], rows[val_part]), validate_each_epoch=False)
        if result.interrupted:  # a fold cannot be resumed: stop the cross-validation, as Ctrl-C asked
            raise KeyboardInterrupt
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()} if keep_models else None
        trained[fold] = (result.val_probabilities, result.history, state)
    for part in processes.gather_objects(trained):
        trained.update(part)
    probabilities = np.full(values.shape, np.nan, dtype=np.float32)
    fold_of_row = np.full(len(rows), -1)
    for fold, (_, val_part) in enumerate(splits):
        probabilities[val_part], fold_of_row[val_part] = trained[fold][0], fold
    return CrossValidation(probabilities, fold_of_row, values.copy(), list(data.attributes),
                           [data.filenames[i] for i in rows], [trained[f][1] for f in range(folds)], config.to_dict(),
                           [trained[f][2] for f in range(folds)] if keep_models else [])


def fold_tuned_decisions(cv: CrossValidation, strategy: str = "f1") -> tuple[np.ndarray, np.ndarray]:
    """Decisions where each fold's rows use thresholds tuned on the other folds' out-of-fold rows."""
    return decisions_by_fold(cv.targets, cv.probabilities, cv.folds, strategy)


def cv_report(cv: CrossValidation, strategy: str = "f1", rounds: int = 1000, seed: int = 0,
              calibration: str = "platt"):
    """Per attribute and macro: precision, recall, F1 (honestly tuned thresholds) with 95% CI, F1 at 0.5,
    AP, ROC-AUC, the expected calibration error of the raw out-of-fold probabilities and after calibration
    (each fold's map fitted on the other folds), the majority baseline's F1 and the lift over it (one row
    per attribute, and "macro")."""
    decisions, _ = fold_tuned_decisions(cv, strategy)
    tuned = score(cv.targets, decisions.astype(float), 0.5, cv.attributes, majority_classes(cv.targets))
    at_half = attribute_metrics(cv.targets, cv.probabilities, 0.5, cv.attributes)
    _, low, high = bootstrap_f1(cv.targets, decisions, rounds, seed)
    ap, auc = ranking_scores(cv.targets, cv.probabilities)
    ece = expected_calibration_error(cv.targets, cv.probabilities)
    ece_calibrated = expected_calibration_error(cv.targets, cv.calibrated(calibration))
    table = pd.DataFrame({
        "precision": tuned["precision"], "recall": tuned["recall"], "f1": tuned["f1"],
        "f1_low": low, "f1_high": high, "f1@0.5": at_half["f1"],
        "ap": with_macro(ap), "roc_auc": with_macro(auc), "ece": with_macro(ece),
        "ece_calibrated": with_macro(ece_calibrated),
        "baseline_f1": tuned["baseline_f1"], "positives": tuned["positives"], "known": tuned["known"],
        "lift": tuned["lift"],
    }, index=tuned.index)
    return table


def out_of_fold(cv: CrossValidation) -> HeldOut:
    """Every out-of-fold prediction: what the thresholds and calibration of the final model are fitted on."""
    return HeldOut(cv.targets, cv.probabilities, f"the out-of-fold predictions of {len(cv.names)} images "
                                                 f"({len(np.unique(cv.folds))}-fold cross-validation)",
                   cv.names, cv.folds)


FINAL_MODELS = ("retrain", "ensemble")


def save_final_model(cv: CrossValidation, config: TrainConfig, data: LabelledImages, how: str,
                     thresholds: Thresholds, path, progress: bool = True, calibration: Calibration | None = None,
                     processes: Processes = Processes()) -> Path:
    """The model to use after cross-validation, with the out-of-fold thresholds (and calibration) stored in it
    (by the main process).

    retrain: one model trained on every image for the same schedule (config.epochs), by all the processes;
    ensemble: the fold models, their logits averaged.
    """
    if how not in FINAL_MODELS:
        raise ValueError(f"final model must be one of {FINAL_MODELS}")
    path = Path(path)
    if how == "retrain":
        result = fit(config.replace(val_fraction=0.0, keep="last"), data, None, progress=progress,
                     processes=processes)
        model, extra = result.model, {"history": result.history}
        if not processes.main:  # it trained the model with the others; the main process saves it
            return path
    else:
        if not cv.fold_states:
            raise ValueError("the cross-validation kept no fold models (keep_models=False)")
        members = [network_from_config(config, len(cv.attributes), state=state) for state in cv.fold_states]
        model, extra = EnsembleClassifier(members), {"history": new_history(), "ensemble_size": len(members)}
    payload = checkpoint_payload(
        model, config, cv.attributes, thresholds.values, extra.pop("history"), final_model=how,
        thresholds_source=thresholds.source, calibration=calibration.to_dict() if calibration else None,
        majority=majority_classes(cv.targets).tolist(), held_out=out_of_fold(cv).to_dict(),
        split={"train": list(data.filenames), "val": [], "label_file": str(data.labels.source.resolve()),
               "train_digests": data.digests()},
        **extra)
    return save_checkpoint(payload, path)


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
