"""Measuring models honestly: a checkpoint on a labelled folder, cross-validation reports, labels to check."""
