"""Prediction with a trained checkpoint: probabilities, decisions, and the three report formats."""
from __future__ import annotations

import numpy as np

from aimonk.data.images import resized
from aimonk.model.checkpoint import Checkpoint
from aimonk.model.features import cached_features, head_logits
from aimonk.model.inference import place_model, predict_logits
from aimonk.runtime import select_device
from aimonk.serve.explain import grad_cam
from aimonk.serve.predictions import Predictions, PredictsImages


class Predictor(PredictsImages):
    """A checkpoint ready to predict: `Predictor.load(path).predict_paths(folder)`. Its probabilities are the
    model's, calibrated by the checkpoint's decision rule; its decisions are the rule's."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto", model=None):
        """model: the checkpoint's network already built (e.g. the one just trained), else built from it."""
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.attributes: list[str] = checkpoint.attributes
        self.rule = checkpoint.decision_rule
        self.image_size: int = checkpoint.image_size
        self.device = select_device(device)
        self.model = place_model(model if model is not None else checkpoint.network(), self.device,
                                 self.config.channels_last).eval()

    @classmethod
    def load(cls, path, device: str = "auto") -> "Predictor":
        """The checkpoint in `path` (one-line errors naming it when it is not one) on `device`."""
        checkpoint = Checkpoint.load(path)
        try:
            return cls(checkpoint, device)
        except ValueError as error:  # its weights do not fit its own architecture: a damaged or edited file
            raise ValueError(f"{path}: {error}") from None

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, K) for uint8 images (N, H, W, 3) at the model's size."""
        logits = predict_logits(self.model, images, self.device, tta=self.config.tta,
                                keep_graphs=True)
        return self.rule.apply(logits.numpy())[0]

    def data_probabilities(self, data, rows=None) -> np.ndarray:
        """Probabilities for rows of a LabelledImages. When only the head was trained, the frozen backbone's
        features are cached on `data` (as training does), so scoring several such models costs one pass."""
        rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=int)
        if self.checkpoint.ensemble_size or not self.checkpoint.recipe.head_only:
            return self.probabilities(data.images[rows])
        features = cached_features(self.model, data, self.config, self.device)
        logits = head_logits(self.model.head, features[:, rows], self.device, self.config.tta)
        return self.rule.apply(logits.numpy())[0]

    def explain(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM heatmaps (N, K, H, W) in [0, 1] for uint8 images at the model's size, and the probabilities
        (N, K) this predictor reports for them."""
        heatmaps, _ = grad_cam(self.model, images)
        return heatmaps, self.probabilities(images)

    def model_input(self, image: np.ndarray) -> np.ndarray:
        """One RGB uint8 image of any size, resized to the model's input size as training resized its images."""
        return resized(image, self.image_size)

    def predict_array(self, image: np.ndarray, thresholds=None, name: str = "image") -> Predictions:
        """One RGB uint8 image of any size (e.g. from an upload widget)."""
        return Predictions([name], self.attributes, self.probabilities(self.model_input(image)[None]),
                           self.thresholds_or_stored(thresholds))
