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


def cpu_has_fast_bfloat16() -> bool:
    """AVX-512 BF16 or AMX: the CPU computes bfloat16 natively, so autocast to it pays off."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def mixed_precision_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype for `device`, or None for float32.

    CUDA: bfloat16 where supported (no loss scaling needed), else float16. CPU: bfloat16 only where
    the hardware has native bfloat16 units; elsewhere emulating it is slower than float32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bfloat16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool):
    """Mixed-precision autocast where it helps on `device` (see mixed_precision_dtype); else a no-op."""
    dtype = mixed_precision_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def use_channels_last(device: torch.device, setting: bool | None) -> bool:
    """channels_last (NHWC) by default on CUDA (tensor cores want it) and on the CPU, where oneDNN's NHWC
    kernels ran our backbones about 2x faster (benchmarks/speed.py); not on other devices."""
    return device.type in ("cuda", "cpu") if setting is None else setting


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool | None = None) -> torch.nn.Module:
    """Move the model to `device` in the memory layout use_channels_last chooses (or `channels_last`), and tell
    it so: the model permutes its uint8 NHWC input itself and keeps that layout only when channels_last."""
    from .models import classifiers

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
    for start in tqdm(range(0, len(images), batch_size), desc="predicting", disable=not progress, leave=False):
        batch = torch.from_numpy(images[start:start + batch_size]).to(device, non_blocking=True)
        with autocast(device, amp):
            logits = with_mirror_averaged(model, batch, tta)
        outputs.append(logits.cpu())
    return torch.cat(outputs)


def predict_probabilities(model, images: np.ndarray, device: torch.device, **options) -> np.ndarray:
    """Sigmoid probabilities (N, K) as a numpy array; options as for predict_logits."""
    return torch.sigmoid(predict_logits(model, images, device, **options)).numpy()
