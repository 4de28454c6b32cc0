"""How a model scores: sample predictions, PR curves, reliability, confusion matrices, F1, mistakes, Grad-CAM."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aimonk.decision.calibration import expected_calibration_error, reliability
from aimonk.decision.thresholds import decide
from aimonk.plots.figure import label_mark, overlay, plot_image_grid, plot_text


def plot_sample_predictions(images, names, targets, probabilities, thresholds, attributes, columns: int = 6):
    """Each image with ✓/✗ per attribute; green where the prediction is right, red where wrong."""
    titles, colours = [], []
    for name, truth, probs, decisions in zip(names, targets, probabilities, decide(probabilities, thresholds)):
        lines, line_colours = [plot_text(Path(name).name)], ["black"]
        for attribute, t, p, present in zip(attributes, truth, probs, decisions):
            mark, colour = label_mark(t, present)
            lines.append(f"{mark} {plot_text(attribute)} {p:.0%}")
            line_colours.append(colour)
        titles.append("\n".join(lines))
        colours.append(line_colours)
    return plot_image_grid(images, titles, columns, "Sample predictions (green right, red wrong, grey unlabelled)",
                           colours)


def plot_precision_recall(targets, probabilities, attributes, thresholds=None):
    """One precision-recall curve per attribute on its known labels, the operating point marked."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, ax = plt.subplots(figsize=(6.5, 5.5))
    decisions = None if thresholds is None else decide(probabilities, thresholds)
    for column, name in enumerate(attributes):
        known = ~np.isnan(targets[:, column])
        truth, scores = targets[known, column].astype(int), probabilities[known, column]
        if truth.min() == truth.max():
            continue
        precision, recall, _ = precision_recall_curve(truth, scores)
        line, = ax.plot(recall, precision, label=f"{plot_text(name)} (AP {average_precision_score(truth, scores):.2f}, "
                                                  f"{truth.mean():.0%} positive)")
        if decisions is not None:
            chosen = decisions[known, column]
            if chosen.any():
                ax.plot(truth[chosen].sum() / truth.sum(), truth[chosen].mean(), "o", color=line.get_color())
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02),
           title="Precision-recall per attribute (dots: chosen thresholds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, loc="lower left")
    return figure


def plot_reliability(targets, curves: dict, attributes, bins: int = 10, min_count: int = 5):
    """Reliability diagram per attribute: observed positive rate against mean predicted probability in
    equal-width bins (bins of fewer than min_count images left out, dots sized by count), for each labelled
    set of probabilities in `curves` (e.g. raw and calibrated), with the expected calibration error (over
    all bins) in the legend; the diagonal is perfect calibration."""
    figure, axes = plt.subplots(1, len(attributes), figsize=(2.9 * len(attributes), 3.4), squeeze=False)
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
        ax.set(title=plot_text(name), xlabel="mean predicted probability", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=10, loc="upper left")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("observed positive rate")
    figure.tight_layout()
    return figure


def plot_explanation(image, heatmaps, attributes, probabilities, thresholds, name: str = ""):
    """The image, then per attribute its Grad-CAM heatmap laid over it, with the probability and decision."""
    figure, axes = plt.subplots(1, len(attributes) + 1, figsize=(2.6 * (len(attributes) + 1), 3.0))
    axes[0].imshow(image)
    axes[0].set_title(plot_text(Path(name).name) or "image", fontsize=9)
    for ax, attribute, heatmap, p, t, present in zip(axes[1:], attributes, heatmaps, probabilities, thresholds,
                                                     decide(probabilities, thresholds)):
        ax.imshow(overlay(image, heatmap))
        ax.set_title(f"{plot_text(attribute)}: {'PRESENT' if present else 'absent'}\n{p:.0%} (threshold {t:.2f})",
                     fontsize=9, color="#2e7d32" if present else "#616161")
    for ax in axes:
        ax.axis("off")
    figure.tight_layout()
    return figure


def plot_confusion_matrices(targets, probabilities, thresholds, attributes):
    from sklearn.metrics import confusion_matrix

    figure, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 3.2), squeeze=False)
    decisions = decide(probabilities, thresholds)
    for column, (ax, name) in enumerate(zip(axes[0], attributes)):
        known = ~np.isnan(targets[:, column])
        matrix = confusion_matrix(targets[known, column].astype(int), decisions[known, column].astype(int),
                                  labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black", fontsize=12)
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["absent", "present"], yticklabels=["absent", "present"],
               xlabel="predicted", ylabel="true" if column == 0 else "",
               title=f"{plot_text(name)} (t={thresholds[column]:.2f})")
    figure.tight_layout()
    return figure


def plot_f1_comparison(table: pd.DataFrame):
    """F1 at 0.5 and at the model's stored thresholds per attribute, beside the always-present baseline (the F1
    of calling every image positive)."""
    columns = {"f1@0.5": "threshold 0.5", "f1@stored": "stored thresholds",
               "always_present_f1": "baseline: always present"}
    table = table.set_axis([plot_text(name) for name in table.index], axis=0)  # bars by position, names as text
    ax = table[list(columns)].rename(columns=columns).plot.bar(figsize=(max(7, 1.6 * len(table)), 4.5), rot=0,
                                                              color=["tab:blue", "tab:green", "lightgrey"])
    ax.set(ylabel="F1", ylim=(0, 1.2), title="F1 per attribute", xlabel="")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.0, 1.0))
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
    # captions of 10 pt on panels of 1.9 in: readable when the figure is shown at a window's width
    figure, axes = plt.subplots(len(shown), width, figsize=(1.9 * max(width, 2), 2.5 * len(shown)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax_row, column in zip(axes, shown):
        for index, row in enumerate(worst[column]):
            ax = ax_row[index * panels]
            ax.imshow(images[row])
            truth = "present" if targets[row, column] == 1 else "absent"
            ax.set_title(f"{plot_text(Path(names[row]).name)}\n{plot_text(attributes[column])}: {labelled} {truth}, "
                         f"p={probabilities[row, column]:.2f}", fontsize=10, color="red")
            if heatmaps:
                ax_row[index * panels + 1].imshow(overlay(images[row], heatmaps[(row, column)]))
                ax_row[index * panels + 1].set_title("where it looked", fontsize=10)
    figure.suptitle(title, fontsize=13)
    figure.tight_layout()
    return figure


def plot_f1_intervals(table: pd.DataFrame):
    """F1 per attribute with its 95% interval (cross-validated), the always-present baseline marked."""
    rows = table.index[::-1]
    figure, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    y = np.arange(len(rows))
    f1 = table.loc[rows, "f1"].to_numpy()
    errors = [f1 - table.loc[rows, "f1_low"].to_numpy(), table.loc[rows, "f1_high"].to_numpy() - f1]
    ax.errorbar(f1, y, xerr=errors, fmt="o", color="tab:blue", capsize=4, label="F1 (95% interval)")
    ax.plot(table.loc[rows, "always_present_f1"], y, "|", color="grey", markersize=18, markeredgewidth=2,
            label="baseline: always present")
    ax.set(yticks=y, yticklabels=[plot_text(name) for name in rows], xlim=(0, 1.02),
           xlabel="F1 at thresholds tuned on the other folds",
           title="Cross-validated F1")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=10)
    figure.tight_layout()
    return figure
