"""The training loop, readable top to bottom: split, build, decide the recipe, run the epochs, keep the best.

fit() builds the model, decides once how it learns (aimonk.model.recipe: the whole network on images, the head
on features computed once, or the head solved as a linear probe) and runs the epochs on a TrainState (model,
optimizer, scheduler, scaler, weight average, counters and random states), which the RunLog saves after every
epoch as last.pt, so that an interrupted run continues exactly (`aimonk train --resume`). Ctrl-C anywhere in it
raises TrainingInterrupted, which says what was kept and carries it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aimonk.config import TrainConfig
from aimonk.data.folder import LabelledImages
from aimonk.data.labels import check_trainable
from aimonk.data.split import train_val_split
from aimonk.distributed import Processes
from aimonk.model.checkpoint import Provenance
from aimonk.model.features import cached_features
from aimonk.model.inference import place_model
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.model.registry import build_model
from aimonk.runtime import seed_everything, select_device
from aimonk.training.losses import make_loss
from aimonk.tracking import Tracker
from aimonk.training.runlog import RunLog
from aimonk.training.state import TrainState
from aimonk.training.strategies import Phase, choose_strategy, validate


@dataclass
class TrainResult:
    """What fit() kept: the model holding the kept epoch's weights, and how it got there."""

    model: torch.nn.Module
    recipe: Recipe
    history: dict
    train_rows: np.ndarray
    val_rows: np.ndarray
    best_epoch: int | None
    provenance: Provenance
    checkpoint_path: Path | None = None  # where the run log saved the kept epoch (None without out_dir)
    val_probabilities: np.ndarray | None = None  # of the kept epoch, rows as val_rows

    @property
    def validated(self) -> bool:
        return len(self.val_rows) > 0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. str() says what was kept (on disk, where there is a run folder); `result` is the
    TrainResult of the epoch kept so far (None when no epoch ended)."""

    def __init__(self, message: str, result: TrainResult | None = None):
        super().__init__(message)
        self.result = result


def fit(config: TrainConfig, data: LabelledImages, out_dir=None, progress: bool = True, rows=None,
        validate_each_epoch: bool = True, resume: dict | None = None,
        processes: Processes = Processes(), tracker: Tracker = Tracker()) -> TrainResult:
    """Train on `data`. rows=(train, val) overrides the configured split; without validate_each_epoch
    (sensible with config.keep == "last") only the last epoch is validated; resume: a run's last.pt payload
    (aimonk.training.runlog.load_last) to continue from the end of its last finished epoch.

    The kept epoch (config.keep: the best by validation F1, or the last) is what the returned model
    holds; with out_dir it is also saved as out_dir/model.pt (without a decision rule yet: aimonk.training.run
    fits it), with the history beside it, and the whole training state as out_dir/last.pt after every epoch
    (removed when the run ends normally). processes: the processes torchrun started (aimonk.distributed),
    which train this one model together; only the main one writes and prints. tracker: where the run log
    also reports every step's loss and every epoch's scores (aimonk.tracking).
    """
    check_trainable(data.labels)
    seed_everything(config.seed)
    progress = progress and processes.main
    recipe = decide_recipe(config)
    train_rows, val_rows = split_rows(config, data, rows if resume is None else
                                      (resume["rows"]["train"], resume["rows"]["val"]))
    model, device = placed_model(config, len(data.attributes), processes)
    loss_fn = make_loss(config.loss, data.values[train_rows], config.pos_weight, config.focal_gamma,
                        data.attributes).to(device)
    phase = Phase(data, train_rows, val_rows, loss_fn, device, progress, processes)
    if config.head_epochs and recipe is Recipe.WHOLE_NETWORK and resume is None:
        warm_start_head(model, head_phase(config), phase)  # linear probing, then fine-tuning
    strategy = choose_strategy(recipe, model, config, phase)
    state = strategy.new_state(model, config)
    if resume is not None:
        state.load_state_dict(resume["state"])
    log = RunLog(Path(out_dir) if out_dir else None, config, data, train_rows, val_rows, progress, processes.main,
                 recipe, saved_epoch=state.best_epoch if resume is not None else None, tracker=tracker,
                 steps_done=len(state.history["iteration_loss"]))
    try:
        run_epochs(state, strategy, config, phase, log, validate_each_epoch)
    except KeyboardInterrupt:
        kept = kept_result(model, recipe, state, log, train_rows, val_rows) if state.kept is not None else None
        raise TrainingInterrupted(log.interrupted(), kept) from None
    log.finished()
    return kept_result(model, recipe, state, log, train_rows, val_rows)


def kept_result(model, recipe: Recipe, state: TrainState, log: RunLog, train_rows, val_rows) -> TrainResult:
    """The TrainResult of the kept epoch, its weights loaded into `model`."""
    if state.kept is not None:
        model.load_state_dict(state.kept)
    return TrainResult(model, recipe, state.history, train_rows, val_rows, state.best_epoch,
                       log.provenance(state.best_epoch), log.checkpoint, state.val_probabilities)


def placed_model(config: TrainConfig, outputs: int, processes: Processes = Processes()):
    """(the configured model, pretrained and frozen as configured, placed on this process's device; that device)."""
    device = processes.device(select_device(config.device))
    model = build_model(config.backbone, outputs, config.weights, config.dropout, config.freeze, config.image_size)
    return place_model(model, device, config.channels_last), device


def share_features(config: TrainConfig, data: LabelledImages, processes: Processes) -> None:
    """For a head-only recipe, the features of all of `data` computed by the processes together and kept on
    `data`, so that the models each process then trains alone (e.g. cross-validation folds) find them there."""
    if decide_recipe(config).head_only:
        model, device = placed_model(config, len(data.attributes), processes)
        cached_features(model, data, config, device, processes=processes)


def split_rows(config: TrainConfig, data: LabelledImages, rows=None) -> tuple[np.ndarray, np.ndarray]:
    if rows is not None:
        return tuple(np.asarray(r, dtype=int) for r in rows)
    if config.val_fraction > 0:
        return train_val_split(data.values, config.split, config.val_fraction, config.seed)
    return np.arange(len(data)), np.arange(0)


def run_epochs(state: TrainState, strategy, config: TrainConfig, phase: Phase, log: RunLog,
               validate_each_epoch: bool = True) -> None:
    """Epochs from the state's next one to the strategy's last: train, validate, keep, log."""
    for epoch in range(state.epoch + 1, strategy.epochs + 1):
        started = time.perf_counter()
        record = {"epoch": epoch, "train_loss": strategy.run_epoch(state, f"epoch {epoch}/{strategy.epochs}")}
        probabilities = None
        if len(phase.val_rows) and (validate_each_epoch or epoch == strategy.epochs):
            loss, probabilities, table = validate(state.evaluated, phase, strategy.val_logits)
            record.update(val_loss=loss, val_macro_f1=float(table.loc["macro", "f1"]),
                          **{f"val_{metric}": {name: float(table.loc[name, metric]) for name in phase.attributes}
                             for metric in ("precision", "recall", "f1")})
        record["seconds"] = time.perf_counter() - started
        improved = state.end_epoch(record, probabilities, config.keep)
        log.epoch_end(state, record, improved)
        if config.patience and state.stale >= config.patience:
            log.say(f"early stopping: no improvement for {config.patience} epoch(s)")
            break


def warm_start_head(model, config: TrainConfig, phase: Phase) -> None:
    """The head phase before fine-tuning: every stage frozen, the head trained on features computed once;
    then the configured stages learn again. Nothing of it is logged or saved: it only sets the head. Ctrl-C in
    it stops the run (TrainingInterrupted), as it would in any epoch."""
    frozen = model.frozen_stages
    model.freeze(len(model.stage_names))
    strategy = choose_strategy(decide_recipe(config), model, config, phase)
    log = RunLog(None, config, progress=False)
    try:
        run_epochs(strategy.new_state(model, config), strategy, config, phase, log, validate_each_epoch=False)
    except KeyboardInterrupt:
        raise TrainingInterrupted("interrupted in the head-only epochs, before fine-tuning began: nothing was "
                                  "saved") from None
    model.freeze(frozen)


def head_phase(config: TrainConfig) -> TrainConfig:
    """The first phase of config.head_epochs > 0: only the head learns, on features computed once, so
    that fine-tuning starts from a head that fits the pretrained features (linear probing, then fine-tuning)."""
    return config.replace(freeze="all", augment="flip", epochs=config.head_epochs, lr=config.head_lr, head_epochs=0,
                          head_lr_multiplier=1.0, warmup_epochs=0.0, keep="last", ema=0.0, compile=False)
