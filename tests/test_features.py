import numpy as np
import pytest
import torch

import aimonk.model.features as features
import aimonk.training.loop as training
import aimonk.training.strategies as strategies
from aimonk.config import TrainConfig
from aimonk.data.folder import load_labelled_folder
from aimonk.training.loaders import FeatureDataset
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.model.registry import build_model

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture()
def data(demo_dir):
    return load_labelled_folder(demo_dir, 48, progress=False)


@pytest.fixture()
def head_only(tiny_config):
    return tiny_config.replace(backbone="resnet18", weights="none", freeze="all", augment="none", amp=False,
                               epochs=3, lr=3e-3, tta=True, head_solver="adam")


def test_freeze_all_leaves_only_the_head_trainable():
    model = build_model("resnet18", 3, weights="none", freeze="all")
    assert model.frozen_stages == len(model.stages)
    assert all(not p.requires_grad for p in model.stages.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    with pytest.raises(ValueError, match="'some'"):
        build_model("resnet18", 3, weights="none", freeze="some")


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
    model = build_model(backbone, 2, weights="none", freeze=freeze, image_size=64)
    assert model.frozen_stages == len(model.stages)


def test_a_freeze_beyond_the_backbone_is_refused_with_its_stages():
    with pytest.raises(ValueError, match="between 0 and 5 stages"):
        decide_recipe(TrainConfig(backbone="resnet18", freeze=6))


def test_precomputed_features_train_the_same_model_as_images(data, head_only, monkeypatch):
    fast = training.fit(head_only, data, None, progress=False)
    monkeypatch.setattr(training, "decide_recipe", lambda config: Recipe.WHOLE_NETWORK)
    slow = training.fit(head_only, data, None, progress=False)
    for name, value in fast.model.head.state_dict().items():
        torch.testing.assert_close(value, slow.model.head.state_dict()[name], atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(fast.val_probabilities, slow.val_probabilities, atol=1e-4)
    assert fast.history["iteration_loss"] == pytest.approx(slow.history["iteration_loss"], abs=1e-4)


def test_features_are_computed_once_for_all_folds(data, head_only, monkeypatch):
    from aimonk.training.crossval import cross_validate

    calls = []
    real = features.backbone_features
    monkeypatch.setattr(features, "backbone_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    cv = cross_validate(head_only.replace(epochs=1), data, folds=3, progress=False)
    assert len(calls) == 1
    assert not np.isnan(cv.probabilities).any()


def test_mirror_features_are_those_of_the_flipped_image(data):
    model = build_model("resnet18", 2, weights="none", freeze="all").eval()
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


def test_fine_tuning_starts_from_the_head_trained_alone(data, head_only, monkeypatch):
    config = head_only.replace(freeze=3, augment="none", head_epochs=2, epochs=1)
    phases = []
    real_run = training.run_epochs

    def recording_run(state, strategy, phase_config, *args, **kwargs):
        frozen = [p.requires_grad for p in state.model.stages.parameters()]
        interrupted = real_run(state, strategy, phase_config, *args, **kwargs)
        phases.append((phase_config, type(strategy).__name__, not any(frozen),
                       {k: v.clone() for k, v in state.model.head.state_dict().items()}))
        return interrupted

    started = []
    real_epoch = strategies.train_one_epoch
    monkeypatch.setattr(training, "run_epochs", recording_run)
    monkeypatch.setattr(strategies, "train_one_epoch",
                        lambda model, *a, **k: started.append({n: v.clone() for n, v in model.head.state_dict().items()}
                                                              if hasattr(model, "head") else None)
                        or real_epoch(model, *a, **k))
    result = training.fit(config, data, None, progress=False)
    (probe, probe_kind, all_frozen, head_after_probe), (run, run_kind, _, _) = phases  # the head phase runs first
    assert probe.freeze == "all" and probe.epochs == 2 and probe.lr == config.head_lr and run == config
    assert probe_kind == "HeadOnFeatures" and all_frozen and run_kind == "WholeNetwork"
    assert len(result.history["epochs"]) == 1  # the probe's epochs are not the run's
    fine_tuning_start = started[-1]
    assert all(torch.equal(fine_tuning_start[k], head_after_probe[k]) for k in head_after_probe)
    assert result.model.frozen_stages == 3  # the configured stages learn again after the head phase
