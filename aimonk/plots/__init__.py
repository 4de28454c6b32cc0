"""Every figure aimonk draws, each a function returning a matplotlib figure; save_figure writes it (and shows it
in a notebook)."""
from aimonk.plots.figure import save_figure, plot_image_grid
from aimonk.plots.training import (
    plot_loss_curve, plot_epoch_curves, plot_validated_epochs, plot_single_pass, plot_metrics_per_attribute,
    TRAINING_FIGURES, save_training_figure,
)
from aimonk.plots.data import plot_imbalance, plot_heatmap, plot_labelled_samples
from aimonk.plots.eda import plot_na_per_image, plot_label_patterns, plot_image_sizes, plot_folder_samples
from aimonk.plots.evaluation import (
    plot_sample_predictions, plot_precision_recall, plot_reliability, plot_explanation,
    plot_confusion_matrices, plot_f1_comparison, plot_worst_mistakes, plot_f1_intervals,
)
from aimonk.plots.tables import styled, rounded

__all__ = [
    "styled",
    "rounded",
    "save_figure",
    "plot_image_grid",
    "plot_loss_curve",
    "plot_epoch_curves",
    "plot_validated_epochs",
    "plot_single_pass",
    "plot_metrics_per_attribute",
    "TRAINING_FIGURES",
    "save_training_figure",
    "plot_imbalance",
    "plot_heatmap",
    "plot_labelled_samples",
    "plot_na_per_image",
    "plot_label_patterns",
    "plot_image_sizes",
    "plot_folder_samples",
    "plot_sample_predictions",
    "plot_precision_recall",
    "plot_reliability",
    "plot_explanation",
    "plot_confusion_matrices",
    "plot_f1_comparison",
    "plot_worst_mistakes",
    "plot_f1_intervals",
]
