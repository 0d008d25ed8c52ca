"""collect_rollout, plain and overlapped: same storage for the same actions, bootstraps by hand."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics

from a2c_ppo.builders import policy_step_timer
from a2c_ppo.distributions import action_shape
from a2c_ppo.envs import make_vec_envs
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.model import Policy
from a2c_ppo.rollout import collect_rollout
from a2c_ppo.sde import make_sde_head
from a2c_ppo.storage import RolloutStorage
from tests.envs_for_rollout import HalvesVecEnv, ScriptedEnv

FIELDS = (
    "obs",
    "recurrent_hidden_states",
    "masks",
    "value_preds",
    "actions",
    "action_log_probs",
    "rewards",
    "terminated",
    "truncated",
    "bootstrap_values",
)


class CountingPolicy(nn.Module):
    """A deterministic stand-in for Policy whose hidden state counts: h' = h * mask + obs[0]
    (the sum of ``t`` over the episode so far). V(obs, h, mask) = sum(obs) + h * mask + obs[0];
    the action is 1 where the last observation entry is positive. Element-wise only, so any
    batch split gives the same numbers."""

    is_recurrent = True
    recurrent_hidden_state_size = 1

    def _hidden(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return rnn_hxs * masks + obs[:, :1].float()

    def get_value(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return obs.float().sum(1, keepdim=True) + self._hidden(obs, rnn_hxs, masks)

    def act(self, obs, rnn_hxs, masks, deterministic=False):
        hidden = self._hidden(obs, rnn_hxs, masks)
        action = (obs[:, -1:] > 0).long()
        return self.get_value(obs, rnn_hxs, masks), action, -obs[:, :1].float(), hidden


def scripted_fns(n: int, action_space: gym.Space | None = None) -> list:
    return [lambda i=i: RecordEpisodeStatistics(ScriptedEnv(i, action_space)) for i in range(n)]


def make_envs(n: int, overlap: bool, action_space: gym.Space | None = None) -> TorchVecEnv:
    fns = scripted_fns(n, action_space)
    vec = HalvesVecEnv(fns) if overlap else SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    envs = TorchVecEnv(vec)
    assert envs.overlap == overlap
    return envs


def run(
    policy,
    envs: TorchVecEnv,
    T: int,
    proper_time_limits: bool = True,
    seed: int = 3,
    updates: int = 2,
    obs_dim: int = 3,
    close: bool = True,
    fast: bool = True,
):
    """``updates`` rollouts of T steps (the storage carried over as in training); returns the
    per-rollout storage snapshots and episodes."""
    action_dim, action_dtype = action_shape(envs.action_space) if isinstance(policy, Policy) else (1, torch.long)
    rollouts = RolloutStorage(
        T, envs.num_envs, (obs_dim,), action_dim, action_dtype, policy.recurrent_hidden_state_size
    )
    rollouts.obs[0].copy_(envs.reset(seed=seed))
    snapshots, episodes = [], []
    for _ in range(updates):
        episodes.append(collect_rollout(policy, envs, rollouts, proper_time_limits, fast=fast))
        snapshots.append({name: getattr(rollouts, name).clone() for name in FIELDS})
        rollouts.after_update()
    if close:
        envs.close()
    return snapshots, episodes


@pytest.mark.parametrize("proper_time_limits", [True, False])
def test_overlapped_and_plain_rollouts_store_the_same_for_the_same_actions(proper_time_limits):
    plain = run(CountingPolicy(), make_envs(4, overlap=False), T=7, proper_time_limits=proper_time_limits)
    overlapped = run(CountingPolicy(), make_envs(4, overlap=True), T=7, proper_time_limits=proper_time_limits)
    assert plain[1] == overlapped[1] and any(plain[1])  # the same episodes, in the same order
    for snap_plain, snap_overlapped in zip(plain[0], overlapped[0]):
        for name in FIELDS:
            torch.testing.assert_close(snap_overlapped[name], snap_plain[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("overlap", [False, True])
def test_truncations_bootstrap_from_the_final_obs_with_the_carried_hidden_state(overlap):
    """Env 0 is truncated after 3 steps, env 1 terminated after 4, env 2 truncated after 5.

    Env 0's episode: h after acting on t = 0, 1, 2 is 0, 1, 3; its step 2 ends with final_obs
    [3, 1, noise], so the bootstrap is V = (3 + 1 + noise) + h * 1 + 3 = 10 + noise. Using the
    hidden state before that step (1) would give 8 + noise, a reset one 7 + noise, and the
    reset observation [0, 1, noise'] 1 + noise'."""
    [snap], _ = run(CountingPolicy(), make_envs(4, overlap), T=6, updates=1)
    noise0 = snap["obs"][0, 0, 2]
    assert snap["truncated"][2, 0] and not snap["terminated"][2, 0]
    torch.testing.assert_close(snap["bootstrap_values"][2, 0, 0], 10.0 + noise0)
    assert snap["masks"][3, 0] == 0 and snap["obs"][3, 0, 0] == 0  # the reset observation follows
    # Env 1 terminates at its step 3: no bootstrap.
    assert snap["terminated"][3, 1] and not snap["truncated"][3, 1] and snap["bootstrap_values"][3, 1] == 0
    # Env 2: h = 0, 1, 3, 6, 10 after t = 0..4; final_obs [5, 21, noise]: V = 26 + noise + 10 + 5.
    noise2 = snap["obs"][0, 2, 2]
    torch.testing.assert_close(snap["bootstrap_values"][4, 2, 0], 41.0 + noise2)
    # Only truncated steps carry a bootstrap value.
    assert not snap["bootstrap_values"][~snap["truncated"]].any()


def real_policy(recurrent: bool, action_space: gym.Space | None = None, sde: bool = False) -> Policy:
    action_space = gym.spaces.Discrete(2) if action_space is None else action_space
    obs_space = gym.spaces.Box(-100, 100, (3,), "float32")
    policy = Policy(obs_space, action_space, base_kwargs={"recurrent": recurrent, "hidden_size": 16})
    if sde:  # noise matrices redrawn every 2 steps: mid-rollout, between the halves' acts
        policy.add_module("dist", make_sde_head(action_space, policy.base.output_size, 0.0, 2))
    return policy


#: 4 or 5 envs x 6 dimensions: 24 or 30 normals at once are drawn by torch's vectorised kernel, a
#: half's 12 or 18 by the serial one or in another order, so drawing per half would change them
BOX = gym.spaces.Box(-1, 1, (6,), "float32")


@pytest.mark.parametrize(
    "action_space, fast, recurrent, sde",
    [
        # Box and MultiDiscrete tell per-half draws from per-step ones (torch's serial uniform
        # kernel gives the same numbers either way); the others check each half's rows.
        (gym.spaces.Discrete(3), True, False, False),  # numpy acting
        (gym.spaces.Discrete(3), False, True, False),
        (BOX, True, False, False),
        (BOX, False, False, False),
        (BOX, False, False, True),  # gSDE: no per-step draws, each half's noise matrices (noise_rows)
        (gym.spaces.MultiBinary(3), False, False, False),
        (gym.spaces.MultiDiscrete([2, 3]), False, True, False),
    ],
)
@pytest.mark.parametrize("num_envs", [4, 5])
def test_overlapped_and_plain_rollouts_of_a_stochastic_policy_agree_for_a_seed(
    action_space, fast, recurrent, sde, num_envs
):
    """The overlapped schedule acts on half of the envs at a time but takes each step's random
    numbers as the plain schedule draws them for all envs (draws.StepDraws): the same
    actions, and the same values up to the rounding of a matrix product over fewer rows."""
    results = []
    for overlap in (False, True):
        torch.manual_seed(0)
        policy = real_policy(recurrent, action_space, sde)
        results.append(run(policy, make_envs(num_envs, overlap, action_space), T=6, fast=fast))
    (plain, plain_episodes), (overlapped, overlapped_episodes) = results
    # float32 rounding: a few ulps of values up to ~50 (2e-6 on this CPU's kernels); a wrong draw is O(0.1)
    assert overlapped_episodes == [[(pytest.approx(ret, rel=1e-5), n) for ret, n in eps] for eps in plain_episodes]
    for snap_plain, snap_overlapped in zip(plain, overlapped):
        for name in FIELDS:
            torch.testing.assert_close(snap_overlapped[name], snap_plain[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("recurrent", [False, True])
def test_overlapped_rollouts_are_deterministic_for_a_seed(recurrent):
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        policy = real_policy(recurrent)
        results.append(run(policy, make_envs(4, overlap=True), T=5))
    for name in FIELDS:
        for a, b in zip(results[0][0], results[1][0]):
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_the_recurrent_state_of_each_half_follows_its_own_envs():
    """With a real GRU policy, overlapped: each env's stored hidden state at t + 1 is what the
    policy gives for that env alone from its state and mask at t (no mix-up between halves)."""
    torch.manual_seed(1)
    policy = real_policy(recurrent=True)
    [snap], _ = run(policy, make_envs(4, overlap=True), T=6, updates=1)
    with torch.no_grad():
        for t in range(6):
            for i in range(4):
                row = slice(i, i + 1)
                _, _, h = policy.base(
                    snap["obs"][t, row], snap["recurrent_hidden_states"][t, row], snap["masks"][t, row]
                )
                torch.testing.assert_close(h, snap["recurrent_hidden_states"][t + 1, row])


def test_policy_step_timer_draws_no_random_numbers():
    policy = real_policy(recurrent=False)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert policy_step_timer(policy)(8) > 0
    torch.testing.assert_close(torch.rand(3), expected)


def cartpole(overlap: str, **kwargs) -> TorchVecEnv:
    vec_env = "sync" if overlap == "off" else "subproc"
    return TorchVecEnv(make_vec_envs("CartPole-v1", 4, vec_env=vec_env, num_workers=2, overlap=overlap, **kwargs))


class ConstantPolicy(CountingPolicy):
    """Always action 0: the trajectories do not depend on how observations are normalised."""

    def act(self, obs, rnn_hxs, masks, deterministic=False):
        value, action, log_prob, hidden = super().act(obs, rnn_hxs, masks, deterministic)
        return value, torch.zeros_like(action), log_prob, hidden


def test_subprocess_envs_overlapped_store_what_sync_envs_store():
    envs = cartpole("on")
    assert envs.overlap and envs.envs.in_main == 0
    overlapped = run(ConstantPolicy(), envs, T=40, obs_dim=4)
    plain = run(ConstantPolicy(), cartpole("off"), T=40, obs_dim=4)
    assert plain[1] == overlapped[1] and any(plain[1])
    for snap_plain, snap_overlapped in zip(plain[0], overlapped[0]):
        for name in FIELDS:
            torch.testing.assert_close(snap_overlapped[name], snap_plain[name], rtol=0, atol=0, msg=name)


def test_vec_normalize_normalises_each_half_and_gathers_the_same_statistics():
    """Overlapped, each half's observations and returns enter the statistics as its step
    comes back; over a rollout they gather what the plain schedule gathers (the parallel
    merge is exact up to rounding), and each env's running return is the same."""
    norm = {"norm_obs": True, "norm_reward": True}
    overlapped_envs, plain_envs = cartpole("on", **norm), cartpole("off", **norm)
    run(ConstantPolicy(), overlapped_envs, T=30, obs_dim=4, close=False)
    run(ConstantPolicy(), plain_envs, T=30, obs_dim=4, close=False)
    a, b = overlapped_envs.envs, plain_envs.envs
    assert a.obs_rms.count == b.obs_rms.count and a.ret_rms.count == b.ret_rms.count
    np.testing.assert_allclose(a.obs_rms.mean, b.obs_rms.mean, rtol=1e-9)
    np.testing.assert_allclose(a.obs_rms.var, b.obs_rms.var, rtol=1e-9)
    np.testing.assert_allclose(a.ret_rms.var, b.ret_rms.var, rtol=1e-9)
    np.testing.assert_array_equal(a.state_dict()["returns"], b.state_dict()["returns"])
    overlapped_envs.close()
    plain_envs.close()
