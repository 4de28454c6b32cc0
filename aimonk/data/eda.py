"""Tables for exploring a labelled folder: where NA falls, co-occurrence, label patterns, image sizes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


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
        except (OSError, ValueError):
            rows.append({"filename": name, "width": np.nan, "height": np.nan, "mode": "unreadable"})
    return pd.DataFrame(rows)
