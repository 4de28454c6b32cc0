"""The recipe: how a configuration's model learns, decided once, from the configuration alone.

    whole network   some backbone stages learn, on augmented batches of images
    head by epochs  only the head learns, by epochs, on backbone features computed once
    linear probe    only the head learns, solved exactly as a class-balanced logistic regression

Only the head learns when every stage is frozen (`--freeze all`, or a number of stages equal to the
backbone's) and no augmentation changes an image beyond a mirror; then the features are all the head ever
sees. The recipe is stored in the checkpoint and read by training, evaluation, prediction and the plots.
"""
from __future__ import annotations

from enum import Enum

from aimonk.config import TrainConfig
from aimonk.model.registry import frozen_stages

HEAD_ONLY_AUGMENTATIONS = ("none", "flip")


class Recipe(str, Enum):
    WHOLE_NETWORK = "whole network"
    HEAD_BY_EPOCHS = "head by epochs"
    LINEAR_PROBE = "linear probe"

    @property
    def head_only(self) -> bool:
        """Only the head learns, on backbone features computed once."""
        return self is not Recipe.WHOLE_NETWORK

    @property
    def by_epochs(self) -> bool:
        """It learns over epochs (a loss per step, a curve per epoch); the linear probe is one solve."""
        return self is not Recipe.LINEAR_PROBE


def decide_recipe(config: TrainConfig) -> Recipe:
    """The one place the recipe is decided."""
    frozen, total = frozen_stages(config.backbone, config.freeze)
    if frozen < total or config.augment not in HEAD_ONLY_AUGMENTATIONS:
        return Recipe.WHOLE_NETWORK
    return Recipe.LINEAR_PROBE if config.head_solver == "lbfgs" else Recipe.HEAD_BY_EPOCHS
