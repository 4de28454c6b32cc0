import warnings

import numpy as np
import pytest
from PIL import Image

from aimonk.data.folder import load_labelled_folder
from aimonk.data.images import DataWarning, cache_images, load_image, to_rgb


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new(mode, (8, 6))
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (8, 6)


def test_sixteen_bit_is_scaled_not_clipped():
    array = np.full((4, 4), 65535, dtype=np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(array)))
    assert rgb.max() == 255 and rgb.min() == 255


def test_transparent_pixels_go_on_white():
    image = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert np.asarray(to_rgb(image)).min() == 255


def test_resized_to_square(tmp_path):
    Image.new("RGB", (300, 120), (0, 128, 0)).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", size=64).shape == (64, 64, 3)


def test_corrupt_image_is_skipped_with_a_warning(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(DataWarning, match=r"skipped 1 unreadable image.*bad\.jpg"):
        images, kept = cache_images([tmp_path / "good.jpg", tmp_path / "bad.jpg"], 16)
    assert images.shape == (1, 16, 16, 3) and kept == [0]


def test_missing_files_are_a_note_naming_them_not_a_warning(demo_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fact of the data (the reference folder lacks 3 of 975): no warning box
        data = load_labelled_folder(demo_dir, 32, progress=False)
    [note] = data.notes()
    assert len(data.missing) == 3 and note.startswith("3 image(s) listed in ") and "labels.txt are not in" in note
    assert all(name in note for name in data.missing)


def test_a_data_warning_points_at_the_data_not_at_aimonks_source(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.warns(DataWarning) as record:
        cache_images([tmp_path / "good.jpg", tmp_path / "bad.jpg"], 16)
    shown = warnings.formatwarning(record[0].message, record[0].category, record[0].filename, record[0].lineno)
    assert shown.splitlines() == [f"{tmp_path}:0: DataWarning: {record[0].message}"]  # no echoed source line


def test_cache_holds_uint8_rows_aligned_with_labels(demo_dir):
    data = load_labelled_folder(demo_dir, 32, progress=False)
    assert data.images.dtype == np.uint8 and data.images.shape == (57, 32, 32, 3)
    assert len(data.labels) == 57 and not set(data.missing) & set(data.filenames)


def test_the_widget_and_the_loader_resize_an_image_the_same_way(tmp_path):
    """An upload (an array of any size) and a file on disk become the same model input."""
    import numpy as np
    from PIL import Image

    from aimonk.data.images import load_image, resized

    photo = np.random.default_rng(0).integers(0, 256, (300, 450, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    np.testing.assert_array_equal(resized(photo, 64), load_image(tmp_path / "photo.png", 64))
