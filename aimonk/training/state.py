"""Everything a run needs to continue where it stopped (TrainState), and the random states inside it."""
from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import random
import torch
from aimonk.training.optim import WeightAverage


def new_history() -> dict:
    return {"iteration_loss": [], "epochs": []}


def is_better(record: dict, best: dict | None) -> bool:
    """Higher macro F1 wins; equal F1 goes to the lower validation loss."""
    if best is None:
        return True
    return (record["val_macro_f1"], -record["val_loss"]) > (best["val_macro_f1"], -best["val_loss"])


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
