"""Shipping a model: ONNX export with everything inside the graph, and prediction with onnxruntime alone.

The exported graph takes what a deployment has, uint8 RGB images (N, H, W, 3) at the model's image size,
and returns the probabilities the Predictor reports: the permute and normalisation, the flip averaging
(when the model was trained with it) and the calibration map are part of the graph. The attribute names,
thresholds and image size travel in the model's metadata, so `aimonk predict … --model model.onnx` needs
neither PyTorch weights nor the checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from aimonk.decision.rule import DecisionRule
from aimonk.model.engine import onnx_graph
from aimonk.model.inference import with_mirror_averaged
from aimonk.files import atomic_path, json_text, refuse_existing
from aimonk.serve.onnx_predictor import METADATA_KEY


class ExportedModel(nn.Module):
    """uint8 images (N, H, W, 3) -> calibrated probabilities (N, K), as the Predictor computes them."""

    def __init__(self, model: nn.Module, tta: bool, rule: DecisionRule, attributes: int):
        super().__init__()
        self.model, self.tta = model.eval(), tta
        scale, bias, self.limit = rule.logit_map(attributes)
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = with_mirror_averaged(self.model, images, self.tta)
        return torch.sigmoid(self.scale * logits.clamp(-self.limit, self.limit) + self.bias)


def exportable(predictor) -> ExportedModel:
    """The Predictor's model, preprocessing, flip averaging and decision rule's calibration as one module."""
    return ExportedModel(predictor.model.float().cpu(), predictor.config.tta, predictor.rule,
                         len(predictor.attributes))


def export_onnx(predictor, path, overwrite: bool = False) -> Path:
    """Write the predictor as ONNX (dynamic batch size) with its metadata; atomically. An existing file at `path`
    is refused unless overwrite."""
    import onnx

    refuse_existing(path, overwrite)

    example = torch.zeros((1, predictor.image_size, predictor.image_size, 3), dtype=torch.uint8)
    graph = onnx.load_from_string(onnx_graph(exportable(predictor), example, "probabilities"))
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json_text(metadata(predictor), indent=None)
    with atomic_path(path) as temporary:
        onnx.save(graph, str(temporary))
    return Path(path)


def largest_difference(predictor, path, images: int = 4, seed: int = 0) -> float:
    """The largest probability difference between the exported model at `path` and the predictor on a few
    random images: what `aimonk export` reports (a route that answered otherwise would show here)."""
    from aimonk.serve.onnx_predictor import OnnxPredictor

    size = predictor.image_size
    sample = np.random.default_rng(seed).integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    return float(np.abs(OnnxPredictor(path).probabilities(sample) - predictor.probabilities(sample)).max())


def metadata(predictor) -> dict:
    rule = predictor.rule
    return {"attributes": list(predictor.attributes), "thresholds": rule.thresholds, "strategy": rule.strategy,
            "thresholds_source": rule.source_, "image_size": int(predictor.image_size),
            "calibrated": rule.calibration_ is not None, "backbone": predictor.config.backbone}
