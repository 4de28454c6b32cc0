"""The checkpoint: one typed record of a trained model and everything needed to use it, written atomically by
`Checkpoint.save` (the one writer of model.pt), read safely (weights_only: no code runs) by `Checkpoint.load`.

During training the run log saves the kept epoch with no decision rule yet (`rule is None`); the finished run
saves it once more, with its rule. Files of the earlier format (aimonk-checkpoint/1) load as well.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aimonk.config import TrainConfig
from aimonk.decision.rule import DecisionRule
from aimonk.decision.thresholds import HeldOut
from aimonk.files import atomic_path
from aimonk.model.classifier import EnsembleClassifier, classifiers
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.model.registry import build_model
from aimonk.model.torchfile import load_torch_file
from aimonk.version import __version__

FORMAT = "aimonk-checkpoint/2"
EARLIER_FORMAT = "aimonk-checkpoint/1"
# what the earlier format stored as the thresholds' source of a file saved before its rule was fitted
EARLIER_UNTUNED = "0.5, not tuned: the run ended before its thresholds were tuned"
NOT_TUNED_YET = "the run ended before its thresholds were tuned"


@dataclass
class OutOfFold:
    """The out-of-fold predictions a model trained on every image keeps, so that `aimonk evaluate` on its own
    folder scores images the fold models did not learn from (aimonk.evaluation)."""

    names: list[str]
    probabilities: np.ndarray  # (N, K), uncalibrated
    folds: np.ndarray  # (N,)
    description: str

    def to_dict(self) -> dict:
        return {"names": list(self.names), "probabilities": torch.from_numpy(self.probabilities.astype(np.float32)),
                "folds": torch.from_numpy(np.asarray(self.folds, dtype=np.int64)), "description": self.description}

    @classmethod
    def of(cls, held_out: HeldOut) -> "OutOfFold":
        """What a checkpoint keeps of out-of-fold predictions (their labels are the folder's)."""
        return cls(list(held_out.names), held_out.probabilities, held_out.folds, held_out.description)

    @classmethod
    def from_dict(cls, values: dict | None) -> "OutOfFold | None":
        if not values:
            return None
        return cls(list(values["names"]), values["probabilities"].numpy(), values["folds"].numpy(),
                   str(values.get("description", "")))


@dataclass
class Provenance:
    """Where the weights come from: the version that wrote them, the epoch kept, the final model of a
    cross-validation (retrain or ensemble), the images trained on and their majority classes."""

    version: str = __version__
    epoch: int | None = None
    final_model: str | None = None
    split: dict = field(default_factory=dict)  # train, val (file names), label_file, train_digests
    majority: list[int] | None = None


@dataclass
class Checkpoint:
    config: TrainConfig  # its image_size is the model's input size
    attributes: list[str]
    state_dict: dict
    normalization: dict  # {"mean": [3], "std": [3]} the model normalises its pixels with
    recipe: Recipe
    history: dict
    rule: DecisionRule | None = None  # None: saved during training, before the rule was fitted
    provenance: Provenance = field(default_factory=Provenance)
    out_of_fold: OutOfFold | None = None
    ensemble_size: int | None = None  # the members of a fold ensemble

    @classmethod
    def of_model(cls, model: torch.nn.Module, config: TrainConfig, attributes, history: dict, recipe: Recipe,
                 **fields) -> "Checkpoint":
        """A checkpoint of `model` (an AttributeClassifier or an ensemble of them) trained by `recipe`, its weights
        copied to the CPU."""
        first = classifiers(model)[0]
        members = len(model.members) if isinstance(model, EnsembleClassifier) else None
        return cls(config, list(attributes), {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
                   {"mean": first.mean.flatten().tolist(), "std": first.std.flatten().tolist()},
                   recipe, history, ensemble_size=members, **fields)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def decision_rule(self) -> DecisionRule:
        """The rule to predict with: the stored one, or thresholds 0.5 saying none was fitted yet."""
        return self.rule or DecisionRule.untuned(len(self.attributes), NOT_TUNED_YET, self.config.threshold_strategy)

    def with_rule(self, rule: DecisionRule, out_of_fold: OutOfFold | None = None) -> "Checkpoint":
        return dataclasses.replace(self, rule=rule, out_of_fold=out_of_fold)

    def network(self) -> torch.nn.Module:
        """The network with the checkpoint's weights (nothing downloaded), in eval mode."""
        return build_model(self.config, self.attributes, self.state_dict, normalization=self.normalization,
                           members=self.ensemble_size)

    def save(self, path) -> Path:
        """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
        with atomic_path(path) as temporary:
            torch.save(self.to_payload(), temporary)
        return Path(path)

    def to_payload(self) -> dict:
        return {"format": FORMAT, "config": self.config.to_dict(), "attributes": self.attributes,
                "state_dict": self.state_dict, "normalization": self.normalization, "recipe": self.recipe.value,
                "history": self.history, "decision_rule": self.rule.to_dict() if self.rule else None,
                "provenance": dataclasses.asdict(self.provenance),
                "out_of_fold": self.out_of_fold.to_dict() if self.out_of_fold else None,
                "ensemble_size": self.ensemble_size}

    @classmethod
    def load(cls, path) -> "Checkpoint":
        """The checkpoint in `path`; one-line errors naming the file for anything else."""
        payload = read_torch_file(path, (FORMAT, EARLIER_FORMAT), "aimonk checkpoint")
        try:
            return cls.from_payload(payload)
        except (KeyError, TypeError, AttributeError) as error:
            why = f"it has no {error}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
            raise ValueError(f"{path} is not a complete aimonk checkpoint ({why})") from None
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def from_payload(cls, payload: dict) -> "Checkpoint":
        if payload["format"] == EARLIER_FORMAT:
            payload = from_earlier_format(payload)
        config = TrainConfig.from_dict(payload["config"])
        attributes = [str(name) for name in payload["attributes"]]
        rule = payload["decision_rule"]
        return cls(config, attributes, payload["state_dict"], payload["normalization"], Recipe(payload["recipe"]),
                   payload["history"], DecisionRule.from_dict(rule, len(attributes)) if rule else None,
                   Provenance(**payload["provenance"]), OutOfFold.from_dict(payload["out_of_fold"]),
                   payload["ensemble_size"])


def from_earlier_format(payload: dict) -> dict:
    """An aimonk-checkpoint/1 payload in today's keys (the same model, rule and provenance)."""
    config = TrainConfig.from_dict({**payload["config"], "image_size": payload["image_size"]})
    calibration = payload.get("calibration")
    untuned = payload.get("thresholds_source") == EARLIER_UNTUNED
    rule = None if untuned else {
        "strategy": config.threshold_strategy, "calibration": calibration["method"] if calibration else "none",
        "thresholds": payload["thresholds"], "source": payload.get("thresholds_source", "stored in the checkpoint"),
        "calibration_map": calibration}
    provenance = {"version": payload.get("version", ""), "epoch": payload.get("epoch"),
                  "final_model": payload.get("final_model"), "split": payload.get("split") or {},
                  "majority": payload.get("majority")}
    return {"config": config.to_dict(), "attributes": payload["attributes"], "state_dict": payload["state_dict"],
            "normalization": payload["normalization"], "recipe": decide_recipe(config).value,
            "history": payload["history"], "decision_rule": rule, "provenance": provenance,
            "out_of_fold": payload.get("held_out"), "ensemble_size": payload.get("ensemble_size")}


def read_torch_file(path, formats: tuple[str, ...], what: str) -> dict:
    """The payload of a file torch.save wrote in one of `formats`, read with weights_only (no code runs);
    one-line errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = load_torch_file(path, what)
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        raise ValueError(f"{path} is not an {what} (expected format {formats[0]})")
    return payload
