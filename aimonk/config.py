"""One configuration object per run; it is saved inside the checkpoint. The bottom layer: it imports nothing
of the package, and the vocabularies below (choices of every option) are the one source of those names."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


HEAD_SOLVERS = ("lbfgs", "adam")
THRESHOLD_SOURCES = ("cv", "val", "none")
AUGMENTATIONS = ("strong", "light", "flip", "none")
LOSSES = ("bce", "focal", "asymmetric")
SCHEDULES = ("constant", "cosine")
SPLITS = ("iterative", "last_attribute")
KEEP = ("best", "last")
DEVICES = ("auto", "cpu", "cuda", "mps")
CALIBRATIONS = ("platt", "temperature", "none")
TRACKERS = ("none", "tensorboard", "mlflow")  # experiment tracking (aimonk.tracking)
LABEL_SCORES = ("uncertainty", "rare_uncertainty", "rare_positive")  # ranking NA cells (aimonk.labelling.queue)
DEFAULT_LABEL_SCORE = "uncertainty"  # chosen by benchmarks/labelling.py on fashion-eval/part2 (it and
# rare_uncertainty tied within 0.001 there, rare_positive 0.005 behind)
FINAL_MODELS = ("retrain", "ensemble", "none")  # after a cross-validation: retrained, the folds' ensemble, or none
BACKBONE_NAMES = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0", "efficientnet_lite1",
                  "efficientnet_lite2")  # aimonk.model.registry.BACKBONES builds each (a test keeps the two in step)


def option(default, help: str, choices=None, low=None, high=None, below=None):
    """A TrainConfig field with its help and its allowed values: choices, or low <= value <= high (< below)."""
    return field(default=default, metadata={"help": help, "choices": choices, "low": low, "high": high,
                                            "below": below})


def check_field(item: dataclasses.Field, value) -> None:
    """One field against the type of its default and the allowed values in its metadata (one-line ValueError)."""
    meta, name, default = item.metadata, item.name, item.default
    if isinstance(default, bool) or default is None:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, not {value!r}")
        return
    if isinstance(default, (int, float)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or (isinstance(default, int) and not isinstance(value, int)):
            raise ValueError(f"{name} must be {'an integer' if isinstance(default, int) else 'a number'}, "
                             f"not {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"{name} must be one of {', '.join(meta['choices'])}, not {value!r}")
    low, high, below = meta.get("low"), meta.get("high"), meta.get("below")
    if low is not None and value < low or high is not None and value > high or below is not None and value >= below:
        upper = f" and at most {high}" if high is not None else f" and below {below}" if below is not None else ""
        raise ValueError(f"{name} must be at least {low}{upper}, not {value!r}")


def parse_strategy(strategy: str) -> tuple[str, float | None]:
    """'f1' (maximise F1), 'precision:0.8' (best recall with precision >= 0.8) or 'recall:0.9'."""
    name, _, value = str(strategy).partition(":")
    if name == "f1" and not value:
        return name, None
    if name in ("precision", "recall") and value:
        try:
            floor = float(value)
        except ValueError:
            floor = math.nan
        if 0 < floor <= 1:
            return name, floor
    raise ValueError(f"threshold_strategy must be 'f1', 'precision:P' or 'recall:R' with 0 < P, R <= 1; got {strategy!r}")


def check_freeze(freeze) -> None:
    """--freeze's value: 'all', a number of stages (0 or more) or -1 (the reference's rule); a one-line
    ValueError naming the option otherwise."""
    if freeze != "all" and (not isinstance(freeze, int) or isinstance(freeze, bool) or freeze < -1):
        raise ValueError(f"freeze must be a number of stages (0 or more), -1 or 'all', not {freeze!r}")


def freeze_from_text(text: str) -> int | str:
    """--freeze as typed: a whole number (whose range check_freeze checks with the rest of the configuration),
    or 'all'; check_freeze's error for anything else."""
    try:
        return int(text)
    except ValueError:
        check_freeze(text)
        return text


def check_frozen_stages(count: int, stage_names) -> None:
    """Stages of a backbone with `stage_names` to freeze: 0 up to all of them; a one-line ValueError naming
    --freeze and the stages otherwise."""
    if not 0 <= count <= len(stage_names):
        raise ValueError(f"freeze must be between 0 and {len(stage_names)} stages ({', '.join(stage_names)}), "
                         f"not {count}")


def check_backbone(backbone: str) -> None:
    """Our names, or timm:NAME, or several joined by '+' (timm's registry checks NAME when the model is built,
    before any work); a one-line ValueError naming the first unknown one otherwise."""
    unknown = [name for name in str(backbone).split("+")
               if name not in BACKBONE_NAMES and not (name.startswith("timm:") and len(name) > len("timm:"))]
    if unknown:
        raise ValueError(f"unknown backbone {unknown[0]!r}; choose one of {', '.join(BACKBONE_NAMES)}, timm:NAME "
                         "for any of timm's models (`aimonk backbones PATTERN` lists them), or several joined by "
                         "'+' (their features concatenated)")


@dataclass
class TrainConfig:
    """A training run. The defaults are our recipe, chosen on images no model was trained on (see
    benchmarks/quality.py): three offline ImageNet backbones stay frozen, their features are concatenated
    and computed once, and the head is a linear probe solved exactly. PRESETS["finetune"] also trains a
    backbone; PRESETS["reference"] is the first public solution's recipe. Every field is checked when the
    configuration is built, before any image is decoded."""

    backbone: str = option("efficientnet_lite0+efficientnet_lite1+efficientnet_lite2",
                           "resnet18, resnet34, resnet50, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 "
                           "or timm:NAME (any timm model: `aimonk backbones PATTERN` lists them), or several joined "
                           "by '+' (their features concatenated)")
    weights: str = option("imagenet", "imagenet (downloaded; shipped for efficientnet_lite0/1/2), none, or a path "
                                      "to a state dict")
    freeze: int | str = option("all", "number of backbone stages to freeze; -1 = the reference's rule (up to stride "
                                      "8); all = train only the head (features are then computed once, with --augment "
                                      "flip or none). To fine-tune, start from --preset finetune")
    dropout: float = option(0.4, "dropout before the head", low=0.0, below=1.0)
    head_solver: str = option("lbfgs", "lbfgs: when only the head learns, solve it exactly as a class-balanced "
                                       "logistic regression on standardised features (ignores lr, epochs, loss, "
                                       "oversample); adam: train it by epochs", choices=HEAD_SOLVERS)
    head_c: float = option(0.003, "with --head-solver lbfgs: inverse L2 strength per known label, as "
                                  "scikit-learn's C (0: choose it per attribute by cross-validation)", low=0.0)
    image_size: int = option(224, "images are resized to this many pixels square", low=32, high=1024)
    augment: str = option("flip", "training augmentation", choices=AUGMENTATIONS)
    oversample: float = option(2.0, "images with a rare attribute (< 25%% positive) are drawn this many times as "
                                    "often (1 = off)", low=1.0, high=100.0)
    tta: bool = option(True, "test-time augmentation: average with the horizontally flipped image")
    loss: str = option("bce", "training loss (all masked)", choices=LOSSES)
    pos_weight: bool = option(True, "weigh each attribute's positives by negatives/positives")
    focal_gamma: float = option(2.0, "focusing parameter of the focal loss", low=0.0, high=10.0)
    lr: float = option(3e-3, "learning rate", low=1e-8, high=10.0)
    weight_decay: float = option(1e-4, "Adam's weight decay (an L2 penalty added to the gradients)", low=0.0, high=1.0)
    head_epochs: int = option(0, "first train the head alone for this many epochs on features computed once, "
                                 "then fine-tune", low=0, high=1000)
    head_lr: float = option(3e-3, "learning rate of those head-only epochs", low=1e-8, high=10.0)
    head_lr_multiplier: float = option(1.0, "the head's learning rate = lr x this", low=1e-3, high=1000.0)
    schedule: str = option("cosine", "constant, or cosine (linear warm-up, then cosine decay)", choices=SCHEDULES)
    warmup_epochs: float = option(1.0, "epochs of linear warm-up", low=0.0, high=1000.0)
    batch_size: int = option(32, "images per step", low=1, high=65536)
    epochs: int = option(20, "training epochs (at least 1)", low=1, high=10000)
    ema: float = option(0.0, "decay of an exponential moving average of the weights per step (e.g. 0.98; 0 = off)",
                        low=0.0, below=1.0)
    patience: int = option(0, "stop after this many epochs without improvement (0 = never)", low=0, high=10000)
    keep: str = option("best", "the epoch kept: best (validation F1) or last", choices=KEEP)
    threshold_source: str = option("cv", "how the decision thresholds stored with the model are chosen: cv (tuned "
                                         "on out-of-fold predictions of a cross-validation on the training images), "
                                         "val (on the validation split) or none (0.5)", choices=THRESHOLD_SOURCES)
    threshold_folds: int = option(5, "folds of that cross-validation (--threshold-source cv)", low=2, high=100)
    threshold_strategy: str = option("f1", "f1 (maximise F1), precision:P (best recall at precision >= P) or "
                                           "recall:R")
    calibration: str = option("platt", "map each attribute's logit to a calibrated probability, fitted on the same "
                                       "held-out predictions as the thresholds: platt (scale and shift), temperature "
                                       "(scale only) or none", choices=CALIBRATIONS)
    split: str = option("iterative", "iterative (all attributes and NA stratified) or last_attribute (the "
                                     "reference's)", choices=SPLITS)
    val_fraction: float = option(0.0, "share of the images held out for validation (0 = none: the model learns from "
                                      "every image, and `aimonk evaluate` on its folder scores the out-of-fold "
                                      "predictions its thresholds were tuned on; the finetune and reference presets "
                                      "hold out 0.15 to choose their epoch on)", low=0.0, below=1.0)
    seed: int = option(42, "random seed of the split, the weights and the augmentation", low=0,
                       high=2**32 - 1)  # numpy's seed range
    device: str = option("auto", "where to train", choices=DEVICES)
    amp: bool = option(True, "mixed precision in training steps where the device computes it natively (CUDA; "
                             "CPUs with AVX-512 BF16 or AMX); predictions are float32 on every route")
    channels_last: bool | None = option(None, "NHWC memory layout (default: on for CUDA and the CPU)")
    compile: bool = option(False, "torch.compile the model for training (a slow first epoch)")
    num_workers: int = option(-1, "DataLoader worker processes (-1 = automatic)", low=-1, high=256)
    unknown_as_na: bool = option(False, "read unknown label tokens as NA instead of stopping with an error")
    log: str = option("none", "experiment tracking of a run with an output folder: tensorboard (event files in "
                              "RUN/tensorboard) or mlflow ($MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)", choices=TRACKERS)

    def __post_init__(self):
        for item in dataclasses.fields(self):
            check_field(item, getattr(self, item.name))
        check_freeze(self.freeze)
        parse_strategy(self.threshold_strategy)
        check_backbone(self.backbone)
        if self.threshold_source == "val" and self.val_fraction == 0:
            raise ValueError("threshold_source val needs a validation split: set val_fraction above 0 (e.g. 0.15), "
                             "or choose threshold_source cv")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown configuration field(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def for_fold(self) -> "TrainConfig":
        """A cross-validation fold of this recipe: trained on the fold's rows for the whole schedule (its last
        epoch kept: no epoch is chosen on the rows it scores), no split of its own, no thresholds of its own."""
        return self.replace(keep="last", val_fraction=0.0, threshold_source="none")

    def for_final_model(self) -> "TrainConfig":
        """The model trained on every image after a cross-validation of this recipe: the same schedule, its last
        epoch kept, like a fold; its thresholds and calibration come from the cross-validation's out-of-fold
        predictions."""
        return self.for_fold()


PRESETS = {
    # The first public solution: ResNet-34, conv1..layer2 frozen, constant Adam 1e-4, 8 epochs, split on Attr4.
    # Its thresholds were tuned on its validation split.
    "reference": TrainConfig(backbone="resnet34", weights="imagenet", freeze=3, split="last_attribute", lr=1e-4,
                             schedule="constant", warmup_epochs=0.0, epochs=8, augment="strong", oversample=1.0,
                             tta=False, threshold_source="val", val_fraction=0.15),
    # Ours: EfficientNet-Lite0, -Lite1 and -Lite2 frozen, the features of each image and its mirror image
    # computed once and concatenated; the head a class-balanced logistic regression on them, solved
    # exactly; flip test-time augmentation; trained on every image (no validation split: nothing is chosen by
    # epoch), thresholds and calibration from a 5-fold cross-validation on them, whose out-of-fold
    # predictions the checkpoint keeps for `aimonk evaluate`.
    "default": TrainConfig(),
    # Fine-tuning EfficientNet-Lite0 from its third stage on, at 3e-4 with warm-up + cosine, for 8 epochs,
    # strong augmentation, rare-attribute oversampling (the default before the head-only recipes; for larger
    # datasets). Thresholds from its validation split (a cross-validation would train it five times more).
    "finetune": TrainConfig(backbone="efficientnet_lite0", freeze=2, augment="strong", lr=3e-4, epochs=8,
                            threshold_source="val", val_fraction=0.15),
}


def preset(name: str, **changes) -> TrainConfig:
    """A preset with some fields changed; changes that are None keep the preset's value."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**{k: v for k, v in changes.items() if v is not None})

