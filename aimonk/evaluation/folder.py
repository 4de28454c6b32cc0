"""Scoring a trained checkpoint on labelled images, beside the always-present baseline."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from aimonk.decision.calibration import cross_fitted
from aimonk.decision.thresholds import decide, metrics_decided_by_fold
from aimonk.model.checkpoint import Checkpoint, Provenance
from aimonk.data.folder import LabelledImages, find_label_file, load_labelled_folder
from aimonk.serve.predictor import Predictor
from aimonk.evaluation.tables import BASELINE, score

SUBSETS = ("auto", "val", "all")


@dataclass
class Evaluation:
    """The scores of a model on labelled images: the table, and the scored images' names, their rows in the data
    scored (names[i] is data.filenames[rows[i]]), labels and probabilities."""

    table: pd.DataFrame  # one row per attribute and a "macro" row
    names: list[str]
    rows: np.ndarray
    targets: np.ndarray
    probabilities: np.ndarray
    subset: str
    thresholds_source: str = ""  # how the thresholds that decided were chosen
    notes: list[str] = field(default_factory=list)  # what the reader of the numbers must know, honesty first

    @property
    def honesty(self) -> str:
        """Whether the table is the honest figure or an optimistic one, and why: from what was measured."""
        return self.notes[0]

    @property
    def optimistic(self) -> bool:
        return self.honesty.startswith("optimistic")


def rows_to_score(data: LabelledImages, checkpoint: Checkpoint, subset: str) -> tuple[np.ndarray, str]:
    """The checkpoint's validation rows when `data` is the folder it was trained on (or, for a model trained on
    every image, the rows its stored out-of-fold predictions cover: "out-of-fold"), else every row."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}")
    split = checkpoint.provenance.split
    same_folder = split.get("label_file") == str(Path(data.labels.source).resolve())
    if subset == "all" or (subset == "auto" and not same_folder):
        return np.arange(len(data)), "all"
    if not same_folder:
        raise ValueError(f"the checkpoint was trained on {split.get('label_file')}, not {data.labels.source}: "
                         "its validation split does not apply here (use --subset all)")
    rows = rows_named(data, split.get("val", []))
    if len(rows):
        return rows, "val"
    if checkpoint.out_of_fold:
        if subset == "auto":
            return rows_named(data, checkpoint.out_of_fold.names), "out-of-fold"
        raise ValueError("the checkpoint has no validation split (trained on all data): use --subset auto for its "
                         "out-of-fold predictions, or --subset all")
    raise ValueError("the checkpoint has no validation split (trained on all data): use --subset all")


def rows_named(data: LabelledImages, names) -> np.ndarray:
    wanted = set(names)
    return np.array([i for i, name in enumerate(data.filenames) if name in wanted], dtype=int)


def evaluate_checkpoint(data, model, subset: str = "auto", thresholds=None, device: str = "auto") -> Evaluation:
    """Score `model` (a checkpoint's path, or a Predictor already loaded) on the folder `data` at its stored
    (or the given) thresholds."""
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, device)
    if not isinstance(data, LabelledImages):
        data = load_labelled_folder(find_label_file(data), predictor.image_size,
                                    predictor.config.unknown_as_na)
    notes = data.notes()
    data, matching = matched_attributes(data, predictor.attributes)
    notes += matching
    rows, used = rows_to_score(data, predictor.checkpoint, subset)
    targets = data.values[rows]
    overlap = []
    if used == "out-of-fold":
        raw, probabilities, folds = stored_out_of_fold(predictor, data, rows, targets)
    else:
        probabilities = predictor.data_probabilities(data, rows)
        overlap = training_overlap(data, rows, predictor.checkpoint.provenance)
        notes += overlap
    deciding = predictor.thresholds_or_stored(thresholds)
    notes += unscorable(targets, probabilities, deciding, predictor.attributes)
    table = score(targets, probabilities, deciding, predictor.attributes)
    source = "given by the caller" if thresholds is not None else predictor.rule.source_
    if used == "out-of-fold" and thresholds is None:
        table = decided_by_the_other_folds(table, targets, raw, folds, predictor)
        source = f"tuned ({predictor.rule.strategy}) on the other folds' out-of-fold predictions"
        notes.append("the model learned from every image of this folder, so the scores are those of its threshold "
                     "cross-validation: each image predicted by the fold model that did not learn from it "
                     "(calibrated by a map fitted on other images) and decided by thresholds tuned on the other "
                     "folds; the thresholds column is what the model uses on new images")
    notes.insert(0, honesty(used, predictor.checkpoint, thresholds is not None, bool(overlap)))
    return Evaluation(table, [data.filenames[i] for i in rows], rows, targets, probabilities, used, source, notes)


NEVER_SEEN = ("for the honest figure, score a labelled folder the model never saw (`aimonk evaluate FOLDER --model "
              "MODEL`; notebook 03's test_dir)")


def honesty(subset: str, checkpoint: Checkpoint, thresholds_given: bool, trained_on: bool) -> str:
    """One sentence, "honest: ..." or "optimistic: ...", on what the scores were measured on and what was chosen
    on those same images (the epoch kept, the thresholds that decide)."""
    if trained_on:
        return "optimistic: some scored images are images the model was trained on (see the note below); " + NEVER_SEEN
    if thresholds_given:
        return ("honest only if the thresholds given were not chosen on these images: "
                f"{'out-of-fold predictions' if subset == 'out-of-fold' else f'{subset} images'} decided at them")
    if subset == "out-of-fold":
        return ("honest: each image predicted by a fold model that did not learn from it, and each fold decided by "
                "thresholds tuned on the other folds only")
    if subset == "all":
        return "honest: images the model did not learn from, decided by thresholds chosen before it saw them"
    config = checkpoint.config
    chosen = [what for what, here in (("the epoch kept", config.keep == "best" and bool(checkpoint.history["epochs"])),
                                      ("the thresholds", config.threshold_source == "val")) if here]
    if chosen:
        verb = "was" if chosen == ["the epoch kept"] else "were"
        return (f"optimistic: {' and '.join(chosen)} {verb} chosen on these same "
                "validation images, which overstates the scores; " + NEVER_SEEN)
    return "honest: the validation images held out of training, nothing chosen on them"


def stored_out_of_fold(predictor, data: LabelledImages, rows, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The out-of-fold probabilities the checkpoint keeps for `rows`: as the fold models gave them, and each
    calibrated by a map fitted on the other rows (the model's own map was fitted on all of them); and the fold
    of each row."""
    held = predictor.checkpoint.out_of_fold
    where = {name: index for index, name in enumerate(held.names)}
    index = [where[data.filenames[row]] for row in rows]
    raw = held.probabilities[index]
    rule = predictor.rule
    calibrated = cross_fitted(targets, raw, rule.calibration) if rule.calibration_ else raw
    return raw, calibrated.astype(np.float32), held.folds[index]


def decided_by_the_other_folds(table: pd.DataFrame, targets, probabilities, folds, predictor) -> pd.DataFrame:
    """The table's precision, recall and F1 (and lift) recomputed with each fold's rows decided by thresholds
    tuned on the other folds' probabilities only, as `evaluate --cv` reports them."""
    honest = metrics_decided_by_fold(targets, probabilities, folds, predictor.rule.strategy,
                                     predictor.attributes)
    table = table.copy()
    table[["precision", "recall", "f1"]] = honest[["precision", "recall", "f1"]]
    table["lift"] = table["f1"] - table[BASELINE]
    return table


def matched_attributes(data: LabelledImages, attributes: list[str]) -> tuple[LabelledImages, list[str]]:
    """`data` with its label columns in the model's attribute order. A header's names are matched by name
    (a missing or unknown one is an error naming it); header-less columns by position, and a note says so."""
    source, names = data.labels.source, data.attributes
    if not data.labels.named:
        if len(names) != len(attributes):
            raise ValueError(f"{source} has {len(names)} label columns, the model predicts {len(attributes)} "
                             f"attributes ({', '.join(attributes)})")
        return data, [f"{Path(source).name} has no header: its {len(names)} label columns are taken, in order, as "
                      f"the model's attributes {', '.join(attributes)}"]
    missing = [name for name in attributes if name not in names]
    unknown = [name for name in names if name not in attributes]
    if missing:
        raise ValueError(f"{source} has no column for attribute {missing[0]!r}, which the model predicts "
                         f"({', '.join(attributes)})")
    if unknown:
        raise ValueError(f"{source} has a column {unknown[0]!r} that the model does not predict "
                         f"({', '.join(attributes)})")
    order = [names.index(name) for name in attributes]
    labels = replace(data.labels, values=data.values[:, order], attributes=list(attributes))
    return replace(data, labels=labels), []  # the same images: their cached features carry over


def training_overlap(data: LabelledImages, rows, provenance: Provenance) -> list[str]:
    """A note when scored images are (by file content) images the checkpoint was trained on."""
    trained = set(provenance.split.get("train_digests") or [])
    if not trained:
        return []
    overlap = sum(digest in trained for digest in data.digests(rows))
    if not overlap:
        return []
    return [f"{overlap} of the {len(rows)} scored images are images the model was trained on (same file "
            "contents): their scores are optimistic"]


def unscorable(targets: np.ndarray, probabilities: np.ndarray, thresholds, attributes) -> list[str]:
    """A note for each attribute the scored images cannot score: no known label, or no known positive (its
    recall and F1 are then undefined, NaN, and how many images it was called present on is said instead)."""
    notes, present = [], decide(probabilities, thresholds)
    for column, name in enumerate(attributes):
        known = ~np.isnan(targets[:, column])
        if not known.any():
            notes.append(f"attribute {name!r} has no known label among the scored images: its metrics and baseline "
                         "are NaN, left out of the macro row")
        elif not targets[known, column].any():
            called = int(present[known, column].sum())
            notes.append(f"attribute {name!r} has no positive among the {int(known.sum())} known labels of the scored "
                         "images: its recall and F1 are undefined (NaN), left out of the macro row; it was called "
                         f"present on {called} of them (false positives)")
    return notes


def mistake_heatmaps(predictor, images: np.ndarray, worst: dict[int, list[int]]) -> dict:
    """{(row, column): the Grad-CAM map of attribute `column` on image `row`} for the rows in `worst`."""
    rows = sorted({row for chosen in worst.values() for row in chosen})
    if not rows:
        return {}
    maps, _ = predictor.explain(images[rows])
    position = {row: index for index, row in enumerate(rows)}
    return {(row, column): maps[position[row], column] for column, chosen in worst.items() for row in chosen}
