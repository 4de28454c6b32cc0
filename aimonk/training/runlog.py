"""The run log: the epoch line, model.pt when an epoch is kept (its decision rule not fitted yet), history.json
and last.pt (the whole TrainState) after every epoch. Only the main process of a run writes."""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import torch

from aimonk.config import TrainConfig
from aimonk.data.folder import LABEL_FILE_NAMES, LabelledImages
from aimonk.files import atomic_path, write_text
from aimonk.metrics import majority_classes
from aimonk.model.checkpoint import Checkpoint, Provenance, read_torch_file
from aimonk.model.recipe import Recipe
from aimonk.tracking import Tracker
from aimonk.training.state import TrainState

LAST_FORMAT = "aimonk-training-state/1"


class RunLog:
    def __init__(self, out_dir: Path | None, config: TrainConfig, data: LabelledImages | None = None,
                 train_rows=(), val_rows=(), progress: bool = True, main: bool = True,
                 recipe: Recipe = Recipe.WHOLE_NETWORK, saved_epoch: int | None = None, tracker: Tracker = Tracker(),
                 steps_done: int = 0):
        self.out_dir, self.config, self.data, self.progress = out_dir if main else None, config, data, progress
        self.tracker = tracker if main else Tracker()
        self.steps_tracked = steps_done  # a resumed run's earlier steps were tracked by the run it continues
        self.checkpoint = self.out_dir / "model.pt" if self.out_dir else None
        self.last = self.out_dir / "last.pt" if self.out_dir else None
        self.recipe = recipe
        self.saved_epoch = saved_epoch  # the epoch model.pt holds (a resumed run's, until a new one is kept)
        self.rows = {"train": [int(i) for i in train_rows], "val": [int(i) for i in val_rows]}
        self.origin = Provenance()
        if data is not None:
            self.origin.majority = majority_classes(data.values[list(train_rows)]).tolist()
        if self.out_dir:
            self.origin.split = {"train": [data.filenames[i] for i in train_rows],
                                 "val": [data.filenames[i] for i in val_rows],
                                 "label_file": str(data.labels.source.resolve()) if data.labels.source else None,
                                 "train_digests": data.digests(train_rows)}

    def provenance(self, epoch: int | None) -> Provenance:
        return dataclasses.replace(self.origin, epoch=epoch)

    def say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def epoch_end(self, state: TrainState, record: dict, improved: bool) -> None:
        self.say(describe_epoch(record, improved, self.recipe, len(state.history["iteration_loss"])))
        self.track(state.history, record)
        if not self.out_dir:
            return
        if improved:
            Checkpoint.of_model(state.evaluated, self.config, self.data.attributes, state.history, self.recipe,
                                provenance=self.provenance(record["epoch"])).save(self.checkpoint)
            self.saved_epoch = record["epoch"]
        write_history(state.history, self.out_dir)
        with atomic_path(self.last) as temporary:
            torch.save({"format": LAST_FORMAT, "config": self.config.to_dict(), "rows": self.rows,
                        "label_file": self.origin.split["label_file"], "filenames": list(self.data.filenames),
                        "attributes": list(self.data.attributes), "labels": torch.from_numpy(self.data.values.copy()),
                        "state": state.state_dict()}, temporary)

    def track(self, history: dict, record: dict) -> None:
        """This epoch's steps (their losses, numbered from the run's first step) and its scores."""
        losses = history["iteration_loss"]
        for step, loss in enumerate(losses[self.steps_tracked:], start=self.steps_tracked + 1):
            self.tracker.log_metrics({"train/loss": loss}, step)
        self.steps_tracked = len(losses)
        self.tracker.log_metrics(epoch_metrics(record), record["epoch"])

    def interrupted(self) -> str:
        """What an interruption leaves: what model.pt holds, checked on disk, and how to continue."""
        if not self.checkpoint:  # nothing is saved (a cross-validation fold): the caller says what stopped
            return "interrupted"
        if self.saved_epoch is None or not self.checkpoint.is_file():
            return "interrupted before the first epoch ended: nothing was saved"
        return (f"interrupted: the best checkpoint so far (epoch {self.saved_epoch}) is kept in {self.checkpoint}"
                + (f"; continue with: aimonk train {self.data_argument()} --out {shlex.quote(str(self.out_dir))} "
                   "--resume"
                   if self.last.is_file() else ""))

    def data_argument(self) -> str:
        """The data folder as `aimonk train` takes it (the label file where it has a name of its own), quoted for
        a shell."""
        if not self.origin.split.get("label_file"):  # labels made in memory, not read from a file
            return "DATA"
        source = Path(self.origin.split["label_file"])
        return shlex.quote(str(source.parent if source.name.lower() in LABEL_FILE_NAMES else source))

    def finished(self) -> None:
        if self.last:
            self.last.unlink(missing_ok=True)  # only an unfinished run needs its training state


def load_last(run_dir) -> dict:
    """The training state an interrupted run left in RUN/last.pt, for fit(resume=...)."""
    path = Path(run_dir) / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: only an interrupted run can be resumed (a finished run "
                                "removes its last.pt)")
    return read_torch_file(path, (LAST_FORMAT,), "aimonk training state")


def describe_epoch(record: dict, improved: bool, recipe: Recipe = Recipe.WHOLE_NETWORK, steps: int = 0) -> str:
    """The line a finished epoch prints; the linear probe's one solve is said as a solve, not as epoch 1."""
    if recipe.by_epochs:
        text = f"epoch {record['epoch']:>3}  train loss {record['train_loss']:.4f}"
    else:
        text = f"linear probe solved ({steps} L-BFGS evaluations)  train loss {record['train_loss']:.4f}"
    if "val_loss" in record:
        per_attribute = " ".join(f"{v:.2f}" for v in record["val_f1"].values())
        text += f"  val loss {record['val_loss']:.4f}  val F1 {record['val_macro_f1']:.3f} [{per_attribute}]"
    return text + f"  {record['seconds']:.0f}s" + ("  *" if improved and recipe.by_epochs else "")


def epoch_metrics(record: dict) -> dict:
    """An epoch's record as tracked scalars: its losses, macro F1 and F1 per attribute."""
    metrics = {"epoch/train_loss": record["train_loss"]}
    if "val_loss" in record:
        metrics.update({"val/loss": record["val_loss"], "val/macro_f1": record["val_macro_f1"]})
        metrics.update({f"val/f1/{name}": value for name, value in record["val_f1"].items()})
    return metrics


def write_history(history: dict, out_dir: Path) -> None:
    write_text(out_dir / "history.json", json.dumps(history, indent=1))
