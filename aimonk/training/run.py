"""A training run as `aimonk train`, `aimonk.train` and notebook 02 start it: fit, then the decision rule
(calibration and thresholds) fitted on predictions for images the model did not learn from, and the
checkpoint saved once more, now with its rule."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aimonk.config import TrainConfig
from aimonk.data.folder import LabelledImages
from aimonk.decision.rule import DecisionRule
from aimonk.decision.thresholds import HeldOut, metrics_decided_by_fold
from aimonk.distributed import Processes
from aimonk.model.checkpoint import Checkpoint, OutOfFold
from aimonk.tracking import Tracker
from aimonk.training.crossval import cross_validate, out_of_fold
from aimonk.training.loop import TrainingInterrupted, TrainResult, fit


@dataclass
class TrainedModel:
    """A finished run: what fit() kept, the checkpoint (saved to `path` when the run had a folder), and the
    out-of-fold precision, recall and F1 per attribute (and macro) where the thresholds were cross-validated."""

    result: TrainResult
    checkpoint: Checkpoint
    out_of_fold_metrics: pd.DataFrame | None = None
    tracked: str = ""  # where its tracker (aimonk.tracking) logged it: a folder or an MLflow store, or nothing

    @property
    def rule(self) -> DecisionRule:
        return self.checkpoint.rule

    @property
    def history(self) -> dict:
        return self.result.history

    @property
    def path(self):
        return self.result.checkpoint_path

    def kept(self) -> str:
        """What the run kept, as its last line says: the one solve, the best epoch, or the last epoch."""
        if not self.result.recipe.by_epochs:
            return "the linear probe, solved in one pass"
        if self.result.validated and self.checkpoint.config.keep == "best":
            return f"best epoch {self.result.best_epoch} (by validation F1)"
        return f"the last epoch ({self.result.best_epoch})"

    def learning_table(self) -> pd.DataFrame:
        """How it learned, as a table: a row per epoch; for the one solve of the linear probe, its out-of-fold
        (else its validation) scores per attribute."""
        if self.result.recipe.by_epochs or self.out_of_fold_metrics is None:
            return pd.DataFrame(self.history["epochs"]).drop(columns=["val_f1", "val_precision", "val_recall"],
                                                              errors="ignore")
        return self.out_of_fold_metrics.drop(columns="threshold")  # decided by each fold's own thresholds

    def measured(self) -> dict:
        """The run's scores as metrics.json holds them: per attribute and macro, with how they were measured
        (on images the model did not learn from, or nothing where it kept none)."""
        if self.out_of_fold_metrics is not None:
            folds = self.checkpoint.out_of_fold.folds
            how = (f"out-of-fold: each of the {len(self.checkpoint.out_of_fold.names)} training images predicted "
                   f"by a model of the {len(set(folds))}-fold threshold cross-validation that did not learn from "
                   "it, each fold decided by thresholds tuned on the other folds")
            return {"measured": how, "metrics": records(self.out_of_fold_metrics.drop(columns="threshold"))}
        last = self.history["epochs"][-1] if self.history["epochs"] else {}
        if "val_f1" in last:
            table = pd.DataFrame({metric: last[f"val_{metric}"] for metric in ("precision", "recall", "f1")})
            table.loc["macro"] = table.mean()
            config = self.checkpoint.config
            chosen = [what for what, chosen_here in (
                ("the epoch was chosen", self.result.recipe.by_epochs and config.keep == "best"),
                ("the thresholds were tuned", config.threshold_source == "val")) if chosen_here]
            how = (f"the validation split ({len(self.result.val_rows)} images held out of training) at epoch "
                   f"{last['epoch']}, threshold 0.5"
                   + (f" ({' and '.join(chosen)} on these images: an optimistic score)" if chosen else ""))
            return {"measured": how, "metrics": records(table)}
        return {"measured": "nothing: the run kept no images it did not learn from (--threshold-source none "
                            "and no validation split)", "metrics": []}


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


def train(config: TrainConfig, data: LabelledImages, out_dir=None, progress: bool = True,
          resume: dict | None = None, processes: Processes = Processes(), tracker: Tracker = Tracker()) -> TrainedModel:
    """fit() (from an interrupted run's state with resume), then the decision rule fitted on
    held_out_predictions(); with out_dir the checkpoint keeps it. processes: those torchrun started, which
    train the model together and spread the threshold folds among themselves. Ctrl-C raises
    TrainingInterrupted: during the epochs with the kept epoch saved as it was; during the threshold
    cross-validation with the model saved at untuned 0.5 thresholds. tracker: where the run log reports the
    steps and epochs (aimonk.tracking)."""
    progress = progress and processes.main
    result = fit(config, data, out_dir, progress, resume=resume, processes=processes, tracker=tracker)
    try:
        held_out = held_out_predictions(config, data, result, progress, processes)
    except KeyboardInterrupt:  # TrainingInterrupted in a fold, or Ctrl-C anywhere else in the cross-validation
        why = "the threshold cross-validation was interrupted: train again to tune them"
        kept = finish(config, data, result, None, DecisionRule.untuned(len(data.attributes), why,
                                                                        config.threshold_strategy))
        raise TrainingInterrupted(f"interrupted: the model is kept with 0.5 thresholds in {kept.path}: "
                                  "train again to tune them" if kept.path else
                                  "interrupted: train again to tune the thresholds", result) from None
    if held_out is None:
        why = "no validation split" if config.threshold_source == "val" else "--threshold-source none"
        rule = DecisionRule.untuned(len(data.attributes), why, config.threshold_strategy)
    else:
        rule = DecisionRule.of(config).fit(held_out, data.attributes)
    trained = finish(config, data, result, held_out, rule)
    if trained.checkpoint.out_of_fold:
        trained.out_of_fold_metrics = metrics_decided_by_fold(held_out.targets, held_out.probabilities,
                                                              held_out.folds, config.threshold_strategy, data.attributes)
    if progress:
        print("thresholds " + ", ".join(f"{name} {value:.3f}" for name, value in
                                         zip(data.attributes, rule.thresholds)) + f": {rule.source_}")
        if trained.out_of_fold_metrics is not None:
            print(describe_out_of_fold(trained.out_of_fold_metrics))
    return trained


def finish(config: TrainConfig, data: LabelledImages, result: TrainResult, held_out: HeldOut | None,
           rule: DecisionRule) -> TrainedModel:
    """The run's checkpoint with its rule (and the out-of-fold predictions it was fitted on, for `aimonk
    evaluate`), saved where the run log saved the kept epoch."""
    kept = OutOfFold.of(held_out) if held_out is not None and held_out.folds is not None else None
    checkpoint = Checkpoint.of_model(result.model, config, data.attributes, result.history, result.recipe, rule=rule,
                                     provenance=result.provenance, out_of_fold=kept)
    if result.checkpoint_path:
        checkpoint.save(result.checkpoint_path)
    return TrainedModel(result, checkpoint)


def describe_out_of_fold(metrics: pd.DataFrame) -> str:
    """The out-of-fold F1 per attribute and macro, each fold decided by thresholds tuned on the others: how
    good the recipe is on images it did not learn from, printed as the run ends."""
    return ("out-of-fold F1 (each fold decided by thresholds from the other folds): "
            + ", ".join(f"{name} {value:.3f}" for name, value in metrics["f1"].items()))


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
