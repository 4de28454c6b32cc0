import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from aimonk.training.linear_probe import LinearProbe, choose_c

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


def problem(rng, n=240, features=12, attributes=3):
    x = rng.normal(size=(n, features)) * rng.uniform(0.01, 3, features) + rng.normal(size=features)
    truth = rng.normal(size=(features, attributes))
    scale = (x - x.mean(0)) / x.std(0)
    targets = (scale @ truth + rng.normal(0, 2, (n, attributes)) > [1.5, 0, -1]).astype(np.float32)
    targets[rng.random(targets.shape) < 0.1] = np.nan
    both = torch.from_numpy(np.stack([x, x + rng.normal(0, 0.01, x.shape)])).float()
    return both, targets


def test_the_probe_is_scikit_learns_balanced_logistic_regression_on_standardised_features(rng):
    features, targets = problem(rng)
    head = nn.Sequential(nn.Dropout(0.4), nn.Linear(12, 3))
    probe = LinearProbe(c=0.05, flip=False).fit(features, targets)
    assert probe.fit(features, targets) is probe  # scikit-learn's way
    probe.write_into(head)
    losses, chosen = probe.objective_, probe.c_
    assert chosen.tolist() == [0.05] * 3 and losses[-1] < losses[0]
    x = features[0].numpy().astype(np.float64)
    standard = (x - x.mean(0)) / x.std(0, ddof=1)
    head.eval()
    with torch.no_grad():
        ours = head(features[0]).numpy()
    for k in range(3):
        known = ~np.isnan(targets[:, k])
        reference = LogisticRegression(C=0.05, class_weight="balanced", tol=1e-8, max_iter=5000)
        reference.fit(standard[known], targets[known, k])
        # sklearn's balanced weights are n / (2 n_class): the same objective times the known count
        np.testing.assert_allclose(ours[:, k], reference.decision_function(standard), atol=2e-3)


def test_unknown_labels_do_not_move_the_probe(rng):
    features, targets = problem(rng)
    changed = targets.copy()
    unknown = np.isnan(targets[:, 1])
    heads = [nn.Sequential(nn.Linear(12, 3)) for _ in range(2)]
    LinearProbe(c=0.05, flip=True).fit(features, targets).write_into(heads[0])
    changed[unknown, 0] = np.nan  # hide attribute 0's labels: attribute 1's probe must not move, 0's must
    LinearProbe(c=0.05, flip=True).fit(features, changed).write_into(heads[1])
    np.testing.assert_allclose(heads[0][0].weight[1].detach(), heads[1][0].weight[1].detach(), atol=1e-3)
    assert not torch.allclose(heads[0][0].weight[0], heads[1][0].weight[0])


def test_c_is_chosen_per_attribute_from_the_grid(rng):
    features, targets = problem(rng)
    chosen = choose_c(features, targets, flip=False, folds=3, grid=(1e-4, 1e-1, 10.0))
    assert chosen.shape == (3,) and set(chosen) <= {1e-4, 1e-1, 10.0}
    assert (chosen > 1e-4).all()  # a useful signal is never best ignored


def test_the_default_reports_its_one_solve_as_a_solve_and_plots_its_out_of_fold_scores(demo_dir, tmp_path, capsys):
    import aimonk

    config = aimonk.preset("default", image_size=48, device="cpu", backbone="efficientnet_lite0")
    trained = aimonk.train(demo_dir, config, tmp_path)
    printed = capsys.readouterr().err  # the API shows its progress on stderr
    assert "linear probe solved (" in printed and "epoch" not in printed  # no 'epoch 1' for a closed-form solve
    assert trained.kept() == "the linear probe, solved in one pass"
    table = trained.learning_table()
    assert list(table.index) == [*trained.checkpoint.attributes, "macro"] and {"precision", "recall", "f1"} <= set(table)
    assert f"macro {table.loc['macro', 'f1']:.3f}" in printed  # the figure shows what the run printed
    assert (tmp_path / "out_of_fold.png").is_file() and not (tmp_path / "epoch_curves.png").exists()
