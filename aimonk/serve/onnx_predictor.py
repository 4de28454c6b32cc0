"""Predicting with an exported model (aimonk.serve.export) by onnxruntime alone: no PyTorch is imported here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aimonk.decision.rule import DecisionRule
from aimonk.serve.predictions import PredictsImages

METADATA_KEY = "aimonk"


class OnnxPredictor(PredictsImages):
    """An exported model run by onnxruntime: the Predictor's interface for prediction, without PyTorch. The
    graph outputs calibrated probabilities (the calibration map is inside it); its metadata holds the rule's
    thresholds and how they were chosen."""

    def __init__(self, path):
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeError("predicting with an .onnx model needs onnxruntime: pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            stored = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY])
            self.attributes, self.image_size = list(stored["attributes"]), int(stored["image_size"])
        except Exception as error:  # onnxruntime raises its own kinds for foreign or corrupt files
            raise ValueError(f"{path} is not an ONNX model exported by aimonk ({type(error).__name__})") from None
        check_metadata_fits_graph(self.session, path, self.attributes, self.image_size)
        try:  # the map is in the graph: the rule here only decides
            self.rule = DecisionRule.from_dict({**stored, "source": stored.get("thresholds_source", ""),
                                                "calibration": "none"}, len(self.attributes))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    def probabilities(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Calibrated probabilities (N, K) for uint8 images (N, size, size, 3), from the graph alone."""
        outputs = [self.session.run(None, {"images": np.ascontiguousarray(images[start:start + batch_size])})[0]
                   for start in range(0, len(images), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.attributes)), np.float32)


def check_metadata_fits_graph(session, path: Path, attributes: list, image_size: int) -> None:
    """The metadata's attributes and image size against the graph's own output and input shapes (an edited
    metadata would otherwise name or size the predictions wrongly)."""
    _, height, width, _ = session.get_inputs()[0].shape
    outputs = session.get_outputs()[0].shape[-1]
    if isinstance(outputs, int) and outputs != len(attributes):
        raise ValueError(f"{path}: its metadata does not match the graph: {len(attributes)} attributes for "
                         f"{outputs} outputs")
    if any(isinstance(side, int) and side != image_size for side in (height, width)):
        raise ValueError(f"{path}: its metadata does not match the graph: image size {image_size} for inputs of "
                         f"{height}x{width}")
