"""The label data: imbalance, co-occurrence heatmap, labelled samples."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aimonk.plots.figure import plot_image_grid, plot_text


def plot_imbalance(summary: pd.DataFrame):
    """Stacked counts of positive / negative / NA per attribute, positive rate annotated."""
    figure, ax = plt.subplots(figsize=(max(6, 1.4 * len(summary)), 4.5))
    bottom, x = np.zeros(len(summary)), np.arange(len(summary))  # by position: two names cut alike stay apart
    for column, colour in (("positive", "tab:green"), ("negative", "tab:red"), ("NA", "lightgrey")):
        ax.bar(x, summary[column], bottom=bottom, color=colour, label=column)
        bottom += summary[column].to_numpy()
    ax.set_xticks(x, [plot_text(name) for name in summary.index])
    for x, (total, rate) in enumerate(zip(bottom, summary["positive_rate"])):
        ax.text(x, total, f"{rate:.0%} positive", ha="center", va="bottom", fontsize=9)
    ax.set(ylabel="images", title="Labels per attribute")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return figure


def plot_heatmap(frame: pd.DataFrame, title: str, fmt: str = ".2f"):
    import seaborn as sns

    figure, ax = plt.subplots(figsize=(1.3 * len(frame.columns) + 2, 1.1 * len(frame) + 1.5))
    frame = frame.set_axis([plot_text(name) for name in frame.index], axis=0).set_axis(
        [plot_text(name) for name in frame.columns], axis=1)
    sns.heatmap(frame, annot=True, fmt=fmt, cmap="viridis", vmin=0, vmax=1, ax=ax, cbar_kws={"shrink": 0.8})
    ax.set_title(title)
    figure.tight_layout()
    return figure


def plot_labelled_samples(images, names, values, attributes, columns: int = 6):
    """A grid of images captioned with their label vector, e.g. [1 NA 0 1]."""
    titles = [f"{plot_text(Path(name).name)}\n[" + " ".join("NA" if np.isnan(v) else str(int(v)) for v in row) + "]"
              for name, row in zip(names, values)]
    return plot_image_grid(images, titles, columns,
                           "Sample images, labels in the order " + ", ".join(map(plot_text, attributes)))
