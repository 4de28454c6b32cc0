"""Checkpoints: weights plus everything needed to use them, written atomically, read safely."""
from __future__ import annotations

from pathlib import Path

import torch

from . import __version__
from .config import TrainConfig
from .files import atomic_path
from .models import AttributeClassifier, EnsembleClassifier, build_model, classifiers

FORMAT = "aimonk-checkpoint/1"


def checkpoint_payload(model: AttributeClassifier, config: TrainConfig, attributes, thresholds, history: dict,
                       **extra) -> dict:
    return {
        "format": FORMAT,
        "version": __version__,
        "config": config.to_dict(),
        "attributes": list(attributes),
        "thresholds": [float(t) for t in thresholds],
        "normalization": input_normalization(model),
        "image_size": config.image_size,
        "history": history,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_checkpoint(payload: dict, path) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return Path(path)


def load_checkpoint(path, format: str = FORMAT, what: str = "aimonk checkpoint") -> dict:
    """The payload of a file saved by save_checkpoint in `format`, read with weights_only (no code runs);
    one-line errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for empty, truncated, foreign or malicious files
        raise ValueError(f"{path} is not a readable {what} ({load_failure(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != format:
        raise ValueError(f"{path} is not an {what} (expected format {format})")
    return payload


def load_failure(error: Exception) -> str:
    """Why torch.load refused a file, in a few words (never its advice to turn weights_only off)."""
    text = str(error)
    if "GLOBAL" in text or "Unsupported global" in text:
        return "it would run code or build Python objects, which is refused"
    if "Weights only load failed" in text or "invalid load key" in text or "magic number" in text:
        return "not a PyTorch file, or a corrupt one"
    if isinstance(error, EOFError) or not text.strip():
        return "the file is empty or truncated"
    return f"{type(error).__name__}: {text.strip().splitlines()[0][:100]}"


def network_from_config(config: TrainConfig, outputs: int, state: dict | None = None) -> AttributeClassifier:
    """The configured architecture without downloading anything; `state` weights loaded if given."""
    model = build_model(config.backbone, outputs, weights="none", dropout=config.dropout, freeze=0,
                        image_size=config.image_size)
    if state is not None:
        model.load_state_dict(state)
    return model


def model_from_checkpoint(payload: dict) -> AttributeClassifier:
    """Rebuild the network (no download: weights come from the checkpoint) and load its weights."""
    config = TrainConfig.from_dict(payload["config"]).replace(image_size=payload["image_size"])
    outputs, members = len(payload["attributes"]), payload.get("ensemble_size")
    model = (EnsembleClassifier([network_from_config(config, outputs) for _ in range(members)]) if members
             else network_from_config(config, outputs))
    model.load_state_dict(payload["state_dict"])
    norm = payload["normalization"]
    for member in classifiers(model):
        member.mean.copy_(torch.tensor(norm["mean"]).view(1, 3, 1, 1))
        member.std.copy_(torch.tensor(norm["std"]).view(1, 3, 1, 1))
    return model.eval()


def input_normalization(model) -> dict:
    """The mean and std the model normalises its pixels with (one for all of an ensemble's members)."""
    first = classifiers(model)[0]
    return {"mean": first.mean.flatten().tolist(), "std": first.std.flatten().tolist()}


def update_checkpoint(path, **fields) -> None:
    """Store new values (thresholds, calibration, ...) in a checkpoint, atomically."""
    payload = load_checkpoint(path)
    payload.update(fields)
    save_checkpoint(payload, path)
