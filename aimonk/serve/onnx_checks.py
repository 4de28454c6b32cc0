"""What an .onnx file must be before onnxruntime runs it for `aimonk predict --model X.onnx`: a protobuf ONNX
model of a known opset, one uint8 image input (N, H, W, 3), one float probability output (N, K), aimonk's
metadata (distinct attribute names, an image size within TrainConfig's bounds), and no external-data tensor
outside the model's folder. Each fault is a one-line ValueError naming the file.

The header is read with protobuf and a small descriptor of the few ModelProto fields needed (the `onnx`
package takes about 0.6 s to import, more than loading the model): `onnx` is imported only for a file that
names external data, to find every tensor that does.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

from aimonk.config import TrainConfig, check_field
from aimonk.data.labels import MAX_ATTRIBUTES, UNSAFE, printable, shown

METADATA_KEY = "aimonk"
LOWEST_OPSET = 7  # onnxruntime's oldest supported opset of the default domain
DEFAULT_DOMAINS = ("", "ai.onnx")
IMAGE_SIZE = next(item for item in dataclasses.fields(TrainConfig) if item.name == "image_size")


class OnnxFileError(ValueError):
    def __init__(self, path, problem: str):
        super().__init__(f"{printable(path)}: {problem}")


@functools.cache
def _header_class():
    """A protobuf message of ModelProto's ir_version (1), graph (7, kept as bytes), opset_import (8) and
    metadata_props (14): the other fields are skipped as unknown."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    kinds = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="aimonk_onnx_header.proto", package="aimonk_onnx_header")

    def message(name, *fields):
        described = file.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            added = described.field.add(name=field_name, number=number, type=kind,
                                        label=kinds.LABEL_REPEATED if repeated else kinds.LABEL_OPTIONAL)
            if type_name:
                added.type_name = type_name

    message("Entry", ("key", 1, kinds.TYPE_BYTES, False, ""), ("value", 2, kinds.TYPE_BYTES, False, ""))
    message("Opset", ("domain", 1, kinds.TYPE_BYTES, False, ""), ("version", 2, kinds.TYPE_INT64, False, ""))
    message("Model", ("ir_version", 1, kinds.TYPE_INT64, False, ""), ("graph", 7, kinds.TYPE_BYTES, False, ""),
            ("opset_import", 8, kinds.TYPE_MESSAGE, True, ".aimonk_onnx_header.Opset"),
            ("metadata_props", 14, kinds.TYPE_MESSAGE, True, ".aimonk_onnx_header.Entry"))
    pool = descriptor_pool.DescriptorPool()  # its own pool: never in the way of onnx's classes
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("aimonk_onnx_header.Model"))


def read_model(path: Path) -> tuple[bytes, dict]:
    """The file's bytes and its checked aimonk metadata, after the checks that need no onnxruntime."""
    from google.protobuf.message import DecodeError

    data = path.read_bytes()
    if not data:
        raise OnnxFileError(path, "it is empty (0 bytes), not an ONNX model")
    header = _header_class()()
    try:
        header.ParseFromString(data)
    except DecodeError:
        header = None
    if header is None or header.ir_version <= 0 or not header.HasField("graph"):
        raise OnnxFileError(path, "it is not an ONNX model (it does not parse as one); export one with aimonk export")
    check_opset(path, header.opset_import)
    return data, checked_metadata(path, header.metadata_props)


def check_opset(path: Path, opsets) -> None:
    versions = [opset.version for opset in opsets if opset.domain.decode("utf-8", "replace") in DEFAULT_DOMAINS]
    if len(versions) != 1:
        raise OnnxFileError(path, f"its graph names {len(versions)} opsets of the default ONNX domain, not one")
    if versions[0] < LOWEST_OPSET:
        raise OnnxFileError(path, f"its graph is stamped ONNX opset {versions[0]}; onnxruntime runs opset "
                                  f"{LOWEST_OPSET} and later (aimonk export writes 17)")


def checked_metadata(path: Path, entries) -> dict:
    """The aimonk metadata entry as a dict: attributes (distinct names without control or bidi characters) and
    image size checked; the thresholds are DecisionRule.from_dict's to check."""
    values = [entry.value for entry in entries if entry.key == METADATA_KEY.encode()]
    if len(values) != 1:
        raise OnnxFileError(path, f"it holds {len(values) or 'no'} '{METADATA_KEY}' metadata entries, not one (the "
                                  "attributes, thresholds and image size aimonk export writes)")
    try:
        stored = json.loads(values[0].decode("utf-8"))
    except ValueError:
        raise OnnxFileError(path, f"its '{METADATA_KEY}' metadata is not JSON text") from None
    if not isinstance(stored, dict):
        raise OnnxFileError(path, f"its '{METADATA_KEY}' metadata is a JSON {type(stored).__name__}, not an object")
    check_attribute_names(path, stored.get("attributes"))
    try:
        check_field(IMAGE_SIZE, stored.get("image_size"))
    except ValueError as error:
        raise OnnxFileError(path, f"its metadata's {error}") from None
    return stored


def check_attribute_names(path: Path, names) -> None:
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_ATTRIBUTES:
        raise OnnxFileError(path, f"its metadata's attributes must be a list of 1 to {MAX_ATTRIBUTES:,} names, not "
                                  f"{shown(printable(json.dumps(names)))}")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise OnnxFileError(path, f"its metadata's attributes must all be names (text), not {shown(repr(name))}")
        found = UNSAFE.search(name)
        if found:
            raise OnnxFileError(path, f"its metadata's attribute {shown(name)} holds U+{ord(found.group()):04X}, a "
                                      "control or bidi character")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise OnnxFileError(path, f"its metadata names the attribute {shown(repeated[0])} more than once")


def outside_locations(data: bytes, path: Path) -> bool:
    """Whether the model keeps tensors in external files (all checked to lie inside its folder, links
    resolved, before onnxruntime reads any). A protobuf string is stored as it is: without the bytes
    'location' no tensor can name an external file, and `onnx` is not imported."""
    if b"location" not in data:
        return False
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    folder, external = path.parent.resolve(), False
    for tensor in _all_tensors(onnx.load_model_from_string(data)):
        if uses_external_data(tensor):
            external = True
            location = ExternalDataInfo(tensor).location
            target = (folder / location).resolve()
            if not location or not target.is_relative_to(folder) or not target.is_file():
                raise OnnxFileError(path, f"its tensor {shown(printable(tensor.name))} keeps its data in "
                                          f"{shown(printable(location))}, not a file inside the model's folder")
    return external


def _all_tensors(model):
    graphs = [model.graph, *(graph for info in model.training_info for graph in (info.initialization, info.algorithm))]
    for graph in graphs:
        yield from _graph_tensors(graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def _graph_tensors(graph):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node):
    for attribute in node.attribute:
        yield from (attribute.t, *attribute.tensors)
        for sparse in (attribute.sparse_tensor, *attribute.sparse_tensors):
            yield from (sparse.values, sparse.indices)
        for graph in (attribute.g, *attribute.graphs):
            yield from _graph_tensors(graph)


def onnxruntime_reason(error: Exception) -> str:
    """onnxruntime's message without its source location, on one line and cut short."""
    text = re.sub(r"\S+\.(h|cc):\d+ .*?\) ", "", " ".join(str(error).split()))
    return printable(text if len(text) <= 300 else text[:297] + "...")


def check_graph(session, path: Path, attributes: list, image_size: int) -> None:
    """The graph's one input (uint8 images, rank 4, 3 channels) and one output (float, rank 2), their sizes
    against the metadata (an edited metadata would otherwise name or size the predictions wrongly)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise OnnxFileError(path, f"its graph has {len(inputs)} input(s) and {len(outputs)} output(s) "
                                  f"({shown(', '.join(i.name for i in inputs + outputs))}); an aimonk model has one "
                                  "of each: uint8 images (N, H, W, 3) in, probabilities (N, K) out")
    images, probabilities = inputs[0], outputs[0]
    if images.type != "tensor(uint8)" or len(images.shape) != 4 or images.shape[3] != 3 and \
            isinstance(images.shape[3], int):
        raise OnnxFileError(path, f"its graph takes {images.type} of shape {images.shape}, not uint8 images "
                                  "(N, H, W, 3)")
    if probabilities.type != "tensor(float)" or len(probabilities.shape) != 2:
        raise OnnxFileError(path, f"its graph gives {probabilities.type} of shape {probabilities.shape}, not float "
                                  "probabilities (N, K)")
    _, height, width, _ = images.shape
    outputs = probabilities.shape[-1]
    if isinstance(outputs, int) and outputs != len(attributes):
        raise OnnxFileError(path, f"its metadata does not match the graph: {len(attributes)} attributes for "
                                  f"{outputs} outputs")
    if any(isinstance(side, int) and side != image_size for side in (height, width)):
        raise OnnxFileError(path, f"its metadata does not match the graph: image size {image_size} for inputs of "
                                  f"{height}x{width}")
