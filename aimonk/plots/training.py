"""How a run learned: the loss curve, the epoch curves, and the one-pass figures of the linear probe."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aimonk.plots.figure import plot_text, save_figure


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


def plot_epoch_curves(history: dict):
    """Train/validation loss and validation F1 (macro and per attribute) per epoch; for a single validated epoch
    (or a linear probe of a checkpoint before 0.3, stored as one epoch) its validation precision, recall and F1
    per attribute instead."""
    frame = pd.DataFrame(history["epochs"])
    if len(frame) == 1 and "val_f1" in frame:
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
        f1_ax.plot(per_attribute.index, per_attribute[name], ".--", alpha=0.7, label=plot_text(name))
    f1_ax.plot(frame["epoch"], frame["val_macro_f1"], "o-", color="black", linewidth=2, label="macro")
    best = frame.loc[frame["val_macro_f1"].idxmax()]
    f1_ax.axvline(best["epoch"], color="green", linestyle=":", label=f"best epoch {int(best['epoch'])}")
    f1_ax.set_ylim(0, 1.02)
    loss_ax.set(xlabel="epoch", ylabel="masked loss", title="Loss per epoch")
    f1_ax.set(xlabel="epoch", ylabel="F1 at threshold 0.5", title="Validation F1 per epoch")


def plot_single_pass(record: dict):
    """Validation precision, recall and F1 at threshold 0.5 per attribute, for a run of one validated epoch."""
    table = pd.DataFrame({metric: record[f"val_{metric}"] for metric in ("precision", "recall", "f1")})
    return plot_metrics_per_attribute(
        table, "at threshold 0.5",
        f"Validation after one pass (macro F1 {record['val_macro_f1']:.3f}, loss {record['val_loss']:.3f})")


def plot_metrics_per_attribute(table: pd.DataFrame, ylabel: str, title: str):
    """Precision, recall and F1 bars per attribute (a 'macro' row, where there is one, in the title only)."""
    table = table.drop(index="macro", errors="ignore")
    table = table.set_axis([plot_text(name) for name in table.index], axis=0)  # bars by position, names as text
    ax = table[["precision", "recall", "f1"]].plot.bar(figsize=(max(7, 1.6 * len(table)), 4.5), rot=0,
                                                         color=["tab:blue", "tab:orange", "tab:green"])
    ax.set(ylabel=ylabel, ylim=(0, 1.2), xlabel="", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7, rotation=90, padding=2)
    ax.figure.tight_layout()
    return ax.figure


TRAINING_FIGURES = ("epoch_curves.png", "out_of_fold.png", "one_pass_validation.png")  # save_training_figure's


def save_training_figure(trained, folder, show: bool = True) -> Path | None:
    """The figure of how a finished run (aimonk.training.run.TrainedModel) learned, saved in `folder`: the epoch
    curves of a run that learned by epochs; for the linear probe's one solve its out-of-fold precision, recall
    and F1 per attribute (out_of_fold.png), else its validation at 0.5 (one_pass_validation.png). None when a
    one-pass run kept no held-out images to show."""
    if trained.history["epochs"]:
        name, figure = "epoch_curves.png", plot_epoch_curves(trained.history)
    elif trained.out_of_fold_metrics is not None:
        macro = trained.out_of_fold_metrics.loc["macro", "f1"]
        name, figure = "out_of_fold.png", plot_metrics_per_attribute(
            trained.out_of_fold_metrics, "each fold at thresholds tuned on the others",
            f"The linear probe on images it did not learn from (out-of-fold, macro F1 {macro:.3f})")
    elif trained.validation_metrics is not None:
        macro = trained.validation_metrics.loc["macro", "f1"]
        name, figure = "one_pass_validation.png", plot_metrics_per_attribute(
            trained.validation_metrics, "at threshold 0.5", f"The linear probe on the validation split (macro F1 "
                                                            f"{macro:.3f})")
    else:
        return None
    save_figure(figure, Path(folder) / name, show=show)
    return Path(folder) / name
