"""collect_rollout on scripted envs: what reaches the storage at episode ends.

Each scripted env cycles through episodes of fixed lengths that end by termination, by
truncation, or by both at once. Observations are codes ``10 * episode + t`` so the final
observation (``t`` = the length) and the next episode's reset observation (``t`` = 0)
differ. The policy's base is a step counter: its hidden state counts the steps since the
episode started, and V = 100 * state + code, so a bootstrap computed from the wrong
observation or with the wrong hidden state gives a different number.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.model import Policy
from a2c_ppo.rollout import collect_rollout
from a2c_ppo.storage import RolloutStorage

# per env: the (length, how it ends) of its episodes, repeated
SCHEDULES = [
    [(3, "terminated")],
    [(2, "truncated")],
    [(4, "truncated"), (1, "terminated")],
    [(3, "both")],  # terminated and truncated at once: a termination
]
T = 8


class ScriptedEnv(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, schedule: list[tuple[int, str]]) -> None:
        self.schedule = schedule
        self.episode, self.t = -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([10.0 * self.episode + self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        length, end = self.schedule[self.episode % len(self.schedule)]
        done = self.t == length
        terminated = done and end in ("terminated", "both")
        truncated = done and end in ("truncated", "both")
        return self._obs(), 1.0, terminated, truncated, {}


class StepCounterBase(nn.Module):
    """Hidden state: steps since the episode started (masks reset it); V = 100 * state + obs."""

    is_recurrent = True
    recurrent_hidden_state_size = 1
    output_size = 1

    def forward(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor):
        hxs = rnn_hxs * masks + 1.0
        return 100.0 * hxs + obs, torch.zeros_like(obs), hxs


def scripted_envs() -> TorchVecEnv:
    fns = [lambda s=s: gym.wrappers.RecordEpisodeStatistics(ScriptedEnv(s)) for s in SCHEDULES]
    return TorchVecEnv(gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP))


def expected_steps(schedule: list[tuple[int, str]]) -> list[dict]:
    """Per step of one env: the obs code before it, V(obs) the policy acts with, how an
    episode ended on it (None: it goes on), that episode's length and V(final_obs)."""
    steps: list[dict] = []
    episode = 0
    while len(steps) < T:
        length, end = schedule[episode % len(schedule)]
        for t in range(length):
            code = 10.0 * episode + t
            last = t == length - 1
            steps.append(
                {
                    "code": code,
                    "value": 100.0 * (t + 1) + code,  # the counter includes this step
                    "end": end if last else None,
                    "length": length,
                    # the counter after the last step is `length`; one more step on final_obs
                    "bootstrap": 100.0 * (length + 1) + 10.0 * episode + length,
                }
            )
        episode += 1
    return steps[:T]


def run(proper_time_limits: bool) -> tuple[RolloutStorage, list[tuple[float, int]]]:
    envs = scripted_envs()
    policy = Policy(ScriptedEnv.observation_space, ScriptedEnv.action_space, base=StepCounterBase())
    storage = RolloutStorage(T, len(SCHEDULES), (1,), 1, torch.long, recurrent_hidden_state_size=1)
    storage.obs[0].copy_(envs.reset(seed=0))
    episodes = collect_rollout(policy, envs, storage, proper_time_limits)
    envs.close()
    return storage, episodes


def test_truncated_steps_store_v_of_final_obs_with_the_step_hidden_state():
    storage, episodes = run(proper_time_limits=True)
    expected_episodes = []
    for n, schedule in enumerate(SCHEDULES):
        for t, step in enumerate(expected_steps(schedule)):
            where, end = f"env {n} step {t}", step["end"]
            assert storage.obs[t, n, 0].item() == step["code"], where
            assert storage.value_preds[t, n, 0].item() == step["value"], where
            assert storage.truncated[t, n, 0].item() == (end == "truncated"), where
            assert storage.terminated[t, n, 0].item() == (end in ("terminated", "both")), where
            assert storage.masks[t + 1, n, 0].item() == (0.0 if end else 1.0), where
            # only truncated steps bootstrap: V(final_obs) with the state after the step
            assert storage.bootstrap_values[t, n, 0].item() == (step["bootstrap"] if end == "truncated" else 0.0), where
            if end:
                expected_episodes.append((float(step["length"]), step["length"]))  # reward 1 per step
    assert sorted(episodes) == sorted(expected_episodes)


def test_without_proper_time_limits_truncation_counts_as_termination():
    storage, _ = run(proper_time_limits=False)
    for n, schedule in enumerate(SCHEDULES):
        ends = [step["end"] for step in expected_steps(schedule)]
        assert storage.terminated[:, n, 0].tolist() == [end is not None for end in ends]
    assert not storage.truncated.any() and not storage.bootstrap_values.any()
