"""Augmentation pipelines (albumentations) applied to cached uint8 images of a fixed size.

Normalisation is not here: the model takes uint8 (N, H, W, 3) batches and permutes and normalises them
itself, on the device, inside `forward` (`AttributeClassifier.prepare`), so the loader only moves uint8 pixels.
"""
from __future__ import annotations

import albumentations as A

from aimonk.config import AUGMENTATIONS


def train_transform(size: int, strength: str = "strong", seed: int | None = None):
    """Geometric and photometric augmentation for training; output stays size x size uint8. With a seed the
    random draws repeat from run to run (albumentations keeps its own random state, not numpy's)."""
    if strength not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, not {strength!r}")
    if strength == "none":
        return None
    if strength == "flip":
        return A.Compose([A.HorizontalFlip(p=0.5)], seed=seed)
    if strength == "light":
        return A.Compose([
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10), fill=255, p=0.5),
        ], seed=seed)
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.RandomResizedCrop(size=(size, size), scale=(0.7, 1.0), ratio=(0.85, 1.18), p=0.5),
        A.Affine(scale=(0.85, 1.15), translate_percent=(-0.1, 0.1), rotate=(-15, 15), fill=255, p=0.7),
        A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.2, hue=0.02, p=0.7),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.2),
        A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.05, 0.15),
                        hole_width_range=(0.05, 0.15), fill=0, p=0.3),
    ], seed=seed)


def seed_worker_transform(worker_id: int) -> None:
    """DataLoader worker_init_fn: each worker's copy of the transform draws its own reproducible sequence
    (torch seeds each worker from the loader's seeded generator)."""
    import torch

    dataset = torch.utils.data.get_worker_info().dataset
    if getattr(dataset, "transform", None) is not None:
        dataset.transform.set_random_seed(torch.initial_seed() % 2**32)

