"""Why the model says what it says: a Grad-CAM heatmap per attribute (Selvaraju et al., ICCV 2017).

For each attribute, the gradient of its logit with respect to the last feature map of every backbone is
averaged over space to weigh that map's channels; the weighted sum, through a ReLU, is where the evidence
for the attribute lies. With a linear head on average-pooled features (all our models) this is exactly
CAM. Every backbone works: with several backbones joined by '+' and with fold ensembles, each member's map
is computed and the maps are averaged at the image's resolution. (The `grad-cam` package would add a
dependency for these few lines and does not know our concatenated and ensembled models.)
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

from aimonk.model.classifier import ConcatenatedBackbones, EnsembleClassifier
from aimonk.model.timm_backbone import PooledTrunk, TimmTrunk


def feature_map_layers(model) -> list[tuple[torch.nn.Module, callable]]:
    """The modules whose outputs are the last feature maps, one per backbone, per ensemble member, each with how
    its output lies on the image as (N, C, H, W) (timm's models say: a ViT's tokens on its patch grid)."""
    if isinstance(model, EnsembleClassifier):
        return [layer for member in model.members for layer in feature_map_layers(member)]
    last = model.stages[-1]
    layers = list(last.members) if isinstance(last, ConcatenatedBackbones) else [last]
    trunks = [layer.trunk if isinstance(layer, PooledTrunk) else layer for layer in layers]
    return [(trunk.explained_layer(), trunk.spatial) if isinstance(trunk, TimmTrunk) else (trunk, lambda x: x)
            for trunk in trunks]


def grad_cam(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (N, K, H, W) in [0, 1] for uint8 images (N, H, W, 3), and the logits (N, K) they explain."""
    model.eval()
    maps, placed = [], []  # each hooked output, in the order the forward pass made them, and how it lies

    def keeper(as_map):
        def keep(module, inputs, output):
            if not output.requires_grad:  # frozen stages: the map becomes the leaf its gradient is taken at
                output = output.detach().requires_grad_(True)
            maps.append(output)
            placed.append(as_map)
            return output
        return keep

    hooks = [layer.register_forward_hook(keeper(as_map)) for layer, as_map in feature_map_layers(model)]
    device = next(model.parameters()).device
    try:
        with torch.enable_grad():
            logits = model(torch.from_numpy(images).to(device))
            heatmaps = []
            for column in range(logits.shape[1]):
                gradients = torch.autograd.grad(logits[:, column].sum(), maps, retain_graph=True)
                heatmaps.append(sum(_cam(as_map(feature_map), as_map(gradient), images.shape[1:3])
                                    for as_map, feature_map, gradient in zip(placed, maps, gradients)))
    finally:
        for hook in hooks:
            hook.remove()
    heatmaps = torch.stack(heatmaps, dim=1)  # (N, K, H, W)
    peak = heatmaps.flatten(2).amax(-1)[..., None, None]
    heatmaps = torch.where(peak > 0, heatmaps / peak.clamp(min=torch.finfo(peak.dtype).tiny), 0.0)
    return heatmaps.detach().cpu().numpy(), logits.detach().cpu().numpy()


def _cam(feature_map: torch.Tensor, gradient: torch.Tensor, size) -> torch.Tensor:
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # how much each channel matters for the logit
    cam = functional.relu((weights * feature_map).sum(dim=1, keepdim=True)).float()
    return functional.interpolate(cam, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
