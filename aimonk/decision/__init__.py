"""The decision rule: calibration and per-attribute thresholds, fitted on held-out predictions."""
