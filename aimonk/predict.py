"""Prediction with a trained checkpoint: probabilities, decisions, and the three report formats."""
from __future__ import annotations

import numpy as np
import torch

from .calibration import Calibration
from .checkpoint import load_checkpoint, model_from_checkpoint
from .config import TrainConfig
from .images import resized
from .engine import place_model, predict_probabilities, select_device
from .predictions import FORMATS, Predictions, PredictsImages, parse_thresholds  # noqa: F401  (the package's prediction API)

class Predictor(PredictsImages):
    """A checkpoint ready to predict: `Predictor.load(path).predict_paths(folder)`."""

    def __init__(self, payload: dict, device: str = "auto"):
        self.payload = payload
        self.config = TrainConfig.from_dict(payload["config"])
        self.attributes: list[str] = payload["attributes"]
        self.thresholds: list[float] = list(payload["thresholds"])
        self.calibration = Calibration.from_dict(payload.get("calibration"))  # None: the model's own sigmoid
        self.image_size: int = payload["image_size"]
        self.device = select_device(device)
        self.model = place_model(model_from_checkpoint(payload), self.device, self.config.channels_last)

    @classmethod
    def load(cls, path, device: str = "auto") -> "Predictor":
        return cls(load_checkpoint(path), device)

    def probabilities(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        return self.calibrated(predict_probabilities(self.model, images, self.device, batch_size=64,
                                                     amp=self.config.amp, progress=progress, tta=self.config.tta))

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

    def explain(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM heatmaps (N, K, H, W) in [0, 1] for uint8 images at the model's size, and the probabilities
        (N, K) this predictor reports for them."""
        from .explain import grad_cam

        heatmaps, _ = grad_cam(self.model, images)
        return heatmaps, self.probabilities(images)

    def model_input(self, image: np.ndarray) -> np.ndarray:
        """One RGB uint8 image of any size, resized to the model's input size as training resized its images."""
        return resized(image, self.image_size)

    def predict_array(self, image: np.ndarray, thresholds=None, name: str = "image") -> Predictions:
        """One RGB uint8 image of any size (e.g. from an upload widget)."""
        return Predictions([name], self.attributes, self.probabilities(self.model_input(image)[None]),
                           self.thresholds_or_stored(thresholds))
