"""Where the model runs: placing it on a device in its memory layout, and batched inference with the flip
test-time augmentation, shared by training, evaluation and prediction."""
from __future__ import annotations

import numpy as np
import torch
from aimonk.progress import progress_bar
from aimonk.runtime import autocast, use_channels_last
from aimonk.model.classifier import classifiers


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool | None = None) -> torch.nn.Module:
    """Move the model to `device` in the memory layout use_channels_last chooses (or `channels_last`), and tell
    it so: the model permutes its uint8 NHWC input itself and keeps that layout only when channels_last."""
    channels_last = use_channels_last(device, channels_last)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for classifier in classifiers(model):
        classifier.channels_last = channels_last
    return model


def mirror(images: torch.Tensor) -> torch.Tensor:
    """The horizontally flipped uint8 batch (N, H, W, 3): the test-time augmentation, the same everywhere."""
    return images.flip(2)


def with_mirror_averaged(model, images: torch.Tensor, tta: bool) -> torch.Tensor:
    """model(images), averaged with model(mirror(images)) when tta: how every prediction path applies TTA
    (batched inference, validation, and the exported ONNX graph)."""
    outputs = model(images).float()
    return (outputs + model(mirror(images)).float()) / 2 if tta else outputs


@torch.no_grad()
def predict_logits(model, images: np.ndarray, device: torch.device, batch_size: int = 64, amp: bool = True,
                   progress: bool = False, tta: bool = False) -> torch.Tensor:
    """Logits (N, K) on the CPU for cached uint8 images (N, H, W, 3) by a model placed on `device`
    (place_model); tta averages in the mirror image."""
    model.eval()
    outputs = [torch.zeros((0, model.num_outputs))]
    for start in progress_bar(range(0, len(images), batch_size), desc="predicting", disable=not progress, leave=False):
        batch = torch.from_numpy(images[start:start + batch_size]).to(device, non_blocking=True)
        with autocast(device, amp):
            logits = with_mirror_averaged(model, batch, tta)
        outputs.append(logits.cpu())
    return torch.cat(outputs)


def predict_probabilities(model, images: np.ndarray, device: torch.device, **options) -> np.ndarray:
    """Sigmoid probabilities (N, K) as a numpy array; options as for predict_logits."""
    return torch.sigmoid(predict_logits(model, images, device, **options)).numpy()
