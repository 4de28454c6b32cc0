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
    "first_readable_image": "aimonk.data.images",
    "compare_thresholds": "aimonk.evaluation.tables",
    "worst_mistakes": "aimonk.evaluation.tables",
    "mistake_heatmaps": "aimonk.evaluation.folder",
    "top_issue_rows": "aimonk.evaluation.label_issues",
    "PredictionApp": "aimonk.widgets",
    "export_onnx": "aimonk.serve.export",
    "check_outputs": "aimonk.files",
    "largest_difference": "aimonk.serve.export",
}
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name not in API:
        raise AttributeError(f"module 'aimonk' has no attribute {name!r}")
    value = getattr(importlib.import_module(API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
