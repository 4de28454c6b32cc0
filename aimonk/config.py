"""One configuration object per run; it is saved inside the checkpoint."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


HEAD_SOLVERS = ("lbfgs", "adam")
THRESHOLD_SOURCES = ("cv", "val", "none")


@dataclass
class TrainConfig:
    """A training run. The defaults are our recipe, chosen on images no model was trained on (see
    benchmarks/quality.py): three offline ImageNet backbones stay frozen, their features are concatenated
    and computed once, and the head is a linear probe solved exactly. PRESETS["finetune"] also trains a
    backbone; PRESETS["reference"] is the first public solution's recipe."""

    backbone: str = "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2"
    weights: str = "imagenet"  # "imagenet", "none" or a path to a state dict
    freeze: int | str = "all"  # stages frozen; -1 = the reference's rule (up to stride 8); "all" = only the head learns
    dropout: float = 0.4
    head_solver: str = "lbfgs"  # lbfgs | adam: how a head on frozen features learns (see aimonk.linear_probe)
    head_c: float = 0.003  # lbfgs: inverse L2 strength per known label (scikit-learn's C); 0 = chosen by CV
    image_size: int = 224
    augment: str = "flip"  # strong | light | flip | none
    oversample: float = 2.0  # images with a rare attribute (< 25% positive) are drawn this many times as often
    tta: bool = True  # test-time augmentation: average with the horizontally flipped image
    loss: str = "bce"  # bce | focal | asymmetric
    pos_weight: bool = True
    focal_gamma: float = 2.0
    lr: float = 3e-3
    weight_decay: float = 1e-4
    head_epochs: int = 0  # epochs of training the head alone (features computed once) before fine-tuning
    head_lr: float = 3e-3  # learning rate of those head-only epochs
    head_lr_multiplier: float = 1.0  # the head's learning rate = lr x this (discriminative learning rates)
    schedule: str = "cosine"  # constant | cosine (linear warm-up, then cosine decay)
    warmup_epochs: float = 1.0
    batch_size: int = 32
    epochs: int = 20
    ema: float = 0.0  # decay of an exponential moving average of the weights, updated every step; 0 = off
    patience: int = 0  # early stopping after this many epochs without improvement; 0 = off
    keep: str = "best"  # best (epoch with the best validation F1) | last
    threshold_source: str = "cv"  # cv | val | none: how the decision thresholds stored with the model are chosen
    threshold_folds: int = 5  # folds of the cross-validation on the training images (thresholds "cv")
    threshold_strategy: str = "f1"  # f1 | precision:P | recall:R
    split: str = "iterative"  # iterative | last_attribute
    val_fraction: float = 0.15
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # mixed precision: bfloat16/float16 on CUDA, bfloat16 on CPUs with native support
    channels_last: bool | None = None  # None: on for CUDA, off for CPU
    compile: bool = False  # torch.compile the training step's model (slow start; measure before you rely on it)
    num_workers: int = -1  # -1: chosen for the device
    unknown_as_na: bool = False

    def __post_init__(self):
        choices = {"head_solver": HEAD_SOLVERS, "threshold_source": THRESHOLD_SOURCES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.head_c < 0:
            raise ValueError(f"head_c must be positive, or 0 to choose it by cross-validation, not {self.head_c}")
        if self.threshold_folds < 2:
            raise ValueError(f"threshold_folds must be at least 2, not {self.threshold_folds}")

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


PRESETS = {
    # The first public solution: ResNet-34, conv1..layer2 frozen, constant Adam 1e-4, 8 epochs, split on Attr4.
    # Its thresholds were tuned on its validation split.
    "reference": TrainConfig(backbone="resnet34", weights="imagenet", freeze=3, split="last_attribute", lr=1e-4,
                             schedule="constant", warmup_epochs=0.0, epochs=8, augment="strong", oversample=1.0,
                             tta=False, threshold_source="val"),
    # Ours: EfficientNet-Lite0, -Lite1 and -Lite2 frozen, the features of each image and its mirror image
    # computed once and concatenated; the head a class-balanced logistic regression on them, solved
    # exactly; flip test-time augmentation; thresholds from a 5-fold cross-validation on the training images.
    "default": TrainConfig(),
    # Fine-tuning EfficientNet-Lite0 from its third stage on, at 3e-4 with warm-up + cosine, for 8 epochs,
    # strong augmentation, rare-attribute oversampling (the default before the head-only recipes; for larger
    # datasets). Thresholds from its validation split (a cross-validation would train it five times more).
    "finetune": TrainConfig(backbone="efficientnet_lite0", freeze=2, augment="strong", lr=3e-4, epochs=8,
                            threshold_source="val"),
}


def preset(name: str, **changes) -> TrainConfig:
    """A preset with some fields changed; changes that are None keep the preset's value."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**{k: v for k, v in changes.items() if v is not None})
