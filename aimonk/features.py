"""Backbone features computed once, for runs where only the head learns.

When every backbone stage is frozen and the augmentation is at most a horizontal flip, the pooled
features of each image and of its mirror image are all the head ever sees. Computing them once and
training the head on them gives the same model as pushing images through the frozen backbone every
epoch, in seconds instead of minutes, which makes epochs, learning rates and cross-validation cheap.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .engine import autocast, mirror, to_model_input, use_channels_last

HEAD_ONLY_AUGMENTATIONS = ("none", "flip")


def trains_head_only(model, augment: str) -> bool:
    """True when nothing but the head learns and no augmentation changes the features beyond a mirror."""
    return model.frozen_stages == len(model.stages) and augment in HEAD_ONLY_AUGMENTATIONS


def head_only_recipe(config) -> bool:
    """A configuration whose models differ from the pretrained network only in the head."""
    return config.freeze == "all" and config.augment in HEAD_ONLY_AUGMENTATIONS


@torch.no_grad()
def backbone_features(model, images: np.ndarray, device: torch.device, batch_size: int = 64, amp: bool = True,
                      progress: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Pooled features (2, N, F) on the CPU, float32: [0] of the images, [1] of their mirror images."""
    model.eval()
    plain, mirrored = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
        batch = to_model_input(model, torch.from_numpy(images[start:start + batch_size]), device, channels_last)
        with autocast(device, amp):
            plain.append(model.features(batch).float().cpu())
            mirrored.append(model.features(mirror(batch)).float().cpu())
    return torch.stack([torch.cat(plain), torch.cat(mirrored)])


def cached_features(model, data, config, device, progress: bool = False) -> torch.Tensor:
    """backbone_features of all of `data`, computed once per backbone, weights and image size."""
    key = (config.backbone, str(config.weights), config.image_size, str(device), bool(config.amp))
    if key not in data.feature_cache:
        data.feature_cache[key] = backbone_features(model, data.images, device, config.batch_size * 2, config.amp,
                                                    progress, use_channels_last(device, config.channels_last))
    return data.feature_cache[key]


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


def head_logits(head, features: torch.Tensor, device: torch.device, tta: bool) -> torch.Tensor:
    """The head's logits on precomputed features (2, N, F); tta averages in the mirror images."""
    head.eval()
    with torch.no_grad():
        logits = head(features[0].to(device)).float()
        if tta:
            logits = (logits + head(features[1].to(device)).float()) / 2
    return logits.cpu()
