"""Any timm model as a backbone (`--backbone timm:NAME`), built without weights (no download): its stages and
normalisation as timm says, every recipe, predict, ONNX export, Grad-CAM, a local weights file, the offline
message and `aimonk backbones`."""
import json

import numpy as np
import pytest
import torch

from aimonk.cli import main
from aimonk.model.registry import WeightsUnavailableError, frozen_stages
from conftest import model_of
from aimonk.serve.explain import grad_cam

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")
SMALL = ["timm:resnet10t", "timm:mobilenetv3_small_050", "timm:vit_tiny_patch16_224"]


def uint8_images(count, size, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("backbone", SMALL)
def test_stages_normalisation_and_features_come_from_timm(backbone):
    name = backbone.removeprefix("timm:")
    reference = timm.create_model(name, pretrained=False)
    model = model_of(backbone, 5, weights="none", image_size=64).eval()
    assert model.stage_names == tuple(info["module"] for info in reference.feature_info)
    assert model.mean.flatten().tolist() == pytest.approx(reference.pretrained_cfg["mean"])
    assert model.std.flatten().tolist() == pytest.approx(reference.pretrained_cfg["std"])
    with torch.no_grad():
        features = model.features(uint8_images(2, 64))
        assert model(uint8_images(2, 64)).shape == (2, 5)
    assert features.shape == (2, model.head[-1].in_features)
    every = {module for modules in model.stage_modules() for module in modules}
    assert every == set(model.stages[0].net.modules())  # each module in exactly one stage
    assert sum(map(len, model.stage_modules())) == len(every)


def test_the_reference_rule_and_stage_freezing_follow_timms_feature_info():
    assert frozen_stages("timm:resnet10t", -1) == (3, 5)  # act1, layer1, layer2: stride 8, as ResNet-34's rule
    assert frozen_stages("timm:vit_tiny_patch16_224", -1) == (0, 12)  # every block is at stride 16
    model = model_of("timm:resnet10t", 2, weights="none", freeze=2, image_size=64).train()
    net = model.stages[0].net
    assert not any(p.requires_grad for p in [*net.conv1.parameters(), *net.layer1.parameters()])
    assert all(p.requires_grad for p in [*net.layer2.parameters(), *net.layer4.parameters()])
    assert not net.bn1.training and not net.maxpool.training and net.layer2.training
    before = net.layer1[0].bn1.running_mean.clone()
    model(uint8_images(4, 64))
    assert torch.equal(before, net.layer1[0].bn1.running_mean)
    with pytest.raises(ValueError, match="between 0 and 5 stages"):
        model_of("timm:resnet10t", 2, weights="none", freeze=6)


def test_timm_and_our_backbones_join_when_they_share_a_normalisation():
    model = model_of("timm:resnet10t+resnet18", 3, weights="none", freeze="all", image_size=64).eval()
    with torch.no_grad():
        assert model.features(uint8_images(2, 64)).shape == (2, 512 + 512)
    with pytest.raises(ValueError, match="share an input normalisation"):
        model_of("timm:resnet10t+efficientnet_lite0", 3, weights="none", image_size=64)


@pytest.mark.parametrize("backbone", ["timm:vit_tiny_patch16_224", "timm:mobilenetv3_small_050+resnet18"])
def test_grad_cam_explains_token_and_joined_models(backbone):
    model = model_of(backbone, 3, weights="none", freeze=-1, image_size=96)
    heatmaps, logits = grad_cam(model, uint8_images(2, 96, seed=1).numpy())
    assert heatmaps.shape == (2, 3, 96, 96) and logits.shape == (2, 3)
    assert np.all(heatmaps.reshape(6, -1).max(axis=1) == pytest.approx(1.0))  # a ViT's class token hides none


def test_a_local_weights_file_loads_through_timms_overlay(tmp_path):
    source = timm.create_model("resnet10t", pretrained=False)  # with its 1000-class classifier, as downloaded
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    model = model_of("timm:resnet10t", 4, weights=str(tmp_path / "resnet10t.pth"), image_size=64)
    loaded = model.stages[0].net.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in source.state_dict().items() if key in loaded)
    assert "fc.weight" not in loaded
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsUnavailableError, match=r"other.pth does not fit timm:resnet10t"):
        model_of("timm:resnet10t", 4, weights=str(tmp_path / "other.pth"), image_size=64)


@pytest.mark.parametrize("contents", ["empty", "prefixed", "one tensor"])
def test_a_weights_file_that_leaves_weights_unloaded_is_refused(tmp_path, contents):
    """timm loads non-strictly once it dropped the classifier: a file that fits no key would load nothing."""
    state = timm.create_model("resnet10t", pretrained=False).state_dict()
    state = {"empty": {}, "prefixed": {f"encoder.{key}": value for key, value in state.items()},
             "one tensor": {"conv1.0.weight": state["conv1.0.weight"]}}[contents]
    torch.save(state, tmp_path / "weights.pth")
    with pytest.raises(WeightsUnavailableError, match=r"weights.pth does not fit timm:resnet10t: \d+ of its tensors "
                                                      r"are not in the file \(.*\)$"):
        model_of("timm:resnet10t", 4, weights=str(tmp_path / "weights.pth"), image_size=64)


def test_families_whose_feature_info_names_no_module_are_one_stage():
    assert frozen_stages("timm:twins_svt_small", -1) == (0, 1)  # its feature info says block.i, its modules blocks.i
    assert frozen_stages("timm:twins_svt_small", "all") == (1, 1)


def test_an_image_size_the_model_cannot_take_is_one_line_before_any_weights():
    with pytest.raises(ValueError, match=r"timm:efficientformer_l1 does not take 160px images \(.*\); it was "
                                         r"pretrained at 224px: try --image-size 224"):
        model_of("timm:efficientformer_l1", 2, weights="imagenet", image_size=160)


def test_synchronised_batch_norm_keeps_timms_fused_activations():
    """PyTorch's converter turns BatchNormAct2d into a plain SyncBatchNorm, which skips the activation."""
    from aimonk.distributed import sync_batchnorm

    net = timm.create_model("mobilenetv3_small_050", pretrained=False).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = net(images)
        converted = sync_batchnorm(net).eval()
        assert "SyncBatchNormAct" in {type(module).__name__ for module in converted.modules()}
        torch.testing.assert_close(converted(images), before)


def offline(monkeypatch, tmp_path):
    """The world of a machine offline that never downloaded the weights, as the run finds it: the hub's and
    torch.hub's caches empty, no proxy, and no connection opens."""
    import socket

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub.get_dir() is $TORCH_HOME/hub
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)

    def unreachable(address, *args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)


def test_offline_imagenet_weights_stop_the_run_in_one_line_before_any_work(demo_dir, tmp_path, monkeypatch,
                                                                          capsys):
    offline(monkeypatch, tmp_path)
    out = tmp_path / "run"
    assert main(["train", str(demo_dir), "--out", str(out), "--backbone", "timm:resnet10t", "--image-size", "64"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert "timm:resnet10t" in line and "cannot be reached" in line and "--weights PATH" in line
    assert "decoding" not in captured.err + captured.out and not (out / "model.pt").exists()
    assert main(["train", str(demo_dir), "--out", str(out), "--backbone", "timm:resnet10tt", "--weights",
                 "none"]) == 2
    assert "unknown timm model 'resnet10tt'" in capsys.readouterr().err


def test_aimonk_backbones_lists_ours_and_timms(capsys):
    assert main(["backbones", "convnext"]) == 0
    names = capsys.readouterr().out.split()
    assert "timm:convnext_tiny.fb_in22k" in names and all(name.startswith("timm:") for name in names)
    assert main(["backbones", "efficientnet_lite*"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert main(["backbones", "timm:convnext_atto*"]) == 0
    assert capsys.readouterr().out.split()[0] == "timm:convnext_atto.d2_in1k"
    assert main(["backbones", "no_such_model_anywhere"]) == 1


def test_train_predict_export_and_explain_a_timm_backbone(demo_dir, tmp_path, capsys):
    """The issue's line: `aimonk train demo --backbone timm:resnet10t --weights none`, then the model served."""
    run = tmp_path / "run"
    assert main(["train", str(demo_dir), "--out", str(run), "--backbone", "timm:resnet10t", "--weights", "none",
                 "--image-size", "64", "--threshold-folds", "2"]) == 0
    assert json.loads((run / "metrics.json").read_text())["metrics"][-1]["attribute"] == "macro"
    capsys.readouterr()
    image = next((demo_dir / "images").glob("*.jpg"))
    assert main(["predict", str(image), "--model", str(run / "model.pt"), "--format", "json"]) == 0
    from_checkpoint = json.loads(capsys.readouterr().out)
    assert main(["export", "--model", str(run / "model.pt"), "--out", str(run / "model.onnx")]) == 0
    assert "differ by at most" in capsys.readouterr().out
    assert main(["predict", str(image), "--model", str(run / "model.onnx"), "--format", "json"]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    [a], [b] = from_checkpoint, from_onnx
    for attribute, value in a["attributes"].items():  # printed to 4 decimals: one rounding step apart at most
        assert b["attributes"][attribute]["probability"] == pytest.approx(value["probability"], abs=1.01e-4)
        assert b["attributes"][attribute]["present"] == value["present"]
    assert main(["explain", str(image), "--model", str(run / "model.pt"), "--out", str(tmp_path / "why")]) == 0
    assert len(list((tmp_path / "why").glob("*.png"))) == 1


def test_fine_tuning_a_timm_backbone_trains_only_its_unfrozen_stages(demo_dir, tmp_path, capsys):
    from aimonk.model.checkpoint import Checkpoint

    source = timm.create_model("mobilenetv3_small_050", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    run = tmp_path / "run"
    assert main(["train", str(demo_dir), "--out", str(run), "--preset", "finetune", "--backbone",
                 "timm:mobilenetv3_small_050", "--weights", str(tmp_path / "weights.pth"), "--freeze", "3",
                 "--epochs", "1", "--image-size", "64", "--val-fraction", "0.2"]) == 0
    assert "was pretrained at 224px (timm's pretrained config); this run trains at 64px" in capsys.readouterr().out
    model = Checkpoint.load(run / "model.pt").network()
    frozen = {name for names in model.stage_members[:3] for name in names}
    start, trained = source.state_dict(), model.stages[0].net.named_parameters()
    same = {name: torch.equal(parameter, start[name]) for name, parameter in trained}
    assert all(unchanged for name, unchanged in same.items() if name.rpartition(".")[0] in frozen)
    assert not all(same.values())  # the stages after them learned
