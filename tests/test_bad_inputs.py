"""The bad-input and fault catalogue: every error a user can cause is one line naming the culprit, exits with
the project's code (2), and leaves the data folder and any existing run byte-for-byte unchanged."""
import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aimonk.cli import main
from conftest import opened, opened_under


EXIT = 2
LINES = ["image_0.jpg 1 0 1 0", "image_1.jpg 0 1 NA 1", "image_2.jpg 1 1 0 0", "image_3.jpg 0 NA 1 1"]
TINY = ["--image-size", "48", "--batch-size", "8"]
pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


def tree_state(*folders) -> dict:
    """Every file under the folders: its bytes' hash and mode (a new, changed or removed file shows)."""
    state = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_symlink():
                state[str(path)] = ("link to", os.readlink(path))
            elif path.is_file():
                state[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
    return state


def fails(capsys, args, *culprits, unchanged=(), unread=()):
    """Run `aimonk ARGS`; it must exit 2 with one `error:` line naming every culprit, changing no file under
    `unchanged` and opening none under `unread` (Python's open audit event: e.g. not one image decoded, nor
    read from the aimonk cache's decoded images). Returns the message."""
    before = tree_state(*unchanged)
    with opened() as paths:
        code = main([str(a) for a in args])
    assert not opened_under(paths, *unread)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT, err
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    for culprit in culprits:
        assert str(culprit) in errors[0], (culprit, errors[0])
    assert "weights_only" not in errors[0]
    assert tree_state(*unchanged) == before
    return errors[0]


def decoded_images(data: Path) -> list[Path]:
    """Where decoding the images of `data` opens files: its images, and the aimonk cache's decoded images."""
    from aimonk.cache import cache_root

    return [data / "images", cache_root() / "images"]


def image_folder(root: Path, lines=LINES, label_name="labels.txt", text=None) -> Path:
    """A labelled folder: images/image_0..9.jpg and a label file with `lines` (or raw `text`)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "images" / f"image_{i}.jpg")
    label_file = root / label_name
    if isinstance(text, bytes):
        label_file.write_bytes(text)
    else:
        label_file.write_text(text if text is not None else "\n".join(lines) + "\n")
    return root


# ---- label files ------------------------------------------------------------------------------------------

def test_unknown_token_names_file_line_and_column(tmp_path, capsys):
    data = image_folder(tmp_path, LINES[:2] + ["image_2.jpg 1 maybe 0 0"])
    fails(capsys, ["summary", data], "labels.txt, line 3", "'maybe'", "column 3", unchanged=[data])


def test_a_short_first_line_is_blamed_on_line_1(tmp_path, capsys):
    data = image_folder(tmp_path, ["image_0.jpg 1 0 1"] + LINES[1:])
    fails(capsys, ["summary", data], "line 1", "expected 5 fields", unchanged=[data])


def test_duplicate_filename(tmp_path, capsys):
    data = image_folder(tmp_path, LINES + ["image_1.jpg 1 1 1 1"])
    fails(capsys, ["summary", data], "line 5", "duplicate filename 'image_1.jpg'", "line 2", unchanged=[data])


def test_dot_slash_names_the_same_file(tmp_path, capsys):
    data = image_folder(tmp_path, LINES + ["./image_0.jpg 1 1 1 1"])
    fails(capsys, ["summary", data], "line 5", "duplicate filename 'image_0.jpg'", unchanged=[data])


def test_a_filename_starting_with_a_hash_is_an_image_not_a_comment(tmp_path, capsys):
    data = image_folder(tmp_path, LINES + ["#5.jpg 1 1 1 1"])
    (data / "images" / "image_5.jpg").rename(data / "images" / "#5.jpg")
    assert main(["summary", str(data)]) == 0
    assert "5 labelled images" in capsys.readouterr().out


def test_non_utf8_label_file_names_file_and_line(tmp_path, capsys):
    data = image_folder(tmp_path, text="image_0.jpg 1 0 1 0\nimage_1.jpg 0 1 NA 1\nimag\xe9_2.jpg 1 1 0 0\n"
                        .encode("latin-1"))
    fails(capsys, ["summary", data], "labels.txt, line 3", "not UTF-8", unchanged=[data])


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/hostname", "../../other/images/x.jpg",
                                  "images/../../x.jpg", "C:\\Windows\\x.jpg"])
def test_paths_leaving_the_image_folder_are_refused(tmp_path, capsys, name):
    data = image_folder(tmp_path, LINES + [f"{name} 1 0 1 0"])
    fails(capsys, ["train", data, "--out", tmp_path / "run", *TINY], "line 5", "outside the image folder",
          unchanged=[data])
    assert not (tmp_path / "run").exists()


def test_a_link_out_of_the_image_folder_is_refused(tmp_path, capsys):
    outside = image_folder(tmp_path / "other")
    data = image_folder(tmp_path / "data", LINES + ["sneaky.jpg 1 0 1 0"])
    (data / "images" / "sneaky.jpg").symlink_to(outside / "images" / "image_0.jpg")
    fails(capsys, ["summary", data], "line 5", "'sneaky.jpg' resolves to", "outside the image folder",
          unchanged=[data, outside])


def test_csv_without_header(tmp_path, capsys):
    data = image_folder(tmp_path, label_name="labels.csv", text="image_0.jpg,1,0,1,0\nimage_1.jpg,0,1,NA,1\n")
    fails(capsys, ["summary", data], "labels.csv, line 1", "looks like data, not a header", unchanged=[data])


def test_csv_with_a_repeated_column_name(tmp_path, capsys):
    data = image_folder(tmp_path, label_name="labels.csv", text="filename,red,blue,red\nimage_0.jpg,1,0,1\n")
    fails(capsys, ["summary", data], "labels.csv, line 1", "'red' more than once", unchanged=[data])


def test_csv_with_an_empty_column_name(tmp_path, capsys):
    data = image_folder(tmp_path, label_name="labels.csv", text="filename,red,,blue\nimage_0.jpg,1,0,1\n")
    fails(capsys, ["summary", data], "labels.csv, line 1", "column 3 has no attribute name", unchanged=[data])


def test_csv_row_with_too_few_fields(tmp_path, capsys):
    data = image_folder(tmp_path, label_name="labels.csv",
                        text="filename,red,blue\nimage_0.jpg,1,0\nimage_1.jpg,1\n")
    fails(capsys, ["summary", data], "labels.csv, line 3", "expected 3 fields", unchanged=[data])


def test_empty_label_file(tmp_path, capsys):
    data = image_folder(tmp_path, text="\n\n")
    fails(capsys, ["summary", data], "labels.txt", "holds no labelled images", unchanged=[data])


def test_unreadable_label_file(tmp_path, capsys, monkeypatch):
    data = image_folder(tmp_path)
    real = Path.read_bytes

    def denied(self):
        if self.name == "labels.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 000 does not stop root, who runs CI
    fails(capsys, ["summary", data], "labels.txt", "cannot be read (Permission denied)")


def test_folder_without_label_file(tmp_path, capsys):
    data = image_folder(tmp_path, label_name="notes.txt")
    fails(capsys, ["train", data, "--out", tmp_path / "run"], str(data), "holds no label file", unchanged=[data])


def test_missing_data_folder(tmp_path, capsys):
    fails(capsys, ["summary", tmp_path / "nowhere"], "no such data folder", str(tmp_path / "nowhere"))


def test_no_readable_image(tmp_path, capsys):
    data = image_folder(tmp_path)
    for path in (data / "images").iterdir():
        path.write_bytes(b"not an image")
    fails(capsys, ["train", data, "--out", tmp_path / "run", *TINY, "--threshold-folds", "2"],
          "no readable images", unchanged=[data])


def test_attribute_known_on_too_few_images_is_named_before_decoding(tmp_path, capsys):
    data = image_folder(tmp_path, ["image_0.jpg 1 0 1 NA", "image_1.jpg 0 1 0 NA", "image_2.jpg 1 1 0 1"])
    fails(capsys, ["train", data, "--out", tmp_path / "run", *TINY], "attribute 'Attr4'", "1 positive and 0 negative",
          unchanged=[data], unread=decoded_images(data))


def test_unknown_token_is_read_as_na_only_when_asked(tmp_path, capsys):
    data = image_folder(tmp_path, LINES[:3] + ["image_3.jpg 0 x 1 1"])
    fails(capsys, ["summary", data], "line 4", "--unknown-as-na", unchanged=[data])
    assert main(["summary", str(data), "--unknown-as-na"]) == 0


# ---- options, checked when the configuration is built --------------------------------------------------------

@pytest.mark.parametrize("option, value, words", [
    ("--image-size", "0", "--image-size must be at least 32"),
    ("--epochs", "0", "--epochs must be at least 1"),
    ("--batch-size", "0", "--batch-size must be at least 1"),
    ("--keep", "worst", "--keep must be one of best, last"),
    ("--oversample", "-3", "--oversample must be at least 1.0"),
    ("--patience", "-1", "--patience must be at least 0"),
    ("--threshold-strategy", "best", "--threshold-strategy must be 'f1'"),
    ("--backbone", "vgg16", "unknown backbone 'vgg16'"),
    ("--freeze", "-2", "--freeze must be a number of stages"),
    ("--val-fraction", "1", "--val-fraction must be at least 0.0 and below 1.0"),
    ("--augment", "huge", "--augment must be one of strong, light, flip, none"),
    ("--dropout", "1.5", "--dropout must be at least 0.0 and below 1.0"),
    ("--ema", "1", "--ema must be at least 0.0 and below 1.0"),
    ("--head-c", "-1", "--head-c must be at least 0.0"),
    ("--threshold-folds", "1", "--threshold-folds must be at least 2"),
    ("--lr", "nan", "--lr must be a number"),
    ("--threshold-source", "val", "--threshold-source val needs a validation split: set --val-fraction above 0"),
])
def test_bad_option_is_named_before_anything_is_read(demo_dir, tmp_path, capsys, option, value, words):
    fails(capsys, ["train", demo_dir, "--out", tmp_path / "run", option, value], words, unchanged=[demo_dir],
          unread=[demo_dir])  # not its labels, nor any image
    assert not (tmp_path / "run").exists()


def test_cv_with_one_fold(demo_dir, tmp_path, capsys):
    fails(capsys, ["evaluate", demo_dir, "--cv", "1", "--out", tmp_path / "cv"], "--cv must be at least 2",
          unchanged=[demo_dir])


def test_cv_without_out(demo_dir, capsys):
    fails(capsys, ["evaluate", demo_dir, "--cv", "3"], "--cv needs --out", unchanged=[demo_dir])


# ---- outputs: nothing replaced unasked, checked before any compute ----------------------------------------

def test_train_over_an_existing_run_is_refused(demo_dir, run, capsys):
    fails(capsys, ["train", demo_dir, "--out", run, *TINY], f"--out {run} already holds", "model.pt", "--overwrite",
          unchanged=[demo_dir, run])


def test_train_with_zero_epochs_into_a_run_leaves_it_whole(demo_dir, run, capsys):
    fails(capsys, ["train", demo_dir, "--out", run, "--epochs", "0"], "--epochs", unchanged=[demo_dir, run])


def test_out_that_is_a_file(demo_dir, tmp_path, capsys):
    target = tmp_path / "run.txt"
    target.write_text("my notes")
    fails(capsys, ["train", demo_dir, "--out", target, *TINY], f"--out {target} is a file",
          unchanged=[demo_dir, tmp_path])


def test_cv_over_an_existing_model_is_refused(demo_dir, run, capsys):
    fails(capsys, ["evaluate", demo_dir, "--cv", "2", "--out", run], "already holds model.pt", "--overwrite",
          unchanged=[demo_dir, run])


def test_evaluate_over_existing_metrics_is_refused(demo_dir, run, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.csv").write_text("mine")
    fails(capsys, ["evaluate", demo_dir, "--model", run / "model.pt", "--out", out], "already holds metrics.csv",
          unchanged=[demo_dir, run, out])


def test_demo_refuses_a_folder_with_files(tmp_path, capsys):
    data = image_folder(tmp_path)
    fails(capsys, ["demo", "--out", data], f"--out {data} already holds", "images", unchanged=[data])


def test_notebooks_never_generate_data_into_a_users_folder(tmp_path, capsys):
    data = image_folder(tmp_path / "mine", label_name="labels_old.txt")
    fails(capsys, ["notebooks", "--data", data, "--out", tmp_path / "nb"], "holds no label file",
          unchanged=[data])
    assert not (tmp_path / "nb").exists()


def test_notebooks_over_an_earlier_run_are_refused(demo_dir, run, capsys):
    fails(capsys, ["notebooks", "--data", demo_dir, "--out", run], "already holds model.pt",
          unchanged=[demo_dir, run])


def test_a_label_file_in_another_letter_case_is_found(tmp_path, capsys):
    data = image_folder(tmp_path, label_name="Labels.txt")
    assert main(["summary", str(data)]) == 0
    assert "Labels.txt: 4 labelled images" in capsys.readouterr().out


# ---- checkpoints ----------------------------------------------------------------------------------------------

def test_empty_checkpoint(demo_dir, tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"")
    fails(capsys, ["evaluate", demo_dir, "--model", tmp_path / "model.pt"], "model.pt is not a readable aimonk "
          "checkpoint", "empty", unchanged=[demo_dir, tmp_path])


def test_random_bytes_checkpoint(demo_dir, tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(np.random.default_rng(0).bytes(4000))
    fails(capsys, ["predict", demo_dir / "images", "--model", tmp_path / "model.pt"], "not a readable aimonk checkpoint",
          unchanged=[demo_dir, tmp_path])


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_malicious_checkpoint_runs_no_code(demo_dir, tmp_path, capsys):
    marker = tmp_path / "marker"
    torch.save({"format": "aimonk-checkpoint/1", "x": RunsCode(marker)}, tmp_path / "model.pt")
    fails(capsys, ["evaluate", demo_dir, "--model", tmp_path / "model.pt"], "would run code",
          unchanged=[demo_dir, tmp_path])
    assert not marker.exists()


def test_foreign_checkpoint(demo_dir, tmp_path, capsys):
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "model.pt")
    fails(capsys, ["evaluate", demo_dir, "--model", tmp_path / "model.pt"], "is not an aimonk checkpoint",
          unchanged=[demo_dir, tmp_path])


def test_missing_checkpoint(demo_dir, tmp_path, capsys):
    fails(capsys, ["predict", demo_dir / "images", "--model", tmp_path / "nope.pt"], "checkpoint not found",
          "nope.pt")


# ---- evaluation: attributes matched by name -------------------------------------------------------------------

def csv_copy(demo_dir, target: Path, order) -> Path:
    """The demo folder's labels as a CSV with a header, columns in `order` (a permutation of 0..3)."""
    from aimonk.data.labels import read_labels

    table = read_labels(demo_dir / "labels.txt")
    names = ["Attr1", "Attr2", "Attr3", "Attr4"]
    lines = ["filename," + ",".join(names[k] for k in order)]
    for name, row in zip(table.filenames, table.values):
        lines.append(",".join([name] + ["NA" if np.isnan(row[k]) else str(int(row[k])) for k in order]))
    target.mkdir()
    os.symlink(demo_dir / "images", target / "images")
    (target / "labels.csv").write_text("\n".join(lines) + "\n")
    return target


def test_reordered_csv_columns_are_matched_by_name(demo_dir, run, tmp_path, capsys):
    from aimonk.evaluation.folder import evaluate_checkpoint

    plain = evaluate_checkpoint(demo_dir, run / "model.pt", "all")
    shuffled = evaluate_checkpoint(csv_copy(demo_dir, tmp_path / "csv", [3, 1, 0, 2]), run / "model.pt", "all")
    assert np.allclose(plain.table["f1"], shuffled.table["f1"], equal_nan=True)
    assert not any("no header" in note for note in shuffled.notes)
    assert any("no header" in note for note in plain.notes)  # labels.txt: by position, and it says so


def test_csv_missing_an_attribute(demo_dir, run, tmp_path, capsys):
    data = csv_copy(demo_dir, tmp_path / "csv", [0, 1, 2, 3])
    (data / "labels.csv").write_text((data / "labels.csv").read_text().replace("Attr3", "colour", 1))
    fails(capsys, ["evaluate", data, "--model", run / "model.pt"], "no column for attribute 'Attr3'",
          unchanged=[data, run])


def test_headerless_file_with_the_wrong_number_of_columns(demo_dir, run, tmp_path, capsys):
    data = image_folder(tmp_path, [line.rsplit(" ", 1)[0] for line in LINES])
    fails(capsys, ["evaluate", data, "--model", run / "model.pt"], "has 3 label columns", "predicts 4",
          unchanged=[data, run])


def test_bad_threshold_override(demo_dir, run, capsys):
    fails(capsys, ["evaluate", demo_dir, "--model", run / "model.pt", "--thresholds", "2"], "between 0 and 1",
          unchanged=[demo_dir, run])


def test_an_attribute_with_no_known_label_scores_nan_with_a_note(demo_dir, run, tmp_path, capsys):
    data = image_folder(tmp_path, [line.rsplit(" ", 1)[0] + " NA" for line in LINES])
    assert main(["evaluate", str(data), "--model", str(run / "model.pt")]) == 0
    out = capsys.readouterr().out
    assert "note: attribute 'Attr4' has no known label" in out and "NaN" in out


def test_evaluating_a_copy_of_the_training_folder_warns(demo_dir, run, tmp_path, capsys):
    copy = shutil.copytree(demo_dir, tmp_path / "copy")
    assert main(["evaluate", str(copy), "--model", str(run / "model.pt"), "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    trained = int(out.split("note: ")[-1].split(" of the ")[0])
    assert trained > 0 and "images the model was trained on" in out
    assert "images the model was trained on" in (tmp_path / "m" / "metrics.json").read_text()


# ---- prediction -------------------------------------------------------------------------------------------

def test_predict_on_a_folder_without_images(run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    fails(capsys, ["predict", tmp_path, "--model", run / "model.pt"], "no images", f"in folder {tmp_path}",
          unchanged=[tmp_path, run])


def test_predict_exits_non_zero_when_nothing_could_be_read(run, tmp_path, capsys):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    fails(capsys, ["predict", tmp_path, "--model", run / "model.pt"], "none of the 1 image file(s) could be read",
          unchanged=[tmp_path, run])


def test_an_image_too_large_to_decode_is_skipped_by_name(run, tmp_path, capsys):
    Image.new("L", (7000, 7000), 128).save(tmp_path / "huge.png")  # 49 megapixels, a 50 KB file
    Image.new("RGB", (60, 60), "red").save(tmp_path / "small.png")
    assert main(["predict", str(tmp_path), "--model", str(run / "model.pt"), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert "small.png" in out and "huge.png" not in out
    assert re.search(r"(^|\r)warning: skipped 1 unreadable image\(s\): .*huge.png: ValueError: 7000x7000 pixels is more "
                     r"than the 40-megapixel", err, re.M)


def test_predict_with_the_wrong_number_of_thresholds(demo_dir, run, capsys):
    fails(capsys, ["predict", demo_dir / "images", "--model", run / "model.pt", "--thresholds", "0.1,0.2"],
          "expected 1 or 4 thresholds", unchanged=[demo_dir, run])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_device_that_is_not_here_is_named_before_anything_is_read(demo_dir, tmp_path, capsys, command):
    extra = ["--cv", "2"] if command == "evaluate" else []
    fails(capsys, [command, demo_dir, "--out", tmp_path / "run", *extra, "--device", "cuda"],
          "--device cuda: no CUDA GPU is available here", unchanged=[demo_dir], unread=[demo_dir])
    assert not (tmp_path / "run").exists()


def test_every_option_has_help_and_no_word_is_cut():
    from aimonk.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"aimonk {name} {action.dest}"
        text = command.format_help()
        assert "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2" in text if name == "train" else True
