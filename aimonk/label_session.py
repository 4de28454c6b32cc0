"""Filling the gaps: the labelling loop over a partly labelled folder.

A LabelSession asks the labelling queue's questions (aimonk.labelling.queue), writes each batch of answers into
the user's own labels file safely (aimonk.labelling.labelfile: one atomic write, a backup, a journal, undo),
then retrains through the one training route (aimonk.workflows.train) on the images decoded once, their
backbone features cached: for the linear probe (the default recipe) the probe, its thresholds and its calibration
are fitted again out-of-fold in seconds, the queue re-ranked, and the out-of-fold F1 (each fold decided by
thresholds from the other folds) compared before and after. For a recipe that learns by epochs retraining is a
full `aimonk train`, which it says rather than runs.

    session = aimonk.label_queue("data/my_clothes", "runs/r1/model.pt")
    for question in session.questions(10):
        session.answer(question, 1.0)   # 1.0 present, 0.0 absent, None unknown (NA), "skip"
"""
from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aimonk.data.folder import LabelledImages, find_label_file, load_labelled_folder
from aimonk.decision.thresholds import metrics_decided_by_fold
from aimonk.labelling.labelfile import SKIP, Answer, Batch, LabelFile
from aimonk.config import DEFAULT_LABEL_SCORE, TrainConfig, preset
from aimonk.labelling.queue import Question, rank_questions
from aimonk.model.checkpoint import Checkpoint
from aimonk.model.recipe import Recipe, decide_recipe
from aimonk.serve.predictor import Predictor
from aimonk.workflows import train

log = logging.getLogger(__name__)
BATCH_SIZE = 10


@dataclass
class Retrained:
    """What a batch of answers did: the batch written (None when none was), the out-of-fold F1 per attribute
    and macro before and after retraining (after is None where the recipe is not retrained here), seconds."""

    batch: Batch | None
    before: pd.Series | None
    after: pd.Series | None
    seconds: float
    note: str = ""  # why the model was not retrained, where it was not

    def describe(self) -> str:
        if self.note:
            return f"answers written; the model was not retrained: {self.note}"
        if self.after is None or self.before is None:
            return "answers written and the model retrained; it keeps no out-of-fold F1 to compare (its thresholds " \
                   "come from a validation split, or none)"
        pairs = ", ".join(f"{name} {self.before[name]:.3f} -> {self.after[name]:.3f}" for name in self.after.index)
        return f"out-of-fold F1 (each fold decided by thresholds from the other folds): {pairs}  ({self.seconds:.1f} s)"


class LabelSession:
    """Questions about the folder `data`, answers written into its labels file, the model retrained after each
    `batch_size` answers. model: a checkpoint (its recipe, model and out-of-fold predictions start the queue), or
    None to train `config` (default: the default preset) on the folder first."""

    def __init__(self, data, model=None, *, config: TrainConfig | None = None, batch_size: int = BATCH_SIZE,
                 score: str = DEFAULT_LABEL_SCORE, source: str = "api"):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        self.file = LabelFile.open(find_label_file(data))
        checkpoint = Checkpoint.load(model) if model is not None else None
        self.config = checkpoint.config if checkpoint else config or preset("default")
        self.batch_size, self.score, self.source = batch_size, score, source
        self.retrainable = decide_recipe(self.config) is Recipe.LINEAR_PROBE
        if checkpoint is not None and list(checkpoint.attributes) != list(self.file.attributes):
            raise ValueError(f"{self.file.path} names the attributes {', '.join(self.file.attributes)}; {model} was "
                             f"trained on {', '.join(checkpoint.attributes)}")
        self.data: LabelledImages = load_labelled_folder(data, self.config.image_size, self.config.unknown_as_na)
        self.rows = {name: row for row, name in enumerate(self.data.filenames)}
        self.pending: list[Answer] = []
        self.skipped: set[tuple[str, str]] = set()
        self.answered: set[tuple[str, str]] = set()  # in this session: not asked again (as NA or as a doubt)
        self.history: list[Retrained] = []
        if checkpoint is not None:
            self.use(checkpoint)
        else:
            self.use_trained(train(self.data, self.config, progress=False))

    def use_trained(self, trained) -> None:
        self.use(trained.checkpoint, trained.result.model)

    def use(self, checkpoint: Checkpoint, model=None) -> None:
        """The model's calibrated probabilities for every cell, its out-of-fold ones for the known labels, its
        thresholds, and its out-of-fold F1. model: the checkpoint's network, where it is built already."""
        self.checkpoint = checkpoint
        rule = checkpoint.decision_rule
        self.predictor = Predictor(checkpoint, "cpu", model)  # its model explains a question on request
        self.probabilities = self.predictor.data_probabilities(self.data)
        self.out_of_fold = np.full(self.data.values.shape, np.nan, dtype=np.float32)
        self.folds = np.full(len(self.data), -1)
        stored = checkpoint.out_of_fold
        if stored is not None:
            rows = [self.rows.get(name, -1) for name in stored.names]
            kept = [index for index, row in enumerate(rows) if row >= 0]
            self.out_of_fold[[rows[i] for i in kept]] = rule.calibrate(stored.probabilities[kept])
            self.folds[[rows[i] for i in kept]] = stored.folds[kept]
        self.thresholds = np.asarray(rule.thresholds)
        self.f1 = self.out_of_fold_f1()

    def out_of_fold_f1(self) -> pd.Series | None:
        """Out-of-fold F1 per attribute and macro, each fold decided by thresholds tuned on the other folds (on
        the labels as they are now), or None without out-of-fold predictions."""
        scored = self.folds >= 0
        if not scored.any():
            return None
        table = metrics_decided_by_fold(self.data.values[scored], self.out_of_fold[scored], self.folds[scored],
                                        self.config.threshold_strategy, self.data.attributes)
        return table["f1"]

    def questions(self, count: int | None = None) -> list[Question]:
        """The next `count` questions (all by default), the answered ones left out, the skipped ones last."""
        answered = {(a.filename, a.attribute) for a in self.pending}
        ranked = rank_questions(self.data.values, self.probabilities, self.thresholds, self.data.filenames,
                                self.data.attributes, self.out_of_fold, self.score, skipped=self.skipped)
        left = [q for q in ranked if (q.filename, q.attribute) not in answered | self.answered]
        return left[:count] if count is not None else left

    def questions_frame(self, count: int | None = None) -> pd.DataFrame:
        """The next questions as a table (what `aimonk label --queue` prints)."""
        return pd.DataFrame([question.to_dict() for question in self.questions(count)])

    def answer(self, question, value) -> Retrained | None:
        """Record an answer to a Question (or a (filename, attribute) cell): 1.0 present, 0.0 absent, None or
        "unknown" unknown, "skip"; after `batch_size` of them the batch is written and the model retrained
        (returned)."""
        cell = (question.filename, question.attribute) if isinstance(question, Question) else tuple(question)
        answer = Answer(*cell, value)
        if value == SKIP:
            self.skipped.add(cell)
            return None
        self.pending.append(answer)
        return self.commit() if len(self.pending) >= self.batch_size else None

    def commit(self) -> Retrained | None:
        """The pending answers written as one batch, then the model retrained. A file changed on disk since it
        was read raises aimonk.labelling.labelfile.LabelFileChanged, the answers kept pending."""
        if not self.pending:
            return None
        before = self.f1
        batch = self.file.apply(self.pending, source=self.source)
        self.answered |= {(answer.filename, answer.attribute) for answer in self.pending}  # kept labels too
        self.pending = []
        for change in batch.changes:
            self.relabel(change.filename, change.attribute)
        return self.retrain(batch, before)

    def undo(self) -> Retrained | None:
        """The last batch written taken back (the labels file as it was before it), and the model retrained."""
        self.pending, before = [], self.f1
        batch = self.file.undo()
        if batch is None:
            return None
        for change in batch.changes:
            self.relabel(change.filename, change.attribute)
            self.answered.discard((change.filename, change.attribute))
        return self.retrain(batch, before)

    def relabel(self, filename: str, attribute: str) -> float:
        """The decoded images' label of a cell set to what the file now holds (an image not on disk has none)."""
        value = self.file.value(filename, attribute)
        if filename in self.rows:
            self.data.values[self.rows[filename], self.data.attributes.index(attribute)] = value
        return value

    def retrain(self, batch: Batch | None, before: pd.Series | None) -> Retrained:
        """The model fitted again on the labels as they are now, with its thresholds and calibration out-of-fold
        (nothing decoded or computed again that the cache holds); a recipe that learns by epochs is said, not
        retrained. `before`: the out-of-fold F1 before the batch."""
        started = time.perf_counter()
        if not self.retrainable:
            note = (f"the {decide_recipe(self.config).value} recipe retrains by a full `aimonk train` (minutes): "
                    f"aimonk train {shlex.quote(str(Path(self.file.path).parent))} --config RUN/config.json --out NEW_RUN")
            log.info(note)
            result = Retrained(batch, before, None, time.perf_counter() - started, note)
        else:
            self.use_trained(train(self.data, self.config, progress=False))
            result = Retrained(batch, before, self.f1, time.perf_counter() - started)
            log.info(result.describe())
        self.history.append(result)
        return result


def label_queue(data, model=None, **options) -> LabelSession:
    """A labelling session over the folder `data` with the checkpoint `model` (or a default recipe trained first):
    aimonk.label_session.LabelSession's questions, answers and retraining."""
    return LabelSession(data, model, **options)
