"""A finished training run (TrainedModel), and the predictions its decision rule is fitted on: images the model
did not learn from (held_out_predictions). aimonk.workflows.train is the route that makes one."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aimonk.config import TrainConfig
from aimonk.data.folder import LabelledImages
from aimonk.data.labels import short_name
from aimonk.decision.rule import DecisionRule
from aimonk.decision.thresholds import HeldOut, metrics_at
from aimonk.distributed import Processes
from aimonk.model.checkpoint import Checkpoint
from aimonk.progress import quiet
from aimonk.training.crossval import out_of_fold, run_folds
from aimonk.training.loop import TrainResult

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A finished run: what fit() kept, the checkpoint with its decision rule (written to `path` when the run had
    a folder), and its scores on images it did not learn from: out-of-fold precision, recall and F1 per
    attribute (and macro) where the thresholds were cross-validated, the validation split's at 0.5 where there
    is one."""

    result: TrainResult
    checkpoint: Checkpoint
    out_of_fold_metrics: pd.DataFrame | None = None
    validation_metrics: pd.DataFrame | None = None
    path: Path | None = None
    tracked: str = ""  # where its tracker (aimonk.tracking) logged it: a folder or an MLflow store, or nothing

    @property
    def rule(self) -> DecisionRule:
        return self.checkpoint.rule

    @property
    def history(self) -> dict:
        return self.result.history

    def kept(self) -> str:
        """What the run kept, as its last line says: the one solve, the best epoch, or the last epoch."""
        if self.result.best_epoch is None:
            return "the linear probe, solved in one pass"
        if self.result.validated and self.checkpoint.config.keep == "best":
            return f"best epoch {self.result.best_epoch} (by validation F1)"
        return f"the last epoch ({self.result.best_epoch})"

    def learning_table(self) -> pd.DataFrame:
        """How it learned, as a table: a row per epoch; for the linear probe's one solve, its out-of-fold (else its
        validation) scores per attribute."""
        if self.history["epochs"] or (self.out_of_fold_metrics is None and self.validation_metrics is None):
            return pd.DataFrame(self.history["epochs"]).drop(columns=["val_f1", "val_precision", "val_recall"],
                                                              errors="ignore")
        if self.out_of_fold_metrics is not None:
            return self.out_of_fold_metrics.drop(columns="threshold")  # decided by each fold's own thresholds
        return self.validation_metrics

    def measured(self) -> tuple[str, pd.DataFrame | None]:
        """(how the run's scores were measured, the scores per attribute and macro): on images the model did not
        learn from, or nothing where it kept none."""
        if self.out_of_fold_metrics is not None:
            folds = self.checkpoint.out_of_fold.folds
            return (f"out-of-fold: each of the {len(self.checkpoint.out_of_fold.names)} training images predicted "
                    f"by a model of the {len(set(folds))}-fold threshold cross-validation that did not learn from "
                    "it, each fold decided by thresholds tuned on the other folds",
                    self.out_of_fold_metrics.drop(columns="threshold"))
        if self.validation_metrics is not None:
            config = self.checkpoint.config
            chosen = [what for what, chosen_here in (
                ("the epoch was chosen", self.result.best_epoch is not None and config.keep == "best"),
                ("the thresholds were tuned", config.threshold_source == "val")) if chosen_here]
            kept = "its one solve" if self.result.best_epoch is None else f"epoch {self.result.best_epoch}"
            return (f"the validation split ({len(self.result.val_rows)} images held out of training) at {kept}, "
                    "threshold 0.5" + (f" ({' and '.join(chosen)} on these images: an optimistic score)"
                                       if chosen else ""), self.validation_metrics)
        return ("nothing: the run kept no images it did not learn from (--threshold-source none and no validation "
                "split)", None)


def validation_metrics(data: LabelledImages, result: TrainResult) -> pd.DataFrame | None:
    """The kept model's precision, recall and F1 at threshold 0.5 on the validation split, where there is one."""
    if result.val_probabilities is None:
        return None
    return metrics_at(data.values[result.val_rows], result.val_probabilities, 0.5, data.attributes)


def held_out_predictions(config: TrainConfig, data: LabelledImages, result: TrainResult,
                         processes: Processes = Processes(), callbacks=()) -> HeldOut | None:
    """Predictions for images the model did not learn from, per config.threshold_source:

    cv: out-of-fold predictions of a config.threshold_folds-fold cross-validation of the same recipe on the
        training images (each fold trained for the whole schedule; cheap when only the head learns);
    val: the kept model's predictions for the validation split (the epoch was also chosen on them);
    none: None (thresholds stay at 0.5, probabilities uncalibrated).
    callbacks follow each fold's fit.
    """
    if config.threshold_source == "cv":
        log.info(f"thresholds: {config.threshold_folds}-fold cross-validation on the {len(result.train_rows)} "
                 "training images")
        with quiet():
            return out_of_fold(run_folds(config, data, config.threshold_folds, rows=result.train_rows,
                                         processes=processes, callbacks=callbacks))
    if config.threshold_source == "val" and result.val_probabilities is not None:
        return HeldOut(data.values[result.val_rows], result.val_probabilities,
                       f"the predictions for {len(result.val_rows)} validation images")
    return None


def describe_rule(rule: DecisionRule, attributes) -> str:
    pairs = ", ".join(f"{short_name(name)} {value:.3f}" for name, value in zip(attributes, rule.thresholds))
    return f"thresholds {pairs}: {rule.source_}"


def describe_out_of_fold(metrics: pd.DataFrame) -> str:
    """The out-of-fold F1 per attribute and macro, each fold decided by thresholds tuned on the others: how
    good the recipe is on images it did not learn from, printed as the run ends."""
    return ("out-of-fold F1 (each fold decided by thresholds from the other folds): "
            + ", ".join(f"{short_name(name)} {value:.3f}" for name, value in metrics["f1"].items()))
