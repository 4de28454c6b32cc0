"""Figures: the loss curve, per-epoch curves, the imbalance chart, sample predictions."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


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
    """Train/validation loss and validation F1 (macro and per attribute) per epoch."""
    frame = pd.DataFrame(history["epochs"])
    figure, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    loss_ax.plot(frame["epoch"], frame["train_loss"], "o-", label="train")
    if "val_loss" in frame:
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
    for ax in (loss_ax, f1_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


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
    ax.legend(loc="lower right")
    figure.tight_layout()
    return figure


def save_figure(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
