"""Prediction with a trained checkpoint: probabilities, decisions, and the three report formats."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .calibration import Calibration
from .checkpoint import load_checkpoint, model_from_checkpoint
from .config import TrainConfig
from .dataset import load_image_folder
from .engine import predict_probabilities, select_device, use_channels_last

FORMATS = ("text", "json", "csv")


def parse_thresholds(text: str, count: int) -> list[float]:
    """'0.3' for every attribute, or one comma-separated value per attribute, each in [0, 1]."""
    try:
        values = [float(part) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(f"thresholds must be numbers, got {text!r}") from None
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ValueError(f"expected 1 or {count} thresholds (one per attribute), got {len(values)}")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"thresholds must lie between 0 and 1, got {values}")
    return values


@dataclass
class Predictions:
    names: list[str]  # one per image
    attributes: list[str]
    probabilities: np.ndarray  # (N, K)
    thresholds: list[float]

    @property
    def present(self) -> np.ndarray:
        return self.probabilities >= np.asarray(self.thresholds)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"image": self.names})
        for k, name in enumerate(self.attributes):
            frame[f"{name}_probability"] = np.round(self.probabilities[:, k], 4)
            frame[name] = self.present[:, k].astype(int)
        return frame

    def to_json(self) -> str:
        records = [
            {"image": image, "thresholds": dict(zip(self.attributes, self.thresholds)),
             "attributes": {name: {"probability": round(float(p), 4), "present": bool(flag)}
                            for name, p, flag in zip(self.attributes, probs, flags)},
             "present": [name for name, flag in zip(self.attributes, flags) if flag]}
            for image, probs, flags in zip(self.names, self.probabilities, self.present)
        ]
        return json.dumps(records, indent=2)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        self.to_frame().to_csv(buffer, index=False)
        return buffer.getvalue()

    def to_text(self) -> str:
        return "\n".join(self.report(i) for i in range(len(self.names)))

    def report(self, index: int) -> str:
        """The reference's report: a header, one ✓/✗ line per attribute, the attributes present."""
        lines = ["=" * 60, f"Image: {self.names[index]}",
                 "Thresholds: " + ", ".join(f"{name}={t:.2f}" for name, t in zip(self.attributes, self.thresholds)),
                 "-" * 60]
        width = max(len(name) for name in self.attributes)
        for name, probability, flag in zip(self.attributes, self.probabilities[index], self.present[index]):
            mark, state = ("✓", "PRESENT") if flag else ("✗", "ABSENT ")
            lines.append(f"{mark} {name + ':':<{width + 1}} {state}  (confidence: {probability:.1%})")
        present = [name for name, flag in zip(self.attributes, self.present[index]) if flag]
        lines.append("Attributes present: " + (", ".join(present) if present else "none"))
        return "\n".join(lines) + "\n"

    def format(self, kind: str) -> str:
        if kind not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        return {"text": self.to_text, "json": self.to_json, "csv": self.to_csv}[kind]()


class Predictor:
    """A checkpoint ready to predict: `Predictor.load(path).predict_paths(folder)`."""

    def __init__(self, payload: dict, device: str = "auto"):
        self.payload = payload
        self.config = TrainConfig.from_dict(payload["config"])
        self.attributes: list[str] = payload["attributes"]
        self.thresholds: list[float] = list(payload["thresholds"])
        self.calibration = Calibration.from_dict(payload.get("calibration"))  # None: the model's own sigmoid
        self.image_size: int = payload["image_size"]
        self.device = select_device(device)
        self.channels_last = use_channels_last(self.device, self.config.channels_last)
        self.model = model_from_checkpoint(payload).to(
            self.device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    @classmethod
    def load(cls, path, device: str = "auto") -> "Predictor":
        return cls(load_checkpoint(path), device)

    def thresholds_or_stored(self, thresholds=None) -> list[float]:
        """The given thresholds (a list or an array), or the ones stored in the checkpoint."""
        return list(self.thresholds if thresholds is None else np.asarray(thresholds, dtype=float).tolist())

    def probabilities(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        return self.calibrated(predict_probabilities(self.model, images, self.device, batch_size=64,
                                                     amp=self.config.amp, channels_last=self.channels_last,
                                                     progress=progress, tta=self.config.tta))

    def calibrated(self, probabilities: np.ndarray) -> np.ndarray:
        """The checkpoint's calibration map applied (what its thresholds were tuned on), as float32."""
        return (self.calibration(probabilities) if self.calibration else probabilities).astype(np.float32)

    def data_probabilities(self, data, rows=None, progress: bool = False) -> np.ndarray:
        """Probabilities for rows of a LabelledImages. When only the head was trained, the frozen backbone's
        features are cached on `data` (as training does), so scoring several such models costs one pass."""
        from .features import cached_features, head_logits, head_only_recipe

        rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=int)
        if not hasattr(self.model, "head") or not head_only_recipe(self.config):
            return self.probabilities(data.images[rows], progress)
        features = cached_features(self.model, data, self.config, self.device, progress)
        logits = head_logits(self.model.head, features[:, rows], self.device, self.config.tta)
        return self.calibrated(torch.sigmoid(logits).numpy())

    def predict_array(self, image: np.ndarray, thresholds=None, name: str = "image") -> Predictions:
        """One RGB uint8 image of any size (e.g. from an upload widget)."""
        from PIL import Image

        resized = np.array(Image.fromarray(image).resize((self.image_size,) * 2, Image.BILINEAR))
        return Predictions([name], self.attributes, self.probabilities(resized[None]),
                           self.thresholds_or_stored(thresholds))

    def predict_paths(self, paths, thresholds=None, progress: bool = True) -> Predictions:
        """A file, a folder, or a list of files; unreadable files are skipped with a warning."""
        images, kept = load_image_folder(paths, self.image_size, progress=progress)
        return Predictions([str(p) for p in kept], self.attributes, self.probabilities(images, progress),
                           self.thresholds_or_stored(thresholds))
