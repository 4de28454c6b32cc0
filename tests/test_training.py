import json

import numpy as np
import pytest
import torch

from aimonk.data.folder import load_labelled_folder
from aimonk.model.checkpoint import Checkpoint
from aimonk.training.loop import TrainingInterrupted, fit
from conftest import interrupt_call, interrupt_in_epoch

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture(scope="module")
def data(demo_dir):
    return load_labelled_folder(demo_dir, 48, progress=False)


def test_history_records_every_iteration_and_epoch(trained_run, data, tiny_config):
    out, result = trained_run
    steps = len(result.train_rows) // tiny_config.batch_size  # drop_last
    assert len(result.history["iteration_loss"]) == steps
    epoch = result.history["epochs"][0]
    assert set(epoch) >= {"train_loss", "val_loss", "val_macro_f1", "val_f1", "val_precision", "val_recall", "seconds"}
    assert set(epoch["val_recall"]) == {"Attr1", "Attr2", "Attr3", "Attr4"}
    assert json.loads((out / "history.json").read_text()) == result.history
    assert len(set(result.train_rows) & set(result.val_rows)) == 0


def test_training_reduces_the_loss(data, tiny_config, tmp_path):
    config = tiny_config.replace(epochs=3, weights="imagenet", lr=1e-3, augment="none")
    result = fit(config, data, None, progress=False)
    losses = [e["train_loss"] for e in result.history["epochs"]]
    assert losses[-1] < losses[0]


def test_ctrl_c_keeps_the_best_checkpoint(data, tiny_config, tmp_path, monkeypatch):
    interrupt_in_epoch(monkeypatch, 2)
    with pytest.raises(TrainingInterrupted) as stopped:
        fit(tiny_config.replace(epochs=5), data, tmp_path, progress=False)
    result = stopped.value.result
    assert result.best_epoch == 1 and f"(epoch 1) is kept in {tmp_path / 'model.pt'}" in str(stopped.value)
    saved = Checkpoint.load(tmp_path / "model.pt")
    assert saved.provenance.epoch == 1 and len(saved.history["epochs"]) == 1 and saved.rule is None


def test_ctrl_c_in_the_head_only_epochs_stops_the_run(data, tiny_config, tmp_path, monkeypatch):
    """--head-epochs trains the head alone first; Ctrl-C there stops the run: fine-tuning does not start."""
    calls = []
    interrupt_call(monkeypatch, "train_one_epoch", 1, calls)  # the first head-only epoch
    config = tiny_config.replace(epochs=2, head_epochs=2, head_solver="adam")
    with pytest.raises(TrainingInterrupted, match="head-only epochs, before fine-tuning began: nothing was saved"):
        fit(config, data, tmp_path, progress=False)
    assert len(calls) == 1 and not (tmp_path / "model.pt").exists()


def test_early_stopping(data, tiny_config, monkeypatch):
    import aimonk.training.state as training

    monkeypatch.setattr(training, "is_better", lambda record, best: best is None)
    result = fit(tiny_config.replace(epochs=6, patience=2), data, None, progress=False)
    assert len(result.history["epochs"]) == 3 and result.best_epoch == 1


def test_training_without_validation_keeps_last_epoch(data, tiny_config):
    result = fit(tiny_config.replace(epochs=2, val_fraction=0.0, threshold_source="cv"), data, None, progress=False)
    assert result.best_epoch == 2 and len(result.val_rows) == 0


def test_warmup_then_cosine_schedule(tiny_config):
    from aimonk.model.registry import build_model
    from aimonk.training.optim import make_optimizer, make_scheduler

    config = tiny_config.replace(schedule="cosine", warmup_epochs=1, epochs=4, head_lr_multiplier=10)
    model = build_model("resnet18", 2, weights="none", freeze=3)
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
    result = fit(tiny_config.replace(epochs=2, keep="last", tta=True), data, None, progress=False)
    assert result.best_epoch == 2 and result.val_probabilities.shape == (len(result.val_rows), 4)


def test_compiled_training_updates_the_returned_model(data, tiny_config):
    from aimonk.runtime import seed_everything
    from aimonk.model.registry import build_model

    config = tiny_config.replace(compile=True, tta=False)
    result = fit(config, data, None, progress=False)
    seed_everything(config.seed)  # fit builds its model right after seeding the same way
    untrained = build_model(config.backbone, 4, config.weights, config.dropout, config.freeze, config.image_size)
    assert len(result.history["iteration_loss"]) > 0 and np.isfinite(result.history["iteration_loss"]).all()
    state = result.model.state_dict()
    assert not any(key.startswith("_orig_mod") for key in state)
    assert not torch.equal(state["head.1.weight"], untrained.state_dict()["head.1.weight"])  # it learned
    frozen = next(k for k in state if k.startswith("stages.0.") and k.endswith("weight"))
    assert torch.equal(state[frozen], untrained.state_dict()[frozen])  # and it is the same network


def test_weight_average_is_what_is_kept(data, tiny_config, monkeypatch):
    import aimonk.training.strategies as training

    averages = []
    real = training.WeightAverage

    def recording(model, decay):
        averages.append(real(model, decay))
        return averages[-1]

    monkeypatch.setattr(training, "WeightAverage", recording)
    config = tiny_config.replace(epochs=2, ema=0.9, augment="none", keep="last")
    result = fit(config, data, None, progress=False)
    (average,) = averages
    assert average.averaged.n_averaged.item() == len(result.history["iteration_loss"])
    kept, averaged = result.model.state_dict(), average.module.state_dict()
    assert all(torch.equal(kept[k], averaged[k]) for k in kept)
    plain = fit(config.replace(ema=0.0), data, None, progress=False).model.state_dict()
    assert not torch.equal(kept["head.1.weight"], plain["head.1.weight"])


def test_weight_average_decay_must_be_a_fraction(tiny_config):
    from aimonk.model.registry import build_model
    from aimonk.training.optim import WeightAverage

    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(build_model("resnet18", 2, weights="none"), 1.5)


@pytest.mark.parametrize("workers", [0, 2])
def test_strong_augmentation_is_reproducible_with_the_same_seed(data, tiny_config, workers):
    """The finetune preset (strong albumentations augmentation) twice with one seed: the same losses and
    weights, with loader workers too; another seed differs."""
    config = tiny_config.replace(augment="strong", num_workers=workers, epochs=1)
    first, second = (fit(config, data, None, progress=False) for _ in range(2))
    other = fit(config.replace(seed=7), data, None, progress=False)
    assert first.history["iteration_loss"] == second.history["iteration_loss"]
    assert first.history["iteration_loss"] != other.history["iteration_loss"]
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


def test_a_run_interrupted_and_resumed_ends_as_an_uninterrupted_one(data, tiny_config, tmp_path, monkeypatch):
    """Strong augmentation, oversampling, a cosine schedule and weight averaging: every random and optimiser
    state must come back for the weights and metrics to match exactly."""
    import aimonk.training.strategies as training
    from aimonk.training.runlog import load_last

    config = tiny_config.replace(epochs=4, augment="strong", ema=0.9, seed=3)
    whole = fit(config, data, tmp_path / "whole", progress=False)
    assert not (tmp_path / "whole" / "last.pt").exists()  # a finished run keeps no training state

    real = interrupt_in_epoch(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted) as stopped:
        fit(config, data, tmp_path / "parts", progress=False)
    assert len(stopped.value.result.history["epochs"]) == 2
    monkeypatch.setattr(training, "train_one_epoch", real)
    resumed = fit(config, data, tmp_path / "parts", progress=False, resume=load_last(tmp_path / "parts"))
    def without_timing(history):
        return {**history, "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in history["epochs"]]}

    assert without_timing(resumed.history) == without_timing(whole.history) and resumed.best_epoch == whole.best_epoch
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    np.testing.assert_array_equal(resumed.val_probabilities, whole.val_probabilities)


def test_ctrl_c_in_a_resumed_run_names_the_epoch_its_checkpoint_holds(data, tiny_config, tmp_path, monkeypatch):
    import aimonk.training.strategies as strategies
    from aimonk.training.runlog import load_last

    config = tiny_config.replace(epochs=4, seed=5)
    real = interrupt_in_epoch(monkeypatch, 3)
    with pytest.raises(TrainingInterrupted) as first:
        fit(config, data, tmp_path, progress=False)
    kept = Checkpoint.load(tmp_path / "model.pt").provenance.epoch
    assert f"(epoch {kept}) is kept" in str(first.value)
    monkeypatch.setattr(strategies, "train_one_epoch", real)
    interrupt_in_epoch(monkeypatch, 1)  # the first epoch after resuming
    with pytest.raises(TrainingInterrupted) as second:
        fit(config, data, tmp_path, progress=False, resume=load_last(tmp_path))
    assert f"(epoch {kept}) is kept in {tmp_path / 'model.pt'}" in str(second.value)
    assert f"continue with: aimonk train {data.labels.source.parent} --out {tmp_path} --resume" in str(second.value)
    assert Checkpoint.load(tmp_path / "model.pt").provenance.epoch == kept
