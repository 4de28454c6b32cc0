"""Tables for exploring a labelled folder: where NA falls, co-occurrence, label patterns, image sizes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from aimonk.data.demo import locate_data
from aimonk.data.folder import find_image_folder, find_label_file, present_rows, read_label_folder
from aimonk.data.labels import LabelTable, summarize


def na_per_image(values: np.ndarray) -> pd.Series:
    """How many images have 0, 1, 2, ... unknown labels."""
    counts = np.isnan(values).sum(axis=1)
    return pd.Series(counts).value_counts().sort_index().rename_axis("NA labels per image").rename("images")


def cooccurrence(values: np.ndarray, attributes) -> pd.DataFrame:
    """P(column positive | row positive), over images where both labels are known."""
    k = values.shape[1]
    table = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(k):
            both_known = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
            given = both_known & (values[:, i] == 1)
            if given.any():
                table[i, j] = (values[given, j] == 1).mean()
    return pd.DataFrame(table, index=pd.Index(attributes, name="given"), columns=attributes)


def label_patterns(values: np.ndarray, top: int = 10) -> pd.DataFrame:
    """The most common label vectors, written like [1110] with '-' for NA."""
    patterns = ["[" + "".join("-" if np.isnan(v) else str(int(v)) for v in row) + "]" for row in values]
    counts = pd.Series(patterns).value_counts()
    frame = counts.head(top).rename_axis("pattern").reset_index(name="images")
    frame["share"] = frame["images"] / len(values)
    return frame


def image_sizes(image_dir, filenames) -> pd.DataFrame:
    """Width, height and mode of each image, read from the headers only (no decoding)."""
    rows = []
    for name in filenames:
        path = Path(image_dir) / name
        try:
            with Image.open(path) as image:
                rows.append({"filename": name, "width": image.width, "height": image.height, "mode": image.mode})
        except (OSError, ValueError, Image.DecompressionBombError):  # the last: a header of over 179 megapixels
            rows.append({"filename": name, "width": np.nan, "height": np.nan, "mode": "unreadable"})
    return pd.DataFrame(rows)


def common_sizes(sizes: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The `top` most common (width, height, mode) of an image_sizes table, with their number of images."""
    counts = sizes.groupby(["width", "height", "mode"], dropna=False).size().rename("images")
    return counts.sort_values(ascending=False, kind="stable").head(top).to_frame()


def sample_rows(rows, count: int, seed: int = 0) -> list[int]:
    """`count` of `rows` drawn at random without replacement (all of them, shuffled, when there are fewer);
    the same `seed` draws the same rows."""
    rows = list(rows)
    chosen = np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False)
    return [rows[i] for i in chosen]


@dataclass
class LabelledFolder:
    """A labelled folder as read for exploring it, before any image is decoded: its label table, its image
    folder, the listed files missing there, and the rows (of the table) whose image is present."""

    labels: LabelTable
    image_dir: Path
    missing: list[str]
    present: list[int]

    def __str__(self) -> str:
        return (f"{self.labels.source}: {len(self.labels)} labelled images, {self.labels.num_attributes} attributes, "
                f"images in {self.image_dir}; {len(self.missing)} listed but missing")

    @property
    def present_names(self) -> list[str]:
        return [self.labels.filenames[row] for row in self.present]

    def summary(self) -> pd.DataFrame:
        """The imbalance table: positives, negatives and NA per attribute, and the positive rate of known labels."""
        return summarize(self.labels.values, self.labels.attributes)

    def na_per_image(self) -> pd.Series:
        return na_per_image(self.labels.values)

    def cooccurrence(self) -> pd.DataFrame:
        return cooccurrence(self.labels.values, self.labels.attributes)

    def label_patterns(self, top: int = 10) -> pd.DataFrame:
        return label_patterns(self.labels.values, top)

    def image_sizes(self) -> pd.DataFrame:
        """Width, height and mode of every present image (file headers only)."""
        return image_sizes(self.image_dir, self.present_names)

    def sample(self, count: int, seed: int = 0) -> list[int]:
        """`count` random rows of the table whose image is present (see sample_rows)."""
        return sample_rows(self.present, count, seed)


def explore_folder(data_dir, unknown_as_na: bool = False) -> LabelledFolder:
    """Read the labels of the folder `data_dir` (the package's demo location is filled on first use) for
    exploring them; no image is decoded."""
    labels, image_dir, missing = read_label_folder(locate_data(data_dir), unknown_as_na)
    return LabelledFolder(labels, image_dir, missing, present_rows(labels.filenames, missing))


def image_folder(folder) -> Path:
    """Where the images of `folder` are: for a labelled folder (a label file there, or the package's demo
    location, filled on first use) its images, else `folder` itself."""
    path = Path(folder)
    try:
        return find_image_folder(find_label_file(locate_data(path)))
    except FileNotFoundError:
        if path.is_dir():
            return path
        raise
