"""Predictions as a user reads them (text, JSON, CSV) and threshold overrides; no PyTorch needed here, so an
exported ONNX model predicts with onnxruntime alone."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aimonk.data.images import load_image_folder
from aimonk.data.labels import printable, short_name
from aimonk.decision.rule import DecisionRule
from aimonk.decision.thresholds import decide
from aimonk.files import csv_text, json_text, refuse_existing, write_text
from aimonk.progress import progress_shown

FORMATS = ("text", "json", "csv")


def parse_thresholds(text: str, count: int) -> list[float]:
    """'0.3' for every attribute, or one comma-separated value per attribute, each in [0, 1]."""
    try:
        values = [float(part) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(f"thresholds must be numbers, got {text!r}") from None
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ValueError(f"expected 1 or {count} thresholds (one per attribute), got {len(values)}")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"thresholds must lie between 0 and 1, got {values}")
    return values


@dataclass
class Predictions:
    names: list[str]  # one per image
    attributes: list[str]
    probabilities: np.ndarray  # (N, K)
    thresholds: list[float]

    @property
    def present(self) -> np.ndarray:
        return decide(self.probabilities, self.thresholds)

    def to_frame(self) -> pd.DataFrame:
        columns = {"image": self.names}  # built whole: a column added at a time fragments a wide frame
        for k, name in enumerate(self.attributes):
            columns[f"{name}_probability"] = np.round(self.probabilities[:, k], 4)
            columns[name] = self.present[:, k].astype(int)
        return pd.DataFrame(columns)

    def to_json(self) -> str:
        records = [
            {"image": image, "thresholds": dict(zip(self.attributes, self.thresholds)),
             "attributes": {name: {"probability": round(float(p), 4),
                                   "present": bool(flag)}
                            for name, p, flag in zip(self.attributes, probs, flags)},
             "present": [name for name, flag in zip(self.attributes, flags) if flag]}
            for image, probs, flags in zip(self.names, self.probabilities, self.present)
        ]
        return json_text(records) + "\n"  # a NaN probability or threshold as null

    def to_csv(self) -> str:
        return csv_text(self.to_frame(), index=False)

    def save_csv(self, path, overwrite: bool = False) -> Path:
        """The CSV (as `aimonk predict --format csv` prints it) written atomically to `path`; an existing file is
        refused unless overwrite."""
        return write_text(refuse_existing(path, overwrite), self.to_csv())

    def to_text(self) -> str:
        return "\n".join(self.report(i) for i in range(len(self.names)))

    def report(self, index: int) -> str:
        """The reference's report: a header, one ✓/✗ line per attribute, the attributes present. Its confidence
        is the (calibrated) probability of the answer given: P(present) on a PRESENT line, 1 - P(present) on an
        ABSENT one. Names are printed with control and bidi characters escaped (a file name on disk may hold
        them), attribute names cut to aimonk.data.labels.SHORT characters."""
        names = [short_name(name) for name in self.attributes]
        lines = ["=" * 60, f"Image: {printable(self.names[index])}",
                 "Thresholds: " + ", ".join(f"{name}={t:.2f}" for name, t in zip(names, self.thresholds)),
                 "-" * 60]
        width = max(len(name) for name in names)
        for name, probability, flag in zip(names, self.probabilities[index], self.present[index]):
            mark, state, confidence = ("✓", "PRESENT", probability) if flag else ("✗", "ABSENT ", 1 - probability)
            lines.append(f"{mark} {name + ':':<{width + 1}} {state}  (confidence: {confidence:.1%})")
        present = [name for name, flag in zip(names, self.present[index]) if flag]
        lines.append("Attributes present: " + (", ".join(present) if present else "none"))
        return "\n".join(lines) + "\n"

    def format(self, kind: str) -> str:
        if kind not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        return {"text": self.to_text, "json": self.to_json, "csv": self.to_csv}[kind]()


class PredictsImages:
    """What every predictor (a checkpoint, an exported ONNX model) shares on top of its own
    probabilities(images): the stored decision rule, threshold overrides, and files and folders to
    Predictions."""

    attributes: list[str]
    rule: DecisionRule
    image_size: int

    @property
    def thresholds(self) -> list[float]:
        """The stored thresholds (the decision rule's)."""
        return self.rule.thresholds

    def thresholds_or_stored(self, thresholds=None) -> list[float]:
        """The given thresholds (a list or an array), or the stored ones."""
        return list(self.thresholds if thresholds is None else np.asarray(thresholds, dtype=float).tolist())

    def predict_paths(self, paths, thresholds=None, progress: bool | None = True) -> Predictions:
        """A file, a folder, or a list of files; unreadable files are skipped with a warning."""
        with progress_shown(progress):
            images, kept = load_image_folder(paths, self.image_size)
            probabilities = self.probabilities(images)
        return Predictions([str(p) for p in kept], self.attributes, probabilities,
                           self.thresholds_or_stored(thresholds))
