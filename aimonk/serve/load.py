"""One way to load a model for prediction, whatever its file."""
from __future__ import annotations


def load_predictor(path, device: str = "auto"):
    """A Predictor for a checkpoint (.pt), or an OnnxPredictor for an exported .onnx model (onnxruntime alone:
    PyTorch is not imported on that route)."""
    if str(path).lower().endswith(".onnx"):
        from aimonk.serve.onnx_predictor import OnnxPredictor

        return OnnxPredictor(path)
    from aimonk.serve.predictor import Predictor

    return Predictor.load(path, device)
