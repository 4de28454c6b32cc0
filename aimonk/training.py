"""The training loop, readable top to bottom: split, build, fit, keep the best checkpoint."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import checkpoint_payload, save_checkpoint
from .config import TrainConfig
from .dataset import AttributeDataset, LabelledImages
from .engine import (autocast, mixed_precision_dtype, predict_logits, seed_everything, select_device,
                     to_model_input, use_channels_last)
from .losses import make_loss
from .metrics import attribute_metrics, majority_classes
from .models import build_model
from .split import train_val_split
from .transforms import train_transform


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: dict
    checkpoint: Path | None
    train_rows: np.ndarray
    val_rows: np.ndarray
    best_epoch: int | None
    interrupted: bool = False


def new_history() -> dict:
    return {"iteration_loss": [], "epochs": []}


def make_train_loader(data: LabelledImages, rows, config: TrainConfig, device) -> torch.utils.data.DataLoader:
    dataset = AttributeDataset(data.images[rows], data.values[rows],
                               train_transform(config.image_size, config.augment))
    workers = config.num_workers if config.num_workers >= 0 else (4 if device.type == "cuda" else 0)
    generator = torch.Generator().manual_seed(config.seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, drop_last=len(rows) > config.batch_size,
        num_workers=workers, pin_memory=device.type == "cuda", generator=generator,
        persistent_workers=workers > 0,
    )


def train_one_epoch(model, loader, loss_fn, optimizer, scaler, device, config, history, description,
                    channels_last: bool = False) -> float:
    model.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=description, leave=False)
    for images, targets in bar:
        targets = targets.to(device, non_blocking=True)
        with autocast(device, config.amp):
            logits = model(to_model_input(model, images, device, channels_last))
        loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = loss.item()
        history["iteration_loss"].append(value)
        total, count = total + value * len(images), count + len(images)
        bar.set_postfix(loss=f"{value:.4f}")
    return total / max(count, 1)


def validate(model, data: LabelledImages, rows, loss_fn, device, config, channels_last: bool = False):
    """Masked validation loss, probabilities and per-attribute metrics at threshold 0.5."""
    logits = predict_logits(model, data.images[rows], device, batch_size=config.batch_size * 2, amp=config.amp,
                            channels_last=channels_last)
    targets = data.values[rows]
    loss = float(loss_fn(logits.to(device), torch.from_numpy(targets).to(device)))
    probabilities = torch.sigmoid(logits).numpy()
    return loss, probabilities, attribute_metrics(targets, probabilities, 0.5, data.attributes)


def is_better(record: dict, best: dict | None) -> bool:
    """Higher macro F1 wins; equal F1 goes to the lower validation loss."""
    if best is None:
        return True
    return (record["val_macro_f1"], -record["val_loss"]) > (best["val_macro_f1"], -best["val_loss"])


def fit(config: TrainConfig, data: LabelledImages, out_dir=None, progress: bool = True) -> TrainResult:
    """Train on `data`; with out_dir, keep the best checkpoint in out_dir/model.pt and the history beside it."""
    seed_everything(config.seed)
    device = select_device(config.device)
    out_dir = Path(out_dir) if out_dir else None
    if config.val_fraction > 0:
        train_rows, val_rows = train_val_split(data.values, config.split, config.val_fraction, config.seed)
    else:
        train_rows, val_rows = np.arange(len(data)), np.arange(0)

    model = build_model(config.backbone, len(data.attributes), config.weights, config.dropout, config.freeze,
                        config.image_size)
    channels_last = use_channels_last(device, config.channels_last)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    loss_fn = make_loss(config.loss, data.values[train_rows], config.pos_weight, config.focal_gamma,
                        data.attributes).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                 weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=mixed_precision_dtype(device, config.amp) == torch.float16)
    loader = make_train_loader(data, train_rows, config, device)

    history, best, best_epoch, stale, interrupted = new_history(), None, None, 0, False
    checkpoint = out_dir / "model.pt" if out_dir else None
    split = {"train": [data.filenames[i] for i in train_rows], "val": [data.filenames[i] for i in val_rows],
             "label_file": str(data.labels.source.resolve()) if data.labels.source else None}
    majority = majority_classes(data.values[train_rows]).tolist()
    try:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            train_loss = train_one_epoch(model, loader, loss_fn, optimizer, scaler, device, config, history,
                                         f"epoch {epoch}/{config.epochs}", channels_last)
            record = {"epoch": epoch, "train_loss": train_loss}
            if len(val_rows):
                val_loss, _, table = validate(model, data, val_rows, loss_fn, device, config, channels_last)
                record.update(val_loss=val_loss, val_macro_f1=float(table.loc["macro", "f1"]),
                              val_f1={name: float(table.loc[name, "f1"]) for name in data.attributes})
            record["seconds"] = time.perf_counter() - started
            history["epochs"].append(record)
            improved = not len(val_rows) or is_better(record, best)
            if improved:
                best, best_epoch, stale = record, epoch, 0
                if checkpoint:
                    save_checkpoint(checkpoint_payload(model, config, data.attributes, [0.5] * len(data.attributes),
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
    if checkpoint and checkpoint.is_file():
        model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True)["state_dict"])
    return TrainResult(model, history, checkpoint, train_rows, val_rows, best_epoch, interrupted)


def describe_epoch(record: dict, improved: bool) -> str:
    text = f"epoch {record['epoch']:>3}  train loss {record['train_loss']:.4f}"
    if "val_loss" in record:
        per_attribute = " ".join(f"{v:.2f}" for v in record["val_f1"].values())
        text += f"  val loss {record['val_loss']:.4f}  val F1 {record['val_macro_f1']:.3f} [{per_attribute}]"
    return text + f"  {record['seconds']:.0f}s" + ("  *" if improved else "")


def write_history(history: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
