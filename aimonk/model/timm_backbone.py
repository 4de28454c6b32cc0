"""Any of timm's models as a backbone: `--backbone timm:NAME` (a timm name, with a pretrained tag or not).

What a backbone needs is read from timm itself, never from a table of ours: the input normalisation from the
model's pretrained config, its stages (what `--freeze N` counts) from its feature info, its pooled features
from its own `forward_head(..., pre_logits=True)` (so a ViT pools its class token, a ConvNeXt normalises after
pooling, as each was pretrained). Weights: `imagenet` comes from timm's hub (or its local cache); offline it
fails at once in one line, without the hub client's minute of retries; a weights file is loaded through timm's
pretrained-config overlay, so that timm fits it as it fits its own (classifier dropped, position embeddings
resized).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from aimonk.progress import logger_level

PREFIX = "timm:"
REFERENCE_STRIDE = 8  # the reference recipe froze its backbone up to stride 8 (ResNet-34's conv1..layer2)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded or found."""


def is_timm(name: str) -> bool:
    return str(name).startswith(PREFIX)


class TimmTrunk(nn.Module):
    """A timm model without its classifier: `forward` gives its last features (a map, or a ViT's tokens) and
    `pooled` what the model's own head pools them into."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(features, pre_logits=True)

    def explained_layer(self) -> nn.Module:
        """Where Grad-CAM looks: the last features, or for a transformer the input of its last block's attention
        (a class token's pooling lets no gradient reach the patch tokens after it; pytorch-grad-cam's choice)."""
        blocks = getattr(self.net, "blocks", None)
        last = blocks[-1] if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) else None
        if getattr(self.net, "num_prefix_tokens", None) is not None and hasattr(last, "norm1"):
            return last.norm1
        return self

    def spatial(self, features: torch.Tensor) -> torch.Tensor:
        """The last features as a map (N, C, H, W) over the image: a channels-last map (Swin's) permuted, a
        ViT's tokens without its class and register tokens laid on its patch grid."""
        channels = self.net.num_features
        if features.dim() == 4:
            permute = features.shape[1] != channels and features.shape[-1] == channels
            return features.permute(0, 3, 1, 2) if permute else features
        embeddings = [getattr(self.net, name, None) for name in ("patch_embed", "stem")]  # a ViT's, a Mixer's
        grid = next((tuple(e.grid_size) for e in embeddings if getattr(e, "grid_size", None) is not None), ())
        if features.dim() == 3 and len(grid) == 2:
            tokens = features[:, getattr(self.net, "num_prefix_tokens", 0):]
            if tokens.shape[1] == grid[0] * grid[1]:
                return tokens.transpose(1, 2).reshape(len(tokens), -1, *grid)
        raise ValueError(f"cannot place the last features of {type(self.net).__name__} "
                         f"{tuple(features.shape)} on the image, so this model cannot be explained")


class PooledTrunk(nn.Module):
    """A trunk's pooled features as an (N, F, 1, 1) map, to sit beside other backbones joined by '+'."""

    def __init__(self, trunk: TimmTrunk):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.pooled(self.trunk(x))[..., None, None]


@dataclass(frozen=True)
class Backbone:
    """A built backbone, ours or timm's: its stages (modules in order), their names, its feature width and
    input normalisation. A timm model is one module (`trunk`) whose stages are named groups of its modules."""

    stages: tuple
    stage_names: tuple
    num_features: int
    mean: tuple
    std: tuple
    stage_members: tuple | None = None  # timm's: for each stage, the names of the trunk's modules it holds
    input_size: int | None = None  # timm's: the input size its pretrained config says it was trained at

    @property
    def trunk(self) -> nn.Module:
        """The whole backbone as one module giving a feature map."""
        return self.stages[0] if self.stage_members is not None else nn.Sequential(*self.stages)

    @property
    def pooled_trunk(self) -> nn.Module:
        """The backbone as one module whose output pools like ours, to sit beside others joined by '+'."""
        return PooledTrunk(self.stages[0]) if self.stage_members is not None else self.trunk


def timm_name(backbone: str) -> str:
    """NAME of `timm:NAME`, checked against timm's registry: a one-line error naming it otherwise."""
    name = backbone[len(PREFIX):]
    try:
        import timm
    except ImportError:
        raise ImportError(f"--backbone {backbone} needs the timm package: pip install timm") from None
    architecture, tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(architecture) or (tag and name not in timm.list_pretrained(architecture + ".*")):
        raise ValueError(f"unknown timm model {name!r}: `aimonk backbones {architecture.split('_')[0]}` lists "
                         "the names like it")
    return name


def build_timm(backbone: str, weights: str, image_size: int) -> Backbone:
    """The timm model `backbone` names, classifier removed, with `weights` (imagenet, none or a file)."""
    name = timm_name(backbone)
    size = _size_arguments(name, image_size)
    check_input_size(name, image_size)
    net = _create(name, weights, size)
    config = net.pretrained_cfg
    names, members, _ = stages_of(net)
    return Backbone(
        stages=(TimmTrunk(net),), num_features=int(getattr(net, "head_hidden_size", None) or net.num_features),
        mean=tuple(config["mean"]), std=tuple(config["std"]), stage_names=names, stage_members=members,
        input_size=int(config["input_size"][-1]),
    )


def _size_arguments(name: str, image_size: int) -> dict:
    """Models pretrained at one input size only (ViTs: their position embeddings) are built for image_size."""
    import timm

    config = timm.models.get_pretrained_cfg(name)
    fixed, size = getattr(config, "fixed_input_size", False), getattr(config, "input_size", None)
    return {"img_size": image_size} if fixed and size and size[-1] != image_size else {}


@functools.lru_cache(maxsize=32)
def check_input_size(name: str, image_size: int) -> None:
    """A one-line ValueError, before any weights are fetched, when the model cannot take image_size-pixel images
    (a patch size that does not divide it, attention biases of one grid): a forward pass on the meta device."""
    import timm

    with torch.device("meta"):
        net = timm.create_model(name, pretrained=False, num_classes=0, **_size_arguments(name, image_size))
        try:
            net.eval()(torch.empty(1, 3, image_size, image_size))
        except NotImplementedError:  # an operation without a meta kernel: nothing is known, the real run decides
            return
        except Exception as error:  # shape errors come as RuntimeError, AssertionError, ValueError
            trained = (getattr(timm.models.get_pretrained_cfg(name), "input_size", None) or (None,))[-1]
            hint = f"; it was pretrained at {trained}px: try --image-size {trained}" if trained else ""
            raise ValueError(f"timm:{name} does not take {image_size}px images ({_first_line(error)}){hint}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _create(name: str, weights: str, size: dict) -> nn.Module:
    import timm

    if weights == "none":
        return timm.create_model(name, pretrained=False, num_classes=0, **size)
    if weights != "imagenet":
        return _from_file(name, Path(weights), size)
    cached = _cached_weights(name)
    if cached is not None:
        return _from_file(name, cached, size)
    address = _weights_address(name)
    if address is None:
        raise WeightsUnavailableError(f"timm:{name} has no pretrained weights in timm; use --weights none or "
                                      "--weights PATH")
    if not _reachable(*address):
        raise WeightsUnavailableError(
            f"timm:{name}: its ImageNet weights are not in the local cache and {address[0]} cannot be reached; "
            f"download them where you are online (timm.create_model({name!r}, pretrained=True) caches them) and "
            "give the file with --weights PATH, or train from scratch with --preset finetune --weights none")
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **size)
    except Exception as error:  # the hub client's and torch.hub's errors have no common base
        raise WeightsUnavailableError(f"could not download the weights of timm:{name} ({type(error).__name__}: "
                                      f"{_first_line(error)}); give a file with --weights PATH") from error


def _from_file(name: str, path: Path, size: dict) -> nn.Module:
    """The model with a weights file loaded by timm (its filters: classifier dropped, embeddings resized, .npz
    files of the JAX originals); a file that leaves any of the model's weights unloaded is refused."""
    import timm

    overlay = {"file": str(path), "custom_load": path.suffix == ".npz"}
    try:
        with _recorded_loads() as loads, _quiet_timm():
            net = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay, **size)
    except Exception as error:  # timm's loaders raise RuntimeError, KeyError, pickle and safetensors errors
        raise WeightsUnavailableError(f"{path} does not fit timm:{name}: {_first_line(error)}") from error
    missing = sorted({key for module, result in loads if module is net for key in result.missing_keys})
    if missing:
        raise WeightsUnavailableError(f"{path} does not fit timm:{name}: {len(missing)} of its tensors are not in "
                                      f"the file ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    return net


@contextlib.contextmanager
def _recorded_loads():
    """Every load_state_dict made meanwhile, with what it left missing: timm loads non-strictly once it dropped
    the classifier, and only logs what did not fit."""
    loads, original = [], nn.Module.load_state_dict

    def recorded(module, state_dict, *args, **kwargs):
        result = original(module, state_dict, *args, **kwargs)
        loads.append((module, result))
        return result

    nn.Module.load_state_dict = recorded
    try:
        yield loads
    finally:
        nn.Module.load_state_dict = original


def _quiet_timm():
    """timm's loader logs the keys that did not fit (one line of thousands of characters); we say it in one."""
    return logger_level(logging.getLogger("timm"), logging.ERROR)


def _cached_weights(name: str) -> Path | None:
    """The weights file a previous download left in the hub's or torch.hub's cache, if any."""
    import timm

    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        return None
    if config.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = config.hf_hub_id.partition("@")
        for filename in (config.hf_hub_filename or "model.safetensors", "open_clip_pytorch_model.bin",
                         "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
    if config.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(config.url).path).name
        if path.is_file():
            return path
    return None


def _weights_address(name: str) -> tuple[str, int] | None:
    """(host, port) the weights of `name` download from: the hub's endpoint, or the URL of its config."""
    import timm

    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        return None
    if config.hf_hub_id:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
    elif config.url:
        url = urlparse(config.url)
    else:
        return None
    return url.hostname, url.port or (80 if url.scheme == "http" else 443)


def _reachable(host: str, port: int, timeout: float = 5.0) -> bool:
    """Whether a connection to host:port opens (always assumed behind a proxy, which the hub client goes
    through and a direct connection would not)."""
    proxies = urllib.request.getproxies()
    if any(proxies.get(scheme) for scheme in ("https", "http", "all")):
        return True
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=32)
def timm_layout(backbone: str) -> tuple[tuple, int]:
    """(stage names, stages the reference's rule freezes) of a timm model, read from a copy built on the meta
    device (no memory, no weights: a fraction of a second for any size)."""
    import timm

    with torch.device("meta"):
        net = timm.create_model(timm_name(backbone), pretrained=False, num_classes=0)
    names, _, reference_freeze = stages_of(net)
    return names, reference_freeze


def stages_of(net: nn.Module) -> tuple[tuple, tuple, int]:
    """(stage names, each stage's modules, stages the reference's rule freezes: up to stride 8) from timm's
    feature info. Where its modules are not each a distinct module of the model owning parameters (a few
    families name them otherwise), the whole model is one stage: frozen or not, as backbones joined by '+'."""
    modules = tuple(info["module"] for info in net.feature_info)
    named = dict(net.named_modules())
    if all(modules) and len(set(modules)) == len(modules) and all(module in named for module in modules):
        members = stage_members(net, modules)
        if all(any(True for name in names for _ in named[name].parameters(recurse=False)) for names in members):
            stride_8 = sum(info["reduction"] <= REFERENCE_STRIDE for info in net.feature_info)
            return modules, members, stride_8
    return ("backbone",), (tuple(named),), 0


def stage_members(net: nn.Module, feature_modules: tuple) -> tuple:
    """Every module of `net` (by name) assigned to one of timm's stages: a feature module's stage holds the
    module and what runs between the previous feature module and it (a ResNet's max pool goes with layer1); what
    runs after the last one (a final norm, the pooling head) goes with the last stage."""
    members = [[] for _ in feature_modules]
    last_entered = -1
    for name, _ in net.named_modules():
        inside = [index for index, module in enumerate(feature_modules)
                  if name == module or name.startswith(module + ".")]
        if inside:
            last_entered = inside[0]
            index = inside[0]
        else:
            index = min(last_entered + 1, len(feature_modules) - 1)
        members[index].append(name)
    return tuple(tuple(names) for names in members)


def pretrained_names(wildcard: str) -> list[str]:
    """timm's pretrained model names (with their tags) matching a shell-style wildcard."""
    import timm

    return timm.list_models(wildcard, pretrained=True)
