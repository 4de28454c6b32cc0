"""Checkpoints: weights plus everything needed to use them, written atomically, read safely."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from . import __version__
from .config import TrainConfig
from .models import AttributeClassifier, EnsembleClassifier, build_model

FORMAT = "aimonk-checkpoint/1"


def checkpoint_payload(model: AttributeClassifier, config: TrainConfig, attributes, thresholds, history: dict,
                       **extra) -> dict:
    return {
        "format": FORMAT,
        "version": __version__,
        "config": config.to_dict(),
        "attributes": list(attributes),
        "thresholds": [float(t) for t in thresholds],
        "normalization": {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()},
        "image_size": config.image_size,
        "history": history,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_checkpoint(payload: dict, path) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an aimonk checkpoint (expected format {FORMAT})")
    return payload


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
    model.mean.copy_(torch.tensor(norm["mean"]).view(1, 3, 1, 1))
    model.std.copy_(torch.tensor(norm["std"]).view(1, 3, 1, 1))
    return model.eval()


def update_thresholds(path, thresholds, how: str) -> None:
    """Store new decision thresholds in a checkpoint, with a note of how they were chosen."""
    payload = load_checkpoint(path)
    payload["thresholds"] = [float(t) for t in thresholds]
    payload["thresholds_source"] = how
    save_checkpoint(payload, path)
