"""Reliability diagram of out-of-fold probabilities before and after calibration, from `aimonk evaluate --cv`.

    python benchmarks/calibration.py runs/cv5/oof_predictions.csv --out figures/calibration.png [--method platt]

Each fold's calibration map is fitted on the other folds' predictions (aimonk.decision.calibration.cross_fitted), so
the "after" curve and its ECE are measured on predictions the map did not see.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimonk.decision.calibration import cross_fitted, expected_calibration_error
from aimonk.plots import plot_reliability, save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("oof", help="oof_predictions.csv written by aimonk evaluate --cv")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--method", default="platt", choices=("platt", "temperature"))
    args = parser.parse_args()
    frame = pd.read_csv(args.oof)
    attributes = [c[: -len("_probability")] for c in frame.columns if c.endswith("_probability")]
    targets = frame[attributes].to_numpy(float)
    raw = frame[[f"{a}_probability" for a in attributes]].to_numpy(float)
    calibrated = cross_fitted(targets, raw, args.method)
    for label, probabilities in (("out-of-fold", raw), (f"{args.method} (cross-fitted)", calibrated)):
        ece = expected_calibration_error(targets, probabilities)
        print(f"{label:<24} ECE " + "  ".join(f"{a} {e:.3f}" for a, e in zip(attributes, ece)) + f"  macro {ece.mean():.3f}")
    save_figure(plot_reliability(targets, {"out-of-fold": raw, f"{args.method}": calibrated}, attributes), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
