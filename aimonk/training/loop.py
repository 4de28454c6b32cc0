"""How one model learns, top to bottom: split, build, learn, keep.

fit() is the one way a model of aimonk learns: a training run's, each threshold fold's, a cross-validation's
folds and final model. The recipe, decided once from the configuration (aimonk.model.recipe), picks the learner:
the linear probe is solved in one pass (aimonk.training.linear_probe.LinearProbe), the other recipes learn by
epochs on a TrainState. Whoever runs it follows it through callbacks (fastai's way): the run folder saves the
state after every epoch as last.pt (so `aimonk train --resume` continues exactly), the tracker records the
steps. Ctrl-C anywhere in it raises TrainingInterrupted, carrying what was kept.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from aimonk.config import TrainConfig
from aimonk.data.folder import LabelledImages
from aimonk.data.labels import check_trainable
from aimonk.data.split import train_val_split
from aimonk.decision.thresholds import metrics_at
from aimonk.distributed import Processes
from aimonk.model.features import cached_features, head_logits
from aimonk.model.inference import place_model
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.model.registry import build_model
from aimonk.progress import quiet
from aimonk.runtime import seed_everything, select_device
from aimonk.training.linear_probe import LinearProbe
from aimonk.training.losses import make_loss
from aimonk.training.state import TrainState
from aimonk.training.strategies import Phase, epoch_learner, validate

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What fit() kept: the model holding the kept weights, and how it got there."""

    model: torch.nn.Module
    recipe: Recipe
    history: dict  # iteration_loss (each step's, or each solver evaluation's), epochs (a record per epoch)
    train_rows: np.ndarray
    val_rows: np.ndarray
    best_epoch: int | None  # None for the linear probe's one solve
    val_probabilities: np.ndarray | None = None  # of the kept model, rows as val_rows

    @property
    def validated(self) -> bool:
        return len(self.val_rows) > 0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. str() says what was kept; `result` is the TrainResult of the epoch kept so far
    (None when none was)."""

    def __init__(self, message: str, result: TrainResult | None = None):
        super().__init__(message)
        self.result = result


class Callback:
    """What a caller follows of a fit: override what you need (each is called in the main process only).
    A KeyboardInterrupt raised in one stops the fit as Ctrl-C would."""

    def fit_started(self, rows: tuple) -> None:
        """At the start of every fit (a run's model, each fold of its threshold cross-validation, ...), with
        its (train, validation) rows."""

    def epoch_started(self, epoch: int, phase: str) -> None:
        """phase: "head" (the head-only epochs before fine-tuning) or "train"."""

    def epoch_ended(self, state: TrainState, record: dict, improved: bool) -> None:
        """After each epoch of the "train" phase, with the whole state (to save it) and the epoch's record."""


def fit(config: TrainConfig, data: LabelledImages, rows=None, *, model: torch.nn.Module | None = None,
        resume: dict | None = None, validate_each_epoch: bool = True, processes: Processes = Processes(),
        callbacks=()) -> TrainResult:
    """Train on `data`: rows=(train, val) overrides the configured split; `model` one built by build_model(config,
    data.attributes) (built here if not given); resume: an interrupted run's training state (the run folder's
    last.pt) to continue after its last finished epoch; without validate_each_epoch only the last epoch is
    validated. The kept model (config.keep: the best epoch by validation F1, or the last) is what the result
    holds. processes: those torchrun started, which train this one model together."""
    check_trainable(data.labels)
    seed_everything(config.seed)
    recipe = decide_recipe(config)
    rows = rows if resume is None else (resume["rows"]["train"], resume["rows"]["val"])
    train_rows, val_rows = split_rows(config, data, rows)
    callbacks = list(callbacks) if processes.main else []
    for callback in callbacks:
        callback.fit_started((train_rows, val_rows))
    device = processes.device(select_device(config.device))
    model = place_model(model if model is not None else build_model(config, data.attributes), device,
                        config.channels_last)
    if recipe is Recipe.LINEAR_PROBE:
        try:
            return solve_linear_probe(config, data, model, train_rows, val_rows, device, processes)
        except KeyboardInterrupt:
            raise TrainingInterrupted("interrupted") from None
    loss_fn = make_loss(config.loss, data.values[train_rows], config.pos_weight, config.focal_gamma,
                        data.attributes).to(device)
    phase = Phase(data, train_rows, val_rows, loss_fn, device, processes)
    if config.head_epochs and recipe is Recipe.WHOLE_NETWORK and resume is None:
        warm_start_head(model, head_phase(config), phase, callbacks)  # linear probing, then fine-tuning
    learner = epoch_learner(recipe, model, config, phase)
    state = learner.new_state(model, config)
    if resume is not None:
        state.load_state_dict(resume["state"])
    try:
        run_epochs(state, learner, config, phase, callbacks, validate_each_epoch)
    except KeyboardInterrupt:
        kept = kept_result(model, recipe, state, train_rows, val_rows) if state.kept is not None else None
        raise TrainingInterrupted("interrupted", kept) from None
    return kept_result(model, recipe, state, train_rows, val_rows)


def split_rows(config: TrainConfig, data: LabelledImages, rows=None) -> tuple[np.ndarray, np.ndarray]:
    if rows is not None:
        return tuple(np.asarray(r, dtype=int) for r in rows)
    if config.val_fraction > 0:
        return train_val_split(data.values, config.split, config.val_fraction, config.seed)
    return np.arange(len(data)), np.arange(0)


def solve_linear_probe(config: TrainConfig, data: LabelledImages, model, train_rows, val_rows, device,
                       processes: Processes) -> TrainResult:
    """The head solved once on the backbone's features (every process solves the same problem on the same
    shared features, so all hold the same head), and its validation at threshold 0.5 where there is a split."""
    started = time.perf_counter()
    features = cached_features(model, data, config, device, processes)
    probe = LinearProbe(config.head_c, flip=config.augment == "flip", seed=config.seed)
    probe.fit(features[:, train_rows], data.values[train_rows]).write_into(model.head)
    history = {"iteration_loss": probe.objective_, "epochs": [], "head_c": probe.c_.tolist()}
    probabilities, line = None, f"linear probe solved ({len(probe.objective_)} L-BFGS evaluations, objective " \
                                f"{probe.objective_[-1]:.4f})"
    if len(val_rows):
        logits = head_logits(model.head, features[:, val_rows], device, config.tta)
        probabilities = torch.sigmoid(logits).numpy()
        table = metrics_at(data.values[val_rows], probabilities, 0.5, data.attributes)
        line += f"  val F1 {table.loc['macro', 'f1']:.3f} [{' '.join(f'{v:.2f}' for v in table['f1'][:-1])}]"
    log.info(f"{line}  {time.perf_counter() - started:.0f}s")
    return TrainResult(model, Recipe.LINEAR_PROBE, history, train_rows, val_rows, None, probabilities)


def run_epochs(state: TrainState, learner, config: TrainConfig, phase: Phase, callbacks,
               validate_each_epoch: bool = True, name: str = "train") -> None:
    """Epochs from the state's next one to the learner's last: train, validate, keep, report."""
    for epoch in range(state.epoch + 1, learner.epochs + 1):
        for callback in callbacks:
            callback.epoch_started(epoch, name)
        started = time.perf_counter()
        record = {"epoch": epoch, "train_loss": learner.run_epoch(state, f"epoch {epoch}/{learner.epochs}")}
        probabilities = None
        if len(phase.val_rows) and (validate_each_epoch or epoch == learner.epochs):
            loss, probabilities, table = validate(state.evaluated, phase, learner.val_logits)
            record.update(val_loss=loss, val_macro_f1=float(table.loc["macro", "f1"]),
                          **{f"val_{metric}": {name: float(table.loc[name, metric]) for name in phase.attributes}
                             for metric in ("precision", "recall", "f1")})
        record["seconds"] = time.perf_counter() - started
        improved = state.end_epoch(record, probabilities, config.keep)
        if name == "train":
            log.info(describe_epoch(record, improved))
            for callback in callbacks:
                callback.epoch_ended(state, record, improved)
        if config.patience and state.stale >= config.patience:
            log.info(f"early stopping: no improvement for {config.patience} epoch(s)")
            break


def describe_epoch(record: dict, improved: bool) -> str:
    """The line a finished epoch prints: its training and validation losses (both the masked loss), and F1."""
    text = f"epoch {record['epoch']:>3}  train loss {record['train_loss']:.4f}"
    if "val_loss" in record:
        per_attribute = " ".join(f"{v:.2f}" for v in record["val_f1"].values())
        text += f"  val loss {record['val_loss']:.4f}  val F1 {record['val_macro_f1']:.3f} [{per_attribute}]"
    return text + f"  {record['seconds']:.0f}s" + ("  *" if improved else "")


def kept_result(model, recipe: Recipe, state: TrainState, train_rows, val_rows) -> TrainResult:
    """The TrainResult of the kept epoch, its weights loaded into `model`."""
    if state.kept is not None:
        model.load_state_dict(state.kept)
    return TrainResult(model, recipe, state.history, train_rows, val_rows, state.best_epoch, state.val_probabilities)


def warm_start_head(model, config: TrainConfig, phase: Phase, callbacks) -> None:
    """The head phase before fine-tuning: every stage frozen, the head solved or trained by epochs on features
    computed once; then the configured stages learn again. Nothing of it is kept but the head. Ctrl-C in it
    stops the run (TrainingInterrupted), as it would in any epoch."""
    frozen = model.frozen_stages
    model.freeze(len(model.stage_names))
    try:
        with quiet():
            if decide_recipe(config) is Recipe.LINEAR_PROBE:
                for callback in callbacks:
                    callback.epoch_started(1, "head")
                solve_linear_probe(config, phase.data, model, phase.train_rows, np.arange(0), phase.device,
                                   phase.processes)
            else:
                learner = epoch_learner(decide_recipe(config), model, config, phase)
                run_epochs(learner.new_state(model, config), learner, config, phase, callbacks, False, "head")
    except KeyboardInterrupt:
        raise TrainingInterrupted("interrupted in the head-only epochs, before fine-tuning began: nothing was "
                                  "saved") from None
    model.freeze(frozen)


def head_phase(config: TrainConfig) -> TrainConfig:
    """The first phase of config.head_epochs > 0: only the head learns, on features computed once, so
    that fine-tuning starts from a head that fits the pretrained features (linear probing, then fine-tuning)."""
    return config.replace(freeze="all", augment="flip", epochs=config.head_epochs, lr=config.head_lr, head_epochs=0,
                          head_lr_multiplier=1.0, warmup_epochs=0.0, keep="last", ema=0.0, compile=False)
