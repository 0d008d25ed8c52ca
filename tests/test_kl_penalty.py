"""The KL-penalty PPO: closed-form KLs, the loss and the beta schedule by hand, the fast path
stepping aside, and an exact resume with beta in the checkpoint."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Normal, kl_divergence

from a2c_ppo.algo import PPO
from a2c_ppo.algo.ppo import AutogradGradient, kl_penalty_losses
from a2c_ppo.arguments import parse_args
from a2c_ppo.builders import make_agent, policy_for
from a2c_ppo.distributions import Bernoulli, Categorical, DiagNormal, MultiCategorical
from a2c_ppo.storage import Minibatch
from tests.helpers import BOX_OBS, assert_exact_resume, rollout_from_policy


def test_closed_form_kls_equal_torch_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    expected = kl_divergence(TorchCategorical(logits=a), TorchCategorical(logits=b))
    torch.testing.assert_close(Categorical(b).kl_from(Categorical(a).params()), expected)
    mean_a, mean_b, log_a, log_b = (torch.randn(6, 3, generator=g) for _ in range(4))
    expected = kl_divergence(Normal(mean_a, log_a.exp()), Normal(mean_b, log_b.exp())).sum(-1)
    torch.testing.assert_close(DiagNormal(mean_b, log_b).kl_from(DiagNormal(mean_a, log_a).params()), expected)
    expected = kl_divergence(TorchBernoulli(logits=a), TorchBernoulli(logits=b)).sum(-1)
    torch.testing.assert_close(Bernoulli(b).kl_from(Bernoulli(a).params()), expected)
    nvec = [3, 1]  # the product of independent categoricals: the sum of their KLs
    parts = zip(a.split(nvec, -1), b.split(nvec, -1))
    expected = sum(kl_divergence(TorchCategorical(logits=x), TorchCategorical(logits=y)) for x, y in parts)
    torch.testing.assert_close(MultiCategorical(b, nvec).kl_from(MultiCategorical(a, nvec).params()), expected)


def test_a_masked_class_adds_nothing_to_the_kl():
    mask = torch.tensor([[True, False, True]])
    old, new = torch.tensor([[0.5, 3.0, -1.0]]), torch.tensor([[-0.3, -2.0, 0.4]])
    from a2c_ppo.distributions import masked_logits

    kl = Categorical(masked_logits(new, mask)).kl_from(Categorical(masked_logits(old, mask)).params())
    p, q = torch.softmax(old[:, [0, 2]], -1), torch.softmax(new[:, [0, 2]], -1)
    torch.testing.assert_close(kl, (p * (p.log() - q.log())).sum(-1))


def test_the_kl_penalty_loss_by_hand():
    old_logits, new_logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]]), torch.tensor([[0.5, 0.5], [1.0, 1.0]])
    old, new = Categorical(old_logits), Categorical(new_logits)
    actions = torch.tensor([[1], [0]])
    batch = Minibatch(
        obs=torch.zeros(2, 1), recurrent_hidden_states=torch.zeros(2, 1), actions=actions,
        value_preds=torch.zeros(2, 1), returns=torch.tensor([[1.0], [3.0]]), masks=torch.ones(2, 1),
        old_action_log_probs=old.log_probs(actions), advantages=torch.tensor([[2.0], [-1.0]]),
        old_dist_params=old.params(),
    )  # fmt: skip
    values = torch.tensor([[0.0], [1.0]])
    losses = kl_penalty_losses(batch, values, new.log_probs(actions), beta=0.7, clip_param=0.2,
                               clip_value_loss=False, kl=new.kl_from(old.params()))  # fmt: skip
    p_old, p_new = torch.softmax(old_logits, -1), torch.softmax(new_logits, -1)
    ratio = torch.tensor([p_new[0, 1] / p_old[0, 1], p_new[1, 0] / p_old[1, 0]])
    kl = (p_old * (p_old.log() - p_new.log())).sum(-1).mean()
    expected = -(ratio * torch.tensor([2.0, -1.0])).mean() + 0.7 * kl
    torch.testing.assert_close(losses["policy_loss"], expected)
    torch.testing.assert_close(losses["kl"], kl)
    torch.testing.assert_close(losses["value_loss"], torch.tensor(0.5 * (1.0 + 4.0) / 2))


@pytest.mark.parametrize(
    "kl, target, expected",
    [(0.001, 0.01, 0.5), (0.0068, 0.01, 1.0), (0.0066, 0.01, 0.5), (0.014, 0.01, 1.0), (0.016, 0.01, 2.0),
     (0.5, 0.0, 1.0), (0.0, 0.0, 1.0)],
)  # fmt: skip
def test_the_beta_schedule_on_both_sides_of_the_band(kl, target, expected):
    agent = PPO(make_policy(), clip_param=0.2, ppo_epoch=1, num_mini_batch=1, value_loss_coef=0.5,
                entropy_coef=0.0, lr=1e-3, variant="kl-penalty", kl_coef=1.0, kl_target=target)  # fmt: skip
    agent._adapt_kl_coef(kl)
    assert agent.kl_coef == expected


@pytest.mark.parametrize(
    "start, kl, expected",
    [(1e-6, 0.001, 1e-6), (1.5e-6, 0.001, 1e-6), (1e6, 0.5, 1e6), (6e5, 0.5, 1e6), (0.0, 0.5, 1e-6),
     (1e-8, 0.001, 1e-8), (1e-8, 0.5, 1e-6), (1e7, 0.5, 1e7), (1e7, 0.001, 5e6)],
)  # fmt: skip
def test_beta_stays_where_it_can_come_back_from(start, kl, expected):
    """Halved ~1,075 times (a policy that stopped moving) beta underflowed to 0.0, and doubling 0
    never brought it back; ``--kl-coef 0`` with a target never adapted at all. A start outside
    the range is moved only toward it."""
    agent = PPO(make_policy(), clip_param=0.2, ppo_epoch=1, num_mini_batch=1, value_loss_coef=0.5,
                entropy_coef=0.0, lr=1e-3, variant="kl-penalty", kl_coef=start, kl_target=0.01)  # fmt: skip
    agent._adapt_kl_coef(kl)
    assert agent.kl_coef == expected


def test_a_hand_gradient_with_the_kl_penalty_is_refused():
    """The hand-written gradient is the clip objective's; main.py pairs the penalty with autograd."""
    from a2c_ppo.algo.hand_gradient import HandGradient
    from a2c_ppo.fastpath import fast_mlp

    policy = make_policy()
    parts = fast_mlp(policy)
    assert parts is not None
    with pytest.raises(ValueError, match="the KL penalty's gradient comes from autograd"):
        PPO(policy, clip_param=0.2, ppo_epoch=1, num_mini_batch=1, value_loss_coef=0.5, entropy_coef=0.0, lr=1e-3,
            variant="kl-penalty", gradient=HandGradient(parts))  # fmt: skip


def make_policy():
    torch.manual_seed(0)
    from a2c_ppo.model import Policy

    return Policy(BOX_OBS, gym.spaces.Discrete(3))


@pytest.mark.parametrize("recurrent", [False, True])
def test_an_update_starts_at_kl_zero_and_logs_beta(recurrent):
    config = parse_args(["--ppo-variant", "kl-penalty", "--num-processes", "4", "--num-steps", "8"]
                        + (["--recurrent-policy"] if recurrent else []))  # fmt: skip
    policy = policy_for(config, BOX_OBS, gym.spaces.Discrete(3))
    agent = make_agent(config, policy)
    assert isinstance(agent.gradient, AutogradGradient)  # the fast path steps aside for the penalty
    rollouts = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3), T=8, N=4)
    first: list[torch.Tensor] = []
    original = agent.losses

    def spy(batch):
        losses = original(batch)
        first.append(losses["kl"].detach())
        return losses

    agent.losses = spy  # type: ignore[method-assign]
    metrics = agent.update(rollouts)
    assert abs(first[0].item()) < 1e-6  # the rollout policy's distributions, exactly
    assert metrics["kl_coef"] == 1.0 and metrics["kl"] > 0 and np.isfinite(metrics["kl"])


def test_beta_is_in_the_checkpoint_and_the_resume_is_exact(tmp_path):
    flags = ["--ppo-variant", "kl-penalty", "--kl-target", "0.001", "--num-processes", "2", "--num-steps", "16",
             "--no-use-linear-lr-decay", "--save-interval", "1", "--vec-env", "sync"]  # fmt: skip

    halfway = assert_exact_resume(tmp_path, flags, 320)
    assert halfway["algorithm"]["agent"]["kl_coef"] != 1.0  # adapted, and saved


def test_a_typed_kl_coef_sets_beta_on_a_resume_and_a_clipped_runs_checkpoint_holds_none(tmp_path):
    """Beta was restored from the checkpoint over a typed --kl-coef: a resume with --kl-coef kept
    the adapted beta, and a clipped run resumed with --ppo-variant kl-penalty --kl-coef 0.25 took
    the 1.0 its checkpoint carried (a beta it never used). Fixed betas (--kl-target 0) show it."""
    from a2c_ppo.api import train
    from a2c_ppo.checkpoint import load_checkpoint

    run = dict(num_processes=2, num_steps=16, vec_env="sync", use_linear_lr_decay=False, overlap="off",
               save_dir=str(tmp_path / "models"))  # fmt: skip

    def resumed_beta(checkpoint: str, folder: str, **typed) -> float:
        used: list[float] = []  # the beta the resumed update trained with
        result = train(resume=checkpoint, num_env_steps=96, log_dir=str(tmp_path / folder),
                       save_dir=str(tmp_path / "models"), callbacks=lambda info: used.append(info.metrics["kl_coef"]),
                       **typed)  # fmt: skip
        beta = load_checkpoint(result.checkpoint)["algorithm"]["agent"]["kl_coef"]
        assert used == [beta]
        return beta

    clipped = train("CartPole-v1", num_env_steps=64, log_dir=str(tmp_path / "clip"), **run).checkpoint
    assert load_checkpoint(clipped)["algorithm"]["agent"] == {}
    assert resumed_beta(clipped, "to-kl", ppo_variant="kl-penalty", kl_coef=0.25, kl_target=0.0) == 0.25
    older = torch.load(clipped, weights_only=True)  # as a clipped run's checkpoint was: an unused beta in it
    older["algorithm"]["agent"] = {"kl_coef": 1.0}
    torch.save(older, tmp_path / "older.pt")
    assert resumed_beta(str(tmp_path / "older.pt"), "older", ppo_variant="kl-penalty", kl_coef=0.25,
                        kl_target=0.0) == 0.25  # fmt: skip
    penalised = train("CartPole-v1", num_env_steps=64, log_dir=str(tmp_path / "kl"), ppo_variant="kl-penalty",
                      kl_coef=2.0, kl_target=0.0, **run).checkpoint  # fmt: skip
    assert load_checkpoint(penalised)["algorithm"]["agent"] == {"kl_coef": 2.0}
    assert resumed_beta(penalised, "typed", kl_coef=0.5) == 0.5
    assert resumed_beta(penalised, "kept") == 2.0  # untyped: the checkpoint's
