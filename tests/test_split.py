import numpy as np
import pytest

from aimonk.data.split import kfold_splits, train_val_split


@pytest.fixture
def values(rng):
    rates = np.array([0.88, 0.81, 0.53, 0.08])
    v = (rng.random((975, 4)) < rates).astype(np.float32)
    v[rng.random(v.shape) < 0.09] = np.nan
    return v


def rates(v):
    return np.nanmean(v, axis=0), np.isnan(v).mean(axis=0)


def test_iterative_split_keeps_positive_and_na_rates(values):
    train, val = train_val_split(values, "iterative", 0.15, seed=0)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == len(values)
    assert len(val) == pytest.approx(0.15 * len(values), abs=6)  # iterstrat balances labels, not size exactly
    (all_pos, all_na), (val_pos, val_na) = rates(values), rates(values[val])
    np.testing.assert_allclose(val_pos, all_pos, atol=0.03)
    np.testing.assert_allclose(val_na, all_na, atol=0.02)


def test_reference_split_stratifies_the_last_attribute(values):
    train, val = train_val_split(values, "last_attribute", 0.15, seed=0)
    assert np.nanmean(values[val, -1]) == pytest.approx(np.nanmean(values[:, -1]), abs=0.01)


def test_kfold_covers_every_row_once(values):
    folds = kfold_splits(values, 5, seed=0)
    held_out = np.concatenate([val for _, val in folds])
    assert sorted(held_out) == list(range(len(values)))
    for _, val in folds:
        np.testing.assert_allclose(np.nanmean(values[val], axis=0), np.nanmean(values, axis=0), atol=0.04)


def test_unknown_split_method(values):
    with pytest.raises(ValueError, match="unknown split"):
        train_val_split(values, "random")
