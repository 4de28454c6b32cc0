"""Label issues by confident learning on out-of-fold predictions, and confident NA suggestions."""
import numpy as np

from aimonk.evaluation.label_issues import confident_label_issues, label_issues, na_suggestions


def test_flipped_labels_are_found_and_ranked_first():
    rng = np.random.default_rng(0)
    truth = (rng.random(400) < 0.3).astype(float)
    probability = np.where(truth == 1, rng.uniform(0.6, 0.9, 400), rng.uniform(0.1, 0.4, 400))
    flipped = np.array([5, 17, 99, 250])
    probability[flipped] = np.where(truth[flipped] == 1, [0.97, 0.95, 0.99, 0.96], [0.03, 0.05, 0.01, 0.02])
    given = truth.copy()
    given[flipped] = 1 - given[flipped]
    found = confident_label_issues(given, probability)
    assert set(found) == set(flipped)  # nothing else is confidently contradicted
    self_confidence = np.where(given[found] == 1, probability[found], 1 - probability[found])
    assert (np.diff(self_confidence) >= 0).all()


def test_one_known_class_gives_no_issue():
    assert len(confident_label_issues(np.ones(5), np.full(5, 0.1))) == 0


def test_tables_name_the_file_attribute_and_suggestion():
    targets = np.array([[1, np.nan], [0, 1], [1, 0], [0, np.nan], [1, 1], [0, 0]], dtype=float)
    probabilities = np.array([[0.9, 0.99], [0.1, 0.8], [0.05, 0.2], [0.2, 0.5], [0.8, 0.9], [0.15, 0.1]])
    names = [f"{i}.jpg" for i in range(6)]
    issues = label_issues(targets, probabilities, names, ["a", "b"])
    assert issues.to_dict("records")[0] == {"attribute": "a", "filename": "2.jpg", "given": 1, "suggested": 0,
                                            "probability": 0.05, "self_confidence": 0.05, "rank": 1}
    suggestions = na_suggestions(targets, probabilities, names, ["a", "b"])
    assert suggestions[["attribute", "filename", "suggested"]].values.tolist() == [["b", "0.jpg", 1]]


def test_gallery_rows_follow_the_ranking():
    from aimonk.evaluation.label_issues import top_issue_rows

    targets = np.array([[1], [1], [1], [0], [0], [0]], dtype=float)
    probabilities = np.array([[0.9], [0.02], [0.1], [0.1], [0.95], [0.2]])
    names = [f"{i}.jpg" for i in range(6)]
    issues = label_issues(targets, probabilities, names, ["a"])
    assert top_issue_rows(issues, names, ["a"], 2) == {0: [1, 4]}
