import numpy as np
import pytest

from aimonk.evaluation.folder import evaluate_checkpoint
from aimonk.evaluation.tables import compare_thresholds, worst_mistakes

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


def test_scores_at_half_beside_the_given_thresholds():
    rng = np.random.default_rng(0)
    targets = (rng.random((80, 3)) < [0.9, 0.5, 0.1]).astype(np.float32)
    targets[:2, 2] = 1
    targets[5, 1] = np.nan
    probabilities = np.where(targets == 1, 0.9, 0.1)
    probabilities[:, 2] = np.where(targets[:, 2] == 1, 0.4, 0.1)  # right only at a lower threshold
    table = compare_thresholds(targets, probabilities, [0.5, 0.5, 0.3], ["a", "b", "c"])
    assert table.loc["c", "f1@0.5"] == 0.0 and table.loc["c", "f1@stored"] == 1.0
    assert table.loc["a", "f1@stored"] == 1.0 and table["threshold"].tolist()[:3] == [0.5, 0.5, 0.3]
    assert table.loc["a", "always_present_f1"] == pytest.approx(2 * targets[:, 0].mean() / (1 + targets[:, 0].mean()))


def test_worst_mistakes_are_confidently_wrong_known_labels():
    targets = np.array([[1], [0], [np.nan], [1], [0]], dtype=np.float32)
    probabilities = np.array([[0.1], [0.95], [0.99], [0.4], [0.2]])
    assert worst_mistakes(targets, probabilities, [0.5])[0] == [1, 0, 3]


def test_held_out_folder_is_scored_whole_with_stored_thresholds(trained_run, demo_dir):
    out, trained = trained_run
    evaluation = evaluate_checkpoint(demo_dir, out / "model.pt", subset="all", device="cpu")
    assert evaluation.subset == "all" and len(evaluation.names) == 57
    assert list(evaluation.table.index) == ["Attr1", "Attr2", "Attr3", "Attr4", "macro"]
    # the thresholds the run tuned on its validation split and stored with the model
    assert evaluation.table.loc["Attr1":"Attr4", "threshold"].tolist() == pytest.approx(trained.rule.thresholds)
    assert "validation images" in trained.rule.source_ and trained.rule.source_ in evaluation.thresholds_source
    assert evaluation.optimistic and evaluation.honesty.startswith("optimistic: some scored images are images the "
                                                                   "model was trained on")


def test_a_finetune_run_scored_on_its_validation_split_says_optimistic_in_metrics_json(trained_run, demo_dir,
                                                                                        tmp_path):
    """finetune keeps its best epoch and tunes its thresholds on the validation split: scored there, the table is
    optimistic, and the first note (printed by notebook 03 and `aimonk evaluate`, kept in metrics.json) says so."""
    import json

    import aimonk

    out, _ = trained_run
    evaluation = aimonk.evaluate(demo_dir, out / "model.pt", out=tmp_path, device="cpu", progress=False)
    assert evaluation.subset == "val" and evaluation.optimistic
    assert evaluation.honesty.startswith("optimistic: the epoch kept and the thresholds were chosen on these same "
                                         "validation images")
    assert json.loads((tmp_path / "metrics.json").read_text())["notes"][0] == evaluation.honesty


def test_the_evaluate_api_takes_thresholds_as_one_number_a_list_or_text(trained_run, demo_dir):
    import aimonk

    out, _ = trained_run
    for given in (0.3, [0.3] * 4, "0.3", np.full(4, 0.3)):
        evaluation = aimonk.evaluate(demo_dir, out / "model.pt", subset="all", thresholds=given, device="cpu",
                                     progress=False)
        assert evaluation.table.loc["Attr1":"Attr4", "threshold"].tolist() == pytest.approx([0.3] * 4)
        assert evaluation.thresholds_source == "given by the caller"


def test_the_table_baseline_is_the_always_present_f1_even_for_a_rare_attribute():
    from aimonk.evaluation.tables import score

    targets = np.array([[1, 1]] * 3 + [[0, 1]] * 7 + [[np.nan, 0]] * 2, dtype=np.float32)  # 30% and 83% positive
    probabilities = np.where(np.isnan(targets), 0.5, targets * 0.8 + 0.1)
    table = score(targets, probabilities, 0.5, ["rare", "common"])
    assert "baseline_f1" not in table and table.loc["rare", "always_present_f1"] == pytest.approx(0.6 / 1.3)
    assert table.loc["common", "always_present_f1"] == pytest.approx(2 * (10 / 12) / (1 + 10 / 12))
    assert table.loc["rare", "lift"] == pytest.approx(1 - 0.6 / 1.3)  # perfect F1 over a baseline that is not 0
