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
    table = compare_thresholds(targets, probabilities, [0.5, 0.5, 0.3], ["a", "b", "c"], majority=[1, 0, 0])
    assert table.loc["c", "f1@0.5"] == 0.0 and table.loc["c", "f1@stored"] == 1.0
    assert table.loc["a", "f1@stored"] == 1.0 and table["threshold"].tolist()[:3] == [0.5, 0.5, 0.3]
    assert table.loc["a", "baseline_f1"] == pytest.approx(2 * targets[:, 0].mean() / (1 + targets[:, 0].mean()))


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


def test_the_evaluate_api_takes_thresholds_as_one_number_a_list_or_text(trained_run, demo_dir):
    import aimonk

    out, _ = trained_run
    for given in (0.3, [0.3] * 4, "0.3", np.full(4, 0.3)):
        evaluation = aimonk.evaluate(demo_dir, out / "model.pt", subset="all", thresholds=given, device="cpu",
                                     progress=False)
        assert evaluation.table.loc["Attr1":"Attr4", "threshold"].tolist() == pytest.approx([0.3] * 4)
        assert evaluation.thresholds_source == "given by the caller"
