"""Train/validation splits and folds that keep every attribute's positive and NA rates."""
from __future__ import annotations

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
from sklearn.model_selection import train_test_split

from aimonk.config import SPLITS
from aimonk.data.labels import short_name


def stratification_matrix(values: np.ndarray) -> np.ndarray:
    """Indicators [y == 1, y == NA] per attribute, so NA is stratified as its own state."""
    return np.hstack([values == 1, np.isnan(values)]).astype(int)


def iterative_split(values: np.ndarray, val_fraction: float, seed: int):
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train, val = next(splitter.split(np.zeros(len(values)), stratification_matrix(values)))
    return np.sort(train), np.sort(val)


def last_attribute_split(values: np.ndarray, val_fraction: float, seed: int):
    """The reference's split: stratified on the last attribute only (NA as its own class)."""
    strata = np.where(np.isnan(values[:, -1]), "NA", values[:, -1].astype(str))
    train, val = train_test_split(np.arange(len(values)), test_size=val_fraction, random_state=seed, stratify=strata)
    return np.sort(train), np.sort(val)


def train_val_split(values: np.ndarray, method: str = "iterative", val_fraction: float = 0.15, seed: int = 42):
    if method == "iterative":
        return iterative_split(values, val_fraction, seed)
    if method == "last_attribute":
        return last_attribute_split(values, val_fraction, seed)
    raise ValueError(f"unknown split {method!r}; choose one of {SPLITS}")


def kfold_splits(values: np.ndarray, folds: int, seed: int):
    """[(train indices, validation indices)] for multilabel-stratified K folds."""
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(values)), stratification_matrix(values))]


def scarce_class_notes(values: np.ndarray, attributes, folds: int, option: str) -> list[str]:
    """A note for each attribute with fewer known positives (or negatives) than `folds`: some folds hold none of
    them, so its out-of-fold scores and thresholds rest on very few images (option: e.g. '--threshold-folds')."""
    notes = []
    for column, name in enumerate(attributes):
        known = values[~np.isnan(values[:, column]), column]
        positive, negative = int(known.sum()), int(len(known) - known.sum())
        fewer, kind = min((positive, "positive"), (negative, "negative"))
        if fewer < folds:
            empty = folds - fewer
            notes.append(f"attribute {short_name(name)!r} has {fewer} {kind} known label(s) for {option} {folds}: at "
                         f"least {empty} of the folds {'holds' if empty == 1 else 'hold'} none, so its out-of-fold "
                         "scores and threshold rest on very few images")
    return notes
