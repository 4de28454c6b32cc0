"""A synthetic dataset in exactly the reference format, with attributes you can see.

Garment silhouettes on a light background, four attributes: coloured (not white) garment, long
sleeves, striped, a small star emblem on the chest (rare). Positive and NA rates follow the reference
data, three listed files are missing, and everything is deterministic in the seed. labels.txt names
the attributes in a header line (`filename coloured long_sleeves striped emblem`); header=False writes
the reference's header-less form, where they are Attr1..Attr4 by position.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from aimonk.files import atomic_path, check_output_folder, write_text
from aimonk.data.folder import find_label_file

ATTRIBUTES = ("coloured", "long_sleeves", "striped", "emblem")
POSITIVE_RATES = (0.88, 0.81, 0.53, 0.08)
NA_RATE = 0.09
MISSING_FILES = 3


def _garment_polygons(cx, cy, s, long_sleeves):
    w, top, bottom = 25 * s, cy - 40 * s, cy + 45 * s
    torso = [(cx - w, top), (cx - 9 * s, top - 2 * s), (cx, top + 9 * s), (cx + 9 * s, top - 2 * s),
             (cx + w, top), (cx + w, bottom), (cx - w, bottom)]
    if long_sleeves:
        sleeve = [(0, 0), (-16 * s, 72 * s), (-5 * s, 75 * s), (0, 26 * s)]
    else:
        sleeve = [(0, 0), (-19 * s, 20 * s), (-10 * s, 29 * s), (0, 19 * s)]
    left = [(cx - w + dx, top + dy) for dx, dy in sleeve]
    right = [(cx + w - dx, top + dy) for dx, dy in sleeve]
    return [torso, left, right]


def _star(cx, cy, radius):
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        angle = -np.pi / 2 + i * np.pi / 5
        points.append((cx + r * np.cos(angle), cy + r * np.sin(angle)))
    return points


def _garment_colour(rng, coloured):
    if not coloured:
        grey = int(rng.integers(238, 256))
        return (grey, grey, grey)
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.35, 0.9))
    return (int(r * 255), int(g * 255), int(b * 255))


def draw_garment(labels, rng, size: int = 128) -> Image.Image:
    """One image whose visible content is given by the four 0/1 `labels`."""
    coloured, long_sleeves, striped, emblem = (bool(v) for v in labels)
    scale = size / 128
    background = tuple(int(v) for v in rng.integers(200, 246, 3))
    image = Image.new("RGB", (size, size), background)
    s = rng.uniform(0.8, 1.0) * scale
    cx, cy = size / 2 + rng.uniform(-8, 8) * scale, size / 2 + rng.uniform(-5, 5) * scale
    mask = Image.new("L", (size, size), 0)
    mask_draw = ImageDraw.Draw(mask)
    for polygon in _garment_polygons(cx, cy, s, long_sleeves):
        mask_draw.polygon(polygon, fill=255)
    colour = _garment_colour(rng, coloured)
    fabric = Image.new("RGB", (size, size), colour)
    if striped:
        fabric_draw = ImageDraw.Draw(fabric)
        period = rng.uniform(7, 12) * scale
        stripe = tuple(40 if c > 150 else 235 for c in colour)
        for y in np.arange(rng.uniform(0, period), size, period):
            fabric_draw.rectangle([0, y, size, y + period / 2], fill=stripe)
    image.paste(fabric, (0, 0), mask)
    outline = ImageDraw.Draw(image)
    for polygon in _garment_polygons(cx, cy, s, long_sleeves):
        outline.polygon(polygon, outline=(90, 90, 90))
    if emblem:
        outline.polygon(_star(cx + 11 * s, cy - 22 * s, 7 * s), fill=(255, 190, 0), outline=(120, 60, 0))
    noise = rng.normal(0, 4, (size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.4))


def sample_labels(count: int, rng) -> np.ndarray:
    values = (rng.random((count, len(POSITIVE_RATES))) < np.array(POSITIVE_RATES)).astype(np.float32)
    return values


def write_labels_txt(path: Path, filenames, values, header=None) -> None:
    lines = [" ".join(["filename", *header])] if header else []
    lines += [" ".join([name] + ["NA" if np.isnan(v) else str(int(v)) for v in row])
              for name, row in zip(filenames, values)]
    write_text(path, "\n".join(lines) + "\n")


def make_demo_dataset(out_dir="data/demo", count: int = 400, size: int = 128, seed: int = 0,
                      missing: int = MISSING_FILES, header: bool = True) -> Path:
    """Write `count` labelled images (minus `missing` files left out on purpose) into a new or empty
    folder; returns out_dir. A folder that holds anything is refused, so no user file is ever replaced.
    header: name the attributes in labels.txt's first line (else the reference's form, Attr1..Attr4)."""
    if count < 1 or size < 32:
        raise ValueError(f"the demo needs --count >= 1 and --size >= 32, not {count} and {size}")
    out_dir = check_output_folder(out_dir, overwrite=False)
    rng = np.random.default_rng(seed)
    truth = sample_labels(count, rng)
    filenames = [f"image_{i}.jpg" for i in range(count)]
    absent = set(rng.choice(count, size=min(missing, count), replace=False).tolist())
    for i, name in enumerate(filenames):
        image = draw_garment(truth[i], rng, size)
        if i not in absent:
            with atomic_path(out_dir / "images" / name) as temporary:
                image.save(temporary, format="JPEG", quality=92)
    observed = truth.copy()
    observed[rng.random(truth.shape) < NA_RATE] = np.nan
    write_labels_txt(out_dir / "labels.txt", filenames, observed, ATTRIBUTES if header else None)
    columns = ", ".join(ATTRIBUTES) if header else ", ".join(f"Attr{i + 1} = {n}" for i, n in enumerate(ATTRIBUTES))
    write_text(out_dir / "README.md",
               f"# aimonk demo data (synthetic)\n\nGenerated by `aimonk demo`. Columns of labels.txt: {columns}. "
               f"{missing} listed images are missing on purpose, as in the reference data.\n")
    return out_dir


def demo_folder() -> Path:
    """The package's own demo location: data/demo of the repository (or of the working folder)."""
    beside_package = Path(__file__).resolve().parents[2]  # aimonk/data/demo.py -> the repository
    root = beside_package if (beside_package / "pyproject.toml").is_file() else Path.cwd()
    return root / "data" / "demo"


def locate_data(data_dir) -> Path:
    """The labelled folder to use: `data_dir` itself; only the package's own demo location (data/demo) is
    filled with the synthetic demo data on first use, never a folder of the user's."""
    path = Path(data_dir)
    if path.resolve() == demo_folder().resolve() and not (path.exists() and any(path.iterdir())):
        return make_demo_dataset(path)
    find_label_file(path)  # a clear error when there is no label file
    return path
