"""Does a recipe beat the reference on images it has never seen? Train on one folder, score elsewhere.

    python benchmarks/quality.py ../shared/datasets/fashion972 --parts ../shared/datasets/fashion-eval \
        [--choose part2] [--report part3,part4] [--seeds 1,2,3] [--recipes reference,default] [--out runs/quality]

Each recipe is trained on DATA once per seed exactly as `aimonk train DATA --preset ... --seed S` trains it
(thresholds chosen by the recipe itself and stored in the checkpoint), then scored with those stored
thresholds on labelled folders it never saw. Recipes are compared on the --choose folders; the numbers to
quote are the --report folders, pooled: per attribute the F1 averaged over seeds with a bootstrap 95%
interval (images resampled, the seed average recomputed each time), the spread over seeds (min-max of the
seed's own F1), the average precision, the always-present baseline ("always-present F1": the F1 of calling every image
positive, 2p / (1 + p) for the positive rate p of the scored labels), and the difference to the reference.
"F1 ceiling" is not a result: the F1 each seed's model would reach with thresholds tuned on the scored images
themselves. It shows how much of a shortfall the stored thresholds cause and how much the ranking does.
Finished runs and their scores are kept in OUT/RECIPE/seedS and reused.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimonk.config import TrainConfig, preset
from aimonk.data.folder import load_labelled_folder, read_label_folder
from aimonk.data.images import DataWarning
from aimonk.metrics import always_present_f1, bootstrap_f1, ranking_scores, with_macro
from aimonk.workflows import train
from aimonk.serve.predictor import Predictor
from aimonk.decision.thresholds import tune_thresholds

# name: (preset, changes). The reference runs on the offline backbone (pass --reference-backbone resnet34
# where you are online); its thresholds come from its own validation split, as the reference's did.
LITE012 = "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2"
RECIPES = {
    "reference": ("reference", {}),
    "finetune": ("finetune", {}),
    "default": ("default", {}),
    # candidates, each one change from the default or from the previous default (lite0, head by Adam epochs)
    "lite0-adam": ("default", {"backbone": "efficientnet_lite0", "head_solver": "adam"}),
    "lite0-adam-val-thresholds": ("default", {"backbone": "efficientnet_lite0", "head_solver": "adam",
                                              "threshold_source": "val", "val_fraction": 0.15}),
    "lite0-probe": ("default", {"backbone": "efficientnet_lite0"}),
    "lite012-adam": ("default", {"backbone": LITE012, "head_solver": "adam"}),
    "default-c-by-cv": ("default", {"head_c": 0.0}),
    "default-no-flip": ("default", {"augment": "none", "tta": False}),
    "default-val-split": ("default", {"val_fraction": 0.15}),  # the default before: 15% held out, unused by the probe
}


def recipe_config(name: str, args):
    if name in args.from_files:  # NAME=config.json: a configuration saved by a run or by `aimonk tune`
        return TrainConfig.from_dict(json.loads(Path(args.from_files[name]).read_text()))
    preset_name, changes = RECIPES[name]
    if name == "reference":
        changes = {**changes, "backbone": args.reference_backbone}
    return preset(preset_name, **changes)


class Folders:
    """Labelled folders decoded once per image size and shared, so frozen-backbone features are cached once."""

    def __init__(self):
        self.loaded = {}

    def get(self, path, image_size):
        key = (str(path), image_size)
        if key not in self.loaded:
            self.loaded[key] = load_labelled_folder(path, image_size, progress=False)
        return self.loaded[key]


def trained_run(name: str, seed: int, args, folders: Folders) -> Path:
    """OUT/NAME/seedS/model.pt, trained unless it is there already."""
    run = Path(args.out) / name / f"seed{seed}"
    done = run / "seconds.json"
    if not done.is_file():
        config = recipe_config(name, args).replace(seed=seed)
        started = time.perf_counter()
        train(folders.get(args.data, config.image_size), config, run, overwrite=True, progress=False)
        done.write_text(json.dumps({"seconds": time.perf_counter() - started}))
    return run


def scored(run: Path, part: Path, folders: Folders) -> dict:
    """The run's probabilities, stored-threshold decisions and targets on one folder (cached in the run)."""
    cache = run / f"scores_{part.name}.npz"
    if not cache.is_file():
        predictor = Predictor.load(run / "model.pt")
        data = folders.get(part, predictor.image_size)
        probabilities = predictor.data_probabilities(data)
        np.savez(cache, probabilities=probabilities, thresholds=np.array(predictor.thresholds),
                 targets=data.values, majority=np.array(predictor.checkpoint.provenance.majority))
    with np.load(cache) as saved:
        return dict(saved)


def recipe_scores(name: str, args, folders: Folders, parts) -> dict:
    """Per seed on the given folders pooled: decisions, targets, F1 and AP per attribute (+ macro)."""
    runs = [trained_run(name, seed, args, folders) for seed in args.seeds]
    pooled = []
    for run in runs:
        scores = [scored(run, part, folders) for part in parts]
        probabilities = np.concatenate([s["probabilities"] for s in scores])
        pooled.append((probabilities, scores[0]["thresholds"], np.concatenate([s["targets"] for s in scores])))
    targets = pooled[0][2]  # the same scored labels for every seed
    decisions = np.stack([p >= t for p, t, _ in pooled]).astype(np.int8)
    f1 = np.stack([bootstrap_f1(targets, d[None], rounds=0)[0] for d in decisions])
    ceiling = np.stack([bootstrap_f1(targets, (p >= tune_thresholds(targets, p))[None].astype(np.int8), rounds=0)[0]
                        for p, _, _ in pooled])
    minutes = [json.loads((run / "seconds.json").read_text())["seconds"] / 60 for run in runs]
    return {"decisions": decisions, "targets": targets, "f1": f1, "ceiling": ceiling, "minutes": minutes,
            "ap": np.stack([with_macro(ranking_scores(targets, p)[0]) for p, _, _ in pooled]),
            "baseline": always_present_f1(targets)}


def report(scores: dict, attributes, rounds: int) -> pd.DataFrame:
    rows = {}
    reference = scores.get("reference")
    for name, s in scores.items():
        _, low, high = bootstrap_f1(s["targets"], s["decisions"], rounds=rounds)
        for k, attribute in enumerate(attributes + ["macro"]):
            baseline = s["baseline"][k] if k < len(attributes) else np.nanmean(s["baseline"])
            rows[(attribute, name)] = {
                "F1": s["f1"][:, k].mean(), "95% CI": f"[{low[k]:.3f}, {high[k]:.3f}]",
                "seeds min-max": f"{s['f1'][:, k].min():.3f}-{s['f1'][:, k].max():.3f}",
                "AP": s["ap"][:, k].mean(), "F1 ceiling": s["ceiling"][:, k].mean(), "always-present F1": baseline, "- always-present": s["f1"][:, k].mean() - baseline,
                "- reference": (s["f1"][:, k].mean() - reference["f1"][:, k].mean()) if reference else np.nan,
                "min/run": np.mean(s["minutes"])}
    table = pd.DataFrame(rows).T
    table.index.names = ["attribute", "recipe"]
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="the labelled folder every recipe trains on")
    parser.add_argument("--parts", required=True, help="folder holding the unseen labelled folders")
    parser.add_argument("--choose", default="part2", help="comma-separated folders in PARTS to choose recipes on")
    parser.add_argument("--report", default="part3,part4", help="comma-separated folders in PARTS to report on")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[1, 2, 3])
    parser.add_argument("--recipes", default="reference,default",
                        help=f"comma-separated, from {', '.join(RECIPES)}, or NAME=CONFIG.json (e.g. tuned=runs/tune/"
                             "config.json, what `aimonk tune` chose)")
    parser.add_argument("--reference-backbone", default="efficientnet_lite0")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--out", default="runs/quality")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DataWarning)
    entries = [entry.split("=", 1) for entry in args.recipes.split(",")]
    args.from_files = {entry[0]: entry[1] for entry in entries if len(entry) == 2}
    names = [entry[0] for entry in entries]
    unknown = [n for n in names if n not in RECIPES and n not in args.from_files]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    folders = Folders()
    attributes = read_label_folder(args.data)[0].attributes
    pd.set_option("display.width", 250)
    for title, names_of_parts in (("choose on", args.choose), ("report on", args.report)):
        parts = [Path(args.parts) / p for p in names_of_parts.split(",")]
        scores = {name: recipe_scores(name, args, folders, parts) for name in names}
        table = report(scores, list(attributes), args.rounds)
        print(f"\n{title} {names_of_parts} (pooled; trained on {args.data}, seeds {args.seeds}, stored thresholds; "
              "min/run: wall minutes per training run, with whatever the aimonk cache held):")
        print(table.to_string(float_format="{:.3f}".format))
        table.to_csv(Path(args.out) / f"quality_{names_of_parts.replace(',', '+')}.csv")


if __name__ == "__main__":
    main()
