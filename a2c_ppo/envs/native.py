"""A user's own gymnasium ``VectorEnv`` as the framework's same-step-autoreset vector env.

:class:`NativeVecEnv` accepts a vector env in any of gymnasium's three autoreset modes
(``metadata["autoreset_mode"]``) and returns results in the framework's contract: same-step
autoreset, ``infos["final_obs"]`` / ``infos["final_info"]`` with ``_``-masks laid out as
``SyncVectorEnv(..., autoreset_mode=AutoresetMode.SAME_STEP)`` lays them out, and episode
statistics ``final_info["episode"] = {"r", "l", "t"}`` for every finished episode.

* ``SAME_STEP``: passed through. Every env that ended must have its ``final_obs`` (else a
  an EnvWorkerError names it).
* ``DISABLED``: the adapter resets the envs that ended, right after the step, with
  ``env.reset(options={"reset_mask": ended})``: exact same-step semantics.
* ``NEXT_STEP`` (e.g. gymnasium's ``CartPoleVectorEnv``, ``SyncVectorEnv`` by default): the env
  resets an env on the step *after* its episode ended, ignoring that step's action. Without a
  partial reset an exact same-step autoreset is impossible, so:

  - on the ending step the end is reported as usual (``terminated`` / ``truncated`` from the
    env); ``final_obs[i]`` is that step's observation, which also stays in ``obs[i]``, and
    ``final_info`` carries the episode statistics;
  - on the next step (the env's reset step) row ``i`` is a **dummy transition**:
    ``infos["reset_step"][i]`` is True (``infos["_reset_step"]`` is the same mask; both keys are
    absent on steps without dummy rows), ``obs[i]`` is the reset observation, the reward is 0,
    ``terminated[i]`` is True and ``truncated[i]`` False, and there is no ``final_obs`` for it.
    ``terminated`` keeps values from flowing across the row and restarts a recurrent state on
    the reset observation. **The learner must not train on rows flagged ``reset_step``** (the
    framework excludes them): they are not environment transitions, their reward is 0 and they
    are not episodes (they add neither length nor return to the statistics).
    :attr:`NativeVecEnv.dummy_steps` is True for such envs only.

Episode statistics: an ``episode`` entry the env itself puts in an ending step's info (a
``RecordEpisodeStatistics`` inside each sub-env) is passed through; for the other envs the
adapter sums the rewards it sees. Those are the true returns only if the vector env returns
raw rewards: an env that clips or scales rewards inside should record its statistics below
that transformation itself.
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from a2c_ppo.envs.finite import check_masks
from a2c_ppo.envs.native_checks import (
    autoreset_mode,
    check_reset,
    check_step,
    check_vector_env,
    guarded,
    malformed,
    obs_problem,
)
from a2c_ppo.envs.native_layout import LaidOutVecEnv
from a2c_ppo.envs.subproc.protocol import EnvWorkerError
from a2c_ppo.envs.timeouts import close_within
from a2c_ppo.spaces import ACTION_MASK, mask_part_splits

__all__ = ["NativeVecEnv", "check_vector_env", "EpisodeTracker", "info_rows", "merge_infos"]


class EpisodeTracker:
    """Return, length and start time of each env's running episode, as ``RecordEpisodeStatistics``
    counts them; :meth:`finish` gives them in the layout gymnasium's vector envs give its info."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.starts = np.full(num_envs, time.perf_counter())

    def restart(self, rows: np.ndarray | slice = slice(None)) -> None:
        """New episodes in ``rows`` (a bool mask (N,) or all envs)."""
        self.returns[rows] = 0.0
        self.lengths[rows] = 0
        self.starts[rows] = time.perf_counter()

    def add(self, rewards: np.ndarray, steps: int = 1) -> None:
        """One step of every env: ``rewards`` (N,); the lengths grow by ``steps``."""
        self.returns += rewards
        self.lengths += steps

    def finish(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``{"r": float64 (N,), "l": int64 (N,), "t": float64 (N,)}`` with ``_r``/``_l``/``_t``
        masks for the episodes ending in ``rows`` (bool (N,)), zeros elsewhere; then restarts them."""
        mask = np.asarray(rows, dtype=bool)
        stats = {
            "r": np.where(mask, self.returns, 0.0),
            "l": np.where(mask, self.lengths, 0),
            "t": np.where(mask, np.round(time.perf_counter() - self.starts, 6), 0.0),
        }
        self.restart(mask)
        return {**stats, **{f"_{key}": mask.copy() for key in stats}}


def _is_mask(infos: dict[str, Any], key: str) -> bool:
    return key.startswith("_") and key[1:] in infos


def info_rows(infos: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The part of a batched info dict (gymnasium layout: ``key`` -> array (N, ...), ``_key`` ->
    bool (N,)) that belongs to the envs in ``rows`` (bool (N,)): other rows are zero (None in
    object arrays), masks are restricted to ``rows``, keys that no env in ``rows`` has are dropped."""
    n = len(rows)
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if _is_mask(infos, key):
            continue
        mask = infos.get(f"_{key}")
        present = rows & mask if isinstance(mask, np.ndarray) else rows
        if not present.any():
            continue
        if isinstance(value, dict):
            value = info_rows(value, present)
        elif isinstance(value, np.ndarray) and value.shape[:1] == (n,):
            part = np.full(value.shape, None, dtype=object) if value.dtype == object else np.zeros_like(value)
            part[present] = value[present]
            value = part
        out[key] = value
        out[f"_{key}"] = present
    return out


def _common_dtype(a: np.dtype, b: np.dtype) -> np.dtype:
    if a == b:
        return a
    if a.kind in "biuf" and b.kind in "biuf":
        return np.result_type(a, b)
    return np.dtype(object)


def merge_infos(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two batched info dicts (gymnasium layout) about disjoint sets of envs, as one."""
    out = dict(a)
    for key, value in b.items():
        if _is_mask(b, key):
            continue
        mask_b = b.get(f"_{key}")
        mask_a = a.get(f"_{key}")
        old = a.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            value = merge_infos(old, value)
        elif isinstance(old, np.ndarray) and isinstance(value, np.ndarray) and isinstance(mask_b, np.ndarray):
            merged = old.astype(_common_dtype(old.dtype, value.dtype))
            merged[mask_b] = value[mask_b]
            value = merged
        out[key] = value
        if isinstance(mask_b, np.ndarray):
            out[f"_{key}"] = mask_b | mask_a if isinstance(mask_a, np.ndarray) else mask_b
    return out


def _row(batch: Any, i: int) -> Any:
    """A copy of env ``i``'s element of a batched observation (array, dict or tuple of them)."""
    if isinstance(batch, dict):
        return {key: _row(value, i) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_row(value, i) for value in batch)
    return np.array(batch[i], copy=True)


def _copy_batch(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {key: _copy_batch(value) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_copy_batch(value) for value in batch)
    return np.array(batch, copy=True)


def _set_rows(batch: Any, rows: np.ndarray, source: Any) -> None:
    """``batch[rows] = source[rows]`` through dicts and tuples, in place."""
    if isinstance(batch, dict):
        for key in batch:
            _set_rows(batch[key], rows, source[key])
    elif isinstance(batch, tuple):
        for part, src in zip(batch, source):
            _set_rows(part, rows, src)
    else:
        batch[rows] = source[rows]


class NativeVecEnv(VectorEnv):
    """A user's gymnasium ``VectorEnv`` (any autoreset mode) with same-step autoreset.

    ``step`` returns obs (N, ...), rewards float64 (N,), terminated / truncated bool (N,) and the
    infos described in the module docstring; ``reset(seed=s)`` passes the seed through as the
    wrapped env takes it (Sync/Async: env i gets s + i).
    """

    def __init__(self, env: VectorEnv) -> None:
        check_vector_env(env)
        self.env = env
        self.mode = autoreset_mode(env)
        self.num_envs = int(env.num_envs)
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self.metadata = {**env.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.spec = env.spec
        self.render_mode = env.render_mode
        self._episodes = EpisodeTracker(self.num_envs)
        # NEXT_STEP: the envs whose next step is the wrapped env's reset step (a dummy row).
        self._resetting = np.zeros(self.num_envs, dtype=bool)
        self._mask_splits = mask_part_splits(self.single_observation_space, self.single_action_space)
        self._name = type(env.env if isinstance(env, LaidOutVecEnv) else env).__name__  # the user's, for messages

    @property
    def dummy_steps(self) -> bool:
        """Whether some rows are dummy reset steps (``infos["reset_step"]``): NEXT_STEP envs only."""
        return self.mode == AutoresetMode.NEXT_STEP

    @property
    def np_random_seed(self) -> Any:
        """The wrapped env's seed(s)."""
        return self.env.np_random_seed

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every env: obs (N, ...) and infos."""
        # Sync/Async take a list of seeds too, which VectorEnv.reset's annotation does not show.
        obs, infos = self._reset(seed=cast(Any, seed), options=options)
        self._episodes.restart()
        self._resetting[:] = False
        if self._mask_splits is not None:
            check_masks(obs[ACTION_MASK], self._mask_splits)
        return obs, infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env; see the module docstring for the infos."""
        result = guarded(self._name, "step", lambda: self.env.step(actions))
        check_step(self._name, self.num_envs, self.observation_space, result)
        obs, rewards, terminated, truncated, infos = result
        rewards = np.array(rewards, dtype=np.float64)  # a copy: the NEXT_STEP mode edits it
        terminated = np.array(terminated, dtype=bool)
        truncated = np.array(truncated, dtype=bool)
        self._episodes.add(rewards)
        if self.mode == AutoresetMode.SAME_STEP:
            infos = self._same_step(terminated | truncated, infos)
        elif self.mode == AutoresetMode.DISABLED:
            obs, infos = self._reset_ended(obs, terminated | truncated, infos)
        else:
            infos = self._next_step(obs, rewards, terminated, truncated, infos)
        if self._mask_splits is not None:  # not an ending row's last observation (NEXT_STEP keeps it in obs)
            ended = self._resetting if self.mode == AutoresetMode.NEXT_STEP else None
            check_masks(obs[ACTION_MASK], self._mask_splits, skip=ended)
        return obs, rewards, terminated, truncated, infos

    def _reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = guarded(self._name, "reset", lambda: self.env.reset(**kwargs))
        check_reset(self._name, self.observation_space, result)
        return result

    def _final_info(self, step_infos: dict[str, Any], ended: np.ndarray) -> dict[str, Any]:
        """The ending step's infos of the envs in ``ended``, with episode statistics where the
        env gave none; the adapter's counters of those envs restart."""
        final = info_rows(step_infos, ended)
        stats = self._episodes.finish(ended)
        own = final.get("_episode")
        missing = ended & ~own if isinstance(own, np.ndarray) else ended
        if missing.any():
            final = merge_infos(final, {"episode": info_rows(stats, missing), "_episode": missing})
        return final

    def _same_step(self, ended: np.ndarray, infos: dict[str, Any]) -> dict[str, Any]:
        if not ended.any():
            return infos
        has_final = infos.get("_final_obs")
        lacking = ended & ~has_final if isinstance(has_final, np.ndarray) else ended
        if lacking.any():
            raise EnvWorkerError(
                f"{self._name} (AutoresetMode.SAME_STEP) ended the episodes of env(s) "
                f"{np.flatnonzero(lacking).tolist()} without infos['final_obs'] for them: a same-step vector env "
                "must give each finished env's last observation there (with the mask infos['_final_obs']), "
                "as gymnasium's SyncVectorEnv does. Fix the env, or declare another autoreset mode.",
                env_index=int(np.flatnonzero(lacking)[0]),
                worker_index=None,
            )
        for i in np.flatnonzero(ended):  # bootstrapped from: a row of another shape fails in the network
            problem = obs_problem(infos["final_obs"][i], self.single_observation_space, f"infos['final_obs'][{i}]",
                                  "single_observation_space", single=True)  # fmt: skip
            if problem is not None:
                raise malformed(self._name, "step", problem)
        infos = dict(infos)
        infos["final_info"] = self._final_info(infos.get("final_info", {}), ended)
        infos["_final_info"] = ended.copy()
        return infos

    def _reset_ended(self, obs: Any, ended: np.ndarray, infos: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """DISABLED mode: reset the envs that ended now; their step obs become ``final_obs``."""
        if not ended.any():
            return obs, infos
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.flatnonzero(ended):
            final_obs[i] = _row(obs, int(i))
        obs = _copy_batch(obs)  # the env may reuse its buffer in the reset below
        reset_obs, reset_infos = self._reset(options={"reset_mask": ended.copy()})
        _set_rows(obs, ended, reset_obs)
        out = merge_infos(info_rows(infos, ~ended), info_rows(reset_infos, ended))
        out["final_obs"], out["_final_obs"] = final_obs, ended.copy()
        out["final_info"], out["_final_info"] = self._final_info(infos, ended), ended.copy()
        return obs, out

    def _next_step(
        self,
        obs: Any,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
    ) -> dict[str, Any]:
        """NEXT_STEP mode: report ends on their step, flag the following reset step as a dummy row."""
        dummy = self._resetting
        if (dummy & (terminated | truncated)).any():
            raise EnvWorkerError(
                f"{self._name} (AutoresetMode.NEXT_STEP) reported an episode end for env(s) "
                f"{np.flatnonzero(dummy & (terminated | truncated)).tolist()} on their reset step; a next-step "
                "vector env returns terminated = truncated = False on the step that resets an env.",
                env_index=int(np.flatnonzero(dummy & (terminated | truncated))[0]),
                worker_index=None,
            )
        ended = terminated | truncated
        rewards[dummy] = 0.0
        terminated[dummy] = True
        self._episodes.restart(dummy)  # the dummy row is no step of either episode: count from here
        self._resetting = ended
        if not (ended.any() or dummy.any()):
            return infos
        out = dict(infos)
        if ended.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(ended):
                final_obs[i] = _row(obs, int(i))
            out["final_obs"], out["_final_obs"] = final_obs, ended.copy()
            out["final_info"], out["_final_info"] = self._final_info(infos, ended), ended.copy()
        if dummy.any():
            out["reset_step"], out["_reset_step"] = dummy.copy(), dummy.copy()
        return out

    def render(self) -> Any:
        return self.env.render()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The wrapped env's ``call`` (Sync/Async: a method or attribute of every sub-env)."""
        return self.env.call(name, *args, **kwargs)  # type: ignore[attr-defined]

    def get_attr(self, name: str) -> Any:
        return self.env.get_attr(name)  # type: ignore[attr-defined]

    def set_attr(self, name: str, values: Any) -> None:
        self.env.set_attr(name, values)  # type: ignore[attr-defined]

    def close_extras(self, **kwargs: Any) -> None:
        close_within(self.env)  # what it raises ignored, left after a while: a run's end must not hang

    def __repr__(self) -> str:
        return f"NativeVecEnv({self.env!r}, autoreset_mode={self.mode.name})"
