"""One configuration object per run; it is saved inside the checkpoint."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class TrainConfig:
    """A training run. The defaults are our recipe, chosen by 5-fold cross-validation on fashion972
    (see benchmarks/recipes.py): the ImageNet backbone stays frozen and only the head learns, on features
    computed once. PRESETS["finetune"] also trains the backbone; PRESETS["reference"] is the first public
    solution's recipe."""

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"  # "imagenet", "none" or a path to a state dict
    freeze: int | str = "all"  # stages frozen; -1 = the reference's rule (up to stride 8); "all" = only the head learns
    dropout: float = 0.4
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
    split: str = "iterative"  # iterative | last_attribute
    val_fraction: float = 0.15
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | mps
    amp: bool = True  # mixed precision: bfloat16/float16 on CUDA, bfloat16 on CPUs with native support
    channels_last: bool | None = None  # None: on for CUDA, off for CPU
    compile: bool = False  # torch.compile the training step's model (slow start; measure before you rely on it)
    num_workers: int = -1  # -1: chosen for the device
    unknown_as_na: bool = False

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
    "reference": TrainConfig(backbone="resnet34", weights="imagenet", freeze=3, split="last_attribute", lr=1e-4,
                             schedule="constant", warmup_epochs=0.0, oversample=1.0, tta=False),
    # Ours: the offline ImageNet backbone frozen, its features of each image and its mirror image computed
    # once; the head trained for 20 epochs, warm-up + cosine at 3e-3, rare-attribute oversampling, flip
    # test-time augmentation, all attributes stratified in the split. Cross-validated as well as
    # fine-tuning on fashion972 at a twentieth of the time.
    "default": TrainConfig(),
    # Fine-tuning: the same, but the backbone learns from its third stage on, at 3e-4, for 8 epochs, with
    # strong augmentation (the default before the head-only recipe; for larger datasets).
    "finetune": TrainConfig(freeze=2, augment="strong", lr=3e-4, epochs=8),
}


def preset(name: str, **changes) -> TrainConfig:
    """A preset with some fields changed; changes that are None keep the preset's value."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**{k: v for k, v in changes.items() if v is not None})
