"""What updates the weights: the optimizer, the learning-rate schedule, loss scaling, the weight average."""
from __future__ import annotations

import math
import torch
from aimonk.config import SCHEDULES, TrainConfig
from aimonk.runtime import mixed_precision_dtype


def make_scaler(device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling, needed only when autocasting to float16."""
    return torch.amp.GradScaler(device.type, enabled=mixed_precision_dtype(device, amp) == torch.float16)


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
