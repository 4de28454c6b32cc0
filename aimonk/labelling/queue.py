"""The labelling queue: which cell of a partly labelled folder to ask about next.

Two kinds of question, mixed and marked:

    unknown        an NA cell whose answer is expected to help most (an active-learning score, below)
    contradiction  a known label the out-of-fold predictions confidently contradict (confident learning:
                   aimonk.evaluation.label_issues), most doubtful first

The scores of an NA cell (the higher, the sooner it is asked), from the model's calibrated probability p and
its attribute's threshold t:

    uncertainty       1 - |p - t| / (t or 1 - t, whichever side p is on): 1 at the threshold, 0 at 0 or 1
    rare_uncertainty  uncertainty x (1 / sqrt(known positives of the attribute)), scaled to at most 1: the
                      same, weighted toward attributes with few known positives
    rare_positive     p x the same weight: the likely positives of the attributes that lack them

`benchmarks/labelling.py` compares them; aimonk.config.DEFAULT_LABEL_SCORE is the one it chose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aimonk.config import DEFAULT_LABEL_SCORE, LABEL_SCORES
from aimonk.evaluation.label_issues import label_issues

KINDS = ("unknown", "contradiction")
CONTRADICTION_EVERY = 4  # one contradiction after every this many unknown cells, while both remain


@dataclass(frozen=True)
class Question:
    """Image `filename`, `attribute`: present? `current` is its value in the labels file (1, 0, or NaN for NA),
    `probability` the model's calibrated probability (out-of-fold for a known label), `threshold` the
    attribute's, `score` what ranked it (higher first within its kind)."""

    filename: str
    attribute: str
    kind: str
    current: float
    probability: float
    threshold: float
    score: float
    row: int
    column: int

    def to_dict(self) -> dict:
        return {"filename": self.filename, "attribute": self.attribute, "kind": self.kind,
                "current": "NA" if np.isnan(self.current) else int(self.current),
                "probability": round(self.probability, 4), "threshold": round(self.threshold, 4),
                "score": round(self.score, 4)}


def uncertainty(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """1 at the threshold, falling linearly to 0 at 0 or 1, per cell (N, K)."""
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), probabilities.shape)
    side = np.where(probabilities < thresholds, thresholds, 1 - thresholds)
    return 1 - np.abs(probabilities - thresholds) / np.maximum(side, 1e-9)


def rarity(targets: np.ndarray) -> np.ndarray:
    """Per attribute, 1 / sqrt(its known positives), scaled so that the rarest has 1."""
    weights = 1 / np.sqrt(np.maximum((targets == 1).sum(0), 1))
    return weights / weights.max()


def unknown_scores(targets: np.ndarray, probabilities: np.ndarray, thresholds, score: str = DEFAULT_LABEL_SCORE):
    """The score of every cell (N, K) by `score` (LABEL_SCORES); only the NA cells' are used."""
    if score == "uncertainty":
        return uncertainty(probabilities, thresholds)
    if score == "rare_uncertainty":
        return uncertainty(probabilities, thresholds) * rarity(targets)
    if score == "rare_positive":
        return probabilities * rarity(targets)
    raise ValueError(f"score must be one of {', '.join(LABEL_SCORES)}, not {score!r}")


def rank_questions(targets: np.ndarray, probabilities: np.ndarray, thresholds, filenames, attributes,
                   out_of_fold: np.ndarray | None = None, score: str = DEFAULT_LABEL_SCORE,
                   contradiction_every: int = CONTRADICTION_EVERY, skipped=()) -> list[Question]:
    """Every question about a folder, in the order to ask them.

    targets (N, K): 1, 0 or NaN; probabilities (N, K): the model's calibrated probabilities (for the NA cells,
    which it never learned from); out_of_fold (N, K): calibrated out-of-fold probabilities of the known labels
    (NaN where there are none: no contradiction is looked for there); thresholds (K,). `skipped`: (filename,
    attribute) pairs answered "skip", asked after every other question."""
    thresholds = np.asarray(thresholds, dtype=float)
    scores = unknown_scores(targets, probabilities, thresholds, score)
    rows, columns = np.nonzero(np.isnan(targets))
    order = np.lexsort((rows, -scores[rows, columns]))
    unknown = [Question(filenames[r], attributes[c], "unknown", float("nan"), float(probabilities[r, c]),
                        float(thresholds[c]), float(scores[r, c]), int(r), int(c))
               for r, c in zip(rows[order], columns[order])]
    contradictions = contradiction_questions(targets, out_of_fold, thresholds, filenames, attributes)
    mixed = interleave(unknown, contradictions, contradiction_every)
    later = set(skipped)
    return [q for q in mixed if (q.filename, q.attribute) not in later] + \
        [q for q in mixed if (q.filename, q.attribute) in later]


def contradiction_questions(targets, out_of_fold, thresholds, filenames, attributes) -> list[Question]:
    """The known labels the out-of-fold predictions confidently contradict, the most doubtful first over all
    attributes (ranked by the probability of the given label, lowest first)."""
    if out_of_fold is None:
        return []
    scored = ~np.isnan(out_of_fold)
    known = np.where(scored, targets, np.nan)
    issues = label_issues(known, np.nan_to_num(out_of_fold), list(filenames), list(attributes))
    position = {name: row for row, name in enumerate(filenames)}
    questions = []
    for issue in issues.sort_values("self_confidence", kind="stable").itertuples():
        row, column = position[issue.filename], list(attributes).index(issue.attribute)
        questions.append(Question(issue.filename, issue.attribute, "contradiction", float(issue.given),
                                  float(out_of_fold[row, column]), float(thresholds[column]),
                                  1 - float(issue.self_confidence), row, column))
    return questions


def interleave(unknown: list, contradictions: list, every: int) -> list:
    """One contradiction after every `every` unknown cells while both remain, then the rest of either."""
    mixed, pending = [], list(contradictions)
    for index, question in enumerate(unknown, start=1):
        mixed.append(question)
        if every and index % every == 0 and pending:
            mixed.append(pending.pop(0))
    return mixed + pending
