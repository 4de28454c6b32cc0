"""Saving (and, in a notebook, showing) a figure; the captioned image grid the other figures build on; a heatmap
laid over an image (Grad-CAM's, aimonk.serve.explain)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib import colormaps
import numpy as np

from aimonk.data.labels import short_name
from aimonk.files import atomic_path
from aimonk.progress import in_jupyter_kernel


def save_figure(figure, path, show: bool = True) -> None:
    """Write `figure` to `path` (atomically); in a notebook (a Jupyter kernel, whatever matplotlib's backend) it
    also shows below the cell unless show=False. The figure is closed either way, so it shows once."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    if show and in_jupyter_kernel():  # JupyterLab, Colab, papermill: a displayed figure becomes an image
        from IPython.display import display

        display(figure)
    plt.close(figure)


def plot_text(name) -> str:
    """A user's name (an attribute's, a file's) as a figure prints it: cut and escaped as
    aimonk.data.labels.short_name does, and each $ escaped, so matplotlib shows it as written instead of reading
    it as mathtext (a name like 'a$^$' would fail the figure when it is drawn)."""
    return short_name(str(name)).replace("$", r"\$")


def label_mark(truth: float, predicted: bool) -> tuple[str, str]:
    """Mark and colour for one attribute of one image: green right, red wrong, grey unknown truth."""
    mark = "✓" if predicted else "✗"
    if np.isnan(truth):
        return mark, "grey"
    return mark, "green" if bool(truth) == predicted else "red"


def plot_image_grid(images, titles, columns: int = 6, title: str | None = None, colours=None):
    """Images in a grid, each with a multi-line caption below (optionally one colour per caption line). The
    layout is set in inches, so the captions fit under each image and no blank band opens above the grid."""
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, int(np.ceil(count / columns)))
    lines = max((len(t.split("\n")) for t in titles), default=1)
    cell, side, caption, heading = 2.3, 2.1, 0.2 * lines + 0.2, 0.45 if title else 0.1
    width, height = cell * columns, rows * (side + caption) + heading
    figure = plt.figure(figsize=(width, height))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top = height - heading - row * (side + caption)
        ax = figure.add_axes(((column * cell + (cell - side) / 2) / width, (top - side) / height,
                              side / width, side / height))
        ax.axis("off")
        ax.set_anchor("N")  # an image wider than tall hangs from the top of its cell, its caption right below
        ax.imshow(image)
        for line_number, line in enumerate(titles[index].split("\n")):
            colour = colours[index][line_number] if colours else "black"
            ax.annotate(line, xy=(0.5, 0), xycoords="axes fraction", xytext=(0, -3 - 14 * line_number),
                        textcoords="offset points", ha="center", va="top", fontsize=10, color=colour)
    if title:
        figure.suptitle(title, y=1 - 0.08 / height, va="top")
    return figure


def overlay(image: np.ndarray, heatmap: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """The image with the heatmap laid over it in a 'jet'-like colour map, uint8 RGB."""
    colours = colormaps["jet"](heatmap)[..., :3] * 255
    return np.clip((1 - strength) * image + strength * colours, 0, 255).astype(np.uint8)
