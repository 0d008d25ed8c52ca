"""The discriminator's input: (observation, action) rows made into pairs, and DAC's absorbing state.

Shapes: B rows, D observation width, A stored action width, A' encoded action width
(``encoded_action_dim``), F the pair width. A pair is ``[obs, encode_actions(action)]``
(F = D + A'), or with absorbing states ``[obs, i, encode_actions(action)]`` (F = D + 1 + A')
where the indicator i is 0 for an env step and 1 for the absorbing state. The absorbing state
(Kostrikov et al. 2019, "Discriminator-Actor-Critic", sec. 4.2) is the one state every
terminated episode moves to and stays in; its pair is all zeros but for i = 1 (the DAC
paper's zero observation and zero action).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def encoded_action_dim(action_space_desc: dict[str, Any]) -> int:
    """A', the width of ``encode_actions``' output for a space description (``describe_space``)."""
    kind = action_space_desc["type"]
    if kind == "Discrete":
        return int(action_space_desc["n"])
    if kind == "MultiDiscrete":
        return int(sum(action_space_desc["nvec"]))
    return int(torch.Size(action_space_desc["shape"]).numel())


def encode_actions(actions: torch.Tensor, action_space_desc: dict[str, Any]) -> torch.Tensor:
    """Actions as stored (B, A) -> float32 (B, A'): Discrete and MultiDiscrete one-hot (per
    column, offset by the space's ``start``), Box and MultiBinary as they are.

    One-hot codes keep the discriminator from reading an order or distance into class ids.
    """
    kind = action_space_desc["type"]
    rows = len(actions)
    if kind == "Discrete":
        index = actions.reshape(rows).long() - action_space_desc["start"]
        return F.one_hot(index, action_space_desc["n"]).float()
    if kind == "MultiDiscrete":
        index = actions.reshape(rows, -1).long() - torch.tensor(action_space_desc["start"], device=actions.device)
        return torch.cat([F.one_hot(index[:, i], n) for i, n in enumerate(action_space_desc["nvec"])], 1).float()
    return actions.reshape(rows, -1).float()


def as_stored_actions(actions: torch.Tensor, action_space_desc: dict[str, Any]) -> torch.Tensor:
    """The policy's actions (B, A), as the rollout keeps them, -> as the env took them and an
    expert file stores them: discrete ids shifted by the space's ``start``, Box actions
    clipped to its bounds (the env's ClipAction). Otherwise a sampled action outside the
    bounds would tell the discriminator the policy's pairs from the expert's."""
    kind = action_space_desc["type"]
    if kind in ("Discrete", "MultiDiscrete"):
        start = torch.tensor(action_space_desc["start"], dtype=actions.dtype, device=actions.device)
        return actions + start.reshape(-1)
    if kind == "Box" and "low" in action_space_desc:
        bounds = [
            torch.tensor([float(v) for v in action_space_desc[key]], dtype=actions.dtype, device=actions.device)
            for key in ("low", "high")
        ]
        return torch.maximum(torch.minimum(actions, bounds[1]), bounds[0])
    return actions


class PairLayout:
    """Joins observations and encoded actions into pairs (module docstring), with or without
    the absorbing-state indicator column."""

    def __init__(self, obs_dim: int, action_space_desc: dict[str, Any], with_absorbing: bool) -> None:
        self.obs_dim = obs_dim
        self.with_absorbing = with_absorbing
        self.width = obs_dim + int(with_absorbing) + encoded_action_dim(action_space_desc)

    def join(
        self, obs: torch.Tensor, encoded: torch.Tensor, absorbing_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """obs (B, D) and encoded actions (B, A') -> float32 pairs (B, F). ``absorbing_mask``
        (B, 1) float, 1 for the rows that stand for the absorbing state (their obs and action
        are zeroed: an expert's zero rows come out of observation normalisation non-zero);
        None: none."""
        if not self.with_absorbing:
            return torch.cat([obs, encoded], 1)
        if absorbing_mask is None:
            return torch.cat([obs, obs.new_zeros(len(obs), 1), encoded], 1)
        real = 1.0 - absorbing_mask
        return torch.cat([obs * real, absorbing_mask, encoded * real], 1)

    def absorbing_pairs(self, count: int, device: torch.device) -> torch.Tensor:
        """``count`` copies (count, F) of the absorbing state's pair."""
        pairs = torch.zeros(count, self.width, device=device)
        pairs[:, self.obs_dim] = 1.0
        return pairs
