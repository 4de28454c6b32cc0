"""How the recipes that learn by epochs learn, one class each: the whole network on images, or the head on
features computed once (the linear probe is solved in one pass: aimonk.training.linear_probe)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aimonk.config import TrainConfig
from aimonk.data.folder import LabelledImages
from aimonk.decision.thresholds import metrics_at
from aimonk.distributed import Processes
from aimonk.model.features import cached_features, head_logits
from aimonk.model.inference import predict_logits
from aimonk.model.recipe import Recipe
from aimonk.progress import progress_bar
from aimonk.runtime import autocast
from aimonk.training.loaders import make_train_loader
from aimonk.training.optim import WeightAverage, make_optimizer, make_scaler, make_scheduler
from aimonk.training.state import TrainState


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
                    scheduler=None, average=None, processes: Processes = Processes()) -> float:
    """One pass over `loader`, whose batches (uint8 images, or precomputed features) only move to the device:
    the model prepares its own input. `average` (a WeightAverage) follows the weights after every step.
    Each step's loss goes into the history and the epoch's mean is returned, both averaged over the processes."""
    model.train()
    losses, total, count = [], 0.0, 0
    bar = progress_bar(loader, desc=description, leave=False)
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


def validate(model, phase: "Phase", val_logits):
    """Masked validation loss, probabilities and per-attribute metrics at threshold 0.5; each process scores
    a block of the validation rows and every process gets all of them."""
    rows, processes = phase.val_rows, phase.processes
    logits = processes.gather_rows(val_logits(model, rows[processes.block(len(rows))]))
    targets = phase.data.values[rows]
    loss = float(phase.loss_fn(logits.to(phase.device), torch.from_numpy(targets).to(phase.device)))
    probabilities = torch.sigmoid(logits).numpy()
    return loss, probabilities, metrics_at(targets, probabilities, 0.5, phase.attributes)


@dataclass
class Phase:
    """What every epoch of a run works with."""

    data: LabelledImages
    train_rows: np.ndarray
    val_rows: np.ndarray
    loss_fn: torch.nn.Module
    device: torch.device
    processes: Processes = Processes()

    @property
    def attributes(self) -> list[str]:
        return self.data.attributes


def epoch_learner(recipe: Recipe, model, config: TrainConfig, phase: Phase):
    """The learner that carries out `recipe` by epochs (aimonk.model.recipe decides which)."""
    learner = next(kind for kind in (WholeNetwork, HeadOnFeatures) if kind.recipe is recipe)
    return learner(model, config, phase)


class WholeNetwork:
    """Every unfrozen stage learns, on augmented batches of uint8 images."""

    recipe = Recipe.WHOLE_NETWORK

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
                               scheduler=state.scheduler, average=state.average, processes=self.phase.processes)

    def val_logits(self, module, rows) -> torch.Tensor:
        return predict_logits(module, self.phase.data.images[rows], self.phase.device, tta=self.config.tta)


class ValidatedOnFeatures:
    """Validation of a head on the backbone features computed once (self.features), mirror images averaged in
    with tta: the strategies where only the head learns."""

    def val_logits(self, module, rows) -> torch.Tensor:
        return head_logits(module.head, self.features[:, rows], self.phase.device, self.config.tta)


class HeadOnFeatures(ValidatedOnFeatures, WholeNetwork):
    """Only the head learns, by epochs, on batches of backbone features computed once."""

    recipe = Recipe.HEAD_BY_EPOCHS

    def __init__(self, model, config: TrainConfig, phase: Phase):
        self.config, self.phase, self.epochs = config, phase, config.epochs
        self.trained = phase.processes.wrap(model.head, phase.device)
        self.features = cached_features(model, phase.data, config, phase.device, phase.processes)
        self.loader = make_train_loader(phase.data, phase.train_rows, config, phase.device, self.features,
                                        phase.processes)

    def random_sources(self) -> dict:
        return {"loader": self.loader.generator, "flips": self.loader.dataset.generator}
