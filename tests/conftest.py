import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from aimonk.config import preset
from aimonk.data.demo import make_demo_dataset
from aimonk.training.loop import Callback

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
    """One tiny epoch of training on the demo data, a real run folder written by aimonk.workflows.train;
    returns (run folder, TrainedModel)."""
    from aimonk.data.folder import load_labelled_folder
    from aimonk.workflows import train

    out = tmp_path_factory.mktemp("run")
    data = load_labelled_folder(demo_dir, tiny_config.image_size, progress=False)
    return out, train(data, tiny_config, out, progress=False)


def model_of(backbone: str, outputs: int, **fields):
    """A model to train, built the one way the package builds one: build_model(TrainConfig(...), outputs)
    (fields: TrainConfig's, e.g. weights, freeze, image_size, dropout; freeze 0, every stage learning, unless
    given)."""
    from aimonk.config import TrainConfig
    from aimonk.model.registry import build_model

    return build_model(TrainConfig(backbone=backbone, **{"freeze": 0, **fields}), outputs)


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


class Interrupt(Callback):
    """A Callback (aimonk.training.loop.Callback, the public seam) that presses Ctrl-C: it raises
    KeyboardInterrupt at the `at`-th call of its hook (`on`: "epoch_started" or "fit_started"), counting only
    epochs of `phase` when given. `calls` records every call of that hook it saw, as (epoch, phase) or rows."""

    def __init__(self, at: int, on: str = "epoch_started", phase: str | None = None):
        self.at, self.on, self.phase, self.calls = at, on, phase, []

    def fit_started(self, rows):
        if self.on == "fit_started":
            self.count(rows)

    def epoch_started(self, epoch, phase):
        if self.on == "epoch_started" and (self.phase is None or phase == self.phase):
            self.count((epoch, phase))

    def count(self, seen):
        self.calls.append(seen)
        if len(self.calls) == self.at:
            raise KeyboardInterrupt


@pytest.fixture(scope="session")
def run(demo_dir, tmp_path_factory):
    """A tiny trained run folder (head-only Lite0, thresholds at 0.5) to evaluate and predict with."""
    from aimonk.cli import main

    out = tmp_path_factory.mktemp("bad_inputs_run")
    assert main(["train", str(demo_dir), "--out", str(out), "--backbone", "efficientnet_lite0",
                 "--threshold-source", "none", "--image-size", "48", "--batch-size", "8"]) == 0
    return out


class CtrlCOnLine(logging.Handler):
    """Ctrl-C as the `aimonk` logger (where every progress line goes: aimonk.progress) shows a line that holds
    `text` for the nth time (nth 0: never; it only records the lines): for what has no callback to hook, e.g. a
    command run through aimonk.cli.main."""

    def __init__(self, text: str, nth: int = 1):
        super().__init__(logging.INFO)
        self.text, self.nth, self.lines = text, nth, []

    def emit(self, record):
        self.lines.append(record.getMessage())
        if sum(self.text in line for line in self.lines) == self.nth and self.text in self.lines[-1]:
            raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_on_line(text: str, nth: int = 1):
    handler = CtrlCOnLine(text, nth)
    logger = logging.getLogger("aimonk")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


_OPENED: list = []  # (path) of every file opened while an `opened` block runs; the audit hook stays for good


def _audit(event, args):
    if event == "open" and _OPENED and isinstance(args[0], (str, bytes, os.PathLike)):
        for paths in _OPENED:
            paths.append(os.fsdecode(args[0]))


@contextlib.contextmanager
def opened():
    """The paths of the files opened inside the block (Python's "open" audit event)."""
    if not getattr(sys, "_aimonk_test_audit", False):
        sys.addaudithook(_audit)
        sys._aimonk_test_audit = True
    paths: list[str] = []
    _OPENED.append(paths)
    try:
        yield paths
    finally:
        _OPENED.remove(paths)


@contextlib.contextmanager
def calls_of(function):
    """The calls of `function` made in the block (in this thread), each as a dict of its arguments as it was
    entered (numpy arrays copied): seen by a profiler (sys.setprofile, as a debugger sees them), nothing patched."""
    code, calls = function.__code__, []

    def observe(frame, event, argument):
        if event == "call" and frame.f_code is code:
            calls.append({name: value.copy() if isinstance(value, np.ndarray) else value
                          for name, value in frame.f_locals.items()})

    previous = sys.getprofile()
    sys.setprofile(observe)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


def opened_under(paths, *folders) -> list[str]:
    """The paths among `paths` (e.g. what `opened` saw) that lie in any of `folders` (or are one of them)."""
    roots = [os.path.realpath(folder) for folder in folders]
    return [path for path in paths if any(os.path.realpath(path) == root or
                                          os.path.realpath(path).startswith(root + os.sep) for root in roots)]


NOTEBOOK_ANSWERS = [["image_0.jpg", "Attr1", 0], ["image_1.jpg", "Attr2", "unknown"], ["image_2.jpg", "Attr3", "skip"]]


@pytest.fixture(scope="session")
def executed_notebooks(demo_dir, tmp_path_factory):
    """The numbered notebooks executed once by papermill on tiny settings, as `aimonk notebooks` runs them (its
    progress shown; notebook 05 given NOTEBOOK_ANSWERS for a copy of the demo folder), for the slow tests that
    need an executed run (the end-to-end checks, the docs build): (the folder of the executed copies, what the
    run wrote to stdout, to stderr, the demo's labels before)."""
    import io
    import shutil

    from aimonk.notebooks import run_notebooks

    out = tmp_path_factory.mktemp("executed_notebooks")
    data = shutil.copytree(demo_dir, out / "data")  # notebook 05 writes its answers into this labels file
    original = (data / "labels.txt").read_text().splitlines()
    parameters = {"data_dir": str(data), "out_dir": str(out), "figures_dir": str(out / "figures"),
                  "epochs": 1, "image_size": 48, "batch_size": 16, "device": "cpu", "samples": 6, "cv_folds": 2,
                  "answers": NOTEBOOK_ANSWERS}
    said, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(errors):
        executed = run_notebooks(parameters, out, Path(__file__).resolve().parents[1] / "notebooks", progress=True)
    return out, executed, said.getvalue(), errors.getvalue(), original
