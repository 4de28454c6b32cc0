"""The figures of exploring a labelled folder that draw its tables (aimonk.data.eda): unknown labels per
image, the common label patterns, the image sizes, and sample images with their labels."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from aimonk.data.images import readable_images
from aimonk.plots.data import plot_labelled_samples


def plot_na_per_image(per_image: pd.Series):
    """Bars: how many images have 0, 1, 2, ... unknown labels (the Series of LabelledFolder.na_per_image)."""
    figure, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([str(count) for count in per_image.index], per_image.to_numpy(), color="grey")
    ax.set(title="Unknown labels per image", xlabel=per_image.index.name or "", ylabel="images")
    return figure


def plot_label_patterns(patterns: pd.DataFrame):
    """Horizontal bars: the images of each label pattern (LabelledFolder.label_patterns), the commonest on top."""
    figure, ax = plt.subplots(figsize=(6, 4))
    ax.barh(patterns["pattern"], patterns["images"], color="tab:blue")
    ax.invert_yaxis()
    ax.set(title="Label patterns", xlabel="images", ylabel="pattern")
    return figure


def plot_image_sizes(sizes: pd.DataFrame):
    """Each image's width against its height (LabelledFolder.image_sizes; unreadable images left out)."""
    figure, ax = plt.subplots(figsize=(5, 4))
    readable = sizes.dropna(subset=["width", "height"])
    ax.scatter(readable["width"], readable["height"], alpha=0.3)
    ax.set(title="Image sizes (pixels)", xlabel="width", ylabel="height")
    return figure


def plot_folder_samples(folder, rows, size: int = 160, columns: int = 6):
    """The images of `rows` of a LabelledFolder (e.g. folder.sample(12)), decoded at size x size, captioned with
    their labels; those that cannot be read are left out, named in a warning."""
    rows = list(rows)
    images, kept = readable_images([folder.image_dir / folder.labels.filenames[row] for row in rows], size)
    rows = [rows[index] for index in kept]  # an unreadable image is named in a warning and left out
    names = [folder.labels.filenames[row] for row in rows]
    return plot_labelled_samples(images, names, folder.labels.values[rows], folder.labels.attributes, columns)
