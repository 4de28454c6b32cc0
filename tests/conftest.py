import numpy as np
import pytest

from aimonk.config import preset
from aimonk.data.demo import make_demo_dataset

@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The tests' decoded images and features go to a temporary aimonk cache, never the user's."""
    import os

    os.environ["AIMONK_CACHE"] = str(tmp_path_factory.mktemp("aimonk_cache"))
    yield


TINY = dict(image_size=48, epochs=1, batch_size=16, device="cpu", num_workers=0)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """A small synthetic dataset in the reference format (no header: Attr1..Attr4; 3 listed files missing)."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), count=60, size=48, seed=1, header=False)


@pytest.fixture(scope="session")
def tiny_config():
    return preset("finetune", **TINY)  # trains through the backbone; tests/test_features.py covers head-only


@pytest.fixture(scope="session")
def trained_run(demo_dir, tmp_path_factory, tiny_config):
    """One tiny epoch of training on the demo data; returns (run folder, TrainResult)."""
    from aimonk.data.folder import load_labelled_folder
    from aimonk.training.loop import fit

    out = tmp_path_factory.mktemp("run")
    data = load_labelled_folder(demo_dir, tiny_config.image_size, progress=False)
    return out, fit(tiny_config, data, out, progress=False)


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def interrupt_call(monkeypatch, name: str, call: int, calls: list | None = None):
    """Make the call-th call of aimonk.training.strategies.NAME (what every strategy's epoch calls) raise
    KeyboardInterrupt, as Ctrl-C would, appending to `calls` at each call; returns the real function (to put
    back with monkeypatch.setattr)."""
    import aimonk.training.strategies as training

    real, calls = getattr(training, name), [] if calls is None else calls

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, name, interrupted)
    return real


def interrupt_in_epoch(monkeypatch, epoch: int):
    """Ctrl-C in the epoch-th epoch (aimonk.training.strategies.train_one_epoch); returns the real function."""
    return interrupt_call(monkeypatch, "train_one_epoch", epoch)


@pytest.fixture(scope="session")
def run(demo_dir, tmp_path_factory):
    """A tiny trained run folder (head-only Lite0, thresholds at 0.5) to evaluate and predict with."""
    from aimonk.cli import main

    out = tmp_path_factory.mktemp("bad_inputs_run")
    assert main(["train", str(demo_dir), "--out", str(out), "--backbone", "efficientnet_lite0",
                 "--threshold-source", "none", "--image-size", "48", "--batch-size", "8"]) == 0
    return out
