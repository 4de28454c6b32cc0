"""Predicting with an exported model (aimonk.serve.export) by onnxruntime alone: no PyTorch is imported here."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aimonk.decision.rule import DecisionRule
from aimonk.serve.onnx_checks import (METADATA_KEY, OnnxFileError, check_graph, onnxruntime_reason,
                                      outside_locations, read_model)
from aimonk.serve.predictions import PredictsImages

__all__ = ["METADATA_KEY", "OnnxPredictor"]


class OnnxPredictor(PredictsImages):
    """An exported model run by onnxruntime: the Predictor's interface for prediction, without PyTorch. The
    graph outputs calibrated probabilities (the calibration map is inside it); its metadata holds the rule's
    thresholds and how they were chosen. A file that is not such a model is refused in one line
    (aimonk.serve.onnx_checks), and so is a graph that answers with anything but probabilities."""

    def __init__(self, path):
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeError("predicting with an .onnx model needs onnxruntime: pip install onnxruntime") from None
        self.path = path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        data, stored = read_model(path)
        self.attributes, self.image_size = list(stored["attributes"]), stored["image_size"]
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # its warnings (coloured, multi-line) are not the user's to read
        model = str(path) if outside_locations(data, path) else data  # bytes: no file but this one is read
        try:
            self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own kinds for graphs it cannot run
            raise OnnxFileError(path, f"onnxruntime cannot load it: {onnxruntime_reason(error)}") from None
        check_graph(self.session, path, self.attributes, self.image_size)
        self.input_name = self.session.get_inputs()[0].name
        try:  # the map is in the graph: the rule here only decides
            self.rule = DecisionRule.from_dict({**stored, "source": str(stored.get("thresholds_source", "")),
                                                "calibration": "none"}, len(self.attributes))
        except ValueError as error:
            raise OnnxFileError(path, str(error)) from None

    def probabilities(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Calibrated probabilities (N, K) for uint8 images (N, size, size, 3), from the graph alone."""
        outputs = [self.checked(self.run(images[start:start + batch_size]))
                   for start in range(0, len(images), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.attributes)), np.float32)

    def run(self, images: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: np.ascontiguousarray(images)})[0]
        except Exception as error:
            raise OnnxFileError(self.path, f"onnxruntime failed to run it: {onnxruntime_reason(error)}") from None

    def checked(self, probabilities: np.ndarray) -> np.ndarray:
        """The graph's answer when it is probabilities: (N, K), finite, within [0, 1]."""
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self.attributes):
            raise OnnxFileError(self.path, f"its graph answered with shape {probabilities.shape}, not (N, "
                                           f"{len(self.attributes)})")
        wrong = ~np.isfinite(probabilities) | (probabilities < 0) | (probabilities > 1)
        if wrong.any():
            row, column = np.argwhere(wrong)[0]
            raise OnnxFileError(self.path, f"its graph answered {probabilities[row, column]!r} for "
                                           f"{self.attributes[column]!r} ({wrong.sum()} such values): not a "
                                           "probability in [0, 1]; it is not a model aimonk exported")
        return probabilities
