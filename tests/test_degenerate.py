"""Degenerate input: infinite numbers in a --config refused in one line; every JSON aimonk writes is strict JSON;
degenerate folders (an attribute with no positive, K = 1, 2-5 images, broken image files, fewer known labels than
folds) run and say what they did, or stop before any decoding in one line."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aimonk.config import TrainConfig
from aimonk.files import json_text


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_configuration_number_that_is_not_finite_is_one_line_naming_the_field(value):
    with pytest.raises(ValueError, match=r"^head_c must be a number") as error:
        TrainConfig(head_c=value)
    assert "\n" not in str(error.value)


def test_json_text_writes_nan_and_infinity_as_null_so_strict_parsers_read_it():
    written = json_text({"a": math.nan, "b": [math.inf, 1.5, {"c": -math.inf}], "d": "x"})
    assert _strict(written) == {"a": None, "b": [None, 1.5, {"c": None}], "d": "x"}


def test_a_run_folders_json_files_are_strict(tmp_path):
    from aimonk.run_folder import RunFolder
    import pandas as pd
    with RunFolder(tmp_path / "run") as folder:
        folder.write_config(TrainConfig())
        table = pd.DataFrame({"f1": [math.nan, 0.5], "auc": [math.inf, 0.7]}, index=["only_negatives", "ok"])
        folder.write_metrics("held out", table, notes=["only_negatives: threshold left at 0.5"])
    for name in ("config.json", "metrics.json"):
        _strict((tmp_path / "run" / name).read_text())
    assert '"f1": null' in (tmp_path / "run" / "metrics.json").read_text()


@pytest.mark.parametrize("text", ['{"head_c": Infinity}', '{"lr": NaN}', '{"dropout": -Infinity}'])
def test_train_config_with_a_non_finite_number_stops_in_one_line_naming_field_and_file(tmp_path, text, capsys):
    from aimonk.cli import main

    config = tmp_path / "config.json"
    config.write_text(text)
    assert main(["train", str(tmp_path / "no-data"), "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    field, said = text.split('"')[1], capsys.readouterr().err
    lines = said.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and field in lines[0], said
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("separator, said", [(";", "semicolons"), ("\t", "tabs"), ("|", "'|'")])
def test_a_labels_csv_with_another_separator_is_refused_naming_it(tmp_path, separator, said):
    from aimonk.data.labels import read_labels
    path = tmp_path / "labels.csv"
    path.write_text(separator.join(["filename", "red", "blue"]) + "\n" + separator.join(["a.jpg", "1", "0"]) + "\n")
    with pytest.raises(ValueError, match=f"separated by {re.escape(said)}") as error:
        read_labels(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_text_cell_or_label_holding_a_carriage_return_reads_back_from_the_csv():
    import csv
    import io

    import pandas as pd
    from aimonk.files import csv_text
    text = csv_text(pd.DataFrame({"name": ["a\rb", "c"], "score": [1.5, 2.0]}, index=pd.Index(["x\ry", "z"], name="f")))
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["f", "name", "score"], ["x\ry", "a\rb", "1.5"],
                                                               ["z", "c", "2.0"]]


# ---- degenerate folders: an attribute with no positive, K = 1, 2-5 images, broken image files ------------------

def labelled_copy(demo_dir, root, edit) -> Path:
    """A copy of the demo folder whose labels.txt rows (filename, then the values) pass through `edit`."""
    import shutil

    copy = Path(shutil.copytree(demo_dir, root / "data"))
    rows = [line.split() for line in (copy / "labels.txt").read_text().splitlines()]
    (copy / "labels.txt").write_text("".join(" ".join(edit(row)) + "\n" for row in rows))
    return copy


def test_f1_of_an_attribute_with_no_known_positive_is_undefined_not_zero():
    from aimonk.metrics import attribute_metrics
    targets = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0], [np.nan, 0.0]])
    perfect = np.array([[0, 1], [0, 0], [0, 1], [1, 0]])  # the NA row's decision is not scored
    table = attribute_metrics(targets, perfect, 0.5, ["never", "sometimes"])
    assert table.loc["never", ["precision", "recall", "f1"]].isna().all()
    assert table.loc["sometimes", "f1"] == 1.0 and table.loc["macro", "f1"] == 1.0  # the mean of what is defined
    false_alarm = attribute_metrics(targets, perfect | np.array([[1, 0]] * 4), 0.5, ["never", "sometimes"])
    assert false_alarm.loc["never", "precision"] == 0.0 and np.isnan(false_alarm.loc["never", "f1"])


def test_evaluate_on_an_attribute_with_no_positive_says_its_f1_is_undefined(demo_dir, run, tmp_path, capsys):
    from aimonk.cli import main
    data = labelled_copy(demo_dir, tmp_path, lambda row: row[:4] + ["0" if row[4] == "1" else row[4]])
    assert main(["evaluate", str(data), "--model", str(run / "model.pt"), "--out", str(tmp_path / "scores")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"note: attribute 'Attr4' has no positive among the \d+ known labels of the scored images: its "
                     r"recall and F1 are undefined \(NaN\), left out of the macro row; it was called present on \d+ of "
                     r"them", out), out
    metrics = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert "Attr4" in json.dumps(metrics) and "undefined (NaN)" in json.dumps(metrics)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG of a few dozen bytes whose header says width x height (900 megapixels): PIL's decompression-bomb
    guard refuses to open it (DecompressionBombError)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


BROKEN = {"zero-byte": lambda path: path.write_bytes(b""),
          "truncated": lambda path: path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2]),
          "decompression bomb": lambda path: path.write_bytes(bomb_png())}


@pytest.mark.parametrize("broken", BROKEN)
def test_notebook_01s_sample_grid_leaves_out_an_unreadable_image_naming_it(demo_dir, tmp_path, broken):
    from aimonk.data.eda import explore_folder
    from aimonk.data.images import DataWarning
    from aimonk.plots.eda import plot_folder_samples
    data = labelled_copy(demo_dir, tmp_path, lambda row: row)
    folder = explore_folder(data)
    rows = folder.sample(6)
    bad = data / "images" / folder.labels.filenames[rows[0]]
    BROKEN[broken](bad)
    with pytest.warns(DataWarning, match=f"skipped 1 unreadable image.*{re.escape(str(bad))}"):
        figure = plot_folder_samples(folder, rows, size=32)
    assert len(figure.axes) == 5
    captions = [text.get_text() for ax in figure.axes for text in ax.texts]
    assert bad.name not in captions


def test_notebook_04s_first_image_is_the_first_that_decodes(tmp_path):
    import aimonk
    from aimonk.data.images import DataWarning
    Image.new("RGB", (30, 20), "red").save(tmp_path / "c.png")
    good = Image.open(tmp_path / "c.png")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.png").write_bytes((tmp_path / "c.png").read_bytes()[:40])
    paths = aimonk.list_images(tmp_path)
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable image\(s\): .*a\.jpg: .*; .*b\.png: ") as seen:
        path, image = aimonk.first_readable_image(paths)
    assert len(seen) == 1 and path == tmp_path / "c.png" and image.shape == (good.height, good.width, 3)
    with pytest.warns(DataWarning), pytest.raises(ValueError, match="none of the 2 image file"):
        aimonk.first_readable_image(paths[:2])


def small_folder(root: Path, count: int, rows=None) -> Path:
    """`count` images (40x40 noise) with labels.txt: header `filename a b`, a = 0 1 0 1 ..., b its opposite
    (or the given value rows)."""
    (root / "images").mkdir(parents=True)
    generator = np.random.default_rng(count)
    rows = rows or [[str(i % 2), str((i + 1) % 2)] for i in range(count)]
    lines = ["filename a b"]
    for i, values in enumerate(rows):
        Image.fromarray(generator.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.jpg")
        lines.append(" ".join([f"im{i}.jpg", *values]))
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return root


LITE0 = ["--backbone", "efficientnet_lite0", "--image-size", "48"]


@pytest.mark.parametrize("count", [2, 3, 4])
@pytest.mark.parametrize("command, option", [("train", "--threshold-folds 5"), ("evaluate", "--cv 5")])
def test_fewer_images_than_folds_stop_before_any_image_is_decoded(tmp_path, capsys, count, command, option):
    from test_bad_inputs import decoded_images, fails
    data = small_folder(tmp_path / "data", count)
    args = [command, data, "--out", tmp_path / "run", *LITE0] + (["--cv", "5"] if command == "evaluate" else [])
    fails(capsys, args, option, f"more folds than the {count} images of {data / 'labels.txt'}", f"at most {count}",
          unchanged=[data], unread=decoded_images(data))
    assert not (tmp_path / "run").exists()


def test_an_attribute_whose_only_positive_is_missing_on_disk_stops_before_decoding(tmp_path, capsys):
    from test_bad_inputs import decoded_images, fails
    data = small_folder(tmp_path / "data", 6, [["1", "0"], ["0", "0"]] * 3)
    with (data / "labels.txt").open("a") as labels:
        labels.write("gone.jpg 1 1\n")  # b's only positive, listed but not on disk
    fails(capsys, ["train", data, "--out", tmp_path / "run", *LITE0, "--threshold-folds", "2"], "attribute 'b'",
          "0 positive and 6 negative known labels among the 6 listed images on disk", unchanged=[data],
          unread=decoded_images(data))


def test_an_attribute_whose_only_positive_is_unreadable_is_named_with_the_readable_count(tmp_path, capsys):
    data = small_folder(tmp_path / "data", 6, [["1", "0"], ["0", "0"]] * 2 + [["1", "1"], ["0", "0"]])
    (data / "images" / "im4.jpg").write_bytes(b"")
    from aimonk.cli import main
    assert main(["train", str(data), "--out", str(tmp_path / "run"), *LITE0, "--threshold-folds", "2"]) == 2
    err = capsys.readouterr().err
    assert "im4.jpg" in err and "Traceback" not in err
    assert re.search(r"error: .*attribute 'b' has 0 positive and 5 negative known labels among the 5 images that "
                     r"could be read", err), err


def test_an_image_header_of_a_decompression_bomb_is_an_unreadable_size_not_a_stop(tmp_path):
    from aimonk.data.eda import image_sizes
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    Image.new("RGB", (3, 2)).save(tmp_path / "small.png")
    sizes = image_sizes(tmp_path, ["bomb.png", "small.png"])
    assert sizes["mode"].tolist() == ["unreadable", "RGB"] and sizes["width"].tolist()[1] == 3


def test_picking_a_dataset_image_that_does_not_decode_in_the_app_says_so(run, tmp_path):
    from aimonk.serve.predictor import Predictor
    from aimonk.widgets import PredictionApp
    (tmp_path / "empty.jpg").write_bytes(b"")
    app = PredictionApp(Predictor.load(run / "model.pt", device="cpu"), [tmp_path / "empty.jpg"])
    app.picker.value = app.picker.options[1][1]
    assert "Cannot read empty.jpg" in app.result.value and app.name is None


def test_notebook_03s_sample_grid_keeps_one_caption_line_per_attribute_whatever_the_names():
    """Issue 31, point 3: a name holding a newline split an image's caption into more lines than it has colours,
    and notebook 03 stopped at its sample predictions with IndexError."""
    from aimonk.plots.evaluation import plot_sample_predictions
    attributes = ["two\nlines", "<b>bold</b>", "a$^$b", "x" * 300]
    names = ["one\nimage.jpg", "two\rimage.jpg"]
    targets = np.array([[1.0, 0.0, np.nan, 1.0], [0.0, 1.0, 1.0, np.nan]])
    figure = plot_sample_predictions(np.zeros((2, 8, 8, 3), np.uint8), names, targets, np.full((2, 4), 0.7),
                                     [0.5] * 4, attributes)
    for ax in figure.axes:
        assert len(ax.texts) == 1 + len(attributes)
        assert all("\n" not in text.get_text() and "\r" not in text.get_text() for text in ax.texts)


def test_a_threshold_with_one_class_held_out_is_said_to_be_left_at_half_never_called_tuned():
    """Issue 31: thresholds were silently 0.5 when the held-out images hold one class, the rule saying 'tuned'."""
    from aimonk.decision.rule import DecisionRule
    from aimonk.decision.thresholds import HeldOut
    targets = np.array([[1.0, 1.0, np.nan], [0.0, 1.0, np.nan], [1.0, 1.0, np.nan], [0.0, np.nan, np.nan]])
    held_out = HeldOut(targets, np.array([[0.9, 0.8, 0.5], [0.2, 0.7, 0.5], [0.8, 0.9, 0.5], [0.3, 0.6, 0.5]]),
                       "the 4 validation images")
    with pytest.warns(UserWarning, match=r"thresholds left at 0.5 \(nothing to tune on\) for always \(no negative "
                                         r"among the 3 known held-out labels\), unknown \(no known label among the 0"):
        rule = DecisionRule("f1", "none").fit(held_out, ["varies", "always", "unknown"])
    assert rule.thresholds[1:] == [0.5, 0.5] and rule.thresholds[0] != 0.5
    assert rule.source_.startswith("tuned (f1) on the 4 validation images; left at 0.5 (nothing to tune on) for "
                                   "always (no negative")


def test_an_attribute_with_fewer_known_positives_than_threshold_folds_trains_with_a_note(tmp_path, capsys):
    from aimonk.cli import main
    data = small_folder(tmp_path / "data", 6, [["1", "1"], ["0", "0"], ["1", "NA"], ["0", "0"], ["1", "0"], ["0", "NA"]])
    assert main(["train", str(data), "--out", str(tmp_path / "run"), *LITE0, "--threshold-folds", "3"]) == 0
    out = capsys.readouterr().out
    assert ("note: attribute 'b' has 1 positive known label(s) for --threshold-folds 3: at least 2 of the folds hold "
            "none, so its out-of-fold scores and threshold rest on very few images") in out
    assert "attribute 'a'" not in out and (tmp_path / "run" / "model.pt").is_file()


@pytest.mark.parametrize("label_file", ["labels.csv", "labels.txt"])
def test_one_attribute_trains_evaluates_and_predicts(tmp_path, capsys, label_file):
    from aimonk.cli import main
    data = small_folder(tmp_path / "data", 6, [[str(i % 2), "0"] for i in range(6)])
    rows = [line.split()[:2] for line in (data / "labels.txt").read_text().splitlines()]
    (data / "labels.txt").unlink()
    (data / label_file).write_text("".join((",".join(row) if label_file.endswith(".csv") else " ".join(row)) + "\n"
                                           for row in [["filename", "only"], *rows[1:]]))
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), *LITE0, "--threshold-folds", "2"]) == 0
    assert main(["evaluate", str(data), "--model", str(run / "model.pt")]) == 0
    assert main(["predict", str(data / "images"), "--model", str(run / "model.pt"), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "on 6 images, 1 attributes" in out and re.search(r"^only +[\d.]+ +[\d.]+ +[\d.]+ +3 +6 ", out, re.M), out
    assert "image,only_probability,only" in out and out.count("im5.jpg,") == 1


def test_broken_and_tiny_images_are_skipped_by_name_once_or_trained_on(tmp_path, capsys):
    from aimonk.cli import main
    data = small_folder(tmp_path / "data", 10)
    images = sorted((data / "images").glob("*.jpg"))
    for (kind, breaks), path in zip(BROKEN.items(), images):
        breaks(path)
    Image.new("RGB", (1, 1), "red").save(images[3])  # 1x1 pixel: read, and scaled up like any other
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), *LITE0, "--threshold-folds", "2"]) == 0
    assert main(["predict", str(data / "images"), "--model", str(run / "model.pt"), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert f"on {len(images) - 3} images" in out and f"{images[3].name}," in out
    assert err.count("warning: skipped 3 unreadable image(s): ") == 2  # one line from train, one from predict
    for path in images[:3]:
        assert err.count(f"{path}: ") == 2 and f"{path.name}," not in out
    assert "Traceback" not in err
