"""Backbone features computed once, for the recipes where only the head learns (aimonk.model.recipe).

When every backbone stage is frozen and the augmentation is at most a horizontal flip, the pooled
features of each image and of its mirror image are all the head ever sees. Computing them once and
training the head on them gives the same model as pushing images through the frozen backbone every
epoch, in seconds instead of minutes, which makes epochs, learning rates and cross-validation cheap.
"""
from __future__ import annotations

import numpy as np
import torch
from aimonk.progress import progress_bar

from aimonk.cache import files_key, load_array, release_pages, store_array
from aimonk.model.engine import (engine_batch, engine_name, feature_engine, features_and_mirror, mirror_averaged,
                                 weights_digest)
from aimonk.distributed import Processes

def backbone_features(model, images: np.ndarray, device: torch.device,
                      out: np.ndarray | None = None, keep_graph: bool = True):
    """Pooled features (2, N, F) on the CPU, float32, of a model placed on `device`, by its feature_engine:
    [0] of the images, [1] of their mirror images; written batch by batch into `out` when given (e.g. a disk
    cache entry), else returned as a tensor."""
    engine = feature_engine(model, device, images.shape[1], keep_graph)
    if out is None:
        out = np.zeros((2, len(images), feature_width(model, images.shape[1], device)), np.float32)
    step = engine.batch_size
    for start in progress_bar(range(0, len(images), step), desc="features", leave=False):
        out[0, start:start + step], out[1, start:start + step] = features_and_mirror(engine, images[start:start + step])
        release_pages(images)
    return torch.from_numpy(out)


def cached_features(model, data, config, device, processes: Processes = Processes()) -> torch.Tensor:
    """backbone_features of all of `data`, computed once per backbone, weights, image size and engine: kept
    on `data` for this process and in aimonk.cache's feature entries for later runs. Several processes
    (torchrun) each compute a block of the images and share them; the main process stores them."""
    on_disk = data.images_key is not None and config.weights != "none"  # random weights differ run to run
    engine = engine_name(device)
    key = (config.backbone, str(config.weights), config.image_size, engine)
    if key not in data.feature_cache:
        # keyed by the weights themselves: a file's, or what timm's default tag for a name is in this version
        disk_key = files_key([], "features", data.images_key, config.backbone, weights_digest(model),
                             config.image_size, engine, torch.__version__) if on_disk else None
        cached = load_array("features", disk_key) if on_disk else None
        if cached is None:
            def compute(out: np.ndarray) -> int:
                if processes.distributed:  # whole batches of one process's run, so that the features are its
                    own = processes.batches_block(len(data), engine_batch(device))
                    part = backbone_features(model, data.images[own], device, keep_graph=on_disk)
                    out[:] = processes.gather_rows(part, dim=1).numpy()
                else:
                    backbone_features(model, data.images, device, out=out, keep_graph=on_disk)
                return len(out)

            shape = (2, len(data), feature_width(model, config.image_size, device))
            cached = store_array("features" if on_disk and processes.main else None, disk_key, shape, np.float32,
                                 compute, {"source": str(data.image_dir.resolve()),
                                           "what": f"{config.backbone} features at {config.image_size}px"})
        data.feature_cache[key] = torch.from_numpy(cached[0])  # a cache entry is mapped, not copied
    return data.feature_cache[key]


def feature_width(model, image_size: int, device) -> int:
    """How many pooled features the model's backbone gives an image."""
    return model.head[-1].in_features


def head_logits(head, features: torch.Tensor, device: torch.device, tta: bool) -> torch.Tensor:
    """The head's logits on precomputed features (2, N, F); tta averages in the mirror images."""
    head.eval()
    with torch.no_grad():
        return mirror_averaged(*[head(side.to(device)).float() for side in features[:2 if tta else 1]]).cpu()
