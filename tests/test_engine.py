"""The one place a backbone runs for inference (aimonk.model.engine): onnxruntime on the CPU, float32, its
graph traced once per set of weights and kept in the cache; the answers PyTorch's float32 gives."""
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import aimonk.model.engine as engine
from aimonk.cache import cache_entries
from aimonk.model.classifier import EnsembleClassifier
from aimonk.model.inference import place_model, predict_logits, with_mirror_averaged
from conftest import calls_of, model_of

CPU = torch.device("cpu")


def resnet18(seed: int = 0, outputs: int = 3):
    torch.manual_seed(seed)
    return place_model(model_of("resnet18", outputs, weights="none", freeze="all", image_size=48), CPU)


@pytest.fixture()
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)


@pytest.fixture()
def seed(request):
    """A seed of this test's own: weights no other test builds, so that no engine for them is in memory before
    it (a trace is what the memory and the cache spare)."""
    return zlib.crc32(request.node.nodeid.encode())


def traces():
    """The graphs traced in the block: the calls of onnx_graph, seen by a profiler."""
    return calls_of(engine.onnx_graph)


LATER_PROCESS = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import aimonk.model.engine as engine
from test_engine import CPU, resnet18, traces
images = np.load(sys.argv[2])
with traces() as traced:
    features = engine.feature_engine(resnet18(seed=int(sys.argv[3])), CPU, 48)(images)
np.save(sys.argv[4], features)
print(len(traced))
"""


def test_the_cpu_engine_is_onnxruntime_and_gives_pytorchs_float32_answer(images):
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


@pytest.mark.slow
def test_a_graph_is_traced_once_per_weights_and_kept_for_later_models(images, seed, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "cache"))
    with traces() as traced:
        first = engine.feature_engine(resnet18(seed), CPU, 48)(images)
        same = engine.feature_engine(resnet18(seed), CPU, 48)(images)  # another model, the same weights
    np.testing.assert_array_equal(first, same)
    assert len(traced) == 1 and [entry.kind for entry in cache_entries()] == ["graphs"]
    np.save(tmp_path / "images.npy", images)
    later = subprocess.run([sys.executable, "-c", LATER_PROCESS, str(Path(__file__).parent),
                            str(tmp_path / "images.npy"), str(seed), str(tmp_path / "later.npy")],
                           capture_output=True, text=True, cwd=Path(__file__).parent.parent)  # no engine in memory
    assert later.returncode == 0, later.stderr[-3000:]
    assert later.stdout.split()[-1] == "0"  # it traced nothing: the cache's graph served it
    np.testing.assert_array_equal(np.load(tmp_path / "later.npy"), first)
    with traces() as traced:
        engine.feature_engine(resnet18(seed + 1), CPU, 48)
    assert len(traced) == 1 and [entry.kind for entry in cache_entries()] == ["graphs", "graphs"]


def test_changed_weights_get_a_new_graph_and_validation_keeps_none(images, seed, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "cache"))
    model = resnet18(seed)
    with traces() as traced:
        before = predict_logits(model, images, CPU)
        with torch.no_grad():
            model.stages[0][0].weight.mul_(1.5)  # what an optimiser step does: the weights change in place
            expected = model(torch.from_numpy(images))
        after = predict_logits(model, images, CPU)
    assert len(traced) == 2 and not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-4)
    assert cache_entries() == []  # predict_logits keeps graphs only for served models (keep_graphs)


def test_an_ensemble_on_one_frozen_backbone_traces_it_once(images, seed):
    members = [resnet18(seed) for _ in range(3)]
    for index, member in enumerate(members):
        torch.nn.init.constant_(member.head[-1].bias, float(index))
    ensemble = EnsembleClassifier(members).eval()
    with torch.no_grad():
        expected = ensemble(torch.from_numpy(images))
    with traces() as traced:
        logits = predict_logits(ensemble, images, CPU)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert len(traced) == 1


def test_other_devices_run_pytorch_in_float32():
    model = resnet18()
    meta = torch.device("meta")
    features = engine.feature_engine(model, meta, 48)
    assert isinstance(features, engine.TorchFeatures) and features.name == "torch meta float32"
