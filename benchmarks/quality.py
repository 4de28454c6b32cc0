"""The reference recipe against our fine-tuning preset and our default, on the same cross-validation folds.

    python benchmarks/quality.py DATA [--folds 5] [--backbone efficientnet_lite0] [--out runs/quality]

All recipes use the same backbone (the reference's ResNet-34 needs a download; pass --backbone
resnet34 where you are online). F1 per attribute at thresholds tuned on the other folds' out-of-fold
predictions, with bootstrap 95% intervals, beside the majority-class baseline. Finished runs are kept in
OUT and reused.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimonk.config import preset  # noqa: E402
from aimonk.crossval import cross_validate, cv_report, load_cv, save_cv  # noqa: E402
from aimonk.dataset import load_labelled_folder  # noqa: E402
from aimonk.images import DataWarning  # noqa: E402


RECIPES = ("reference", "finetune", "default")


def run(name, args, data, out: Path):
    path = out / f"{name}.npz"
    if not path.is_file():
        config = preset(name, backbone=args.backbone, weights="imagenet")
        started = time.perf_counter()
        cv = cross_validate(config, data, args.folds, seed=args.seed, progress=False)
        cv.config["seconds"] = time.perf_counter() - started
        save_cv(cv, path)
    cv = load_cv(path)
    return cv, cv_report(cv)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--out", default="runs/quality")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DataWarning)
    out = Path(args.out)
    images = {}
    tables, seconds = {}, {}
    for name in RECIPES:
        size = preset(name).image_size
        if size not in images:
            images[size] = load_labelled_folder(args.data, size, progress=False)
        cv, tables[name] = run(name, args, images[size], out)
        seconds[name] = cv.config.get("seconds", float("nan"))
    reference, default = tables["reference"], tables["default"]

    def with_interval(table, row):
        return f"{table.loc[row, 'f1']:.3f} [{table.loc[row, 'f1_low']:.3f}, {table.loc[row, 'f1_high']:.3f}]"

    rows = []
    for row in reference.index:
        rows.append({"attribute": row, "positives": int(reference.loc[row, "positives"]),
                     "baseline F1": round(reference.loc[row, "baseline_f1"], 3),
                     **{f"{name} F1 [95% CI]": with_interval(tables[name], row) for name in RECIPES},
                     "default - reference": round(default.loc[row, "f1"] - reference.loc[row, "f1"], 3),
                     "default - baseline": round(default.loc[row, "lift"], 3),
                     **{f"{name} AP": round(tables[name].loc[row, "ap"], 3) for name in RECIPES}})
    print(f"{args.data}: {args.folds}-fold cross-validation, the same folds for all, backbone {args.backbone}; "
          "F1 at thresholds tuned on the other folds")
    print(pd.DataFrame(rows).to_string(index=False))
    print("minutes: " + ", ".join(f"{name} {s / 60:.1f}" for name, s in seconds.items()))


if __name__ == "__main__":
    main()
