"""The training loop, readable top to bottom: split, build, fit, keep the best checkpoint."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import checkpoint_payload, save_checkpoint
from .config import SCHEDULES, TrainConfig
from .dataset import AttributeDataset, LabelledImages
from .engine import (autocast, mixed_precision_dtype, predict_logits, seed_everything, select_device,
                     to_model_input, use_channels_last)
from .files import write_text
from .labels import check_trainable
from .features import FeatureDataset, cached_features, head_logits, trains_head_only
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


def make_train_loader(data: LabelledImages, rows, config: TrainConfig, device,
                      features: torch.Tensor | None = None) -> torch.utils.data.DataLoader:
    """Batches of augmented uint8 images, or of precomputed backbone features when only the head trains."""
    if features is None:
        dataset = AttributeDataset(data.images[rows], data.values[rows],
                                   train_transform(config.image_size, config.augment, config.seed))
        workers = config.num_workers if config.num_workers >= 0 else (4 if device.type == "cuda" else 0)
    else:
        dataset, workers = FeatureDataset(features[:, rows], data.values[rows], config.augment == "flip",
                                          config.seed), 0
    generator = torch.Generator().manual_seed(config.seed)
    sampler = None
    if config.oversample > 1:
        weights = rare_attribute_weights(data.values[rows], config.oversample)
        sampler = torch.utils.data.WeightedRandomSampler(weights, len(rows), replacement=True, generator=generator)
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
        drop_last=len(rows) > config.batch_size, num_workers=workers,
        pin_memory=device.type == "cuda" and features is None, generator=generator, persistent_workers=workers > 0,
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


def image_input(model, device, channels_last: bool):
    """Turns a loader's uint8 NHWC image batch into the model's input."""
    return lambda images: to_model_input(model, images, device, channels_last)


def feature_input(device):
    """Precomputed feature batches only move to the device."""
    return lambda features: features.to(device, non_blocking=True)


def training_step(model, inputs, targets, loss_fn, optimizer, scaler, device, amp) -> torch.Tensor:
    """One optimisation step on a batch already made model input; returns the (masked) loss."""
    with autocast(device, amp):
        logits = model(inputs)
    loss = loss_fn(logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def train_one_epoch(model, loader, loss_fn, optimizer, scaler, device, config, history, description: str = "",
                    prepare=None, scheduler=None, progress: bool = True, average=None) -> float:
    """One pass over `loader`; prepare turns a batch into model input (default: uint8 images, NCHW);
    `average` (a WeightAverage) follows the weights after every step."""
    model.train()
    prepare = prepare or image_input(model, device, False)
    total, count = 0.0, 0
    bar = tqdm(loader, desc=description, leave=False, disable=not progress)
    for images, targets in bar:
        loss = training_step(model, prepare(images), targets.to(device, non_blocking=True), loss_fn, optimizer,
                             scaler, device, config.amp)
        if scheduler is not None:
            scheduler.step()
        if average is not None:
            average.update()
        value = loss.item()
        history["iteration_loss"].append(value)
        total, count = total + value * len(images), count + len(images)
        bar.set_postfix(loss=f"{value:.4f}")
    return total / max(count, 1)


def solve_head(head, features: torch.Tensor, targets: np.ndarray, config: TrainConfig, history: dict,
               description: str = "") -> float:
    """The linear probe on the training images' features (2, n, F), written into the head; returns its final
    (penalised, class-balanced) loss. Each L-BFGS evaluation's loss goes into the history's iteration losses."""
    losses, chosen = fit_linear_probe(head, features, targets, config.augment == "flip", config.head_c,
                                      seed=config.seed)
    history["iteration_loss"].extend(losses)
    history["head_c"] = chosen.tolist()
    return losses[-1]


def validate(model, data: LabelledImages, rows, loss_fn, device, config, channels_last: bool = False,
             features: torch.Tensor | None = None):
    """Masked validation loss, probabilities and per-attribute metrics at threshold 0.5."""
    if features is None:
        logits = predict_logits(model, data.images[rows], device, batch_size=config.batch_size * 2, amp=config.amp,
                                channels_last=channels_last, tta=config.tta)
    else:
        logits = head_logits(model.head, features[:, rows], device, config.tta)
    targets = data.values[rows]
    loss = float(loss_fn(logits.to(device), torch.from_numpy(targets).to(device)))
    probabilities = torch.sigmoid(logits).numpy()
    return loss, probabilities, attribute_metrics(targets, probabilities, 0.5, data.attributes)


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
        validate_each_epoch: bool = True) -> TrainResult:
    """Train on `data`. rows=(train, val) overrides the configured split; without validate_each_epoch
    (sensible with config.keep == "last") only the last epoch is validated.

    The kept epoch (config.keep: the best by validation F1, or the last) is what the returned model
    holds; with out_dir it is also saved as out_dir/model.pt, with the history beside it.
    """
    check_trainable(data.labels)
    seed_everything(config.seed)
    device = select_device(config.device)
    out_dir = Path(out_dir) if out_dir else None
    if rows is not None:
        train_rows, val_rows = (np.asarray(r, dtype=int) for r in rows)
    elif config.val_fraction > 0:
        train_rows, val_rows = train_val_split(data.values, config.split, config.val_fraction, config.seed)
    else:
        train_rows, val_rows = np.arange(len(data)), np.arange(0)

    model = build_model(config.backbone, len(data.attributes), config.weights, config.dropout, config.freeze,
                        config.image_size)
    if config.head_epochs and not trains_head_only(model, config.augment):
        model.head.load_state_dict(fit(head_phase(config), data, None, progress, (train_rows, val_rows),
                                       validate_each_epoch=False).model.head.state_dict())
    channels_last = use_channels_last(device, config.channels_last)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    loss_fn = make_loss(config.loss, data.values[train_rows], config.pos_weight, config.focal_gamma,
                        data.attributes).to(device)
    features, trained, prepare = what_trains(model, data, config, device, channels_last, progress)
    history, best, best_epoch, best_state, stale, interrupted = new_history(), None, None, None, 0, False
    average = None
    if features is not None and config.head_solver == "lbfgs":
        # the head is a linear probe, solved exactly in one pass (aimonk.linear_probe)
        epochs = 1
        run_epoch = partial(solve_head, model.head, features[:, train_rows], data.values[train_rows], config,
                            history)
    else:
        loader = make_train_loader(data, train_rows, config, device, features)
        optimizer = make_optimizer(model, config)
        scheduler = make_scheduler(optimizer, config, len(loader))
        scaler = make_scaler(device, config.amp)
        average = WeightAverage(model, config.ema) if config.ema else None
        epochs = config.epochs
        run_epoch = partial(train_one_epoch, trained, loader, loss_fn, optimizer, scaler, device, config, history,
                            prepare=prepare, scheduler=scheduler, progress=progress, average=average)
    evaluated = average.module if average is not None else model  # what is validated and kept

    val_probabilities = None
    checkpoint = out_dir / "model.pt" if out_dir else None
    split = {"train": [data.filenames[i] for i in train_rows], "val": [data.filenames[i] for i in val_rows],
             "label_file": str(data.labels.source.resolve()) if data.labels.source else None,
             "train_digests": data.digests(train_rows)}
    majority = majority_classes(data.values[train_rows]).tolist()
    try:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            train_loss = run_epoch(description=f"epoch {epoch}/{epochs}")
            record = {"epoch": epoch, "train_loss": train_loss}
            if len(val_rows) and (validate_each_epoch or epoch == epochs):
                val_loss, probabilities, table = validate(evaluated, data, val_rows, loss_fn, device, config,
                                                          channels_last, features)
                record.update(val_loss=val_loss, val_macro_f1=float(table.loc["macro", "f1"]),
                              **{f"val_{metric}": {name: float(table.loc[name, metric]) for name in data.attributes}
                                 for metric in ("precision", "recall", "f1")})
            record["seconds"] = time.perf_counter() - started
            history["epochs"].append(record)
            improved = config.keep == "last" or "val_loss" not in record or is_better(record, best)
            if improved:
                best, best_epoch, stale = record, epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()}
                val_probabilities = probabilities if "val_loss" in record else None
                if checkpoint:
                    save_checkpoint(checkpoint_payload(evaluated, config, data.attributes, [0.5] * len(data.attributes),
                                                       history, epoch=epoch, split=split,
                                                       majority=majority), checkpoint)
            else:
                stale += 1
            if progress:
                print(describe_epoch(record, improved), flush=True)
            if out_dir:
                write_history(history, out_dir)
            if config.patience and stale >= config.patience:
                if progress:
                    print(f"early stopping: no improvement for {config.patience} epoch(s)")
                break
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: the best checkpoint so far (epoch {best_epoch}) is kept" +
              (f" in {checkpoint}" if checkpoint else ""))
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(model, history, checkpoint, train_rows, val_rows, best_epoch, interrupted, val_probabilities)


def what_trains(model, data: LabelledImages, config: TrainConfig, device, channels_last: bool, progress: bool):
    """(features, trained module, batch -> input): the whole model on image batches, or, when only the head
    learns, the head on batches of backbone features computed once (features is then not None)."""
    if trains_head_only(model, config.augment):
        return cached_features(model, data, config, device, progress), model.head, feature_input(device)
    trained = torch.compile(model) if config.compile else model  # shares the parameters of `model`
    return None, trained, image_input(model, device, channels_last)


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
