import json

import numpy as np
import pytest
import torch

from aimonk.data.folder import load_labelled_folder
from aimonk.model.checkpoint import Checkpoint
from aimonk.model.registry import build_model
from aimonk.training.loop import Callback, TrainingInterrupted, fit
from aimonk.workflows import train
from conftest import Interrupt, model_of

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture(scope="module")
def data(demo_dir):
    return load_labelled_folder(demo_dir, 48, progress=False)


def test_history_records_every_iteration_and_epoch(trained_run, data, tiny_config):
    out, trained = trained_run
    result = trained.result
    steps = len(result.train_rows) // tiny_config.batch_size  # drop_last
    assert len(result.history["iteration_loss"]) == steps
    epoch = result.history["epochs"][0]
    assert set(epoch) >= {"train_loss", "val_loss", "val_macro_f1", "val_f1", "val_precision", "val_recall", "seconds"}
    assert set(epoch["val_recall"]) == {"Attr1", "Attr2", "Attr3", "Attr4"}
    assert json.loads((out / "history.json").read_text()) == result.history
    assert len(set(result.train_rows) & set(result.val_rows)) == 0
    saved = Checkpoint.load(out / "model.pt")  # written once, as the run ended, with its decision rule
    assert saved.history == result.history and saved.rule is not None and not (out / "last.pt").exists()


@pytest.mark.slow
def test_training_reduces_the_loss(data, tiny_config, tmp_path):
    config = tiny_config.replace(epochs=3, weights="imagenet", lr=1e-3, augment="none")
    result = fit(config, data)
    losses = [e["train_loss"] for e in result.history["epochs"]]
    assert losses[-1] < losses[0]


def test_ctrl_c_keeps_the_best_checkpoint(data, tiny_config, tmp_path):
    with pytest.raises(TrainingInterrupted) as stopped:  # Ctrl-C as the second epoch starts
        train(data, tiny_config.replace(epochs=5), tmp_path, progress=False, callbacks=[Interrupt(2)])
    result = stopped.value.result
    assert result.best_epoch == 1 and f"(epoch 1) is kept in {tmp_path / 'model.pt'}" in str(stopped.value)
    saved = Checkpoint.load(tmp_path / "model.pt")
    assert saved.provenance.epoch == 1 and len(saved.history["epochs"]) == 1 and saved.rule is None


def test_ctrl_c_in_the_head_only_epochs_stops_the_run(data, tiny_config, tmp_path):
    """--head-epochs trains the head alone first; Ctrl-C there stops the run: fine-tuning does not start."""
    seen = Interrupt(at=0)  # never interrupts: records every epoch that starts
    config = tiny_config.replace(epochs=2, head_epochs=2, head_solver="adam")
    with pytest.raises(TrainingInterrupted, match="head-only epochs, before fine-tuning began: nothing was saved"):
        train(data, config, tmp_path, progress=False, callbacks=[seen, Interrupt(1)])  # the first head-only epoch
    assert seen.calls == [(1, "head")] and not (tmp_path / "model.pt").exists()
    assert not (tmp_path / "last.pt").exists()


class SpoilAfterFirstEpoch(Callback):
    """After epoch 1, the head made to answer "no" to everything (weights 0, bias -50): with a learning rate too
    small to undo it, every later epoch scores macro F1 0 at a huge validation loss, never better than epoch 1."""

    def __init__(self):
        self.spoiled_head = None

    def epoch_ended(self, state, record, improved):
        if record["epoch"] == 1:
            with torch.no_grad():
                state.model.head[-1].weight.zero_()
                state.model.head[-1].bias.fill_(-50.0)
            self.spoiled_head = state.model.head[-1].bias.detach().clone()


@pytest.mark.slow
def test_early_stopping(data, tiny_config):
    spoil = SpoilAfterFirstEpoch()
    config = tiny_config.replace(epochs=6, patience=2, lr=1e-8, ema=0.0)
    result = fit(config, data, callbacks=[spoil])
    epochs = result.history["epochs"]
    assert len(epochs) == 3 and result.best_epoch == 1  # epochs 2 and 3 without improvement: stopped
    assert all(e["val_macro_f1"] == 0 for e in epochs[1:])
    kept_bias = result.model.state_dict()["head.1.bias"]
    assert not torch.allclose(kept_bias, spoil.spoiled_head, atol=1.0)  # the model returned holds epoch 1


def test_training_without_validation_keeps_last_epoch(data, tiny_config):
    result = fit(tiny_config.replace(epochs=2, val_fraction=0.0, threshold_source="cv"), data)
    assert result.best_epoch == 2 and len(result.val_rows) == 0


def test_warmup_then_cosine_schedule(tiny_config):
    from aimonk.training.optim import make_optimizer, make_scheduler

    config = tiny_config.replace(schedule="cosine", warmup_epochs=1, epochs=4, head_lr_multiplier=10)
    model = model_of("resnet18", 2, weights="none", freeze=3)
    optimizer = make_optimizer(model, config)
    assert [g["lr"] for g in optimizer.param_groups] == [config.lr * 10, config.lr]
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[1]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] < rates[5] < rates[10] and rates[10] == pytest.approx(config.lr, rel=0.02)
    assert rates[39] < 0.01 * config.lr and rates == sorted(rates[:11]) + rates[11:]


def test_rare_attribute_oversampling_weights():
    from aimonk.training.loaders import rare_attribute_weights

    values = np.array([[1, 0], [1, 1], [0, np.nan], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    assert rare_attribute_weights(values, 4.0).tolist() == [1, 4, 1, 1, 1, 1]


def test_keep_last_and_tta(data, tiny_config):
    result = fit(tiny_config.replace(epochs=2, keep="last", tta=True), data)
    assert result.best_epoch == 2 and result.val_probabilities.shape == (len(result.val_rows), 4)


@pytest.mark.slow
def test_compiled_training_updates_the_returned_model(data, tiny_config):
    from aimonk.runtime import seed_everything

    config = tiny_config.replace(compile=True, tta=False)
    result = fit(config, data)
    seed_everything(config.seed)  # fit builds its model right after seeding the same way
    untrained = build_model(config, data.attributes)
    assert len(result.history["iteration_loss"]) > 0 and np.isfinite(result.history["iteration_loss"]).all()
    state = result.model.state_dict()
    assert not any(key.startswith("_orig_mod") for key in state)
    assert not torch.equal(state["head.1.weight"], untrained.state_dict()["head.1.weight"])  # it learned
    frozen = next(k for k in state if k.startswith("stages.0.") and k.endswith("weight"))
    assert torch.equal(state[frozen], untrained.state_dict()[frozen])  # and it is the same network


class Averages(Callback):
    """The weight average each epoch ended with (TrainState.average)."""

    def __init__(self):
        self.seen = []

    def epoch_ended(self, state, record, improved):
        self.seen.append(state.average)


@pytest.mark.slow
def test_weight_average_is_what_is_kept(data, tiny_config):
    averages = Averages()
    config = tiny_config.replace(epochs=2, ema=0.9, augment="none", keep="last")
    result = fit(config, data, callbacks=[averages])
    assert len(averages.seen) == 2 and averages.seen[0] is averages.seen[1] is not None  # one average, all along
    average = averages.seen[-1]
    assert average.averaged.n_averaged.item() == len(result.history["iteration_loss"])
    kept, averaged = result.model.state_dict(), average.module.state_dict()
    assert all(torch.equal(kept[k], averaged[k]) for k in kept)
    plain = fit(config.replace(ema=0.0), data).model.state_dict()
    assert not torch.equal(kept["head.1.weight"], plain["head.1.weight"])


def test_weight_average_decay_must_be_a_fraction(tiny_config):
    from aimonk.training.optim import WeightAverage

    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(model_of("resnet18", 2, weights="none"), 1.5)


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_strong_augmentation_is_reproducible_with_the_same_seed(data, tiny_config, workers):
    """The finetune preset (strong albumentations augmentation) twice with one seed: the same losses and
    weights, with loader workers too; another seed differs."""
    config = tiny_config.replace(augment="strong", num_workers=workers, epochs=1)
    first, second = (fit(config, data) for _ in range(2))
    other = fit(config.replace(seed=7), data)
    assert first.history["iteration_loss"] == second.history["iteration_loss"]
    assert first.history["iteration_loss"] != other.history["iteration_loss"]
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


@pytest.mark.slow
def test_a_run_interrupted_and_resumed_ends_as_an_uninterrupted_one(data, tiny_config, tmp_path):
    """Strong augmentation, oversampling, a cosine schedule and weight averaging: every random and optimiser
    state must come back for the weights and metrics to match exactly."""
    config = tiny_config.replace(epochs=4, augment="strong", ema=0.9, seed=3)
    whole = train(data, config, tmp_path / "whole", progress=False)
    assert not (tmp_path / "whole" / "last.pt").exists()  # a finished run keeps no training state

    with pytest.raises(TrainingInterrupted) as stopped:  # Ctrl-C as the third epoch starts
        train(data, config, tmp_path / "parts", progress=False, callbacks=[Interrupt(3)])
    assert len(stopped.value.result.history["epochs"]) == 2 and (tmp_path / "parts" / "last.pt").is_file()
    resumed = train(data, None, tmp_path / "parts", resume=True, progress=False)

    def without_timing(history):
        return {**history, "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in history["epochs"]]}

    assert without_timing(resumed.history) == without_timing(whole.history)
    assert resumed.result.best_epoch == whole.result.best_epoch
    for key, value in whole.result.model.state_dict().items():
        assert torch.equal(value, resumed.result.model.state_dict()[key]), key
    np.testing.assert_array_equal(resumed.result.val_probabilities, whole.result.val_probabilities)
    np.testing.assert_array_equal(resumed.rule.thresholds, whole.rule.thresholds)
    assert not (tmp_path / "parts" / "last.pt").exists()


@pytest.mark.slow
def test_ctrl_c_in_a_resumed_run_names_the_epoch_its_checkpoint_holds(data, tiny_config, tmp_path):
    config = tiny_config.replace(epochs=4, seed=5)
    with pytest.raises(TrainingInterrupted) as first:
        train(data, config, tmp_path, progress=False, callbacks=[Interrupt(3)])
    kept = Checkpoint.load(tmp_path / "model.pt").provenance.epoch
    assert f"(epoch {kept}) is kept" in str(first.value)
    with pytest.raises(TrainingInterrupted) as second:  # Ctrl-C in the first epoch after resuming
        train(data, None, tmp_path, resume=True, progress=False, callbacks=[Interrupt(1)])
    assert f"(epoch {kept}) is kept in {tmp_path / 'model.pt'}" in str(second.value)
    assert f"continue with: aimonk train {data.labels.source.parent} --out {tmp_path} --resume" in str(second.value)
    assert Checkpoint.load(tmp_path / "model.pt").provenance.epoch == kept
