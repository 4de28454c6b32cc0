"""Hostile .onnx files given to `aimonk predict --model X.onnx`: each refused in one line naming the file and
what is wrong, exit 2, no traceback, nothing read outside the model's folder. Built with onnx.helper from a
real exported model."""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aimonk.cli import main
from conftest import opened
from test_bad_inputs import fails

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", "--model", str(run / "model.pt"), "--out", str(path)]) == 0
    return path


@pytest.fixture
def image(demo_dir):
    return demo_dir / "images" / "image_0.jpg"


def edited(exported, tmp_path, change, name="hostile.onnx"):
    model = onnx.load(exported)
    change(model)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def with_metadata(**fields):
    def change(model):
        [entry] = [item for item in model.metadata_props if item.key == "aimonk"]
        entry.value = json.dumps({**json.loads(entry.value), **fields})
    return change


def test_the_exported_model_predicts(exported, image, capsys):
    assert main(["predict", str(image), "--model", str(exported)]) == 0


@pytest.mark.parametrize("fields, words", [
    ({"attributes": [1, 2, 3, 4]}, ["attributes must all be names"]),
    ({"attributes": ["a", "a", "b", "c"]}, ["names the attribute 'a' more than once"]),
    ({"attributes": "abcd"}, ["attributes must be a list"]),
    ({"attributes": ["a", "b", "c\x1b]0;PWNED\x07"]}, ["holds U+001B"]),
    ({"thresholds": {"x": 0.5, "y": 0.5}}, ["thresholds"]),
    ({"thresholds": [float("nan")] * 4}, ["thresholds must be finite in [0, 1]"]),
    ({"thresholds": [1.5, 0.5, 0.5, 0.5]}, ["thresholds must be finite in [0, 1]"]),
    ({"image_size": 0}, ["image_size must be at least 32"]),
    ({"image_size": -1}, ["image_size must be at least 32"]),
    ({"image_size": 16000}, ["image_size must be at least 32 and at most 1024"]),
    ({"image_size": 48.0}, ["image_size must be an integer"]),
])
def test_hostile_metadata_is_refused(exported, image, tmp_path, capsys, fields, words):
    path = edited(exported, tmp_path, with_metadata(**fields))
    fails(capsys, ["predict", image, "--model", path], f"{path}: ", *words)


def drop_metadata(model):
    del model.metadata_props[:]


def foreign_metadata(model):
    drop_metadata(model)
    model.metadata_props.add(key="author", value="someone else")


def two_metadata(model):
    model.metadata_props.add(key="aimonk", value="{}")


def not_json(model):
    with_metadata()(model)
    model.metadata_props[0].value = "{not json"


def opset(version):
    def change(model):
        model.opset_import[0].version = version
    return change


def extra_input(model):
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))


def extra_output(model):
    model.graph.output.append(helper.make_tensor_value_info(model.graph.input[0].name, TensorProto.UINT8,
                                                            [None, 48, 48, 3]))


def input_type(elem_type, shape):
    def change(model):
        images = model.graph.input[0]
        images.CopyFrom(helper.make_tensor_value_info(images.name, elem_type, shape))
    return change


@pytest.mark.parametrize("change, words", [
    (drop_metadata, ["no 'aimonk' metadata"]),
    (foreign_metadata, ["no 'aimonk' metadata"]),
    (two_metadata, ["2 'aimonk' metadata entries"]),
    (not_json, ["metadata is not JSON"]),
    (opset(1), ["opset 1"]),
    (opset(99), ["onnxruntime cannot load it", "opset"]),
    (extra_input, ["2 input(s) and 1 output(s)"]),
    (extra_output, ["1 input(s) and 2 output(s)"]),
    (input_type(TensorProto.DOUBLE, ["batch", 48, 48, 3]), ["takes tensor(double)", "not uint8 images"]),
    (input_type(TensorProto.UINT8, ["batch", 48 * 48 * 3]), ["onnxruntime cannot load it", "Transpose"]),
], ids=["no-metadata", "foreign-metadata", "two-metadata", "not-json", "opset1", "opset99", "extra-input",
        "extra-output", "float64-input", "rank-2-input"])
def test_hostile_graphs_are_refused(exported, image, tmp_path, capsys, change, words):
    path = edited(exported, tmp_path, change)
    fails(capsys, ["predict", image, "--model", path], f"{path}: ", *words)


def test_a_float64_or_wrong_rank_input_is_refused(exported, image, tmp_path, capsys):
    """A graph that really takes float64 (or rank-2) input: a Cast in front of the exported one."""
    def float_input(model, shape):
        images = model.graph.input[0]
        cast = helper.make_node("Cast", ["raw"], [images.name + "_cast"], to=TensorProto.UINT8)
        for node in model.graph.node:
            node.input[:] = [images.name + "_cast" if name == images.name else name for name in node.input]
        model.graph.node.insert(0, cast)
        images.CopyFrom(helper.make_tensor_value_info("raw", TensorProto.DOUBLE, shape))
    path = edited(exported, tmp_path, lambda model: float_input(model, ["batch", 48, 48, 3]))
    fails(capsys, ["predict", image, "--model", path], f"{path}: ", "takes tensor(double)", "not uint8 images")


@pytest.mark.parametrize("content, words", [(b"", ["empty (0 bytes)"]), (b"hello, not onnx\n" * 50,
                                                                         ["not an ONNX model"]),
                                           (os.urandom(4096), ["not an ONNX model"])], ids=["empty", "text", "random"])
def test_files_that_are_not_onnx_are_refused(image, tmp_path, capsys, content, words):
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    fails(capsys, ["predict", image, "--model", path], f"{path}: ", *words)


def scaled_output(factor):
    """The output multiplied by `factor` (750% confidences, or NaN with factor nan)."""
    def change(model):
        output = model.graph.output[0]
        model.graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "factor"))
        for node in model.graph.node:
            node.output[:] = [name + "_raw" if name == output.name else name for name in node.output]
        model.graph.node.append(helper.make_node("Mul", [output.name + "_raw", "factor"], [output.name]))
    return change


@pytest.mark.parametrize("factor", [7.5, float("nan"), -1.0])
def test_outputs_that_are_not_probabilities_are_refused(exported, image, tmp_path, capsys, factor):
    path = edited(exported, tmp_path, scaled_output(factor))
    message = fails(capsys, ["predict", image, "--model", path], f"{path}: ", "not a probability in [0, 1]")
    assert "750" not in capsys.readouterr().out + message.split("answered")[0]


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "link.bin", "missing.bin"])
def test_external_data_outside_the_models_folder_is_never_read(exported, image, tmp_path, capsys, location):
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    (folder / "link.bin").symlink_to(secret)

    def external(model):
        tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value=location)
    path = edited(exported, folder, external)
    with opened() as paths:
        fails(capsys, ["predict", image, "--model", path], f"{path}: ", "not a file inside the model's folder")
    assert not [p for p in paths if p.startswith(str(secret)) or p == "/etc/passwd"]


def test_external_data_inside_the_models_folder_is_used(exported, image, tmp_path, capsys):
    model = onnx.load(exported)
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(model, folder / "m.onnx", save_as_external_data=True, location="weights.bin", size_threshold=1024)
    assert (folder / "weights.bin").is_file()
    capsys.readouterr()
    assert main(["predict", str(image), "--model", str(folder / "m.onnx"), "--format", "json"]) == 0
    assert main(["predict", str(image), "--model", str(exported), "--format", "json"]) == 0
    first, second = capsys.readouterr().out.split("]\n[")
    assert json.loads(first + "]") == json.loads("[" + second)
