"""Serving a trained model: predictors for checkpoints and exported ONNX graphs, reports, export, explanations."""
