"""PPO's clipped losses against hand computation, on both sides of the clip range.

At ratio 1 (the only point the other tests see) min and max of the two surrogates agree;
here each case is chosen so a swapped min/max, a flipped sign or a wrong clip changes the
answer. Clip range 0.2 throughout.
"""

import math

import pytest
import torch

from a2c_ppo.algo.ppo import ppo_losses, ratio_metrics
from a2c_ppo.storage import Minibatch

CLIP = 0.2


def batch_of(ratio, advantage, value_pred=0.0, ret=0.0) -> tuple[Minibatch, torch.Tensor]:
    """A minibatch of one sample per entry and the new log-probs giving ``ratio`` (requires grad)."""
    ratio, advantage = torch.tensor(ratio).reshape(-1, 1), torch.tensor(advantage).reshape(-1, 1)
    n = ratio.shape[0]
    old = torch.full((n, 1), -1.0)
    batch = Minibatch(
        obs=torch.zeros(n, 1),
        recurrent_hidden_states=torch.zeros(n, 1),
        actions=torch.zeros(n, 1),
        value_preds=torch.tensor(value_pred).reshape(-1, 1).expand(n, 1),
        returns=torch.tensor(ret).reshape(-1, 1).expand(n, 1),
        masks=torch.ones(n, 1),
        old_action_log_probs=old,
        advantages=advantage,
    )
    log_probs = (old + ratio.log()).requires_grad_()
    return batch, log_probs


# (ratio, advantage, policy loss = -min(r A, clip(r) A), d loss / d log_prob)
POLICY_CASES = {
    # r above 1 + eps, A > 0: the clipped surrogate 1.2 * 2 = 2.4 is the min; no gradient
    "above-positive": (1.5, 2.0, -2.4, 0.0),
    # r below 1 - eps, A > 0: r A = 1.0 is the min (no clip helps a worse action); gradient -r A
    "below-positive": (0.5, 2.0, -1.0, -1.0),
    # r above 1 + eps, A < 0: r A = -1.5 is the min; gradient -r A = 1.5
    "above-negative": (1.5, -1.0, 1.5, 1.5),
    # r below 1 - eps, A < 0: the clipped 0.8 * -1 = -0.8 is the min; no gradient
    "below-negative": (0.5, -1.0, 0.8, 0.0),
    # inside the range both surrogates agree: 1.1 * 2
    "inside": (1.1, 2.0, -2.2, -2.2),
}


@pytest.mark.parametrize("case", POLICY_CASES)
def test_policy_loss_and_its_gradient_on_each_side_of_the_clip(case):
    ratio, advantage, loss, grad = POLICY_CASES[case]
    batch, log_probs = batch_of([ratio], [advantage])
    losses = ppo_losses(batch, torch.zeros(1, 1), log_probs, CLIP, clip_value_loss=True)
    assert losses["policy_loss"].item() == pytest.approx(loss, abs=1e-6)
    losses["policy_loss"].backward()
    assert log_probs.grad.item() == pytest.approx(grad, abs=1e-6)
    assert ratio_metrics(losses["log_ratio"], CLIP)["clipfrac"].item() == (0.0 if case == "inside" else 1.0)


def test_batch_means_clip_fraction_and_k3_kl():
    ratios = [1.5, 0.5, 1.5, 0.5, 1.1]
    batch, log_probs = batch_of(ratios, [2.0, 2.0, -1.0, -1.0, 2.0])
    losses = ppo_losses(batch, torch.zeros(5, 1), log_probs, CLIP, clip_value_loss=False)
    # -(2.4 + 1.0 - 1.5 - 0.8 + 2.2) / 5
    assert losses["policy_loss"].item() == pytest.approx(-3.3 / 5, abs=1e-6)
    metrics = ratio_metrics(losses["log_ratio"], CLIP)
    assert metrics["clipfrac"].item() == pytest.approx(0.8)
    k3 = sum((r - 1.0) - math.log(r) for r in ratios) / 5  # 0.094535, 0.193147, ..., 0.0046898
    assert metrics["approx_kl"].item() == pytest.approx(k3, rel=1e-5)


# (new value V, old value V_old, return R, clipped value loss 0.5 max((V-R)^2, (V_clip-R)^2), unclipped)
VALUE_CASES = {
    # V moved up past V_old + 0.2 toward R: the clipped 1.2 is farther from R, 0.5 * 0.8^2 counts
    "moved-past-clip-toward-return": (1.5, 1.0, 2.0, 0.32, 0.125),
    # V moved down away from R: the unclipped error 1.5^2 is the larger one
    "moved-away-from-return": (0.5, 1.0, 2.0, 1.125, 1.125),
    # inside the range the two agree: 0.5 * 0.9^2
    "inside": (1.1, 1.0, 2.0, 0.405, 0.405),
    # V moved down past V_old - 0.2 toward R = 0: the clipped 0.8 counts
    "moved-down-toward-return": (0.5, 1.0, 0.0, 0.32, 0.125),
}


@pytest.mark.parametrize("case", VALUE_CASES)
def test_value_loss_clipped_and_unclipped(case):
    value, value_pred, ret, clipped, unclipped = VALUE_CASES[case]
    batch, log_probs = batch_of([1.0], [0.0], value_pred, ret)
    values = torch.tensor([[value]])
    assert ppo_losses(batch, values, log_probs, CLIP, True)["value_loss"].item() == pytest.approx(clipped)
    assert ppo_losses(batch, values, log_probs, CLIP, False)["value_loss"].item() == pytest.approx(unclipped)
