"""A synthetic dataset in exactly the reference format, with attributes you can see, most of the time.

Garment silhouettes on a background, four attributes: coloured (not white) garment, long sleeves, striped,
a small star emblem on the chest (rare). Positive and NA rates follow the reference data, three listed
files are missing, and everything is deterministic in the seed. labels.txt names the attributes in a
header line (`filename coloured long_sleeves striped emblem`); header=False writes the reference's
header-less form, where they are Attr1..Attr4 by position.

It is hard on purpose, as real photographs are: label noise, occluders, weak signals and distractors, as
HARD says (the sentence the folder's README.md carries).
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
LABEL_NOISE = 0.03  # of the known labels, flipped
OCCLUSION_RATE = 0.2  # of the images, an object in front of part of the garment
DISTRACTOR_RATE = 0.15  # of the images, for each of the four distractors

HARD = (f"Hard on purpose, so that no model scores a perfect F1: {LABEL_NOISE:.0%} of the known labels are "
        f"flipped (an annotator's slips); {OCCLUSION_RATE:.0%} of the images have an object in front of part of "
        "the garment (a sleeve or the emblem may be hidden); some images carry a weak signal (pale colours, faint "
        "or fine stripes, three-quarter sleeves, a small or dull emblem); and each of four distractors (a "
        "coloured wall, a striped wall, a star beside the garment, a round badge where an emblem would be) is in "
        f"{DISTRACTOR_RATE:.0%} of the images. Lighting, blur and noise vary.")


def _garment_polygons(cx, cy, s, sleeve_length):
    w, top, bottom = 25 * s, cy - 40 * s, cy + 45 * s
    torso = [(cx - w, top), (cx - 9 * s, top - 2 * s), (cx, top + 9 * s), (cx + 9 * s, top - 2 * s),
             (cx + w, top), (cx + w, bottom), (cx - w, bottom)]
    reach = sleeve_length / 72
    sleeve = [(0, 0), (-(19 - 3 * reach) * s, sleeve_length * s), (-(10 - 5 * reach) * s, (sleeve_length + 6) * s),
              (0, (19 + 7 * reach) * s)]
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


def _hsv(hue, saturation, value):
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def _garment_colour(rng, coloured):
    """White garments are off-white, cream or in shadow; coloured ones are sometimes pale (a weak signal)."""
    if not coloured:
        return _hsv(rng.random(), rng.uniform(0.0, 0.05), rng.uniform(0.88, 1.0))
    saturation = rng.uniform(0.2, 0.4) if rng.random() < 0.06 else rng.uniform(0.4, 1.0)
    return _hsv(rng.random(), saturation, rng.uniform(0.35, 0.95))


def _stripes(draw, rng, size, colour, scale, contrast, vertical=False):
    period = rng.uniform(4, 13) * scale
    if min(colour) > 200:  # light grey on white: a white garment stays white
        stripe = tuple(int(c * (1 - 0.3 * contrast)) for c in colour)
    elif sum(colour) > 380:  # a darker shade of a light colour, a lighter one of a dark colour: the hue kept
        stripe = tuple(int(c * (1 - 0.75 * contrast)) for c in colour)
    else:
        stripe = tuple(int(c + (235 - c) * 0.75 * contrast) for c in colour)
    for at in np.arange(rng.uniform(0, period), size, period):
        box = [at, 0, at + period / 2, size] if vertical else [0, at, size, at + period / 2]
        draw.rectangle(box, fill=stripe)


def _background(rng, size, scale):
    if rng.random() < DISTRACTOR_RATE:  # a coloured wall
        colour = _hsv(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.6, 0.95))
    else:
        colour = tuple(int(v) for v in rng.integers(200, 246, 3))
    image = Image.new("RGB", (size, size), colour)
    if rng.random() < DISTRACTOR_RATE:  # a striped wall behind the garment
        _stripes(ImageDraw.Draw(image), rng, size, colour, scale, rng.uniform(0.2, 0.6), vertical=rng.random() < 0.5)
    return image


def _fabric(rng, size, scale, coloured, striped):
    colour = _garment_colour(rng, coloured)
    fabric = Image.new("RGB", (size, size), colour)
    if striped:
        contrast = rng.uniform(0.1, 0.3) if rng.random() < 0.3 else rng.uniform(0.3, 1.0)
        _stripes(ImageDraw.Draw(fabric), rng, size, colour, scale, contrast)
    return fabric


def _emblem(draw, rng, cx, cy, s, present):
    """The star (small or dull in some images), or now and then a round badge where it would be."""
    x, y = cx + rng.uniform(6, 15) * s, cy - rng.uniform(16, 28) * s
    if present:
        radius = rng.uniform(5.5, 8.5) * s
        value = rng.uniform(0.65, 1.0)
        draw.polygon(_star(x, y, radius), fill=_hsv(rng.uniform(0.08, 0.16), rng.uniform(0.5, 1.0), value),
                     outline=_hsv(0.06, 0.9, value * 0.5))
    elif rng.random() < DISTRACTOR_RATE:
        radius = rng.uniform(3, 6) * s
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_hsv(rng.random(), 0.8, 0.9))


def _distractor_star(draw, rng, size, scale):
    if rng.random() < DISTRACTOR_RATE:
        corner = rng.choice([0.12, 0.88], 2) * size
        draw.polygon(_star(corner[0], corner[1], rng.uniform(5, 9) * scale),
                     fill=_hsv(rng.uniform(0.08, 0.16), 0.9, 1.0))


def _occluder(draw, rng, size, cx, cy, s):
    if rng.random() < OCCLUSION_RATE:
        x, y = cx + rng.uniform(-35, 35) * s, cy + rng.uniform(-35, 25) * s
        w, h = rng.uniform(14, 30) * s, rng.uniform(14, 30) * s
        colour = tuple(int(v) for v in rng.integers(40, 220, 3))
        draw.rounded_rectangle([x - w, y - h, x + w, y + h], radius=6 * s, fill=colour, outline=(60, 60, 60))


def _photographed(image, rng, size):
    """Lighting, sensor noise and focus that vary from image to image."""
    pixels = np.asarray(image, dtype=np.float64) * rng.uniform(0.75, 1.1)
    pixels += rng.normal(0, rng.uniform(3, 9), (size, size, 3))
    blurred = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return blurred.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * size / 128))


def draw_garment(labels, rng, size: int = 128) -> Image.Image:
    """One image whose content is given by the four 0/1 `labels` (seen through occluders, distractors and
    weak signals as the module describes)."""
    coloured, long_sleeves, striped, emblem = (bool(v) for v in labels)
    scale = size / 128
    image = _background(rng, size, scale)
    s = rng.uniform(0.8, 1.0) * scale
    cx, cy = size / 2 + rng.uniform(-8, 8) * scale, size / 2 + rng.uniform(-5, 5) * scale
    sleeve_length = rng.uniform(46, 75) if long_sleeves else rng.uniform(20, 38)
    polygons = _garment_polygons(cx, cy, s, sleeve_length)
    mask = Image.new("L", (size, size), 0)
    mask_draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        mask_draw.polygon(polygon, fill=255)
    image.paste(_fabric(rng, size, scale, coloured, striped), (0, 0), mask)
    draw = ImageDraw.Draw(image)
    for polygon in polygons:
        draw.polygon(polygon, outline=(90, 90, 90))
    _emblem(draw, rng, cx, cy, s, emblem)
    _distractor_star(draw, rng, size, scale)
    _occluder(draw, rng, size, cx, cy, s)
    return _photographed(image, rng, size)


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
    observed = np.where(rng.random(truth.shape) < LABEL_NOISE, 1 - truth, truth)
    observed[rng.random(truth.shape) < NA_RATE] = np.nan
    write_labels_txt(out_dir / "labels.txt", filenames, observed, ATTRIBUTES if header else None)
    columns = ", ".join(ATTRIBUTES) if header else ", ".join(f"Attr{i + 1} = {n}" for i, n in enumerate(ATTRIBUTES))
    write_text(out_dir / "README.md",
               f"# aimonk demo data (synthetic)\n\nGenerated by `aimonk demo`. Columns of labels.txt: {columns}. "
               f"{missing} listed images are missing on purpose, as in the reference data.\n\n{HARD}\n")
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
