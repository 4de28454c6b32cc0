"""The one place a network's backbone runs for inference: training's frozen features, validation, `predict`,
`evaluate`, the widget and `explain`'s probabilities all go through `feature_engine`.

On the CPU the backbone runs in onnxruntime: its graph is traced once per set of weights and image size,
and kept in aimonk.cache's `graphs` entries, so that later runs skip the trace. Side by side on a 2-core
CPU (benchmarks/speed.py), onnxruntime ran the default's three EfficientNet-Lite backbones 4.0-5.6x faster than
PyTorch's eager kernels in float32 (that CPU has no native bfloat16, so autocast gained nothing). Elsewhere (CUDA, MPS)
PyTorch runs it. Inference is float32 on every route, so that a model's `.pt` and its ONNX export
(aimonk.serve.export) give one answer, and thresholds are tuned on the numbers the model is served with;
mixed precision (`amp`) is for training steps only.
"""
from __future__ import annotations

import hashlib
import io
import warnings
import weakref
from collections import OrderedDict

import numpy as np
import torch

from aimonk.cache import cache_root, files_key, load_array, store_array

# Images per call of the CPU engine (with their mirror images, twice as many): onnxruntime's time per image
# is flat from 4 to 64 images within the noise on 2 cores (benchmarks/speed.py, "engine batch size" rows:
# 22-25 ms against 25 for one image), and a small batch keeps memory low.
CPU_BATCH = 16
DEVICE_BATCH = 64
OPSET = 17
CPU = torch.device("cpu")
_ENGINES: "OrderedDict[str, OnnxRuntimeFeatures]" = OrderedDict()  # graph key -> engine, the last few used
KEPT_ENGINES = 3
_DIGESTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # classifier -> (named tensors, versions, digest)


def onnx_graph(module: torch.nn.Module, example: torch.Tensor, output_name: str) -> bytes:
    """`module` (eval mode, on the CPU, float32) traced to an ONNX graph taking uint8 images (N, H, W, 3)
    named `images`, with a dynamic batch size: the one exporter, for the engine's graphs and aimonk export."""
    buffer = io.BytesIO()
    module.eval()  # the exporter puts a module back in the mode it found it in: eval, wrapper included
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer and deprecation notices
        torch.onnx.export(module, (example,), buffer, input_names=["images"], output_names=[output_name],
                          dynamic_axes={"images": {0: "batch"}, output_name: {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    return buffer.getvalue()


def onnx_session(graph):
    """An onnxruntime session on the CPU for a graph (bytes or a path), using PyTorch's thread count (one per
    process under torchrun)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # no notices about the graph's optimisations
    return onnxruntime.InferenceSession(graph if isinstance(graph, (bytes, str)) else bytes(graph), options,
                                        providers=["CPUExecutionProvider"])


def weights_digest(classifier) -> str:
    """A checksum of the backbone's weights and input normalisation: the same for every model built on one
    frozen pretrained backbone, different once any weight was trained. Computed again only when a tensor
    changed since (PyTorch counts every in-place change of a tensor, optimiser steps and loading included)."""
    known = _DIGESTS.get(classifier)
    named = known[0] if known else _named_weights(classifier)
    versions = tuple((tensor.data_ptr(), tensor._version) for _, tensor in named)
    if known is None or known[1] != versions:
        known = named, versions, _checksum(named)
        _DIGESTS[classifier] = known
    return known[2]


def _named_weights(classifier) -> list[tuple[str, torch.Tensor]]:
    """The backbone's parameters and buffers themselves (not detached copies), so that their versions follow."""
    return [*classifier.stages.state_dict(keep_vars=True).items(), ("mean", classifier.mean), ("std", classifier.std)]


def _checksum(named) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in named:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def in_eval_mode(module: torch.nn.Module) -> torch.nn.Module:
    """`module` in eval mode (switching a model of several backbones costs milliseconds: only when needed)."""
    return module.eval() if module.training else module


class _Features(torch.nn.Module):
    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images)


def engine_name(device: torch.device) -> str:
    """What feature_engine runs on `device`, as it goes into cache keys: features computed otherwise differ."""
    if device.type == "cpu":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} float32"
    return f"torch {device.type} float32"


def engine_batch(device: torch.device) -> int:
    """Images per call of feature_engine on `device`."""
    return CPU_BATCH if device.type == "cpu" else DEVICE_BATCH


class OnnxRuntimeFeatures:
    """A classifier's pooled backbone features, run by onnxruntime on the CPU."""

    batch_size = CPU_BATCH

    def __init__(self, graph):
        self.session = onnx_session(graph)
        self.name = engine_name(CPU)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": np.ascontiguousarray(images)})[0]


class TorchFeatures:
    """A classifier's pooled backbone features, run by PyTorch in float32 on the classifier's device."""

    batch_size = DEVICE_BATCH

    def __init__(self, classifier, device: torch.device):
        self.classifier, self.device = classifier, device
        self.name = engine_name(device)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
        return self.classifier.features(batch).float().cpu().numpy()


def feature_engine(classifier, device: torch.device, image_size: int, keep: bool = True):
    """What computes `classifier`'s pooled features (N, F) from uint8 images (N, image_size, image_size, 3) on
    `device`, in eval mode. On the CPU the traced graph is kept in the aimonk cache when `keep` (models that
    are served), and only in memory otherwise (validation while the weights still change)."""
    in_eval_mode(classifier)
    if device.type != "cpu":
        return TorchFeatures(classifier, device)
    import onnxruntime

    digest = weights_digest(classifier)
    key = files_key([], "graph", digest, image_size, OPSET, torch.__version__, onnxruntime.__version__)
    if key not in _ENGINES:
        _ENGINES[key] = _cached_engine(classifier, image_size, key, keep)
        while len(_ENGINES) > KEPT_ENGINES:  # e.g. the earlier epochs' weights of a network being trained
            _ENGINES.popitem(last=False)
    _ENGINES.move_to_end(key)
    return _ENGINES[key]


def _cached_engine(classifier, image_size: int, key: str, keep: bool) -> OnnxRuntimeFeatures:
    """The engine on the cache's graph for `key` when it is whole and onnxruntime reads it; else on a graph
    traced now (and kept), with one warning when a damaged one was there (a write killed midway)."""
    cached = load_array("graphs", key)
    if cached is not None:
        try:
            return OnnxRuntimeFeatures(cached[0])
        except Exception:  # onnxruntime's own kinds: a graph it cannot read
            pass
    root = cache_root()
    if root is not None and (root / "graphs" / f"{key}.npy").exists():
        warnings.warn(f"the aimonk cache's graph {root / 'graphs' / key}.npy was damaged (a write cut short?): "
                      "rebuilt", stacklevel=3)
    return OnnxRuntimeFeatures(_traced_graph(classifier, image_size, key, keep))


def _traced_graph(classifier, image_size: int, key: str, keep: bool) -> np.ndarray:
    example = torch.zeros((1, image_size, image_size, 3), dtype=torch.uint8)
    graph = onnx_graph(_Features(classifier).cpu().float(), example, "features")

    def fill(out: np.ndarray) -> int:
        out[:] = np.frombuffer(graph, np.uint8)
        return len(out)

    return store_array("graphs" if keep else None, key, (len(graph),), np.uint8, fill,
                       {"what": f"{classifier.backbone or 'backbone'} graph at {image_size}px",
                        "source": f"weights {key[:8]}"})[0]


def mirrored(images):
    """The horizontally flipped images (N, H, W, 3), a numpy array or a tensor: the test-time augmentation,
    the same on every route."""
    return images.flip(2) if isinstance(images, torch.Tensor) else images[:, :, ::-1]


def mirror_averaged(outputs, mirror_outputs=None):
    """The outputs for the images, averaged with those for their mirror images when given: how every route
    applies the test-time augmentation."""
    return outputs if mirror_outputs is None else (outputs + mirror_outputs) / 2


def features_and_mirror(engine, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The engine's features of the images and of their mirror images, in one call."""
    both = engine(np.concatenate([images, mirrored(images)]))
    return both[:len(images)], both[len(images):]
