"""Figures: the loss curve, per-epoch curves, the imbalance chart, sample predictions."""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aimonk.files import atomic_path
from aimonk.model.recipe import Recipe
from aimonk.decision.calibration import expected_calibration_error, reliability
from aimonk.serve.explain import overlay


def smooth(values, window: int) -> np.ndarray:
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


def plot_loss_curve(history: dict, ax=None):
    """The reference's plot: training loss at every iteration, raw and smoothed, epochs marked."""
    losses = history["iteration_loss"]
    ax = ax or plt.subplots(figsize=(9, 4.5))[1]
    iterations = np.arange(1, len(losses) + 1)
    ax.plot(iterations, losses, color="tab:blue", alpha=0.3, linewidth=1, label="training loss")
    window = max(1, len(losses) // 30)
    ax.plot(iterations, smooth(losses, window), color="tab:blue", linewidth=2, label=f"moving average ({window})")
    per_epoch = len(losses) / max(len(history["epochs"]), 1)
    for epoch in range(1, len(history["epochs"])):
        ax.axvline(epoch * per_epoch, color="grey", linewidth=0.5, linestyle=":")
    ax.set(xlabel="iteration_number", ylabel="training_loss", title="Training loss per iteration")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax.figure


def plot_epoch_curves(history: dict, recipe: Recipe = Recipe.WHOLE_NETWORK):
    """Train/validation loss and validation F1 (macro and per attribute) per epoch; for the recipe solved in one
    pass (the linear probe) its validation precision, recall and F1 per attribute instead."""
    frame = pd.DataFrame(history["epochs"])
    if (len(frame) == 1 or not recipe.by_epochs) and "val_f1" in frame:
        return plot_single_pass(history["epochs"][0])
    if "val_loss" not in frame:  # trained on every image: only the training loss to show
        figure, loss_ax = plt.subplots(figsize=(6.5, 4.5))
        loss_ax.plot(frame["epoch"], frame["train_loss"], "o-", label="train")
        loss_ax.set(xlabel="epoch", ylabel="masked loss",
                    title="Loss per epoch (no validation split: `aimonk evaluate`\nscores the out-of-fold predictions)")
        axes = (loss_ax,)
    else:
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        plot_validated_epochs(frame, *axes)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, even for one
        ax.set_xlim(frame["epoch"].min() - 0.5, frame["epoch"].max() + 0.5)
    figure.tight_layout()
    return figure


def plot_validated_epochs(frame: pd.DataFrame, loss_ax, f1_ax) -> None:
    loss_ax.plot(frame["epoch"], frame["train_loss"], "o-", label="train")
    loss_ax.plot(frame["epoch"], frame["val_loss"], "o-", label="validation")
    per_attribute = pd.DataFrame(list(frame["val_f1"]), index=frame["epoch"])
    for name in per_attribute:
        f1_ax.plot(per_attribute.index, per_attribute[name], ".--", alpha=0.7, label=name)
    f1_ax.plot(frame["epoch"], frame["val_macro_f1"], "o-", color="black", linewidth=2, label="macro")
    best = frame.loc[frame["val_macro_f1"].idxmax()]
    f1_ax.axvline(best["epoch"], color="green", linestyle=":", label=f"best epoch {int(best['epoch'])}")
    f1_ax.set_ylim(0, 1.02)
    loss_ax.set(xlabel="epoch", ylabel="masked loss", title="Loss per epoch")
    f1_ax.set(xlabel="epoch", ylabel="F1 at threshold 0.5", title="Validation F1 per epoch")


def plot_single_pass(record: dict):
    """Validation precision, recall and F1 at threshold 0.5 per attribute, for a run trained in one pass."""
    table = pd.DataFrame({metric: record[f"val_{metric}"] for metric in ("precision", "recall", "f1")})
    ax = table.plot.bar(figsize=(max(7, 1.6 * len(table)), 4.5), rot=0, color=["tab:blue", "tab:orange", "tab:green"])
    ax.set(ylabel="at threshold 0.5", ylim=(0, 1.2), xlabel="",
           title=f"Validation after one pass (macro F1 {record['val_macro_f1']:.3f}, loss {record['val_loss']:.3f})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7, rotation=90, padding=2)
    ax.figure.tight_layout()
    return ax.figure


def plot_imbalance(summary: pd.DataFrame):
    """Stacked counts of positive / negative / NA per attribute, positive rate annotated."""
    figure, ax = plt.subplots(figsize=(max(6, 1.4 * len(summary)), 4.5))
    bottom = np.zeros(len(summary))
    for column, colour in (("positive", "tab:green"), ("negative", "tab:red"), ("NA", "lightgrey")):
        ax.bar(summary.index, summary[column], bottom=bottom, color=colour, label=column)
        bottom += summary[column].to_numpy()
    for x, (total, rate) in enumerate(zip(bottom, summary["positive_rate"])):
        ax.text(x, total, f"{rate:.0%} positive", ha="center", va="bottom", fontsize=9)
    ax.set(ylabel="images", title="Labels per attribute")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return figure


def save_figure(figure, path, show: bool = True) -> None:
    """Write `figure` to `path` (atomically); in a notebook (a Jupyter kernel, whatever matplotlib's backend) it
    also shows below the cell unless show=False. The figure is closed either way, so it shows once."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    if show and in_a_notebook():
        from IPython.display import display

        display(figure)
    plt.close(figure)


def in_a_notebook() -> bool:
    """Running in a Jupyter kernel (JupyterLab, Colab, papermill), where a displayed figure becomes an image."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _label_mark(truth: float, predicted: bool) -> tuple[str, str]:
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
    cell, side, caption, heading = 2.3, 2.1, 0.17 * lines + 0.2, 0.45 if title else 0.1
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
            ax.annotate(line, xy=(0.5, 0), xycoords="axes fraction", xytext=(0, -3 - 12 * line_number),
                        textcoords="offset points", ha="center", va="top", fontsize=8, color=colour)
    if title:
        figure.suptitle(title, y=1 - 0.08 / height, va="top")
    return figure


def plot_sample_predictions(images, names, targets, probabilities, thresholds, attributes, columns: int = 6):
    """Each image with ✓/✗ per attribute; green where the prediction is right, red where wrong."""
    titles, colours = [], []
    for name, truth, probs in zip(names, targets, probabilities):
        lines, line_colours = [Path(name).name], ["black"]
        for attribute, t, p, threshold in zip(attributes, truth, probs, thresholds):
            mark, colour = _label_mark(t, p >= threshold)
            lines.append(f"{mark} {attribute} {p:.0%}")
            line_colours.append(colour)
        titles.append("\n".join(lines))
        colours.append(line_colours)
    return plot_image_grid(images, titles, columns, "Sample predictions (green right, red wrong, grey unlabelled)",
                           colours)


def plot_precision_recall(targets, probabilities, attributes, thresholds=None):
    """One precision-recall curve per attribute on its known labels, the operating point marked."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, ax = plt.subplots(figsize=(6.5, 5.5))
    for column, name in enumerate(attributes):
        known = ~np.isnan(targets[:, column])
        truth, scores = targets[known, column].astype(int), probabilities[known, column]
        if truth.min() == truth.max():
            continue
        precision, recall, _ = precision_recall_curve(truth, scores)
        line, = ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(truth, scores):.2f}, "
                                                  f"{truth.mean():.0%} positive)")
        if thresholds is not None:
            chosen = scores >= thresholds[column]
            if chosen.any():
                ax.plot(truth[chosen].sum() / truth.sum(), truth[chosen].mean(), "o", color=line.get_color())
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02),
           title="Precision-recall per attribute (dots: chosen thresholds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return figure


def plot_reliability(targets, curves: dict, attributes, bins: int = 10, min_count: int = 5):
    """Reliability diagram per attribute: observed positive rate against mean predicted probability in
    equal-width bins (bins of fewer than min_count images left out, dots sized by count), for each labelled
    set of probabilities in `curves` (e.g. raw and calibrated), with the expected calibration error (over
    all bins) in the legend; the diagonal is perfect calibration."""
    figure, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 3.4), squeeze=False)
    for column, (ax, name) in enumerate(zip(axes[0], attributes)):
        known = ~np.isnan(targets[:, column])
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        for label, probabilities in curves.items():
            if not known.any():
                continue
            predicted, observed, count = reliability(targets[known, column], probabilities[known, column], bins)
            used = count >= min_count
            ece = expected_calibration_error(targets[:, [column]], probabilities[:, [column]], bins)[0]
            line, = ax.plot(predicted[used], observed[used], "-", lw=1.2, label=f"{label} (ECE {ece:.3f})")
            ax.scatter(predicted[used], observed[used], s=8 + 60 * np.sqrt(count[used] / count.sum()),
                       color=line.get_color(), zorder=3)
        ax.set(title=name, xlabel="mean predicted probability", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("observed positive rate")
    figure.tight_layout()
    return figure


def plot_explanation(image, heatmaps, attributes, probabilities, thresholds, name: str = ""):
    """The image, then per attribute its Grad-CAM heatmap laid over it, with the probability and decision."""
    figure, axes = plt.subplots(1, len(attributes) + 1, figsize=(2.6 * (len(attributes) + 1), 3.0))
    axes[0].imshow(image)
    axes[0].set_title(Path(name).name or "image", fontsize=9)
    for ax, attribute, heatmap, p, t in zip(axes[1:], attributes, heatmaps, probabilities, thresholds):
        ax.imshow(overlay(image, heatmap))
        ax.set_title(f"{attribute}: {'PRESENT' if p >= t else 'absent'}\n{p:.0%} (threshold {t:.2f})", fontsize=9,
                     color="#2e7d32" if p >= t else "#616161")
    for ax in axes:
        ax.axis("off")
    figure.tight_layout()
    return figure


def plot_confusion_matrices(targets, probabilities, thresholds, attributes):
    from sklearn.metrics import confusion_matrix

    figure, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 3.2), squeeze=False)
    for column, (ax, name) in enumerate(zip(axes[0], attributes)):
        known = ~np.isnan(targets[:, column])
        matrix = confusion_matrix(targets[known, column].astype(int),
                                  (probabilities[known, column] >= thresholds[column]).astype(int), labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black", fontsize=12)
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["absent", "present"], yticklabels=["absent", "present"],
               xlabel="predicted", ylabel="true" if column == 0 else "", title=f"{name} (t={thresholds[column]:.2f})")
    figure.tight_layout()
    return figure


def plot_heatmap(frame: pd.DataFrame, title: str, fmt: str = ".2f"):
    import seaborn as sns

    figure, ax = plt.subplots(figsize=(1.3 * len(frame.columns) + 2, 1.1 * len(frame) + 1.5))
    sns.heatmap(frame, annot=True, fmt=fmt, cmap="viridis", vmin=0, vmax=1, ax=ax, cbar_kws={"shrink": 0.8})
    ax.set_title(title)
    figure.tight_layout()
    return figure


def plot_labelled_samples(images, names, values, attributes, columns: int = 6):
    """A grid of images captioned with their label vector, e.g. [1 NA 0 1]."""
    titles = [f"{Path(name).name}\n[" + " ".join("NA" if np.isnan(v) else str(int(v)) for v in row) + "]"
              for name, row in zip(names, values)]
    return plot_image_grid(images, titles, columns, "Sample images, labels in the order " + ", ".join(attributes))


def plot_f1_comparison(table: pd.DataFrame):
    """F1 at 0.5 and at the model's stored thresholds per attribute, beside the majority-class baseline."""
    columns = {"f1@0.5": "threshold 0.5", "f1@stored": "stored thresholds", "baseline_f1": "majority baseline"}
    ax = table[list(columns)].rename(columns=columns).plot.bar(figsize=(max(7, 1.6 * len(table)), 4.5), rot=0,
                                                              color=["tab:blue", "tab:green", "lightgrey"])
    ax.set(ylabel="F1", ylim=(0, 1.2), title="F1 per attribute", xlabel="")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for container in ax.containers:  # upright, a label is narrower than its bar: neighbours never overlap
        ax.bar_label(container, fmt="%.2f", fontsize=7, rotation=90, padding=2)
    ax.figure.tight_layout()
    return ax.figure


def plot_worst_mistakes(images, names, targets, probabilities, worst: dict, attributes, per_attribute: int = 4,
                        title: str = "Most confident mistakes per attribute", labelled: str = "truly",
                        heatmaps: dict | None = None):
    """One row per attribute that has mistakes: its most confidently wrong images, label and probability given
    (also the gallery of label issues, with title and labelled="labelled"). heatmaps {(row, column): map}
    puts each image's Grad-CAM map for that attribute beside it."""

    shown = [column for column in range(len(attributes)) if worst[column]]
    if not shown:
        figure, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"No mistakes on the {len(names)} images scored", ha="center", va="center")
        return figure
    panels = 2 if heatmaps else 1
    width = max(len(worst[column]) for column in shown) * panels
    figure, axes = plt.subplots(len(shown), width, figsize=(2.4 * max(width, 2), 2.8 * len(shown)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax_row, column in zip(axes, shown):
        for index, row in enumerate(worst[column]):
            ax = ax_row[index * panels]
            ax.imshow(images[row])
            truth = "present" if targets[row, column] == 1 else "absent"
            ax.set_title(f"{Path(names[row]).name}\n{attributes[column]}: {labelled} {truth}, "
                         f"p={probabilities[row, column]:.2f}", fontsize=8, color="red")
            if heatmaps:
                ax_row[index * panels + 1].imshow(overlay(images[row], heatmaps[(row, column)]))
                ax_row[index * panels + 1].set_title("why (Grad-CAM)", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_f1_intervals(table: pd.DataFrame):
    """F1 per attribute with its 95% interval (cross-validated), the majority baseline marked."""
    rows = table.index[::-1]
    figure, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    y = np.arange(len(rows))
    f1 = table.loc[rows, "f1"].to_numpy()
    errors = [f1 - table.loc[rows, "f1_low"].to_numpy(), table.loc[rows, "f1_high"].to_numpy() - f1]
    ax.errorbar(f1, y, xerr=errors, fmt="o", color="tab:blue", capsize=4, label="F1 (95% interval)")
    ax.plot(table.loc[rows, "baseline_f1"], y, "|", color="grey", markersize=18, markeredgewidth=2,
            label="majority baseline")
    ax.set(yticks=y, yticklabels=rows, xlim=(0, 1.02), xlabel="F1 at thresholds tuned on the other folds",
           title="Cross-validated F1")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    return figure
