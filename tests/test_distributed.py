"""Several processes training one model (torchrun, gloo on the CPU) agree with one process.

Stated tolerances: the default recipe (backbone features shared among the processes, the head solved on
them, threshold folds spread over the processes) gives the same numbers to 1e-5. A head trained by epochs
under DistributedDataParallel gives the same validation F1 and validation loss to 1e-4; its training loss
to 0.01, because each process averages the masked loss over the labels known in its half of the batch.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from aimonk.model.checkpoint import Checkpoint
from aimonk.data.demo import make_demo_dataset
from aimonk.distributed import Processes, ShardedSampler

FAST = ["--backbone", "efficientnet_lite0", "--image-size", "32"]
VALIDATED = [*FAST, "--val-fraction", "0.15"]  # validation metrics to compare


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo_ddp"), count=80, size=40, seed=3)


def aimonk(args, cache, processes: int = 1) -> str:
    """Run the CLI in `processes` processes (torchrun when more than one), each run with its own empty cache
    so that the distributed run computes its features itself; returns stdout."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    for attempt in range(2):
        result = subprocess.run([*launcher, "-m", "aimonk", *map(str, args)], capture_output=True, text=True,
                                timeout=600, env={**os.environ, "AIMONK_CACHE": str(cache), "OMP_NUM_THREADS": "1"})
        launcher_failed = result.returncode != 0 and ": error: " not in result.stderr and processes > 1
        if not launcher_failed:  # torchrun's own start-up (a rendezvous port taken meanwhile) gets one retry
            break
        print(f"torchrun failed to start, retrying:\n{result.stderr[-2000:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def epochs(run) -> list[dict]:
    return json.loads((run / "history.json").read_text())["epochs"]


@pytest.mark.slow
def test_the_default_recipe_in_two_processes_gives_what_one_gives(data, tmp_path):
    one = aimonk(["train", data, "--out", tmp_path / "one", *VALIDATED], tmp_path / "cache1")
    two = aimonk(["train", data, "--out", tmp_path / "two", *VALIDATED], tmp_path / "cache2", processes=2)
    assert "; 2 processes" in two and two.count("training efficientnet_lite0") == 1 and two.count("linear probe solved") == 1
    assert "; 2 processes" not in one
    assert epochs(tmp_path / "one") == epochs(tmp_path / "two") == []  # the linear probe: one solve, no epoch
    heads = [Checkpoint.load(tmp_path / run / "model.pt").state_dict for run in ("one", "two")]
    for name in ("head.1.weight", "head.1.bias"):  # the same probe solved in each process
        np.testing.assert_allclose(heads[1][name].numpy(), heads[0][name].numpy(), atol=1e-5)
    scores = [json.loads((tmp_path / run / "metrics.json").read_text())["metrics"] for run in ("one", "two")]
    assert [row["f1"] for row in scores[1]] == pytest.approx([row["f1"] for row in scores[0]], abs=1e-5)
    # the thresholds come from a 5-fold cross-validation whose folds the two processes shared
    thresholds = [Checkpoint.load(tmp_path / run / "model.pt").rule.thresholds for run in ("one", "two")]
    np.testing.assert_allclose(thresholds[1], thresholds[0], atol=1e-5)
    assert "5-fold" in Checkpoint.load(tmp_path / "two" / "model.pt").rule.source_


@pytest.mark.slow
def test_a_head_trained_by_epochs_under_ddp_matches_one_process(data, tmp_path):
    recipe = [*VALIDATED, "--head-solver", "adam", "--dropout", "0", "--epochs", "3", "--augment", "none",
              "--threshold-source", "val"]
    aimonk(["train", data, "--out", tmp_path / "one", *recipe], tmp_path / "cache1")
    aimonk(["train", data, "--out", tmp_path / "two", *recipe], tmp_path / "cache2", processes=2)
    single, double = epochs(tmp_path / "one"), epochs(tmp_path / "two")
    assert len(single) == len(double) == 3
    for a, b in zip(single, double):  # the validation loss, over every probability, is the close check: F1 at
        # 0.5 moves by a whole image's decision when one probability sits within float noise of 0.5 (the demo's
        # weak signals put some there), and the two processes see the training batches in another order
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)
        assert b["val_macro_f1"] == pytest.approx(a["val_macro_f1"], abs=0.05)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.02)
    assert single[-1]["train_loss"] < single[0]["train_loss"]  # it learned, so agreeing says something


@pytest.mark.slow
def test_cross_validation_spreads_its_folds_over_the_processes(data, tmp_path):
    args = ["evaluate", data, "--cv", "3", "--final", "none", *FAST]
    aimonk([*args, "--out", tmp_path / "one"], tmp_path / "cache1")
    two = aimonk([*args, "--out", tmp_path / "two"], tmp_path / "cache2", processes=2)
    assert "folds spread over 2 processes" in two
    single, double = (pd.read_csv(tmp_path / run / "oof_predictions.csv") for run in ("one", "two"))
    assert sorted(double["fold"].unique()) == [0, 1, 2]
    probability = [c for c in single.columns if c.endswith("_probability")]
    np.testing.assert_allclose(double[probability], single[probability], atol=1e-5)


@pytest.mark.slow
def test_the_whole_network_trains_in_two_processes_and_only_the_main_one_writes(data, tmp_path):
    """On a timm backbone: its stages frozen as timm's feature info says, under DistributedDataParallel."""
    out = aimonk(["train", data, "--out", tmp_path / "run", "--backbone", "timm:resnet10t", "--weights", "none",
                  "--freeze", "3", "--augment", "light", "--epochs", "2", "--image-size", "32",
                  "--threshold-source", "val", "--val-fraction", "0.15"], tmp_path / "cache", processes=2)
    assert out.count("epoch   2") == 1 and out.count("min; checkpoint") == 1
    assert [e["epoch"] for e in epochs(tmp_path / "run")] == [1, 2]
    assert all(np.isfinite(e["train_loss"]) for e in epochs(tmp_path / "run"))
    assert not list((tmp_path / "run").glob("*.tmp*")) and not (tmp_path / "run" / "last.pt").exists()


def test_a_batch_that_does_not_divide_among_the_processes_is_refused():
    with pytest.raises(ValueError, match="batch_size 30 does not divide among 4 processes"):
        Processes(rank=0, world=4).batch_size(30)


@pytest.mark.parametrize("weights", [None, torch.tensor([1.0] * 9 + [5.0])])
def test_the_processes_batches_together_are_the_single_process_batches(weights):
    """Step k of two processes (batch 4 each) sees exactly the rows step k of one process (batch 8) sees."""
    single = list(ShardedSampler(10, Processes(), seed=7, weights=weights))
    parts = [list(ShardedSampler(10, Processes(rank, 2), seed=7, weights=weights)) for rank in (0, 1)]
    for step in range(len(parts[0]) // 4):
        together = sorted(parts[0][step * 4:(step + 1) * 4] + parts[1][step * 4:(step + 1) * 4])
        assert together == sorted(single[step * 8:(step + 1) * 8])
    if weights is None:
        assert sorted(single) == list(range(10))


def test_the_order_depends_on_seed_and_epoch_only():
    sampler = ShardedSampler(50, Processes(), seed=1)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_oversampling_draws_the_weighted_rows_more_often():
    weights = torch.ones(100)
    weights[:10] = 8.0
    drawn = np.array(list(ShardedSampler(100, Processes(), seed=0, weights=weights)))
    assert (drawn < 10).mean() > 0.3  # 80 of 170 weight units: about 47%, against 10% without


def test_blocks_cover_every_row_once():
    rows = [list(range(11))[Processes(rank, 3).block(11)] for rank in range(3)]
    assert sum(rows, []) == list(range(11))
    assert max(map(len, rows)) - min(map(len, rows)) <= 1


@pytest.mark.slow
def test_a_run_interrupted_in_one_process_resumes_under_torchrun(data, tmp_path):
    from aimonk.config import preset
    from aimonk.data.folder import load_labelled_folder
    from aimonk.training.loop import TrainingInterrupted
    from aimonk.workflows import train
    from conftest import Interrupt

    config = preset("finetune", backbone="resnet18", weights="none", freeze=3, image_size=32, epochs=3,
                    batch_size=16, device="cpu", num_workers=0)
    images = load_labelled_folder(data, 32, progress=False)
    with pytest.raises(TrainingInterrupted):  # Ctrl-C as the third epoch starts
        train(images, config, tmp_path / "run", progress=False, callbacks=[Interrupt(3)])
    assert (tmp_path / "run" / "last.pt").is_file()
    out = aimonk(["train", data, "--out", tmp_path / "run", "--resume"], tmp_path / "cache", processes=2)
    assert "resumed after epoch 2" in out and out.count("epoch   3") == 1
    assert [e["epoch"] for e in epochs(tmp_path / "run")] == [1, 2, 3]
    assert not (tmp_path / "run" / "last.pt").exists()


def test_feature_blocks_are_cut_at_the_batches_of_one_process():
    """Convolutions give results that depend on the batch size: each process takes whole batches of a single
    process's run, so that the shared features are those one process computes."""
    blocks = [Processes(rank, 3).batches_block(150, 32) for rank in range(3)]  # 5 batches of 32 (the last 22)
    assert [(b.start, b.stop) for b in blocks] == [(0, 64), (64, 96), (96, 150)]
    assert all(b.start % 32 == 0 for b in blocks)
    alone = [Processes(rank, 2).batches_block(20, 64) for rank in range(2)]  # one batch: one process takes it
    assert sorted((b.stop - b.start) for b in alone) == [0, 20] and alone[-1].stop == 20
