"""Batches for training: augmented uint8 images, or precomputed features when only the head learns; rare
attributes oversampled; each process its share."""
from __future__ import annotations

import numpy as np
import torch
from aimonk.config import TrainConfig
from aimonk.data.folder import LabelledImages
from aimonk.data.transforms import seed_worker_transform, train_transform
from aimonk.distributed import Processes, ShardedSampler


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


class AttributeDataset(torch.utils.data.Dataset):
    """Serves (uint8 HWC image after augmentation, float targets with NaN = unknown) for `rows` of the images
    (default all), reading each image from the (memory-mapped) array only when it is asked for."""

    def __init__(self, images: np.ndarray, targets: np.ndarray | None = None, transform=None, rows=None):
        self.images, self.transform = images, transform
        self.rows = np.arange(len(images)) if rows is None else np.asarray(rows, dtype=int)
        self.targets = targets if targets is not None else np.full((len(images), 0), np.nan, np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        index = self.rows[index]
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(self.targets[index])


class FeatureDataset(torch.utils.data.Dataset):
    """(features, targets) pairs; with `flip`, each draw takes the mirror image's features half the time."""

    def __init__(self, features: torch.Tensor, values: np.ndarray, flip: bool, seed: int = 0):
        self.features, self.targets, self.flip = features, torch.from_numpy(values.astype(np.float32)), flip
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, index):
        side = int(torch.randint(2, (), generator=self.generator)) if self.flip else 0
        return self.features[side, index], self.targets[index]
