"""Batches for training: augmented uint8 images, or precomputed features when only the head learns; rare
attributes oversampled; each process its share."""
from __future__ import annotations

import numpy as np
import torch
from aimonk.config import TrainConfig
from aimonk.data.folder import AttributeDataset, LabelledImages
from aimonk.data.transforms import seed_worker_transform, train_transform
from aimonk.distributed import Processes, ShardedSampler
from aimonk.model.features import FeatureDataset


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
