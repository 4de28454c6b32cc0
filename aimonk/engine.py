"""Device placement and batched inference shared by training, evaluation and prediction."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from tqdm.auto import tqdm


def select_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """float16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def to_model_input(model, images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NHWC batch -> normalised float NCHW on the device (NHWC memory is channels_last already)."""
    images = images.to(device, non_blocking=True).permute(0, 3, 1, 2)
    if not channels_last:
        images = images.contiguous()
    return model.normalize(images)


@torch.no_grad()
def predict_logits(model, images: np.ndarray, device: torch.device, batch_size: int = 64, amp: bool = True,
                   channels_last: bool = True, progress: bool = False) -> torch.Tensor:
    """Logits (N, K) on the CPU for cached uint8 images (N, H, W, 3)."""
    model.eval()
    outputs = [torch.zeros((0, model.head[-1].out_features))]
    for start in tqdm(range(0, len(images), batch_size), desc="predicting", disable=not progress, leave=False):
        batch = torch.from_numpy(images[start:start + batch_size])
        with autocast(device, amp):
            logits = model(to_model_input(model, batch, device, channels_last))
        outputs.append(logits.float().cpu())
    return torch.cat(outputs)


def predict_probabilities(model, images: np.ndarray, device: torch.device, **options) -> np.ndarray:
    """Sigmoid probabilities (N, K) as a numpy array; options as for predict_logits."""
    return torch.sigmoid(predict_logits(model, images, device, **options)).numpy()
