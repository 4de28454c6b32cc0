"""The second fault catalogue: no two runs on one folder, notebook parameters checked before any notebook runs,
no formula reaches a spreadsheet, float images decoded by their range. Each case failed before its fix."""
import csv
import errno
import io
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aimonk.cli import main
from aimonk.data.images import load_image
from aimonk.files import LOCK_NAME, atomic_path, folder_lock
from test_bad_inputs import decoded_images, fails, image_folder

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


# ---- one run per output folder --------------------------------------------------------------------------

def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_folder_and_the_holder(demo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    with folder_lock(out):  # a run of this process holds it, as another live run would
        message = fails(capsys, ["train", demo_dir, "--out", out, "--image-size", "48"],
                        f"--out {out} is in use by another aimonk run", f"process {os.getpid()} on",
                        unchanged=[demo_dir, out])
        assert "choose another folder" in message
        fails(capsys, ["evaluate", demo_dir, "--cv", "2", "--out", out, "--image-size", "48"], "is in use",
              unchanged=[demo_dir, out])
    assert not out.exists()  # the lock made the folder for its run and removed it, empty, when released


def test_the_lock_of_a_run_that_died_is_cleared(demo_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"999999999@{socket.gethostname()}@")  # no such process
    assert main(["train", str(demo_dir), "--out", str(out), "--image-size", "48", "--backbone",
                 "efficientnet_lite0", "--threshold-source", "none"]) == 0
    assert (out / "model.pt").is_file() and not (out / LOCK_NAME).exists()


# ---- notebook parameters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("parameters, words", [
    (["-p", "epoch", "1"], ["-p epoch: no parameter of", "did you mean epochs?"]),
    (["-p", "imagesize", "64"], ["-p imagesize", "did you mean image_size?"]),
    (["-p", "epochs", "0"], ["-p epochs must be at least 1"]),
    (["-p", "image_size", "big"], ["-p image_size must be an integer, not 'big'"]),
    (["-p", "preset_name", "fast"], ["-p preset_name: unknown preset 'fast'"]),
])
def test_notebook_parameters_are_checked_before_any_notebook_runs(demo_dir, tmp_path, capsys, parameters, words):
    fails(capsys, ["notebooks", "--data", demo_dir, "--out", tmp_path / "nb", *parameters], *words,
          unchanged=[demo_dir])
    assert not (tmp_path / "nb").exists()  # not even notebook 01 ran


def test_only_matching_no_notebook_is_an_error(demo_dir, tmp_path, capsys):
    fails(capsys, ["notebooks", "--data", demo_dir, "--out", tmp_path / "nb", "--only", "09"],
          "--only 09: no notebook starts with it", unchanged=[demo_dir])


# ---- CSV injection --------------------------------------------------------------------------------------

def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_no_csv_cell_starts_a_spreadsheet_formula(run, tmp_path, capsys, monkeypatch):
    for name in ("=HYPERLINK(1).png", "+1.png", "-2.png", "@sum.png", "plain.png"):
        Image.new("RGB", (40, 40), "red").save(tmp_path / name)
    monkeypatch.chdir(tmp_path)  # `aimonk predict .`: the image column holds the names as they are
    assert main(["predict", ".", "--model", str(run / "model.pt"), "--format", "csv"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert sorted(row[0] for row in rows[1:]) == ["'+1.png", "'-2.png", "'=HYPERLINK(1).png", "'@sum.png", "plain.png"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert all(0 <= float(row[1]) <= 1 for row in rows[1:])  # numbers stay numbers


def test_attribute_names_that_look_like_formulas_are_neutralised_in_every_table(tmp_path, capsys):
    data = image_folder(tmp_path / "data", label_name="labels.csv",
                        text="filename,=cmd|' /C calc'!A0,-x,@y,z\n" + "".join(
                            f"image_{i}.jpg,{i % 2},{(i + 1) % 2},{i % 2},{(i // 2) % 2}\n" for i in range(10)))
    assert main(["summary", str(data), "--format", "csv"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert [row[0] for row in rows[1:]] == ["'=cmd|' /C calc'!A0", "'-x", "'@y", "z"]


# ---- float images ---------------------------------------------------------------------------------------

def test_a_float_tiff_in_0_1_is_decoded_by_its_range_not_as_black(tmp_path):
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    Image.fromarray(ramp, mode="F").save(tmp_path / "ramp.tif")
    decoded = load_image(tmp_path / "ramp.tif")
    assert decoded.shape == (64, 64, 3) and decoded[:, 0].max() == 0 and decoded[:, -1].min() == 255
    wide = np.tile(np.linspace(-50, 1000, 64, dtype=np.float32), (64, 1))
    Image.fromarray(wide, mode="F").save(tmp_path / "wide.tif")
    assert load_image(tmp_path / "wide.tif")[:, -1].min() == 255  # any other range stretched min..max


# ---- a full disk --------------------------------------------------------------------------------------

def test_a_cache_disk_without_room_is_a_warning_and_work_in_memory_never_a_sigbus(tmp_path, monkeypatch):
    from aimonk.data.images import cache_images

    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "cache"))
    paths = []
    for i in range(3):
        Image.new("RGB", (30, 30), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")

    def no_room(handle, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)  # what a full disk answers before any page is mapped
    with pytest.warns(UserWarning, match=r"the aimonk cache .*cache has no room for .* more: working in memory"):
        images, kept = cache_images(paths, 16)
    assert kept == [0, 1, 2] and images.shape == (3, 16, 16, 3) and images[2, 0, 0, 0] == 160
    assert not list((tmp_path / "cache").rglob("*.tmp")) and not list((tmp_path / "cache").rglob("*.npy"))


def full_disk_at(monkeypatch, where: str) -> None:
    """The disk fills up at one of a cache entry's writes: its header ('header', numpy writing the .npy's
    header), or its metadata ('metadata', the .json beside it)."""
    if where == "header":
        def no_room(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(np.lib.format, "open_memmap", no_room)
    else:
        write_text = Path.write_text

        def no_room_for_json(self, *args, **kwargs):
            if ".json." in self.name:  # the metadata's temporary beside its entry
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
            return write_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", no_room_for_json)


@pytest.mark.parametrize("where", ["header", "metadata"])
def test_a_full_cache_disk_at_any_write_of_an_entry_never_stops_a_prediction(run, demo_dir, tmp_path, monkeypatch,
                                                                            capsys, where):
    """Every cache write (images, features, graphs) degrades to a warning and work in memory; the prediction is
    the one an empty, roomy cache gives."""
    images = demo_dir / "images"
    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "roomy"))
    assert main(["predict", str(images), "--model", str(run / "model.pt"), "--format", "csv"]) == 0
    expected = capsys.readouterr().out
    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "full"))
    full_disk_at(monkeypatch, where)
    assert main(["predict", str(images), "--model", str(run / "model.pt"), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected
    assert "no room for" in captured.err and "working in memory" in captured.err and "Traceback" not in captured.err
    entries = {p.stem for p in (tmp_path / "full").rglob("*.npy")}
    assert entries <= {p.stem for p in (tmp_path / "full").rglob("*.json")}  # no entry without its metadata


def test_a_full_output_disk_names_the_file_and_keeps_the_earlier_one(tmp_path):
    from aimonk.files import write_text

    target = write_text(tmp_path / "metrics.json", "earlier")
    with pytest.raises(OSError, match="no space left on the device") as raised:
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(temporary))
    assert raised.value.filename == str(target) and target.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


# ---- what an interruption says was kept -------------------------------------------------------------------

@pytest.mark.parametrize("interrupt, said", [
    ({"at": 1}, "interrupted before the first epoch ended: nothing was saved"),
    ({"at": 1, "on": "epoch_ended"}, "the best checkpoint so far (epoch 1) is kept in")])
def test_ctrl_c_claims_only_what_is_on_disk(demo_dir, tmp_path, interrupt, said):
    """Ctrl-C as the first epoch starts, or just after its training state was saved: the message names what the
    folder holds, which the files on disk confirm."""
    from aimonk.config import preset
    from aimonk.data.folder import load_labelled_folder
    from aimonk.model.checkpoint import Checkpoint
    from aimonk.training.loop import TrainingInterrupted
    from aimonk.workflows import train
    from conftest import Interrupt

    class InterruptAfterEpoch(Interrupt):
        def epoch_ended(self, state, record, improved):  # the run folder's own epoch_ended ran first
            self.count(record["epoch"])

    stop = InterruptAfterEpoch(**interrupt) if interrupt.get("on") == "epoch_ended" else Interrupt(**interrupt)
    config = preset("finetune", image_size=48, epochs=3, batch_size=16, device="cpu", keep="last")
    with pytest.raises(TrainingInterrupted) as stopped:
        train(load_labelled_folder(demo_dir, 48, progress=False), config, tmp_path, progress=False, callbacks=[stop])
    assert said in str(stopped.value)
    if interrupt.get("on") != "epoch_ended":
        assert not (tmp_path / "model.pt").exists() and not (tmp_path / "last.pt").exists()
    else:
        assert Checkpoint.load(tmp_path / "model.pt").provenance.epoch == 1
        assert "--resume" in str(stopped.value) and (tmp_path / "last.pt").is_file()


# ---- signals ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does_with_exit_code_143(demo_dir, tmp_path):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "run"
    command = [sys.executable, "-m", "aimonk", "train", str(demo_dir), "--out", str(out), "--preset", "finetune",
               "--epochs", "50", "--image-size", "48", "--batch-size", "16", "--device", "cpu"]
    root = str(Path(__file__).resolve().parents[1])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": root})
    lines = []
    for line in process.stdout:  # the first epoch's line: model.pt of epoch 1 is on its way
        lines.append(line)
        if line.startswith("epoch   2"):
            process.send_signal(signal.SIGTERM)
            break
    rest, err = process.communicate(timeout=300)
    assert process.returncode == 143, err[-2000:]
    said = "".join(lines) + rest
    assert "interrupted: the best checkpoint so far (epoch " in said and "--resume" in said, said[-2000:]
    assert "Traceback" not in err and (out / "model.pt").is_file() and (out / "last.pt").is_file()


def test_a_seed_outside_numpys_range_is_refused_before_any_work(demo_dir, tmp_path, capsys):
    fails(capsys, ["train", demo_dir, "--out", tmp_path / "run", "--seed", str(2**40)],
          "--seed must be at least 0 and at most 4294967295", unchanged=[demo_dir])
    assert not (tmp_path / "run").exists()


# ---- damaged checkpoints and weights: one line, the file and what is wrong ------------------------------------

def damaged(run, tmp_path, kind: str):
    import pickle

    import torch

    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        path.write_bytes((run / "model.pt").read_bytes()[:100_000])
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": {"w": [1.0]}}, protocol=4))
    elif kind == "no_config":
        torch.save({"format": "aimonk-checkpoint/2"}, path)
    return path


@pytest.mark.parametrize("kind, words", [
    ("truncated", ["truncated.pt is not a readable aimonk checkpoint (not a file torch.save wrote: truncated"]),
    ("pickle", ["pickle.pt is not a readable aimonk checkpoint (not a file torch.save wrote"]),
    ("no_config", ["no_config.pt is not a complete aimonk checkpoint (it has no 'config')"]),
])
def test_a_damaged_checkpoint_is_one_line_naming_the_file_and_what_is_wrong(run, demo_dir, tmp_path, capsys, kind,
                                                                           words):
    path = damaged(run, tmp_path, kind)
    message = fails(capsys, ["predict", demo_dir / "images" / "image_0.jpg", "--model", path], *words,
                    unchanged=[demo_dir, run])
    assert message.endswith(")") and "warning" not in capsys.readouterr().err  # whole, and no torch warning


def test_a_pickle_given_as_weights_is_refused_before_any_image_is_decoded(run, demo_dir, tmp_path, capsys):
    fails(capsys, ["train", demo_dir, "--out", tmp_path / "run", "--backbone", "efficientnet_lite0", "--weights",
                   damaged(run, tmp_path, "pickle"), "--image-size", "48"],
          "pickle.pt is not a readable weights file", unchanged=[demo_dir], unread=decoded_images(demo_dir))


# ---- resume checks the data it resumes on ---------------------------------------------------------------

@pytest.fixture(scope="module")
def interrupted_run(demo_dir, tmp_path_factory):
    """A finetune run stopped by Ctrl-C as its second epoch started: last.pt and model.pt of epoch 1."""
    from aimonk.config import preset
    from aimonk.training.loop import TrainingInterrupted
    from aimonk.workflows import train
    from conftest import Interrupt

    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(TrainingInterrupted):
        train(demo_dir, preset("finetune", epochs=3, image_size=48, batch_size=16, device="cpu"), out,
              progress=False, callbacks=[Interrupt(2)])
    assert (out / "last.pt").is_file()
    return out


def relabelled(demo_dir, target, change):
    import shutil

    shutil.copytree(demo_dir, target)
    lines = (target / "labels.txt").read_text().splitlines()
    (target / "labels.txt").write_text("\n".join(change(lines)) + "\n")
    return target


def test_resume_on_changed_labels_says_which_changed(interrupted_run, demo_dir, tmp_path, capsys):
    def flip_first_label(lines):
        name, first, *rest = lines[0].split()
        return [" ".join([name, "0" if first == "1" else "1", *rest])] + lines[1:]

    data = relabelled(demo_dir, tmp_path / "data", flip_first_label)
    fails(capsys, ["train", data, "--out", interrupted_run, "--resume"], "was trained on other labels than",
          "1 changed, e.g. image_0.jpg Attr1", unchanged=[data, interrupted_run])


def test_resume_on_other_attributes_names_them(interrupted_run, demo_dir, tmp_path, capsys):
    data = relabelled(demo_dir, tmp_path / "data", lambda lines: ["filename a b c d"] + lines)
    fails(capsys, ["train", data, "--out", interrupted_run, "--resume"],
          "was trained on the attributes Attr1, Attr2, Attr3, Attr4", "has a, b, c, d",
          unchanged=[data, interrupted_run])


# ---- options against the data ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["evaluate", "{data}", "--cv", "100", "--out", "{out}"], ["--cv 100 asks for more folds than the 57 images"]),
    (["train", "{data}", "--out", "{out}", "--threshold-folds", "100"], ["--threshold-folds 100 asks for more folds"]),
])
def test_more_folds_than_images_is_refused_naming_the_option(demo_dir, tmp_path, capsys, args, words):
    out = tmp_path / "out"
    fails(capsys, [a.format(data=demo_dir, out=out) for a in args] + ["--image-size", "48"], *words,
          unchanged=[demo_dir])
    assert not out.exists()


# ---- label files: the right line, readable messages -------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("image_0.jpg 1 0 1 0\f\nimage_1.jpg 1 0 1 0\nimage_2.jpg 1 0 maybe 0\n",
     ["labels.txt, line 3: unknown label 'maybe'"]),  # a form feed ending line 1 is no line of its own
    ("image_0.jpg 1 0 1 0\u2028\nimage_1.jpg 1 0 1 0\nimage_2.jpg 1 0 maybe 0\n", ["labels.txt, line 3"]),
    ("image_0.jpg 1 0 1 0 \u2028 image_1.jpg 1 0 1 0\n", ["labels.txt, line 1: unknown label 'image_1.jpg'"]),
    ("image_0.jpg 1 0 1 0\nimage\x00_1.jpg 1 0 1 0\n", ["line 2: filename 'image\\x00_1.jpg' holds a NUL byte"]),
    ("image_0.jpg 1 0 1 0\nimage_1.jpg 1 0 " + "x" * 200_000 + " 0\n",
     ["line 2: unknown label 'xxxxxxxx", "... (200,000 characters)"]),
    ("filename NA none yes no\nimage_0.jpg 1 0 1 0\n", ["line 1: this looks like a header", "use labels.csv"]),
    ("image_0.jpg " + "1 " * 20_000 + "\n", ["20,000 attributes is more than the 10,000 aimonk takes"]),
])
def test_label_file_errors_name_the_right_line_readably(tmp_path, capsys, text, words):
    data = image_folder(tmp_path / "data", text=text.encode("utf-8"))
    message = fails(capsys, ["summary", data], *words, unchanged=[data])
    assert len(message) < 400


def test_a_fifo_given_as_the_label_file_is_called_what_it_is(tmp_path, capsys):
    fifo = tmp_path / "labels.txt"
    os.mkfifo(fifo)
    fails(capsys, ["summary", fifo], "is not a regular file (a FIFO")


@pytest.mark.parametrize("edit, words", [
    ("shape", ["its weights do not fit efficientnet_lite0 (size mismatch for head.1.bias"]),
    ("missing", ["its weights are not a state dict of efficientnet_lite0: 1 missing (e.g. ['head.1.bias'])"]),
])
def test_a_checkpoint_whose_weights_were_edited_is_one_short_line(run, demo_dir, tmp_path, capsys, edit, words):
    import torch

    payload = torch.load(run / "model.pt", weights_only=True)
    if edit == "shape":
        payload["state_dict"]["head.1.bias"] = torch.zeros(7)
    else:
        payload["state_dict"].pop("head.1.bias")
    torch.save(payload, tmp_path / "model.pt")
    message = fails(capsys, ["predict", demo_dir / "images" / "image_0.jpg", "--model", tmp_path / "model.pt"],
                    f"{tmp_path / 'model.pt'}: ", *words, unchanged=[demo_dir, run])
    assert len(message) < 400  # not torch's list of every key


def test_a_filename_with_spaces_in_labels_txt_points_to_labels_csv(tmp_path, capsys):
    data = image_folder(tmp_path / "data", text=b"image_0.jpg 1 0 1 0\nmy photo.jpg 1 0 1 0\nimage_2.jpg 0 1 0 1\n")
    fails(capsys, ["summary", data], "line 2: expected 5 fields", "a filename with spaces?", "use labels.csv",
          unchanged=[data])


# ---- a damaged cache entry is recomputed, never used --------------------------------------------------------

@pytest.mark.parametrize("damage", ["content", "metadata"])
def test_a_damaged_cache_entry_is_detected_and_recomputed(tmp_path, monkeypatch, damage):
    import json

    from aimonk.data.images import cache_images

    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "cache"))
    paths = []
    for i in range(4):
        Image.new("RGB", (30, 30), (40 * i, 200, 0)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    first, _ = cache_images(paths, 16)
    first = np.array(first)
    [entry] = (tmp_path / "cache" / "images").glob("*.npy")
    if damage == "content":  # the same size, other bytes: only a checksum tells
        data = bytearray(entry.read_bytes())
        data[-100:] = bytes(100)
        entry.write_bytes(bytes(data))
    else:
        meta = entry.with_suffix(".json")
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "rows": "many"}))
    again, kept = cache_images(paths, 16)
    np.testing.assert_array_equal(again, first)
    assert kept == [0, 1, 2, 3]


def test_an_interrupted_cross_validation_leaves_a_folder_that_says_it_is_incomplete(demo_dir, tmp_path, capsys):
    from conftest import ctrl_c_on_line

    out = tmp_path / "cv"
    with ctrl_c_on_line("linear probe solved", nth=3):  # two folds solved, then Ctrl-C as the final model's ends
        code = main(["evaluate", str(demo_dir), "--cv", "2", "--out", str(out), "--image-size", "48", "--backbone",
                     "efficientnet_lite0"])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted while the final model trained" in err and "--overwrite" in err
    assert (out / "cv_metrics.csv").is_file() and not (out / "model.pt").exists()
    assert "model.pt is missing" in (out / "INCOMPLETE.txt").read_text()


def test_a_folder_with_two_label_files_is_named_not_silently_resolved(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    (data / "labels.csv").write_text("filename,a,b,c,d\nimage_0.jpg,1,0,1,0\n")
    fails(capsys, ["summary", data], "holds labels.csv and labels.txt: give the label file to use", unchanged=[data])
    assert main(["summary", str(data / "labels.csv")]) == 0  # the one given is used


@pytest.mark.parametrize("field, value, words", [
    ("attributes", ["a", "b", "c"], ["its metadata does not match the graph: 3 attributes for 4 outputs"]),
    ("image_size", 96, ["its metadata does not match the graph: image size 96 for inputs of 48x48"]),
])
def test_an_onnx_model_whose_metadata_was_edited_is_refused(run, demo_dir, tmp_path, capsys, field, value, words):
    import json

    import onnx

    exported = tmp_path / "model.onnx"
    assert main(["export", "--model", str(run / "model.pt"), "--format", "onnx", "--out", str(exported)]) == 0
    model = onnx.load(exported)
    [entry] = [item for item in model.metadata_props if item.key == "aimonk"]
    entry.value = json.dumps({**json.loads(entry.value), field: value})
    edited = tmp_path / "edited.onnx"
    onnx.save(model, edited)
    capsys.readouterr()
    fails(capsys, ["predict", demo_dir / "images" / "image_0.jpg", "--model", edited], f"{edited}: ", *words,
          unchanged=[demo_dir, run])


def test_a_listed_link_loop_is_named_with_its_line(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    (data / "images" / "loop.jpg").symlink_to(data / "images" / "loop.jpg")
    (data / "labels.txt").write_text("image_0.jpg 1 0 1 0\nloop.jpg 1 0 1 0\nimage_2.jpg 0 1 0 1\n")
    fails(capsys, ["summary", data], "labels.txt, line 2: 'loop.jpg' cannot be followed", unchanged=[data])


def test_one_image_listed_under_two_names_is_warned_about(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    (data / "images" / "again.jpg").symlink_to(data / "images" / "image_0.jpg")
    (data / "labels.txt").write_text("image_0.jpg 1 0 1 0\nimage_1.jpg 0 1 0 1\nagain.jpg 1 0 1 0\n")
    assert main(["summary", str(data)]) == 0
    assert "warning: 'again.jpg' is the same file as 'image_0.jpg' (a link): it counts twice" in capsys.readouterr().err


def test_the_macro_baseline_leaves_out_an_attribute_with_no_known_label_and_says_so():
    from aimonk.evaluation.folder import unscorable
    from aimonk.evaluation.tables import score

    targets = np.array([[1, np.nan], [0, np.nan], [1, np.nan]], dtype=np.float32)
    probabilities = np.array([[0.9, 0.5], [0.2, 0.5], [0.8, 0.5]], dtype=np.float32)
    table = score(targets, probabilities, [0.5, 0.5], ["seen", "unlabelled"])
    assert np.isnan(table.loc["unlabelled", "always_present_f1"]) and table.loc["macro", "always_present_f1"] == pytest.approx(0.8)
    [note] = unscorable(targets, probabilities, [0.5, 0.5], ["seen", "unlabelled"])
    assert "'unlabelled'" in note and "baseline are NaN, left out of the macro row" in note


def test_json_predictions_are_valid_json_even_for_a_non_finite_probability_or_threshold():
    import json

    from aimonk.serve.predictions import Predictions

    text = Predictions(["a.jpg"], ["x", "y"], np.array([[np.nan, 0.7]]), [0.5, np.nan]).format("json")
    [record] = json.loads(text, parse_constant=lambda constant: pytest.fail(f"bare {constant}"))
    assert record["attributes"]["x"]["probability"] is None and record["attributes"]["y"]["probability"] == 0.7
    assert record["thresholds"] == {"x": 0.5, "y": None}


def test_a_filename_longer_than_a_file_name_can_be_is_a_label_file_error(tmp_path, capsys):
    data = image_folder(tmp_path / "data", text=("image_0.jpg 1 0 1 0\n" + "a" * 10_000 + ".jpg 1 0 1 0\n").encode())
    message = fails(capsys, ["summary", data], "line 2: filename 'aaaa", "is longer than a file name can be",
                    unchanged=[data])
    assert len(message) < 400


def test_export_out_that_is_a_folder_is_refused_naming_the_option(run, tmp_path, capsys):
    fails(capsys, ["export", "--model", run / "model.pt", "--format", "onnx", "--out", tmp_path],
          f"--out {tmp_path} must end in .onnx", unchanged=[run, tmp_path])


def test_a_checkpoint_that_does_not_fit_the_disk_is_one_line_naming_it(tmp_path, monkeypatch):
    """torch.save reports a full disk as a RuntimeError ('unexpected pos ...'), as a 2 MB tmpfs showed."""
    import shutil
    from collections import namedtuple

    import torch

    def torch_on_a_full_disk(payload, target):
        open(target, "wb").write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1932288 vs 1932184")

    monkeypatch.setattr(torch, "save", torch_on_a_full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: namedtuple("Usage", "total used free")(2 << 20, 2 << 20, 0))
    target = tmp_path / "model.pt"
    with pytest.raises(OSError, match="no space left on the device") as raised:
        with atomic_path(target) as temporary:
            torch.save({}, temporary)
    assert raised.value.filename == str(target) and not list(tmp_path.iterdir())


def test_notebooks_refuse_a_labels_file_they_could_not_read_before_any_notebook_runs(tmp_path, capsys):
    """A hostile attribute name stops `aimonk notebooks` at the start, in one line, not in notebook 01 or 03."""
    (tmp_path / "data" / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "data" / "images" / "a.jpg")
    (tmp_path / "data" / "labels.csv").write_text("filename,\x1b]0;PWNED\x07,b\na.jpg,1,0\n")
    assert main(["notebooks", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "nb")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "column 2" in err and "\\x1b" in err and "\x1b" not in err
    assert not (tmp_path / "nb").exists()
