"""Decoding images robustly, once, into an in-memory uint8 cache."""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from aimonk.progress import progress_bar

from aimonk.cache import files_key, load_array, release_pages, store_array
from aimonk.data.labels import printable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_PIXELS = 40_000_000  # decoded at most (after JPEG draft scaling): ~120 MB as RGB, so memory stays bounded
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # MAX_PIXELS is the stricter guard


class DataWarning(UserWarning):
    """Something in the user's data was skipped or repaired."""


def warn_about_data(message: str, source, line: int = 0) -> None:
    """A DataWarning located at the user's file (and line), not at aimonk's code: shown, it names the data and
    echoes no line of aimonk's source."""
    warnings.warn_explicit(message, DataWarning, str(source), line, module="aimonk.data")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, P, RGBA, CMYK, 16-bit, float) to 8-bit RGB; transparency goes on white."""
    if image.mode == "F":
        image = Image.fromarray(float_to_uint8(np.asarray(image, dtype=np.float32)))
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def float_to_uint8(array: np.ndarray) -> np.ndarray:
    """A float image by the range its values use: [0, 1] (the usual convention) and [0, 255] as they are, any
    other range stretched from its minimum to its maximum; NaN and infinities as 0."""
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1:
        array = array * 255.0
    elif low < 0 or high > 255:
        array = (array - low) / ((high - low) or 1.0) * 255.0
    return np.clip(np.round(array), 0, 255).astype(np.uint8)


def load_image(path, size: int | None = None) -> np.ndarray:
    """Decode `path` with its EXIF orientation applied; RGB uint8 (H, W, 3), resized to size x size."""
    with Image.open(path) as image:
        if size and image.format == "JPEG":
            image.draft("RGB", (size, size))  # decode at reduced scale: much faster for big photos
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"{width}x{height} pixels is more than the {MAX_PIXELS // 1_000_000}-megapixel limit "
                             "(only JPEGs are decoded at reduced scale); downscale it first")
        image = to_rgb(ImageOps.exif_transpose(image))
        return resized(image, size) if size else np.asarray(image, dtype=np.uint8)


def resized(image, size: int) -> np.ndarray:
    """A PIL image or an RGB uint8 array at size x size: the one resize of training, evaluation, prediction
    and the widget."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return np.array(image.resize((size, size), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)  # writable


def _try_load(path, size):
    try:
        return load_image(path, size), None
    except Exception as error:  # PIL raises many kinds for corrupt files
        return None, printable(f"{path}: {type(error).__name__}: {error}")  # a file name on disk, escaped


def warn_unreadable(failures: list[str], paths) -> None:
    """The images that could not be decoded (each `_try_load`'s message), named in one warning about the folder
    of `paths`."""
    if failures:
        warn_about_data(f"skipped {len(failures)} unreadable image(s): " + "; ".join(failures), Path(paths[0]).parent)


def readable_images(paths, size: int | None = None) -> tuple[list[np.ndarray], list[int]]:
    """Each of `paths` decoded (at size x size), skipping those that cannot be read, named in one warning (as
    cache_images does, without caching: for a few images to show). Returns (images, the indices kept)."""
    images, kept, failures = [], [], []
    for index, path in enumerate(paths):
        array, message = _try_load(path, size)
        if array is None:
            failures.append(message)
        else:
            images.append(array)
            kept.append(index)
    warn_unreadable(failures, paths)
    return images, kept


def first_readable_image(paths) -> tuple[Path, np.ndarray]:
    """The first of `paths` that can be decoded, and its image (RGB uint8 at full size); those before it that
    cannot are named in one warning (a ValueError when none can)."""
    paths, failures = [Path(path) for path in paths], []
    for path in paths:
        image, message = _try_load(path, None)
        if image is not None:
            break
        failures.append(message)
    warn_unreadable(failures, paths)
    if len(failures) == len(paths):
        raise ValueError(f"none of the {len(paths)} image file(s) could be read")
    return path, image


def images_key(paths, size: int) -> str:
    """The cache key of these files decoded at this size (it changes when any file does)."""
    return files_key(paths, "images", size)


def cache_images(paths: list[Path], size: int, workers: int = 4, key: str | None = None):
    """Decode and resize every image once. Returns (uint8 array (M, size, size, 3), kept indices).

    The array is a memory map of aimonk.cache's entry for these files at this size: written image by image
    on the first run (so memory stays bounded), read back by later runs without decoding anything.
    key: images_key(paths, size) when the caller has it already."""
    if not paths:
        return np.zeros((0, size, size, 3), np.uint8), []
    key = key or images_key(paths, size)
    cached = load_array("images", key)
    if cached is None:
        kept, failures = [], []

        def decode_into(out: np.ndarray) -> int:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = pool.map(lambda p: _try_load(p, size), paths)
                for index, (array, message) in enumerate(progress_bar(results, total=len(paths), leave=False,
                                                                          desc=f"decoding images at {size}px")):
                    if array is None:
                        failures.append(message)
                    else:
                        out[len(kept)] = array
                        kept.append(index)
                    if index % 512 == 511 and isinstance(out, np.memmap):  # keep resident memory bounded
                        out.flush()
                        release_pages(out)
            return len(kept)

        cached = store_array("images", key, (len(paths), size, size, 3), np.uint8, decode_into,
                             {"kept": kept, "failures": failures, "source": str(Path(paths[0]).parent.resolve()),
                              "what": f"{len(paths)} images at {size}px"})
    images, meta = cached
    warn_unreadable(meta["failures"], paths)
    return images, meta["kept"]


def list_images(folder) -> list[Path]:
    """The image files directly in `folder` (by suffix, e.g. .jpg or .png), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image_folder(paths, image_size: int) -> tuple[np.ndarray, list[Path]]:
    """Unlabelled images for prediction: a file, a folder, or a list of files."""
    if isinstance(paths, (str, Path)):
        paths = folder = Path(paths)
        if paths.is_dir():
            paths = list_images(paths)
            if not paths:
                raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
        elif paths.is_file():
            paths = [paths]
        else:
            raise FileNotFoundError(f"no such image or folder: {paths}")
    paths = [Path(p) for p in paths]
    images, kept = cache_images(paths, image_size)
    if not kept:
        raise ValueError(f"none of the {len(paths)} image file(s) could be read (see the warning above)")
    return images, [paths[i] for i in kept]
