"""On a CUDA GPU (skipped elsewhere; benchmarks/gpu_check.sh runs them): training with bfloat16 autocast and
channels_last, optionally compiled, and predictions that agree with the CPU's."""
import numpy as np
import pytest
import torch

from aimonk.data.folder import load_labelled_folder
from aimonk.model.inference import place_model, predict_probabilities
from aimonk.runtime import mixed_precision_dtype
from aimonk.model.features import backbone_features
from aimonk.workflows import train
from conftest import model_of
from aimonk.serve.predictor import Predictor

pytestmark = [pytest.mark.cuda, pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning"),
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def data(demo_dir):
    return load_labelled_folder(demo_dir, 48, progress=False)


@pytest.mark.parametrize("compile", [False, True])
def test_training_on_cuda_with_mixed_precision_and_channels_last(data, tiny_config, tmp_path, compile):
    config = tiny_config.replace(device="cuda", epochs=2, compile=compile)
    assert mixed_precision_dtype(torch.device("cuda"), config.amp) in (torch.bfloat16, torch.float16)
    result = train(data, config, tmp_path, progress=False).result
    assert all(np.isfinite(result.history["iteration_loss"]))
    parameter = next(result.model.parameters())
    assert parameter.is_cuda and result.model.channels_last
    on_gpu = Predictor.load(tmp_path / "model.pt", device="cuda").probabilities(data.images[:16])
    on_cpu = Predictor.load(tmp_path / "model.pt", device="cpu").probabilities(data.images[:16])
    np.testing.assert_allclose(on_gpu, on_cpu, atol=0.02)  # float32 both: TF32 convolutions on the GPU


def test_features_on_cuda_match_the_cpu(data):
    model = model_of("efficientnet_lite0", 4, weights="imagenet", freeze="all", image_size=48).eval()
    on_cpu = backbone_features(place_model(model, torch.device("cpu")), data.images[:32], torch.device("cpu"))
    on_gpu = backbone_features(place_model(model, torch.device("cuda")), data.images[:32], torch.device("cuda"))
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=1e-3)


def test_prediction_on_cuda_with_the_mirror_image(data):
    model = place_model(model_of("resnet18", 4, weights="none", image_size=48), torch.device("cuda"))
    probabilities = predict_probabilities(model, data.images[:8], torch.device("cuda"), tta=True)
    assert probabilities.shape == (8, 4) and np.isfinite(probabilities).all()
