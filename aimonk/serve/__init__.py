"""Serving a trained model: predictors for checkpoints and exported ONNX graphs, reports, export, explanations;
`load_predictor`, one way to load a model for prediction, whatever its file."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names only: the ONNX route must not import PyTorch
    from aimonk.serve.onnx_predictor import OnnxPredictor
    from aimonk.serve.predictor import Predictor


def load_predictor(path: str | Path, device: str = "auto") -> "Predictor | OnnxPredictor":
    """A Predictor for a checkpoint (.pt), or an OnnxPredictor for an exported .onnx model (onnxruntime alone:
    PyTorch is not imported on that route). Both predict files and folders (`predict_paths`) and arrays."""
    if str(path).lower().endswith(".onnx"):
        from aimonk.serve.onnx_predictor import OnnxPredictor

        return OnnxPredictor(path)
    from aimonk.serve.predictor import Predictor

    return Predictor.load(path, device)
