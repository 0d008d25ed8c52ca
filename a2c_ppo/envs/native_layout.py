"""A vector env of one's own whose observations need laying out (nested Dict or Tuple parts,
channels-last images), in the layout the framework trains on (``spaces.plan_observations``):
one flat Dict of channels-first parts, as single envs get from ``ObservationLayout``."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from a2c_ppo.spaces import ObservationPlan, apply_plan


class LaidOutVecEnv(VectorEnv):
    """``env`` with its observations, and the ``infos["final_obs"]`` of a same-step env, laid
    out by ``plan``; everything else passes through (autoreset mode, seeds, partial resets)."""

    def __init__(self, env: VectorEnv, plan: ObservationPlan) -> None:
        self.env, self.plan = env, plan
        self.num_envs = env.num_envs
        self.single_observation_space = plan.space
        self.observation_space = batch_space(plan.space, env.num_envs)
        self.single_action_space, self.action_space = env.single_action_space, env.action_space
        self.metadata, self.spec, self.render_mode = env.metadata, env.spec, env.render_mode

    @property
    def np_random_seed(self) -> Any:
        return self.env.np_random_seed

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, infos = self.env.reset(seed=seed, options=options)
        return apply_plan(self.plan, obs, batched=True), infos

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        if "final_obs" in infos:  # one observation per env that ended, as the env gives it
            final = np.full(len(infos["final_obs"]), None, dtype=object)
            for i, single in enumerate(infos["final_obs"]):
                final[i] = None if single is None else apply_plan(self.plan, single)
            infos = {**infos, "final_obs": final}
        return apply_plan(self.plan, obs, batched=True), rewards, terminated, truncated, infos

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return self.env.call(name, *args, **kwargs)  # type: ignore[attr-defined]

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.env.get_attr(name)  # type: ignore[attr-defined]

    def set_attr(self, name: str, values: Any) -> None:
        self.env.set_attr(name, values)  # type: ignore[attr-defined]

    def render(self) -> Any:
        return self.env.render()

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close(**kwargs)

    def __repr__(self) -> str:
        return f"{self.env!r} with its observations laid out as {self.plan.space}"
