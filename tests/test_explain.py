"""Grad-CAM heatmaps for every kind of model, and `aimonk explain`."""
import numpy as np
import pytest
import torch
from torch.nn import functional

from aimonk.cli import main
from aimonk.serve.explain import feature_map_layers, grad_cam
from aimonk.model.classifier import EnsembleClassifier
from conftest import model_of

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)


def test_with_a_linear_head_on_pooled_features_it_is_class_activation_mapping():
    torch.manual_seed(0)
    model = model_of("resnet18", 3, weights="none", image_size=64).eval()
    heatmaps, logits = grad_cam(model, IMAGES)
    with torch.no_grad():
        features = model.feature_maps(torch.from_numpy(IMAGES))  # (2, 512, 2, 2)
        weights = model.head[-1].weight  # CAM: the head's weights on the channels
        cam = functional.relu(torch.einsum("kc,nchw->nkhw", weights, features))
        cam = functional.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)
        cam = cam / cam.flatten(2).amax(-1)[..., None, None]
        np.testing.assert_allclose(logits, model(torch.from_numpy(IMAGES)), atol=1e-5)
    np.testing.assert_allclose(heatmaps, cam.numpy(), atol=1e-4)


@pytest.mark.parametrize("kind", ["concatenated", "ensemble"])
def test_every_member_contributes(kind):
    torch.manual_seed(0)
    if kind == "concatenated":
        model = model_of("efficientnet_lite0+efficientnet_lite1", 4, weights="none", freeze="all", image_size=64)
    else:
        model = EnsembleClassifier([model_of("resnet18", 4, weights="none", image_size=64) for _ in range(2)])
    assert len(feature_map_layers(model)) == 2
    heatmaps, _ = grad_cam(model.eval(), IMAGES)
    assert heatmaps.shape == (2, 4, 64, 64) and heatmaps.min() >= 0 and np.allclose(heatmaps.max(axis=(2, 3)), 1)


def test_explain_cli_writes_one_figure_per_image_and_keeps_earlier_ones(trained_run, demo_dir, tmp_path, capsys):
    images = sorted((demo_dir / "images").glob("*.jpg"))[:3]
    folder = tmp_path / "three"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    model = str(trained_run[0] / "model.pt")
    assert main(["explain", str(folder), "--model", model, "--out", str(tmp_path / "why"), "--device", "cpu"]) == 0
    written = sorted(p.name for p in (tmp_path / "why").iterdir())
    assert written == sorted(f"{image.stem}_explained.png" for image in images)
    assert all((tmp_path / "why" / name).read_bytes().startswith(b"\x89PNG") for name in written)
    assert main(["explain", str(folder), "--model", model, "--out", str(tmp_path / "why")]) == 2
    assert "already holds" in capsys.readouterr().err


def test_explanation_names_never_collide():
    from aimonk.cli.commands import explanation_names

    names = explanation_names(["x/a.jpg", "x/a.png", "x/a_2.png", "y/a.jpg"])
    assert len(set(names)) == 4 and names[0] == "a_explained.png" and "a_2_explained.png" in names
