"""A user's own base network and vector env factories, importable by reference (for
``--policy-base tests.custom_nets:SmallNet`` and ``--env-name tests.custom_nets:...``)."""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn as nn
from gymnasium.vector import AutoresetMode


class SmallNet(nn.Module):
    """A base: (observations, recurrent state, masks) -> (value, features, recurrent state)."""

    is_recurrent, recurrent_hidden_state_size = False, 1

    def __init__(self, observation_space: gym.Space, width: int = 16) -> None:
        super().__init__()
        self.output_size = width
        self.body = nn.Sequential(nn.Linear(observation_space.shape[0], width), nn.Tanh())
        self.value = nn.Linear(width, 1)

    def forward(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor):
        features = self.body(obs)
        return self.value(features), features, rnn_hxs


class DropoutNet(SmallNet):
    """SmallNet with dropout, which records the mode and batch size of every forward pass in
    ``calls`` (a class attribute a test clears)."""

    calls: list[tuple[bool, int]] = []

    def __init__(self, observation_space: gym.Space, width: int = 16) -> None:
        super().__init__(observation_space, width)
        self.dropout = nn.Dropout(0.5)

    def forward(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor):
        DropoutNet.calls.append((self.training, obs.size(0)))
        features = self.dropout(self.body(obs))
        return self.value(features), features, rnn_hxs


class ZeroRowsNet(SmallNet):
    """SmallNet with running statistics of its own: batch norm, and the buffer ``zero_rows``,
    which counts the all-zero observations its train-mode passes see (CartPole never gives one;
    made-up probes do)."""

    def __init__(self, observation_space: gym.Space, width: int = 16) -> None:
        super().__init__(observation_space, width)
        self.norm = nn.BatchNorm1d(width)
        self.register_buffer("zero_rows", torch.zeros((), dtype=torch.long))

    def forward(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor):
        if self.training:
            self.zero_rows += (obs == 0).all(dim=1).sum()
        features = self.norm(self.body(obs))
        return self.value(features), features, rnn_hxs


class SmallGRU(nn.Module):
    """A recurrent base: B rows with B states when acting; T x N rows (time-major) with the N
    states the sequences start from in an update, a mask of 0 where an episode starts."""

    is_recurrent = True

    def __init__(self, observation_space: gym.Space, width: int = 8) -> None:
        super().__init__()
        self.output_size = self.recurrent_hidden_state_size = width
        self.cell = nn.GRUCell(observation_space.shape[0], width)
        self.value = nn.Linear(width, 1)

    def forward(self, obs: torch.Tensor, rnn_hxs: torch.Tensor, masks: torch.Tensor):
        steps, envs = obs.size(0) // rnn_hxs.size(0), rnn_hxs.size(0)
        x, m = obs.view(steps, envs, -1), masks.view(steps, envs, 1)
        outputs = []
        for t in range(steps):
            rnn_hxs = self.cell(x[t], rnn_hxs * m[t])
            outputs.append(rnn_hxs)
        features = torch.cat(outputs)
        return self.value(features), features, rnn_hxs


def cartpole_next_step() -> gym.vector.VectorEnv:
    """gymnasium's own vectorised CartPole: next-step autoreset."""
    return gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point")


def cartpole_same_step() -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 4, autoreset_mode=AutoresetMode.SAME_STEP)


def cartpole_disabled() -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 4, autoreset_mode=AutoresetMode.DISABLED)
