import numpy as np
import pytest
import torch

import aimonk.model.features as features
from aimonk.config import TrainConfig
from aimonk.data.folder import load_labelled_folder
from aimonk.training.loaders import FeatureDataset
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.model.registry import build_model
from aimonk.runtime import seed_everything
from aimonk.training.loop import Callback, fit
from conftest import calls_of, model_of

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture()
def data(demo_dir):
    return load_labelled_folder(demo_dir, 48, progress=False)


@pytest.fixture()
def head_only(tiny_config):
    return tiny_config.replace(backbone="resnet18", weights="none", freeze="all", augment="none", amp=False,
                               epochs=3, lr=3e-3, tta=True, head_solver="adam")


def test_freeze_all_leaves_only_the_head_trainable():
    model = model_of("resnet18", 3, weights="none", freeze="all")
    assert model.frozen_stages == len(model.stages)
    assert all(not p.requires_grad for p in model.stages.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    with pytest.raises(ValueError, match="'some'"):
        model_of("resnet18", 3, weights="none", freeze="some")


def is_head_only(**fields) -> bool:
    return decide_recipe(TrainConfig(**fields)).head_only


def test_head_only_only_when_augmentation_cannot_change_features():
    assert is_head_only(backbone="resnet18", freeze="all", augment="none")
    assert is_head_only(backbone="resnet18", freeze="all", augment="flip")
    assert not is_head_only(backbone="resnet18", freeze="all", augment="strong")
    assert not is_head_only(backbone="resnet18", freeze=4, augment="none")


@pytest.mark.parametrize("backbone, freeze", [("resnet18", 5), ("efficientnet_lite0", 9),
                                              ("efficientnet_lite0+efficientnet_lite1", -1),
                                              ("efficientnet_lite0+efficientnet_lite1", 2)])
def test_freezing_every_stage_by_number_is_the_recipe_of_freeze_all(backbone, freeze):
    """One predicate decides: a count equal to the backbone's stages (or -1 on joined backbones) is
    --freeze all, for the model that is built and for the recipe that trains it."""
    config = TrainConfig(backbone=backbone, freeze=freeze, augment="flip", weights="none")
    assert decide_recipe(config) is decide_recipe(config.replace(freeze="all")) is Recipe.LINEAR_PROBE
    model = model_of(backbone, 2, weights="none", freeze=freeze, image_size=64)
    assert model.frozen_stages == len(model.stages)


def test_a_freeze_beyond_the_backbone_is_refused_with_its_stages():
    with pytest.raises(ValueError, match="between 0 and 5 stages"):
        decide_recipe(TrainConfig(backbone="resnet18", freeze=6))


def seeded_model(config, data):
    """The model fit() would build for `config` (built right after seeding the same way)."""
    seed_everything(config.seed)
    return build_model(config, data.attributes)


def test_precomputed_features_train_the_same_model_as_images(data, head_only):
    fast = fit(head_only, data, model=seeded_model(head_only, data))
    # freeze=4 of resnet18's 5 stages is a recipe that learns through the images; given a model whose every
    # stage is frozen, it trains the same head on the same (unchanging) backbone, only batch by batch of images
    slow = fit(head_only.replace(freeze=4), data, model=seeded_model(head_only, data))
    assert fast.recipe is Recipe.HEAD_BY_EPOCHS and slow.recipe is Recipe.WHOLE_NETWORK
    for name, value in fast.model.head.state_dict().items():
        torch.testing.assert_close(value, slow.model.head.state_dict()[name], atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(fast.val_probabilities, slow.val_probabilities, atol=1e-4)
    assert fast.history["iteration_loss"] == pytest.approx(slow.history["iteration_loss"], abs=1e-4)


def test_features_are_computed_once_for_all_folds(data, head_only):
    from aimonk.training.crossval import run_folds

    with calls_of(features.backbone_features) as calls:
        cv = run_folds(head_only.replace(epochs=1), data, folds=3)
    assert len(calls) == 1
    assert not np.isnan(cv.probabilities).any()


def test_mirror_features_are_those_of_the_flipped_image(data):
    model = model_of("resnet18", 2, weights="none", freeze="all").eval()
    images = data.images[:4]
    both = features.backbone_features(model, images, torch.device("cpu"))
    mirrored = features.backbone_features(model, images[:, :, ::-1].copy(), torch.device("cpu"))
    torch.testing.assert_close(both[1], mirrored[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(both[0], both[1])


def test_flip_draws_both_sides():
    feats = torch.stack([torch.zeros(5, 2), torch.ones(5, 2)])
    values = np.zeros((5, 1), np.float32)
    flipping = FeatureDataset(feats, values, flip=True, seed=0)
    assert {float(flipping[i % 5][0][0]) for i in range(40)} == {0.0, 1.0}
    assert {float(FeatureDataset(feats, values, flip=False)[i][0][0]) for i in range(5)} == {0.0}


class Watch(Callback):
    """At the start of every epoch: its phase, the model's head, and whether any backbone stage learns."""

    def __init__(self, model):
        self.model, self.epochs = model, []

    def epoch_started(self, epoch, phase):
        self.epochs.append((epoch, phase, {k: v.clone() for k, v in self.model.head.state_dict().items()},
                            any(p.requires_grad for p in self.model.stages.parameters())))


def test_fine_tuning_starts_from_the_head_trained_alone(data, head_only):
    config = head_only.replace(freeze=3, augment="none", head_epochs=2, epochs=1)
    model = seeded_model(config, data)
    untrained = {k: v.clone() for k, v in model.head.state_dict().items()}
    watch = Watch(model)
    result = fit(config, data, model=model, callbacks=[watch])
    assert [(epoch, phase) for epoch, phase, _, _ in watch.epochs] == [(1, "head"), (2, "head"), (1, "train")]
    assert not any(learns for _, phase, _, learns in watch.epochs if phase == "head")  # every stage frozen then
    assert watch.epochs[-1][3] and result.model.frozen_stages == 3  # the configured stages learn again after
    assert len(result.history["epochs"]) == 1  # the head's epochs are not the run's

    # the head alone, trained by itself as --head-epochs says: every stage frozen, head_epochs at head_lr
    alone = fit(config.replace(freeze="all", augment="flip", epochs=2, lr=config.head_lr, head_epochs=0,
                               head_lr_multiplier=1.0, warmup_epochs=0.0, keep="last", ema=0.0),
                data, (result.train_rows, result.val_rows), model=seeded_model(config, data))
    fine_tuning_start = watch.epochs[-1][2]
    assert not all(torch.equal(fine_tuning_start[k], untrained[k]) for k in untrained)
    for name, value in alone.model.head.state_dict().items():
        torch.testing.assert_close(fine_tuning_start[name], value, atol=1e-5, rtol=1e-4)
