"""The decision rule a model is used with: a calibration map, then one threshold per attribute.

It is fitted once, on predictions for images the model did not learn from (scikit-learn's way:
`rule = DecisionRule(strategy, calibration).fit(held_out)` sets `calibration_`, `thresholds_` and `source_`),
stored in the checkpoint, and applied by every route that decides: training's report, `evaluate`, the
Predictor, the ONNX export (which bakes the map into its graph) and the widget.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from aimonk.config import CALIBRATIONS, TrainConfig, parse_strategy
from aimonk.data.labels import short_name
from aimonk.decision.calibration import EPSILON, Calibration, fit_calibration, sigmoid
from aimonk.decision.thresholds import HeldOut, decide, tune_thresholds


@dataclass
class DecisionRule:
    """calibrated probability = calibration_(sigmoid(logit)); present = calibrated probability >= thresholds_."""

    strategy: str = "f1"
    calibration: str = "platt"
    calibration_: Calibration | None = field(default=None, repr=False)
    thresholds_: np.ndarray | None = None
    source_: str = ""

    @classmethod
    def of(cls, config: TrainConfig) -> "DecisionRule":
        """The (unfitted) rule a training configuration asks for: its threshold strategy and calibration."""
        return cls(config.threshold_strategy, config.calibration)

    def fit(self, held_out: HeldOut, attributes=None) -> "DecisionRule":
        """Fit the calibration map on the held-out predictions (none for 'none'), then tune the thresholds on
        the calibrated ones. An attribute whose precision or recall floor gives a threshold that decides every
        known held-out image the same way (a common attribute meets precision:P by calling everything PRESENT)
        is named in source_ and in a warning: such a threshold tells nothing about an image; so is one whose
        held-out labels hold one class only, whose threshold stays 0.5."""
        floor = parse_strategy(self.strategy)[1] is not None
        mapping = fit_calibration(held_out.targets, held_out.probabilities, self.calibration)
        probabilities = mapping(held_out.probabilities) if mapping else held_out.probabilities
        after = f", after {self.calibration} calibration on them" if mapping else ""
        self.calibration_ = mapping
        self.thresholds_ = tune_thresholds(held_out.targets, probabilities, self.strategy)
        self.source_ = f"tuned ({self.strategy}) on {held_out.description}{after}"
        untuned = one_class_only(held_out.targets, attributes)
        if untuned:  # tune_thresholds leaves them at 0.5: said, never passed off as tuned
            note = "left at 0.5 (nothing to tune on) for " + ", ".join(untuned)
            self.source_ += f"; {note}"
            warnings.warn(f"thresholds {note}: label more images of the missing class, or choose "
                          "--threshold-source cv (every image held out once)", UserWarning, stacklevel=2)
        same = floor and one_decision_for_all(held_out.targets, probabilities, self.thresholds_, attributes)
        if same:
            note = (f"{self.strategy} decides every known held-out image the same way for "
                    + ", ".join(f"{name} ({decision})" for name, decision in same))
            self.source_ += f"; {note}"
            warnings.warn(f"{note}: its threshold tells those images apart no better than a constant (try "
                          "--threshold-strategy f1, or another floor)", UserWarning, stacklevel=2)
        return self

    @classmethod
    def untuned(cls, attributes: int, why: str, strategy: str = "f1") -> "DecisionRule":
        """Thresholds 0.5 and the model's own sigmoid, saying why nothing was tuned."""
        return cls(strategy, "none", None, np.full(attributes, 0.5), f"0.5, not tuned ({why})")

    @property
    def thresholds(self) -> list[float]:
        return [float(t) for t in self.thresholds_]

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """The model's sigmoid probabilities mapped by the calibration (what the thresholds were tuned on), float32."""
        return (self.calibration_(probabilities) if self.calibration_ else probabilities).astype(np.float32)

    def decide(self, probabilities: np.ndarray, thresholds=None) -> np.ndarray:
        """present (N, K) for calibrated probabilities, at the stored thresholds or the given ones."""
        return decide(probabilities, self.thresholds if thresholds is None else thresholds)

    def apply(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, decisions) for the model's logits (N, K)."""
        probabilities = self.calibrate(sigmoid(np.asarray(logits, dtype=np.float32)))
        return probabilities, self.decide(probabilities)

    def logit_map(self, attributes: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(scale, bias, bound) such that the calibrated probability is sigmoid(scale * clip(logit, ±bound) + bias):
        the calibration written for a graph that starts from logits (aimonk.serve.export)."""
        bound = math.log((1 - EPSILON) / EPSILON)  # where aimonk.decision.calibration.logit clips
        if self.calibration_ is None:
            return np.ones(attributes), np.zeros(attributes), bound
        return self.calibration_.scale, self.calibration_.bias, bound

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "calibration": self.calibration, "thresholds": self.thresholds,
                "source": self.source_,
                "calibration_map": self.calibration_.to_dict() if self.calibration_ else None}

    @classmethod
    def from_dict(cls, values: dict, attributes: int) -> "DecisionRule":
        """A stored rule, checked: one finite threshold in [0, 1] per attribute, a calibration map of finite
        numbers of the same length (one-line ValueErrors)."""
        thresholds = checked_numbers(values.get("thresholds"), attributes, "thresholds", low=0.0, high=1.0)
        stored = values.get("calibration_map")
        mapping = None
        if stored:
            if stored.get("method") not in CALIBRATIONS:
                raise ValueError(f"its calibration method {stored.get('method')!r} is not one of "
                                 f"{', '.join(CALIBRATIONS)}")
            mapping = Calibration(stored["method"], checked_numbers(stored.get("scale"), attributes, "calibration scales"),
                                  checked_numbers(stored.get("bias"), attributes, "calibration biases"))
        return cls(str(values.get("strategy", "f1")), str(values.get("calibration", "none")), mapping, thresholds,
                   str(values.get("source", "")))


def attribute_names(attributes, count: int) -> list[str]:
    """The attributes' names, or 'attribute 1', 'attribute 2', ... where none are given."""
    return list(attributes) if attributes is not None else [f"attribute {k + 1}" for k in range(count)]


def one_class_only(targets: np.ndarray, attributes=None) -> list[str]:
    """'NAME (no positive among the N known held-out labels)' for each attribute whose known held-out labels
    hold one class or none: its threshold cannot be tuned."""
    names = attribute_names(attributes, targets.shape[1])
    found = []
    for column, name in enumerate(names):
        truth = targets[~np.isnan(targets[:, column]), column]
        if len(truth) == 0 or truth.min() == truth.max():
            lacking = "known label" if len(truth) == 0 else "negative" if truth.min() == 1 else "positive"
            found.append(f"{short_name(name)} (no {lacking} among the {len(truth)} known held-out labels)")
    return found


def one_decision_for_all(targets: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray,
                         attributes=None) -> list[tuple[str, str]]:
    """(attribute, PRESENT or ABSENT) for each attribute whose threshold decides all its known rows alike,
    where those rows hold both classes (with one class only, every threshold does)."""
    names = attribute_names(attributes, targets.shape[1])
    decisions, same = decide(probabilities, thresholds), []
    for column, name in enumerate(names):
        known = ~np.isnan(targets[:, column])
        truth, present = targets[known, column], decisions[known, column]
        if len(truth) and truth.min() != truth.max() and present.min() == present.max():
            same.append((name, "PRESENT" if present[0] else "ABSENT"))
    return same


def checked_numbers(values, count: int, what: str, low: float = -math.inf, high: float = math.inf) -> np.ndarray:
    """`values` as `count` finite floats within [low, high], or a one-line ValueError saying what is wrong."""
    if not isinstance(values, (list, tuple)) or len(values) != count:
        size = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"it stores {size} {what} for {count} attributes")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"its {what} are not all numbers: {list(values)[:5]}")
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)) or array.min() < low or array.max() > high:
        bounds = f" in [{low:g}, {high:g}]" if math.isfinite(low) else ""
        raise ValueError(f"its {what} must be finite{bounds}, not {array.round(4).tolist()}")
    return array
