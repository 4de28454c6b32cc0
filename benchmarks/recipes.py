"""Which training recipe is better? Each one cross-validated on the same folds of one labelled folder.

    python benchmarks/recipes.py DATA [--folds 5] [--only reference,head*] [--out runs/recipes]

Prints one row per recipe: macro F1 and the rarest attribute's F1 (thresholds tuned on the other
folds' out-of-fold predictions), each with a bootstrap 95% interval. Each finished recipe is saved as
OUT/NAME.npz, and recipes already saved there are not run again.
"""
from __future__ import annotations

import argparse
from fnmatch import fnmatch
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimonk.config import preset
from aimonk.evaluation.tables import cv_report
from aimonk.training.crossval import CrossValidation, load_cv, run_folds, save_cv
from aimonk.data.folder import load_labelled_folder
from aimonk.data.images import DataWarning
from aimonk.data.split import kfold_splits
from aimonk.training.loop import fit

# Each recipe changes the reference recipe (run with the offline backbone) by a few fields.
BASE = dict(backbone="efficientnet_lite0", weights="imagenet")
RECIPES = {
    "reference": {},
    "cosine": dict(schedule="cosine", warmup_epochs=1, lr=3e-4),
    "cosine+head10": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, head_lr_multiplier=10),
    "cosine+freeze2": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, freeze=2),
    "cosine+tta": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, tta=True),
    "cosine+freeze2+oversample+tta": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, freeze=2, oversample=2.0,
                                          tta=True),
    "cosine+focal": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, loss="focal"),
    "cosine+oversample": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, oversample=3.0),
    "cosine+12epochs": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, epochs=12),
    "cosine+freeze2+oversample+tta+light": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, freeze=2,
                                                oversample=2.0, tta=True, augment="light"),
    "cosine+freeze2+oversample+tta+ema": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, freeze=2,
                                              oversample=2.0, tta=True, ema=0.98),
    "cosine+freeze2+oversample+tta+head20": dict(schedule="cosine", warmup_epochs=1, lr=3e-4, freeze=2,
                                                 oversample=2.0, tta=True, head_epochs=20),
}
# Only the head learns: the backbone's features of each image and its mirror image are computed once
# (aimonk.model.features), so a whole cross-validation takes about a minute; each row below changes one thing.
HEAD = dict(schedule="cosine", warmup_epochs=1, lr=3e-3, freeze="all", augment="flip", oversample=2.0, tta=True,
            epochs=20, head_solver="adam")
RECIPES.update({
    "head": HEAD,
    "head-no-flip": {**HEAD, "augment": "none", "tta": False},
    "head-no-tta": {**HEAD, "tta": False},
    "head-no-oversample": {**HEAD, "oversample": 1.0},
    "head-oversample4": {**HEAD, "oversample": 4.0},
    "head-focal": {**HEAD, "loss": "focal"},
    "head-asymmetric": {**HEAD, "loss": "asymmetric"},
    "head-no-pos-weight": {**HEAD, "pos_weight": False},
    "head-constant-lr": {**HEAD, "schedule": "constant", "warmup_epochs": 0.0},
    "head-lr1e-3": {**HEAD, "lr": 1e-3},
    "head-40epochs": {**HEAD, "epochs": 40},
    "head-no-dropout": {**HEAD, "dropout": 0.0},
    "head-ema": {**HEAD, "ema": 0.98},
    "head-fold-ensemble": {**HEAD, "final": "ensemble"},
    "head-160px": {**HEAD, "image_size": 160},
    "head-288px": {**HEAD, "image_size": 288},
})


def fold_ensemble_cv(config, data, folds: int, seed: int = 0, inner_folds: int = 4) -> CrossValidation:
    """Out-of-fold predictions of fold ensembles, nested so that they stay honest: each outer fold is
    predicted by the logit average of `inner_folds` models, each trained on all but one inner fold of
    the other outer folds' rows. Compare with the plain cross-validation, whose one model per outer
    fold is trained on all of those rows (`--final retrain`)."""
    probabilities = np.full(data.values.shape, np.nan, dtype=np.float32)
    fold_of_row = np.full(len(data), -1)
    for fold, (train_rows, val_rows) in enumerate(kfold_splits(data.values, folds, seed)):
        logits = [special.logit(fit(config.replace(keep="last"), data, (train_rows[inner], val_rows),
                                    validate_each_epoch=False).val_probabilities)
                  for inner, _ in kfold_splits(data.values[train_rows], inner_folds, seed)]
        probabilities[val_rows] = special.expit(np.mean(logits, axis=0))
        fold_of_row[val_rows] = fold
    return CrossValidation(probabilities, fold_of_row, data.values.copy(), list(data.attributes),
                           list(data.filenames), config=config.to_dict())


def row(name, cv, rare):
    table = cv_report(cv)
    return {"recipe": name, "macro F1": f"{table.loc['macro', 'f1']:.3f} [{table.loc['macro', 'f1_low']:.3f}, "
                                        f"{table.loc['macro', 'f1_high']:.3f}]",
            f"{rare} F1": f"{table.loc[rare, 'f1']:.3f} [{table.loc[rare, 'f1_low']:.3f}, {table.loc[rare, 'f1_high']:.3f}]",
            **{a: round(table.loc[a, "f1"], 3) for a in cv.attributes},
            "min lift": round(table.loc[cv.attributes, "lift"].min(), 3),
            "minutes": round(cv.config.get("seconds", float("nan")) / 60, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", help="comma-separated recipe names or patterns (head*)")
    parser.add_argument("--out", default="runs/recipes")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DataWarning)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = {}

    def images_at(size):
        if size not in loaded:
            loaded[size] = load_labelled_folder(args.data, size, progress=False)
        return loaded[size]

    data = images_at(args.image_size)
    rare = data.attributes[int(np.argmin(np.nanmean(data.values, axis=0)))]
    rows = []
    patterns = args.only.split(",") if args.only else ["*"]
    for name in [n for n in RECIPES if any(fnmatch(n, pattern) for pattern in patterns)]:
        path = out / f"{name}.npz"
        if not path.is_file():
            changes = dict(RECIPES[name])
            final = changes.pop("final", "retrain")
            config = preset("reference", **{**BASE, "image_size": args.image_size, **changes})
            started = time.perf_counter()
            validate = fold_ensemble_cv if final == "ensemble" else run_folds
            cv = validate(config, images_at(config.image_size), args.folds, seed=0)
            cv.config["seconds"] = time.perf_counter() - started
            save_cv(cv, path)
        rows.append(row(name, load_cv(path), rare))
        print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    import pandas as pd

    print()
    table = pd.DataFrame(rows)
    try:
        print(table.to_markdown(index=False))
    except ImportError:  # to_markdown needs the optional package tabulate
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
