"""The training loop, readable top to bottom: split, build, choose what trains, run the epochs, keep the best.

fit() builds the model, chooses once how it learns (a strategy: the whole network on images, the head on
features computed once, or the head solved as a linear probe) and runs the epochs on a TrainState (model,
optimizer, scheduler, scaler, weight average, counters and random states), which RunLog saves after every
epoch as last.pt, so that an interrupted run continues exactly (`aimonk train --resume`).
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import checkpoint_payload, load_checkpoint, save_checkpoint
from .config import SCHEDULES, TrainConfig
from .dataset import AttributeDataset, LabelledImages
from .distributed import Processes, ShardedSampler
from .engine import autocast, mixed_precision_dtype, place_model, predict_logits, seed_everything, select_device
from .files import write_text
from .labels import check_trainable
from .features import FeatureDataset, cached_features, head_logits, head_only_recipe, trains_head_only
from .linear_probe import fit_linear_probe
from .losses import make_loss
from .metrics import attribute_metrics, majority_classes
from .models import build_model
from .split import train_val_split
from .thresholds import Thresholds
from .transforms import seed_worker_transform, train_transform


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: dict
    checkpoint: Path | None
    train_rows: np.ndarray
    val_rows: np.ndarray
    best_epoch: int | None
    interrupted: bool = False
    val_probabilities: np.ndarray | None = None  # of the kept epoch, rows as val_rows
    thresholds: Thresholds | None = None  # set by aimonk.pipeline.train
    calibration: object | None = None  # aimonk.calibration.Calibration, set by aimonk.pipeline.train


def new_history() -> dict:
    return {"iteration_loss": [], "epochs": []}


def make_train_loader(data: LabelledImages, rows, config: TrainConfig, device, features: torch.Tensor | None = None,
                      processes: Processes = Processes()) -> torch.utils.data.DataLoader:
    """Batches of augmented uint8 images, or of precomputed backbone features when only the head trains; this
    process's share of them (aimonk.distributed.ShardedSampler), rare attributes' positives oversampled."""
    rows = np.asarray(rows, dtype=int)
    if features is None:
        dataset = AttributeDataset(data.images, data.values, train_transform(config.image_size, config.augment,
                                                                             config.seed + processes.rank), rows)
        workers = config.num_workers if config.num_workers >= 0 else (4 if device.type == "cuda" else 0)
    else:
        dataset, workers = FeatureDataset(features[:, rows], data.values[rows], config.augment == "flip",
                                          config.seed + processes.rank), 0
    weights = rare_attribute_weights(data.values[rows], config.oversample) if config.oversample > 1 else None
    return torch.utils.data.DataLoader(
        dataset, batch_size=processes.batch_size(config.batch_size),
        sampler=ShardedSampler(len(rows), processes, config.seed, weights),
        drop_last=len(rows) > config.batch_size, num_workers=workers,
        pin_memory=device.type == "cuda" and features is None,
        generator=torch.Generator().manual_seed(config.seed + processes.rank), persistent_workers=workers > 0,
        worker_init_fn=seed_worker_transform if workers else None,
    )


def rare_attribute_weights(values: np.ndarray, factor: float, rare_below: float = 0.25) -> torch.Tensor:
    """Sampling weight per row: `factor` for rows positive for a rare attribute, 1 otherwise."""
    rates = np.nan_to_num(np.nanmean(values, axis=0), nan=1.0)
    rare = rates < rare_below
    has_rare = (values[:, rare] == 1).any(axis=1) if rare.any() else np.zeros(len(values), bool)
    return torch.from_numpy(np.where(has_rare, factor, 1.0))


def make_scaler(device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling, needed only when autocasting to float16."""
    return torch.amp.GradScaler(device.type, enabled=mixed_precision_dtype(device, amp) == torch.float16)


def training_step(model, inputs, targets, loss_fn, optimizer, scaler, device, amp) -> torch.Tensor:
    """One optimisation step on a batch on the device; returns the (masked) loss."""
    with autocast(device, amp):
        logits = model(inputs)
    loss = loss_fn(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def train_one_epoch(model, loader, loss_fn, optimizer, scaler, device, config, history, description: str = "",
                    scheduler=None, progress: bool = True, average=None,
                    processes: Processes = Processes()) -> float:
    """One pass over `loader`, whose batches (uint8 images, or precomputed features) only move to the device:
    the model prepares its own input. `average` (a WeightAverage) follows the weights after every step.
    Each step's loss goes into the history and the epoch's mean is returned, both averaged over the processes."""
    model.train()
    losses, total, count = [], 0.0, 0
    bar = tqdm(loader, desc=description, leave=False, disable=not progress)
    for images, targets in bar:
        loss = training_step(model, images.to(device, non_blocking=True), targets.to(device, non_blocking=True),
                             loss_fn, optimizer, scaler, device, config.amp)
        if scheduler is not None:
            scheduler.step()
        if average is not None:
            average.update()
        value = loss.item()
        losses.append(value)
        total, count = total + value * len(images), count + len(images)
        bar.set_postfix(loss=f"{value:.4f}")
    *losses, mean = processes.mean(torch.tensor(losses + [total / max(count, 1)])).tolist()
    history["iteration_loss"].extend(losses)
    return mean


def solve_head(head, features: torch.Tensor, targets: np.ndarray, config: TrainConfig, history: dict) -> float:
    """The linear probe on the training images' features (2, n, F), written into the head; returns its final
    (penalised, class-balanced) loss. Each L-BFGS evaluation's loss goes into the history's iteration losses."""
    losses, chosen = fit_linear_probe(head, features, targets, config.augment == "flip", config.head_c,
                                      seed=config.seed)
    history["iteration_loss"].extend(losses)
    history["head_c"] = chosen.tolist()
    return losses[-1]


def validate(model, phase: "Phase", val_logits):
    """Masked validation loss, probabilities and per-attribute metrics at threshold 0.5; each process scores
    a block of the validation rows and every process gets all of them."""
    rows, processes = phase.val_rows, phase.processes
    logits = processes.gather_rows(val_logits(model, rows[processes.block(len(rows))]))
    targets = phase.data.values[rows]
    loss = float(phase.loss_fn(logits.to(phase.device), torch.from_numpy(targets).to(phase.device)))
    probabilities = torch.sigmoid(logits).numpy()
    return loss, probabilities, attribute_metrics(targets, probabilities, 0.5, phase.attributes)


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics, updated every step."""

    def __init__(self, model, decay: float):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        if not 0 < decay < 1:
            raise ValueError(f"ema must be 0 (off) or a decay between 0 and 1, not {decay}")
        self.source = model
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def module(self):
        return self.averaged.module

    def update(self) -> None:
        self.averaged.update_parameters(self.source)


def is_better(record: dict, best: dict | None) -> bool:
    """Higher macro F1 wins; equal F1 goes to the lower validation loss."""
    if best is None:
        return True
    return (record["val_macro_f1"], -record["val_loss"]) > (best["val_macro_f1"], -best["val_loss"])


def make_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the trainable parameters; the head may learn faster than the backbone."""
    head = [p for p in model.head.parameters() if p.requires_grad]
    backbone = [p for p in model.stages.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": config.lr * config.head_lr_multiplier}]
    if backbone:
        groups.append({"params": backbone, "lr": config.lr})
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-iteration learning-rate factor: constant, or linear warm-up then cosine decay to zero."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total - 1, int(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {config.schedule!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(config: TrainConfig, data: LabelledImages, out_dir=None, progress: bool = True, rows=None,
        validate_each_epoch: bool = True, resume: dict | None = None,
        processes: Processes = Processes()) -> TrainResult:
    """Train on `data`. rows=(train, val) overrides the configured split; without validate_each_epoch
    (sensible with config.keep == "last") only the last epoch is validated; resume: a run's last.pt payload
    (aimonk.training.load_last) to continue from the end of its last finished epoch.

    The kept epoch (config.keep: the best by validation F1, or the last) is what the returned model
    holds; with out_dir it is also saved as out_dir/model.pt, with the history beside it, and the whole
    training state as out_dir/last.pt after every epoch (removed when the run ends normally).
    processes: the processes torchrun started (aimonk.distributed), which train this one model together;
    only the main one writes and prints.
    """
    check_trainable(data.labels)
    seed_everything(config.seed)
    progress = progress and processes.main
    train_rows, val_rows = split_rows(config, data, rows if resume is None else
                                      (resume["rows"]["train"], resume["rows"]["val"]))
    model, device = placed_model(config, len(data.attributes), processes)
    loss_fn = make_loss(config.loss, data.values[train_rows], config.pos_weight, config.focal_gamma,
                        data.attributes).to(device)
    phase = Phase(data, train_rows, val_rows, loss_fn, device, progress, processes)
    if config.head_epochs and not trains_head_only(model, config.augment) and resume is None:
        warm_start_head(model, head_phase(config), phase)  # linear probing, then fine-tuning
    strategy = choose_strategy(model, config, phase)
    state = strategy.new_state(model, config)
    if resume is not None:
        state.load_state_dict(resume["state"])
    log = RunLog(Path(out_dir) if out_dir else None, config, data, train_rows, val_rows, progress, processes.main)
    interrupted = run_epochs(state, strategy, config, phase, log, validate_each_epoch)
    if state.kept is not None:
        model.load_state_dict(state.kept)
    log.finished(interrupted)
    return TrainResult(model, state.history, log.checkpoint, train_rows, val_rows, state.best_epoch, interrupted,
                       state.val_probabilities)


def placed_model(config: TrainConfig, outputs: int, processes: Processes = Processes()):
    """(the configured model, pretrained and frozen as configured, placed on this process's device; that device)."""
    device = processes.device(select_device(config.device))
    model = build_model(config.backbone, outputs, config.weights, config.dropout, config.freeze, config.image_size)
    return place_model(model, device, config.channels_last), device


def share_features(config: TrainConfig, data: LabelledImages, processes: Processes) -> None:
    """For a head-only recipe, the features of all of `data` computed by the processes together and kept on
    `data`, so that the models each process then trains alone (e.g. cross-validation folds) find them there."""
    if head_only_recipe(config):
        model, device = placed_model(config, len(data.attributes), processes)
        cached_features(model, data, config, device, processes=processes)


def split_rows(config: TrainConfig, data: LabelledImages, rows=None) -> tuple[np.ndarray, np.ndarray]:
    if rows is not None:
        return tuple(np.asarray(r, dtype=int) for r in rows)
    if config.val_fraction > 0:
        return train_val_split(data.values, config.split, config.val_fraction, config.seed)
    return np.arange(len(data)), np.arange(0)


def run_epochs(state: "TrainState", strategy, config: TrainConfig, phase: "Phase", log: "RunLog",
               validate_each_epoch: bool = True) -> bool:
    """Epochs from the state's next one to the strategy's last: train, validate, keep, log. Returns True when
    interrupted (Ctrl-C), with the kept epoch intact."""
    try:
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
    except KeyboardInterrupt:
        log.interrupted(state)
        return True
    return False


def warm_start_head(model, config: TrainConfig, phase: "Phase") -> None:
    """The head phase before fine-tuning: every stage frozen, the head trained on features computed once;
    then the configured stages learn again. Nothing of it is logged or saved: it only sets the head."""
    frozen = model.frozen_stages
    model.freeze(len(model.stages))
    strategy = choose_strategy(model, config, phase)
    run_epochs(strategy.new_state(model, config), strategy, config, phase, RunLog(None, config, progress=False),
               validate_each_epoch=False)
    model.freeze(frozen)


@dataclass
class Phase:
    """What every epoch of a run works with."""

    data: LabelledImages
    train_rows: np.ndarray
    val_rows: np.ndarray
    loss_fn: torch.nn.Module
    device: torch.device
    progress: bool
    processes: Processes = Processes()

    @property
    def attributes(self) -> list[str]:
        return self.data.attributes


def choose_strategy(model, config: TrainConfig, phase: Phase):
    """The one place the mode is chosen: the whole network on images, the head on features computed once
    (by epochs), or the head solved exactly as a linear probe."""
    if not trains_head_only(model, config.augment):
        return WholeNetwork(model, config, phase)
    if config.head_solver == "lbfgs":
        return LinearProbe(model, config, phase)
    return HeadOnFeatures(model, config, phase)


class WholeNetwork:
    """Every unfrozen stage learns, on augmented batches of uint8 images."""

    def __init__(self, model, config: TrainConfig, phase: Phase):
        self.config, self.phase, self.epochs = config, phase, config.epochs
        trained = phase.processes.wrap(model, phase.device)  # shares the parameters of `model`
        self.trained = torch.compile(trained) if config.compile else trained
        self.loader = make_train_loader(phase.data, phase.train_rows, config, phase.device,
                                        processes=phase.processes)

    def new_state(self, model, config: TrainConfig) -> "TrainState":
        optimizer = make_optimizer(model, config)
        return TrainState(model, optimizer, make_scheduler(optimizer, config, len(self.loader)),
                          make_scaler(self.phase.device, config.amp),
                          WeightAverage(model, config.ema) if config.ema else None,
                          random_sources=self.random_sources())

    def random_sources(self) -> dict:
        sources = {"loader": self.loader.generator}
        if getattr(self.loader.dataset, "transform", None) is not None:
            sources["transform"] = self.loader.dataset.transform
        return sources

    def run_epoch(self, state: "TrainState", description: str) -> float:
        self.loader.sampler.set_epoch(state.epoch + 1)
        return train_one_epoch(self.trained, self.loader, self.phase.loss_fn, state.optimizer, state.scaler,
                               self.phase.device, self.config, state.history, description,
                               scheduler=state.scheduler, progress=self.phase.progress, average=state.average,
                               processes=self.phase.processes)

    def val_logits(self, module, rows) -> torch.Tensor:
        return predict_logits(module, self.phase.data.images[rows], self.phase.device,
                              batch_size=self.config.batch_size * 2, amp=self.config.amp, tta=self.config.tta)


class ValidatedOnFeatures:
    """Validation of a head on the backbone features computed once (self.features), mirror images averaged in
    with tta: the strategies where only the head learns."""

    def val_logits(self, module, rows) -> torch.Tensor:
        return head_logits(module.head, self.features[:, rows], self.phase.device, self.config.tta)


class HeadOnFeatures(ValidatedOnFeatures, WholeNetwork):
    """Only the head learns, by epochs, on batches of backbone features computed once."""

    def __init__(self, model, config: TrainConfig, phase: Phase):
        self.config, self.phase, self.epochs = config, phase, config.epochs
        self.trained = phase.processes.wrap(model.head, phase.device)
        self.features = cached_features(model, phase.data, config, phase.device, phase.progress, phase.processes)
        self.loader = make_train_loader(phase.data, phase.train_rows, config, phase.device, self.features,
                                        phase.processes)

    def random_sources(self) -> dict:
        return {"loader": self.loader.generator, "flips": self.loader.dataset.generator}


class LinearProbe(ValidatedOnFeatures):
    """Only the head learns, solved exactly in one pass as a logistic regression (aimonk.linear_probe)."""

    def __init__(self, model, config: TrainConfig, phase: Phase):
        self.config, self.phase, self.epochs, self.head = config, phase, 1, model.head
        # every process solves the same problem on the same shared features, so all hold the same head
        self.features = cached_features(model, phase.data, config, phase.device, phase.progress, phase.processes)

    def new_state(self, model, config: TrainConfig) -> "TrainState":
        return TrainState(model)

    def run_epoch(self, state: "TrainState", description: str) -> float:
        rows = self.phase.train_rows
        return solve_head(self.head, self.features[:, rows], self.phase.data.values[rows], self.config,
                          state.history)


@dataclass
class TrainState:
    """Everything a run needs to continue where it stopped: the model and what trains it, the epoch, the
    kept epoch and its weights, and every random state (global, loader, augmentation)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None
    average: "WeightAverage | None" = None
    epoch: int = 0
    best: dict | None = None  # the kept epoch's record
    stale: int = 0
    history: dict = field(default_factory=new_history)
    kept: dict | None = None  # the kept epoch's weights, on the CPU
    val_probabilities: np.ndarray | None = None  # the kept epoch's, rows as the validation rows
    random_sources: dict = field(default_factory=dict)  # torch Generators and albumentations Compose objects

    @property
    def best_epoch(self) -> int | None:
        return self.best["epoch"] if self.best is not None else None

    @property
    def evaluated(self) -> torch.nn.Module:
        """What is validated and kept: the weight average when there is one."""
        return self.average.module if self.average is not None else self.model

    def end_epoch(self, record: dict, probabilities, keep: str) -> bool:
        """Record an epoch; returns whether it is now the kept one."""
        self.epoch = record["epoch"]
        self.history["epochs"].append(record)
        improved = keep == "last" or "val_loss" not in record or is_better(record, self.best)
        if improved:
            self.best, self.stale = record, 0
            self.kept = {k: v.detach().to("cpu", copy=True) for k, v in self.evaluated.state_dict().items()}
            self.val_probabilities = probabilities
        else:
            self.stale += 1
        return improved

    def state_dict(self) -> dict:
        parts = {name: getattr(self, name) for name in ("optimizer", "scheduler", "scaler")}
        return {
            "model": self.model.state_dict(),
            **{name: part.state_dict() if part is not None else None for name, part in parts.items()},
            "average": self.average.averaged.state_dict() if self.average is not None else None,
            "epoch": self.epoch, "best": self.best, "stale": self.stale,
            "history": self.history, "kept": self.kept,
            "val_probabilities": None if self.val_probabilities is None else torch.from_numpy(self.val_probabilities),
            "random": random_states(self.random_sources),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for name in ("optimizer", "scheduler", "scaler"):
            if getattr(self, name) is not None and state[name] is not None:
                getattr(self, name).load_state_dict(state[name])
        if self.average is not None and state["average"] is not None:
            self.average.averaged.load_state_dict(state["average"])
        self.epoch, self.best = state["epoch"], state["best"]
        self.stale, self.history, self.kept = state["stale"], state["history"], state["kept"]
        probabilities = state["val_probabilities"]
        self.val_probabilities = None if probabilities is None else probabilities.numpy()
        restore_random_states(state["random"], self.random_sources)


def random_states(sources: dict) -> dict:
    """The global random states (python, numpy, torch) and those of `sources`, in types that torch.load
    reads back with weights_only."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss))}
    for name, source in sources.items():
        if isinstance(source, torch.Generator):
            states[name] = source.get_state()
        else:  # albumentations: the Compose and each of its transforms keep numpy and python generators
            states[name] = [{"numpy": part.random_generator.bit_generator.state, "python": part.py_random.getstate()}
                            for part in augmentation_parts(source)]
    return states


def augmentation_parts(transform) -> list:
    """An albumentations transform and every transform inside it (Compose, OneOf), depth first."""
    children = getattr(transform, "transforms", None)
    children = children if isinstance(children, (list, tuple)) else []
    own = [transform] if hasattr(transform, "random_generator") and hasattr(transform, "py_random") else []
    return own + [part for child in children for part in augmentation_parts(child)]


def restore_random_states(states: dict, sources: dict) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    for name, source in sources.items():
        if isinstance(source, torch.Generator):
            source.set_state(states[name])
        else:
            for part, state in zip(augmentation_parts(source), states[name], strict=True):
                part.random_generator.bit_generator.state = state["numpy"]
                part.py_random.setstate(state["python"])


LAST_FORMAT = "aimonk-training-state/1"


# what a checkpoint says of its thresholds until aimonk.pipeline.train tunes them after the last epoch (a run
# that stopped before, or fit() called alone, keeps this)
UNTUNED_YET = "0.5, not tuned: the run ended before its thresholds were tuned"


class RunLog:
    """Logging and checkpointing in one place: the epoch line, model.pt when an epoch is kept, history.json
    and last.pt (the whole TrainState) after every epoch. Only the main process of a run writes."""

    def __init__(self, out_dir: Path | None, config: TrainConfig, data: LabelledImages | None = None,
                 train_rows=(), val_rows=(), progress: bool = True, main: bool = True):
        self.out_dir, self.config, self.data, self.progress = out_dir if main else None, config, data, progress
        self.checkpoint = self.out_dir / "model.pt" if self.out_dir else None
        self.last = self.out_dir / "last.pt" if self.out_dir else None
        self.rows = {"train": [int(i) for i in train_rows], "val": [int(i) for i in val_rows]}
        if self.out_dir:
            self.split = {"train": [data.filenames[i] for i in train_rows],
                          "val": [data.filenames[i] for i in val_rows],
                          "label_file": str(data.labels.source.resolve()) if data.labels.source else None,
                          "train_digests": data.digests(train_rows)}
            self.majority = majority_classes(data.values[train_rows]).tolist()

    def say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def epoch_end(self, state: TrainState, record: dict, improved: bool) -> None:
        self.say(describe_epoch(record, improved))
        if not self.out_dir:
            return
        if improved:
            attributes = self.data.attributes
            save_checkpoint(checkpoint_payload(state.evaluated, self.config, attributes, [0.5] * len(attributes),
                                               state.history, epoch=record["epoch"], split=self.split,
                                               majority=self.majority, thresholds_source=UNTUNED_YET),
                            self.checkpoint)
        write_history(state.history, self.out_dir)
        save_checkpoint({"format": LAST_FORMAT, "config": self.config.to_dict(), "rows": self.rows,
                         "label_file": self.split["label_file"], "filenames": list(self.data.filenames),
                         "state": state.state_dict()}, self.last)

    def interrupted(self, state: TrainState) -> None:
        if not self.checkpoint:  # nothing was saved (a cross-validation fold): the caller says what stopped
            return
        if state.best_epoch is None:
            print("\ninterrupted before the first epoch ended: nothing was saved")
            return
        print(f"\ninterrupted: the best checkpoint so far (epoch {state.best_epoch}) is kept in {self.checkpoint}"
              + (f"; continue with: aimonk train DATA --out {self.out_dir} --resume" if self.last.is_file() else ""))

    def finished(self, interrupted: bool) -> None:
        if self.last and not interrupted:
            self.last.unlink(missing_ok=True)  # only an unfinished run needs its training state


def load_last(run_dir) -> dict:
    """The training state an interrupted run left in RUN/last.pt, for fit(resume=...)."""
    path = Path(run_dir) / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: only an interrupted run can be resumed (a finished run "
                                "removes its last.pt)")
    return load_checkpoint(path, LAST_FORMAT, "aimonk training state")


def head_phase(config: TrainConfig) -> TrainConfig:
    """The first phase of config.head_epochs > 0: only the head learns, on features computed once, so
    that fine-tuning starts from a head that fits the pretrained features (linear probing, then fine-tuning)."""
    return config.replace(freeze="all", augment="flip", epochs=config.head_epochs, lr=config.head_lr, head_epochs=0,
                          head_lr_multiplier=1.0, warmup_epochs=0.0, keep="last", ema=0.0, compile=False)


def describe_epoch(record: dict, improved: bool) -> str:
    text = f"epoch {record['epoch']:>3}  train loss {record['train_loss']:.4f}"
    if "val_loss" in record:
        per_attribute = " ".join(f"{v:.2f}" for v in record["val_f1"].values())
        text += f"  val loss {record['val_loss']:.4f}  val F1 {record['val_macro_f1']:.3f} [{per_attribute}]"
    return text + f"  {record['seconds']:.0f}s" + ("  *" if improved else "")


def write_history(history: dict, out_dir: Path) -> None:
    write_text(out_dir / "history.json", json.dumps(history, indent=1))
