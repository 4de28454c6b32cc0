"""Where and in what precision work runs: the device, seeding, mixed precision, the memory layout."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def select_device(name: str = "auto") -> torch.device:
    """`name` as a torch.device (auto: CUDA, else Apple's MPS, else the CPU); a one-line ValueError naming
    --device when that device is not here, before any work."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available here (use --device cpu, or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: Apple's MPS is not available here (use --device cpu, or auto)")
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




@contextlib.contextmanager
def one_thread():
    """PyTorch on one CPU thread within it, as it was after: for work made of many tiny operations (an L-BFGS
    solve over a few thousand parameters), which every further thread only slows (the default probe on
    fashion972: 1.1 s on one thread, 3.7-8.6 s on two of this 2-core machine's, busy beside other work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
