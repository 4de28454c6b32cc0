import math

import numpy as np
import pytest
import torch

from aimonk.training.losses import MaskedBCEWithLogits, MaskedFocalLoss, make_loss, masked_mean, positive_weights

NAN = float("nan")


def bce(x, y, w=1.0):
    p = 1 / (1 + math.exp(-x))
    return -(w * y * math.log(p) + (1 - y) * math.log(1 - p))


def test_the_masked_mean_counts_only_where_the_mask_holds():
    loss = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    mask = torch.tensor([[True, False], [True, False], [False, False]])
    assert masked_mean(loss, mask).item() == 2.0  # (1 + 3) / 2
    assert masked_mean(loss, mask, 0).tolist() == [2.0, 0.0]  # nothing known in the second column: 0
    assert masked_mean(loss, mask, 1).tolist() == [1.0, 3.0, 0.0]


def test_masked_bce_matches_hand_computation():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    targets = torch.tensor([[1.0, NAN], [0.0, 1.0]])
    loss = MaskedBCEWithLogits(torch.tensor([3.0, 0.5]))(logits, targets)
    expected = (bce(2.0, 1, 3.0) + bce(0.5, 0) + bce(3.0, 1, 0.5)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss_fn", [MaskedBCEWithLogits(torch.tensor([2.0, 2.0])),
                                     MaskedFocalLoss(2.0, torch.tensor([2.0, 2.0]))])
def test_na_entries_get_no_gradient(loss_fn):
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]], requires_grad=True)
    targets = torch.tensor([[1.0, NAN], [NAN, 0.0]])
    loss_fn(logits, targets).backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0
    assert logits.grad[0, 0] != 0 and logits.grad[1, 1] != 0
    assert torch.isfinite(logits.grad).all()


def test_all_na_batch_gives_zero_loss_not_nan():
    loss = MaskedBCEWithLogits()(torch.zeros(2, 3), torch.full((2, 3), NAN))
    assert loss.item() == 0.0


def test_focal_matches_hand_computation_and_reduces_to_bce():
    logits, targets = torch.tensor([[1.5, -0.5]]), torch.tensor([[1.0, 1.0]])
    p = torch.sigmoid(logits)[0]
    expected = ((1 - p[0]) ** 2 * bce(1.5, 1) + (1 - p[1]) ** 2 * bce(-0.5, 1)) / 2
    assert MaskedFocalLoss(2.0)(logits, targets).item() == pytest.approx(float(expected), rel=1e-5)
    assert MaskedFocalLoss(0.0)(logits, targets).item() == pytest.approx(
        MaskedBCEWithLogits()(logits, targets).item(), rel=1e-6)


def test_pos_weight_is_negatives_over_positives_on_known_labels():
    values = np.array([[1, 0], [0, 0], [0, 1], [np.nan, 0], [0, np.nan]], dtype=np.float32)
    np.testing.assert_allclose(positive_weights(values).numpy(), [3.0, 3.0])


def test_pos_weight_guarded_without_positives():
    values = np.array([[0, 1], [0, 0]], dtype=np.float32)
    with pytest.warns(UserWarning, match="no positives or no negatives"):
        weights = positive_weights(values, ["rare", "other"])
    assert weights.tolist() == [1.0, 1.0]


def test_make_loss_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge", np.zeros((2, 1)))


def test_asymmetric_loss_reduces_to_bce_and_ignores_easy_negatives():
    from aimonk.training.losses import MaskedAsymmetricLoss

    logits = torch.tensor([[1.5, -0.5, 0.3], [-4.0, 2.0, 0.7]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, NAN]])
    plain = MaskedAsymmetricLoss(gamma_positive=0.0, gamma_negative=0.0, clip=0.0)
    assert plain(logits, targets).item() == pytest.approx(MaskedBCEWithLogits()(logits, targets).item(), rel=1e-5)
    # p = sigmoid(-4) = 0.018 < clip: that negative costs nothing and gets no gradient
    easy = torch.tensor([[-4.0]], requires_grad=True)
    loss = MaskedAsymmetricLoss(clip=0.05)(easy, torch.tensor([[0.0]]))
    loss.backward()
    assert loss.item() == 0.0 and easy.grad.item() == 0.0
    # a hard negative (p = 0.73) by hand: p_m = p - 0.05, p_m^4 * -log(1 - p_m)
    p = torch.sigmoid(torch.tensor(1.0)) - 0.05
    expected = p ** 4 * -torch.log(1 - p)
    assert MaskedAsymmetricLoss()(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item() == pytest.approx(
        expected.item(), rel=1e-5)
    assert isinstance(make_loss("asymmetric", np.array([[1.0], [0.0]])), MaskedAsymmetricLoss)
