"""Does the labelling queue need fewer answers than answering NA cells at random? Measured on unseen images.

    python benchmarks/labelling.py ../shared/datasets/fashion972 --parts ../shared/datasets/fashion-eval \
        [--hide 0.3] [--budget 100] [--batch 10] [--seeds 1,2,3] [--scores uncertainty,rare_uncertainty,rare_positive]
        [--choose part2] [--report part3,part4] [--flip 0.05] [--review 100] [--out runs/labelling]

For each seed, a share (--hide) of DATA's known labels is hidden as NA (at random, seeded) in a copy of its labels
file (the images are DATA's own). A LabelSession (aimonk.label_session: the queue, answers written through the
labels file, the model retrained through aimonk.workflows.train) then asks its questions and they are answered
from the hidden truth, in batches of --batch up to --budget answers; questions about cells that were NA in DATA
itself (no truth to answer with) and the contradiction questions are passed over, so that both arms answer only
hidden cells. The other arm answers the same number of hidden cells drawn at random. After each batch the model is
scored with its stored thresholds on --parts folders it never saw: every score and the random arm run on the first
seed, scored on --choose (where the score is chosen) and on --report; the chosen score and the random arm then run
on the other seeds too. The numbers to quote are --report's, pooled, averaged over the seeds, with their spread.

Printed: the macro F1 curves, and `labels needed to reach random's final F1: queue N of M (ratio R)` (N: the
first answer count at which the queue's seed-averaged F1 reaches the random arm's final one). Then the flip
experiment: --flip of the known labels flipped (seeded), the model trained on them, and how many of the flipped
labels the contradiction questions find among their first --review, against --review known labels drawn at
random. The curves are plotted into OUT/labelling.png.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimonk.config import LABEL_SCORES, preset  # noqa: E402
from aimonk.data.folder import find_label_file, load_labelled_folder, present_rows, read_label_folder  # noqa: E402
from aimonk.data.images import DataWarning  # noqa: E402
from aimonk.decision.thresholds import decide  # noqa: E402
from aimonk.label_session import LabelSession  # noqa: E402
from aimonk.labelling.labelfile import Answer  # noqa: E402
from aimonk.metrics import attribute_metrics  # noqa: E402
from aimonk.plots import save_figure  # noqa: E402


def hidden_copy(data: Path, folder: Path, share: float, seed: int, flip: float = 0.0) -> tuple[Path, dict]:
    """folder/labels.txt: DATA's labels with `share` of the known ones hidden as NA (and `flip` of the rest
    flipped), folder/images linking to DATA's images. Returns (the folder, {(filename, attribute): truth} of the
    hidden cells (or of the flipped ones with flip))."""
    table, _, missing = read_label_folder(data)  # the labels of the images on disk; nothing decoded
    table = table.subset(present_rows(table.filenames, missing))
    values, rng = table.values.copy(), np.random.default_rng(seed)
    known = np.argwhere(~np.isnan(values))
    chosen = known[rng.random(len(known)) < (flip or share)]
    truth = {(table.filenames[r], table.attributes[c]): float(values[r, c]) for r, c in chosen}
    for r, c in chosen:
        values[r, c] = 1 - values[r, c] if flip else np.nan
    folder.mkdir(parents=True, exist_ok=True)
    lines = [" ".join([name, *("NA" if np.isnan(v) else str(int(v)) for v in row)])
             for name, row in zip(table.filenames, values)]
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    images = folder / "images"
    if not images.exists():
        images.symlink_to(find_label_file(data).parent / "images", target_is_directory=True)
    return folder, truth


class Scorer:
    """Macro F1 with stored thresholds on labelled folders the models never saw (decoded once)."""

    def __init__(self, parts: list[Path], image_size: int):
        self.parts = {part.name: load_labelled_folder(part, image_size) for part in parts}

    def predictions(self, session: LabelSession, names) -> tuple[np.ndarray, np.ndarray]:
        predictor = session.predictor
        targets = np.concatenate([self.parts[name].values for name in names])
        probabilities = np.concatenate([predictor.data_probabilities(self.parts[name]) for name in names])
        return targets, decide(probabilities, predictor.rule.thresholds)

    def macro_f1(self, session: LabelSession, names) -> float:
        targets, decisions = self.predictions(session, names)
        return float(attribute_metrics(targets, decisions, 0.5, session.data.attributes).loc["macro", "f1"])


def run_arm(folder: Path, truth: dict, arm: str, args, scorer: Scorer, groups: dict, seed: int) -> dict:
    """{group: macro F1 on its parts after 0, batch, 2 x batch, ... --budget answers of the arm (a score or
    'random')} for each group of parts in `groups` ({"choose": [...], "report": [...]})."""
    config = preset("default", seed=seed)
    session = LabelSession(folder, config=config, batch_size=args.batch, score=arm if arm != "random" else
                           LABEL_SCORES[0], source=f"benchmark {arm}")
    curves = {group: [scorer.macro_f1(session, names)] for group, names in groups.items()}
    answered, started = 0, time.perf_counter()
    order = list(truth)
    np.random.default_rng(seed + 1000).shuffle(order)
    while answered < args.budget:
        if arm == "random":
            batch = order[answered:answered + args.batch]
        else:
            batch = [(q.filename, q.attribute) for q in session.questions()
                     if q.kind == "unknown" and (q.filename, q.attribute) in truth][:args.batch]
        if not batch:
            break
        for filename, attribute in batch:
            session.pending.append(Answer(filename, attribute, truth[(filename, attribute)]))
        session.commit()
        answered += len(batch)
        for group, names in groups.items():
            curves[group].append(scorer.macro_f1(session, names))
        print(f"  seed {seed} {arm:>16}: {answered:>4} answers  macro F1 "
              + "  ".join(f"{group} {curve[-1]:.4f}" for group, curve in curves.items())
              + f"  retrained in {session.history[-1].seconds:.1f} s", flush=True)
    print(f"  seed {seed} {arm}: {time.perf_counter() - started:.0f} s", flush=True)
    return curves


def labels_needed(queue: np.ndarray, random: np.ndarray, batch: int) -> tuple[int | None, int]:
    """(the first answer count at which the queue's curve reaches the random curve's final value, that count)."""
    reached = np.flatnonzero(queue >= random[-1])
    return (int(reached[0]) * batch if len(reached) else None), (len(random) - 1) * batch


def flip_experiment(data: Path, work: Path, args, seed: int) -> tuple[int, int, float]:
    """(flipped labels found among the first --review contradiction questions, how many were flipped, the number
    a random review of as many known labels finds on average)."""
    folder, flipped = hidden_copy(data, work / f"flip{seed}", 0.0, seed, flip=args.flip)
    session = LabelSession(folder, config=preset("default", seed=seed), source="benchmark flips")
    contradictions = [q for q in session.questions() if q.kind == "contradiction"][:args.review]
    found = sum((q.filename, q.attribute) in flipped for q in contradictions)
    known = int((~np.isnan(session.data.values)).sum())
    return found, len(flipped), args.review * len(flipped) / known


def plot_curves(curves: dict, batch: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    for arm, runs in curves.items():
        runs = np.array(runs)
        answers = np.arange(runs.shape[1]) * batch
        ax.plot(answers, runs.mean(0), "o-" if arm != "random" else "s--", label=f"{arm} (mean of {len(runs)} seeds)")
        ax.fill_between(answers, runs.min(0), runs.max(0), alpha=0.15)
    ax.set(xlabel="answers", ylabel="macro F1 on unseen images (stored thresholds)",
           title="Labelling the hidden labels: the queue against random NA cells")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, show=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--parts", type=Path, required=True)
    parser.add_argument("--choose", default="part2")
    parser.add_argument("--report", default="part3,part4")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--scores", default=",".join(LABEL_SCORES))
    parser.add_argument("--hide", type=float, default=0.3)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--review", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/labelling"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DataWarning)
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen_parts, report_parts = args.choose.split(","), args.report.split(",")
    scorer = Scorer([args.parts / name for name in chosen_parts + report_parts], preset("default").image_size)
    work = Path(tempfile.mkdtemp(prefix="aimonk-labelling-"))
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        print(f"choosing the score on {args.choose} (seed {seeds[0]}): hidden {args.hide:.0%} of the known labels")
        groups = {"choose": chosen_parts, "report": report_parts}  # every arm scored on both, the choice on one
        first = {}
        for arm in [*args.scores.split(","), "random"]:
            folder, truth = hidden_copy(args.data, work / f"seed{seeds[0]}", args.hide, seeds[0])  # the same
            first[arm] = run_arm(folder, truth, arm, args, scorer, groups, seeds[0])
        finals = {arm: curves["choose"][-1] for arm, curves in first.items() if arm != "random"}
        best = max(finals, key=finals.get)
        print(f"final macro F1 on {args.choose} after {args.budget} answers: "
              + ", ".join(f"{s} {f:.4f}" for s, f in finals.items()) + f"; chosen: {best}")
        curves = {best: [first[best]["report"]], "random": [first["random"]["report"]]}
        for seed in seeds[1:]:
            for arm in curves:
                folder, truth = hidden_copy(args.data, work / f"seed{seed}", args.hide, seed)
                curves[arm].append(run_arm(folder, truth, arm, args, scorer, {"report": report_parts}, seed)["report"])
        queue, random = (np.array(curves[arm]).mean(0) for arm in (best, "random"))
        needed, total = labels_needed(queue, random, args.batch)
        per_seed = [labels_needed(np.array(q), np.array(r), args.batch)[0] for q, r in zip(curves[best], curves["random"])]
        print(f"\nmacro F1 on {args.report} (pooled, mean of seeds {seeds}) after 0, {args.batch}, ... answers:")
        for arm in curves:
            print(f"  {arm:>16}: " + " ".join(f"{v:.4f}" for v in np.array(curves[arm]).mean(0)))
        ratio = "n/a" if needed is None else f"{needed / total:.2f}"
        print(f"labels needed to reach random's final F1: queue {needed if needed is not None else '>' + str(total)} "
              f"of {total} (ratio {ratio}); per seed: {per_seed}")
        found = [flip_experiment(args.data, work, args, seed) for seed in seeds]
        print(f"flipped labels found in the first {args.review} contradiction questions: "
              + ", ".join(f"seed {s}: {f} of {n} flipped" for s, (f, n, _) in zip(seeds, found))
              + f"; a random review of {args.review} known labels finds {np.mean([r for *_, r in found]):.1f} on average")
        plot_curves(curves, args.batch, args.out / "labelling.png")
        (args.out / "labelling.json").write_text(json.dumps({"curves": curves, "finals_on_choose": finals,
                                                              "chosen": best, "needed": needed, "total": total,
                                                              "flips": found}, indent=1))
        print(f"figure: {args.out / 'labelling.png'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
