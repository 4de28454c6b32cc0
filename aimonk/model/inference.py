"""Where the model runs: placing it on a device in its memory layout, and batched inference with the flip
test-time augmentation, shared by training, evaluation and prediction."""
from __future__ import annotations

import numpy as np
import torch
from aimonk.progress import progress_bar
from aimonk.runtime import use_channels_last
from aimonk.model.classifier import classifiers
from aimonk.model.engine import feature_engine, features_and_mirror, in_eval_mode, mirror_averaged, mirrored


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool | None = None) -> torch.nn.Module:
    """Move the model to `device` in the memory layout use_channels_last chooses (or `channels_last`), and tell
    it so: the model permutes its uint8 NHWC input itself and keeps that layout only when channels_last."""
    channels_last = use_channels_last(device, channels_last)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for classifier in classifiers(model):
        classifier.channels_last = channels_last
    return model


def with_mirror_averaged(model, images: torch.Tensor, tta: bool) -> torch.Tensor:
    """model(images), averaged with model(mirrored(images)) when tta (what the exported ONNX graph computes)."""
    return mirror_averaged(model(images).float(), model(mirrored(images)).float() if tta else None)


@torch.no_grad()
def predict_logits(model, images: np.ndarray, device: torch.device, tta: bool = False,
                   keep_graphs: bool = False) -> torch.Tensor:
    """Logits (N, K) on the CPU for cached uint8 images (N, H, W, 3) by a model placed on `device`
    (place_model): each classifier's backbone by its feature_engine (`keep_graphs`: the CPU engine's graphs
    kept in the aimonk cache, for served models), its head by PyTorch, an ensemble's logits averaged; tta
    averages in the mirror image."""
    in_eval_mode(model)
    members = classifiers(model)
    engines = [feature_engine(member, device, images.shape[1], keep_graphs) for member in members]
    step = engines[0].batch_size
    outputs = [torch.zeros((0, model.num_outputs))]
    for start in progress_bar(range(0, len(images), step), desc="predicting", leave=False):
        batch = images[start:start + step]
        logits = sum(_head_logits(member, engine, batch, device, tta) for member, engine in zip(members, engines))
        outputs.append(logits / len(members))
    return torch.cat(outputs)


def _head_logits(classifier, engine, images: np.ndarray, device: torch.device, tta: bool) -> torch.Tensor:
    sides = features_and_mirror(engine, images) if tta else (engine(images),)
    return mirror_averaged(*[classifier.head(torch.from_numpy(side).to(device)).float() for side in sides]).cpu()


def predict_probabilities(model, images: np.ndarray, device: torch.device, **options) -> np.ndarray:
    """Sigmoid probabilities (N, K) as a numpy array; options as for predict_logits."""
    return torch.sigmoid(predict_logits(model, images, device, **options)).numpy()
