"""The disk cache: decoded images and backbone features reused by later runs, invalidated by changed files."""
import json

import numpy as np
import pytest
import torch

import aimonk.model.features as features
from aimonk.config import preset
from aimonk.data.folder import load_labelled_folder
from conftest import TINY, calls_of, opened, opened_under

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture
def folder(demo_dir, tmp_path):
    """A copy of the demo folder (its files may be changed), with a private cache."""
    import shutil

    return shutil.copytree(demo_dir, tmp_path / "data")


def test_a_second_load_reads_the_memory_map_instead_of_decoding(folder):
    first = load_labelled_folder(folder, 48, progress=False)
    with opened() as paths:
        second = load_labelled_folder(folder, 48, progress=False)
    assert not opened_under(paths, folder / "images")  # not one image file opened: nothing decoded again
    assert isinstance(second.images, np.memmap) and second.images_key == first.images_key
    np.testing.assert_array_equal(second.images, first.images)
    assert second.filenames == first.filenames  # the unreadable and missing files are remembered too


def test_a_changed_file_or_size_makes_a_new_entry(folder):
    import os

    first = load_labelled_folder(folder, 48, progress=False)
    image = sorted((folder / "images").glob("*.jpg"))[0]
    from PIL import Image
    Image.new("RGB", (48, 48), "black").save(image)
    with opened() as paths:
        changed = load_labelled_folder(folder, 48, progress=False)
    decoded = sorted(os.path.realpath(path) for path in opened_under(paths, folder / "images"))
    assert changed.images_key != first.images_key and len(decoded) == len(changed)  # every image decoded anew
    assert decoded == sorted(os.path.realpath(folder / "images" / name) for name in changed.filenames)  # once each
    assert load_labelled_folder(folder, 40, progress=False).images.shape[1:] == (40, 40, 3)


def test_features_are_reused_by_a_later_run(folder):
    from aimonk.model.registry import build_model

    config = preset("default", **TINY).replace(backbone="efficientnet_lite0", amp=False)
    model = build_model(config.replace(freeze="all", image_size=48), 4).eval()
    first = features.cached_features(model, load_labelled_folder(folder, 48, progress=False), config,
                                     torch.device("cpu"))
    later = load_labelled_folder(folder, 48, progress=False)  # a later run's data: no features kept on it
    with calls_of(features.backbone_features) as computed:
        again = features.cached_features(model, later, config, torch.device("cpu"))
    assert computed == []  # read from the cache entry, not computed again
    torch.testing.assert_close(again, first)


def test_the_cache_can_be_turned_off(folder, monkeypatch, tmp_path):
    monkeypatch.setenv("AIMONK_CACHE", "off")
    data = load_labelled_folder(folder, 48, progress=False)
    assert not isinstance(data.images, np.memmap) and len(data) == 57


def test_an_unwritable_cache_falls_back_to_memory_with_a_warning(folder, monkeypatch, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("AIMONK_CACHE", str(blocked))
    with pytest.warns(UserWarning, match="cannot be written: working in memory"):
        data = load_labelled_folder(folder, 48, progress=False)
    assert len(data) == 57 and not isinstance(data.images, np.memmap)


def test_the_cache_command_lists_and_clears_entries(folder, monkeypatch, tmp_path, capsys):
    from aimonk.cli import main

    monkeypatch.setenv("AIMONK_CACHE", str(tmp_path / "cache"))
    load_labelled_folder(folder, 32, progress=False)
    assert main(["cache"]) == 0
    listed = capsys.readouterr().out
    assert f"{tmp_path / 'cache'}: 1 entry" in listed and "images" in listed and "images at 32px" in listed
    assert str(folder / "images") in listed  # the folder the entry was made from
    assert main(["cache", "--clear", "--older-than", "30"]) == 0 and "removed 0 entries" in capsys.readouterr().out
    assert main(["cache", "--clear", "--older-than", "30"]) == 0 and capsys.readouterr().out.strip().endswith(
        ": nothing to remove older than 30 days")
    strays = [tmp_path / "cache" / "mine" / "array.npy", tmp_path / "cache" / "images" / "notes.npy"]
    for stray in strays:  # files the cache did not write, in and beside its folders
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"mine")
    assert main(["cache", "--clear"]) == 0 and "removed 1 entry" in capsys.readouterr().out
    assert all(stray.read_bytes() == b"mine" for stray in strays)
    assert main(["cache"]) == 0 and ": 0 entries, 0.0 MB" in capsys.readouterr().out
    assert main(["cache", "--older-than", "3"]) == 2 and "--older-than goes with --clear" in capsys.readouterr().err
    monkeypatch.setenv("AIMONK_CACHE", "off")
    assert main(["cache"]) == 0 and "off" in capsys.readouterr().out


def test_the_cache_listing_marks_damaged_entries_and_gone_folders_and_escapes_names(monkeypatch, tmp_path, capsys):
    from aimonk.cli import main

    root = tmp_path / "cache"
    monkeypatch.setenv("AIMONK_CACHE", str(root))
    (root / "images").mkdir(parents=True)
    damaged, gone = "0" * 32, "1" * 32
    for key in (damaged, gone):
        (root / "images" / f"{key}.npy").write_bytes(b"x" * 10)
    (root / "images" / f"{damaged}.json").write_text("[]")
    (root / "images" / f"{gone}.json").write_text(json.dumps({"what": "images at 32px\x1b]0;T\x07",
                                                               "source": str(tmp_path / "vanished")}))
    assert main(["cache"]) == 0
    listed = capsys.readouterr().out
    assert "damaged metadata" in listed and f"({tmp_path / 'vanished'}, gone)" in listed
    assert "\x1b" not in listed and "\\x1b]0;T\\x07" in listed
    assert main(["cache", "--clear"]) == 0 and "removed 2 entries" in capsys.readouterr().out
