"""aimonk: multilabel image classification when labels are missing and classes are imbalanced.

    import aimonk
    trained = aimonk.train("data/my_clothes", aimonk.preset("default"), out="runs/r1")
    print(aimonk.load_predictor("runs/r1/model.pt").predict_paths("new_images/").to_text())

The names below are loaded on first use, so that `import aimonk` stays light (an exported ONNX model
predicts without PyTorch).
"""
from __future__ import annotations

import importlib

from aimonk.version import __version__

API = {
    "train": "aimonk.workflows",
    "cross_validate": "aimonk.workflows",
    "evaluate": "aimonk.workflows",
    "load_predictor": "aimonk.serve",
    "TrainConfig": "aimonk.config",
    "preset": "aimonk.config",
    "PRESETS": "aimonk.config",
    "load_labelled_folder": "aimonk.data.folder",
    "TrainingInterrupted": "aimonk.training.loop",
    "Callback": "aimonk.training.loop",
    "label_queue": "aimonk.label_session",
    "LabelSession": "aimonk.label_session",
    "LabelApp": "aimonk.label_app",
    # what the notebooks use besides the above (and aimonk.plots): exploring a folder, looking at mistakes,
    # predicting and exporting
    "locate_data": "aimonk.data.demo",
    "explore_folder": "aimonk.data.eda",
    "common_sizes": "aimonk.data.eda",
    "image_folder": "aimonk.data.eda",
    "list_images": "aimonk.data.images",
    "load_image": "aimonk.data.images",
    "compare_thresholds": "aimonk.evaluation.tables",
    "worst_mistakes": "aimonk.evaluation.tables",
    "mistake_heatmaps": "aimonk.evaluation.folder",
    "top_issue_rows": "aimonk.evaluation.label_issues",
    "PredictionApp": "aimonk.widgets",
    "export_onnx": "aimonk.serve.export",
    "check_outputs": "aimonk.files",
    "largest_difference": "aimonk.serve.export",
}
__all__ = ["__version__", "ensure_installed", *API]


def ensure_installed(installed: bool | None = None, run=None) -> list[str]:
    """A notebook's set-up: when this aimonk is a checkout that is not installed (Colab after `git clone`, with
    the checkout put on sys.path), `pip install -e CHECKOUT[notebooks]` brings what aimonk and its notebooks
    need; an installed aimonk is left as it is. Returns the command run ([] when none). `installed` (default:
    whether Python's metadata knows an aimonk distribution) and `run` (default subprocess.check_call) are there
    for tests. Restart the kernel if pip replaced a package already imported."""
    import importlib.metadata
    import subprocess
    import sys
    from pathlib import Path

    if installed is None:
        try:
            importlib.metadata.distribution("aimonk")
            installed = True
        except importlib.metadata.PackageNotFoundError:
            installed = False
    if installed:
        return []
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise RuntimeError(f"aimonk is not installed and {root} is not a checkout of it: `pip install aimonk[notebooks]`"
                           ", or in Colab `!git clone <the aimonk repository URL>` and `%cd aimonk/notebooks` first")
    command = [sys.executable, "-m", "pip", "install", "-q", "-e", f"{root}[notebooks]"]
    (run or subprocess.check_call)(command)
    importlib.invalidate_caches()  # the packages pip just installed are importable in this kernel
    return command


def __getattr__(name: str):
    if name not in API:
        raise AttributeError(f"module 'aimonk' has no attribute {name!r}")
    value = getattr(importlib.import_module(API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
