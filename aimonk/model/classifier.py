"""The classifier every backbone becomes: stages (so that the first ones can be frozen), pooling, and a
Dropout + Linear head; it takes uint8 images (N, H, W, 3) and prepares them itself."""
from __future__ import annotations

import torch
from torch import nn

from aimonk.config import check_frozen_stages


class AttributeClassifier(nn.Module):
    backbone = ""  # its registry name, set by aimonk.model.registry.build_model
    pretrained_size = None  # the input size its pretrained weights were trained at, where the weights say (timm's)
    channels_last = False  # set by aimonk.model.inference.place_model: keep the NHWC pixels' layout for the convolutions

    def __init__(self, stages: list[nn.Module], stage_names, num_features: int, num_outputs: int,
                 dropout: float, mean, std):
        super().__init__()
        self.stages = nn.Sequential(*stages)
        self.stage_names = tuple(stage_names)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_outputs))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.frozen_stages = 0

    @property
    def num_outputs(self) -> int:
        return self.head[-1].out_features

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, H, W, 3) to normalised floats (N, 3, H, W); the permuted view of NHWC memory is
        channels_last already, and is made contiguous only for a model placed in the contiguous layout."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise TypeError(f"the model takes uint8 images (N, H, W, 3), not {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float()
        return ((x if self.channels_last else x.contiguous()) / 255.0 - self.mean) / self.std

    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The last stage's output for uint8 images (N, H, W, 3)."""
        return self.stages(self.prepare(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, F) for uint8 images (N, H, W, 3)."""
        return self.pool(self.feature_maps(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) for uint8 images (N, H, W, 3)."""
        return self.head(self.features(images))

    def stage_modules(self) -> list[list[nn.Module]]:
        """Every module of the backbone, stage by stage (what `freeze` counts)."""
        return [list(stage.modules()) for stage in self.stages]

    def freeze(self, num_stages: int) -> None:
        """Freeze the first `num_stages` stages: no gradients, batch-norm statistics fixed."""
        check_frozen_stages(num_stages, self.stage_names)
        self.frozen_stages = num_stages
        for index, modules in enumerate(self.stage_modules()):
            for module in modules:
                for parameter in module.parameters(recurse=False):
                    parameter.requires_grad_(index >= num_stages)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for modules in self.stage_modules()[: self.frozen_stages]:
            for module in modules:
                module.training = False
        return self


class TimmClassifier(AttributeClassifier):
    """A timm model (aimonk.model.timm_backbone.TimmTrunk) as the backbone: one module, whose stages are
    timm's feature-info modules (`stage_members` names the modules of each), pooled by the model's own head."""

    def __init__(self, trunk: nn.Module, stage_names, stage_members, num_features: int, num_outputs: int,
                 dropout: float, mean, std):
        super().__init__([trunk], stage_names, num_features, num_outputs, dropout, mean, std)
        self.stage_members = tuple(stage_members)

    def stage_modules(self) -> list[list[nn.Module]]:
        named = dict(self.stages[0].net.named_modules())
        return [[named[name] for name in names] for names in self.stage_members]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages[0].pooled(self.feature_maps(images))


class EnsembleClassifier(nn.Module):
    """Averages the logits of several classifiers of one architecture (e.g. the cross-validation folds)."""

    def __init__(self, members: list[AttributeClassifier]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def num_outputs(self) -> int:
        return self.members[0].num_outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(images) for member in self.members]).mean(dim=0)


def classifiers(model: nn.Module) -> list[AttributeClassifier]:
    """The AttributeClassifiers in `model`: itself, or an ensemble's members."""
    return [module for module in model.modules() if isinstance(module, AttributeClassifier)]


class ConcatenatedBackbones(nn.Module):
    """Several backbones side by side as one stage: each one's pooled features, concatenated.

    Its output is (N, sum of features, 1, 1), so the classifier's pooling passes it through. All members
    share one input normalisation, which build_model checks.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.pool(member(x)) for member in self.members], dim=1)
