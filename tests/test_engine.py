"""The one place a backbone runs for inference (aimonk.model.engine): onnxruntime on the CPU, float32, its
graph traced once per set of weights and kept in the cache; the answers PyTorch's float32 gives."""
import numpy as np
import pytest
import torch

import aimonk.model.engine as engine
from aimonk.cache import cache_entries
from aimonk.model.classifier import EnsembleClassifier
from aimonk.model.inference import place_model, predict_logits, with_mirror_averaged
from conftest import model_of

CPU = torch.device("cpu")


def resnet18(seed: int = 0, outputs: int = 3):
    torch.manual_seed(seed)
    return place_model(model_of("resnet18", outputs, weights="none", freeze="all", image_size=48), CPU)


@pytest.fixture()
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)


@pytest.fixture()
def traces(monkeypatch):
    """The graphs traced in this test (a trace is what the cache spares), none kept in memory before it."""
    monkeypatch.setattr(engine, "_ENGINES", type(engine._ENGINES)())
    traced = []
    real = engine.onnx_graph
    monkeypatch.setattr(engine, "onnx_graph", lambda *a, **k: traced.append(1) or real(*a, **k))
    return traced


def test_the_cpu_engine_is_onnxruntime_and_gives_pytorchs_float32_answer(images, traces):
    model = resnet18()
    features = engine.feature_engine(model, CPU, 48)
    assert isinstance(features, engine.OnnxRuntimeFeatures) and "float32" in features.name
    with torch.no_grad():
        expected = model.features(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(features(images), expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        logits = with_mirror_averaged(model, torch.from_numpy(images), tta=True)
    torch.testing.assert_close(predict_logits(model, images, CPU, tta=True), logits, atol=1e-4, rtol=1e-4)


def test_the_mirror_flips_arrays_and_tensors_alike_and_averages_the_two_sides():
    images = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    flipped = images[:, :, [2, 1, 0]]
    np.testing.assert_array_equal(engine.mirrored(images), flipped)
    np.testing.assert_array_equal(engine.mirrored(torch.from_numpy(images)).numpy(), flipped)
    assert engine.mirror_averaged(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.0])).tolist() == [1.5, 1.5]
    assert engine.mirror_averaged(torch.tensor([1.0, 3.0])).tolist() == [1.0, 3.0]


def test_a_graph_is_traced_once_per_weights_and_kept_for_later_models(images, traces, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "cache"))
    first = engine.feature_engine(resnet18(seed=1), CPU, 48)(images)
    engine._ENGINES.clear()  # as in a later process
    again = engine.feature_engine(resnet18(seed=1), CPU, 48)(images)  # another model, the same weights
    np.testing.assert_array_equal(first, again)
    assert len(traces) == 1 and [entry.kind for entry in cache_entries()] == ["graphs"]
    engine.feature_engine(resnet18(seed=2), CPU, 48)
    assert len(traces) == 2


def test_changed_weights_get_a_new_graph_and_validation_keeps_none(images, traces, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "cache"))
    model = resnet18()
    before = predict_logits(model, images, CPU)
    with torch.no_grad():
        model.stages[0][0].weight.mul_(1.5)  # what an optimiser step does: the weights change in place
        expected = model(torch.from_numpy(images))
    after = predict_logits(model, images, CPU)
    assert len(traces) == 2 and not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-4)
    assert cache_entries() == []  # predict_logits keeps graphs only for served models (keep_graphs)


def test_an_ensemble_on_one_frozen_backbone_traces_it_once(images, traces):
    members = [resnet18(seed=3) for _ in range(3)]
    for index, member in enumerate(members):
        torch.nn.init.constant_(member.head[-1].bias, float(index))
    ensemble = EnsembleClassifier(members).eval()
    with torch.no_grad():
        expected = ensemble(torch.from_numpy(images))
    torch.testing.assert_close(predict_logits(ensemble, images, CPU), expected, atol=1e-4, rtol=1e-4)
    assert len(traces) == 1


def test_other_devices_run_pytorch_in_float32():
    model = resnet18()
    meta = torch.device("meta")
    features = engine.feature_engine(model, meta, 48)
    assert isinstance(features, engine.TorchFeatures) and features.name == "torch meta float32"
