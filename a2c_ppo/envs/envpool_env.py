"""EnvPool as the framework's vector env: exact same-step autoreset and true episode statistics.

EnvPool (``pip install envpool``) steps its envs in C++ threads. Its gymnasium API resets an env
on the step *after* its episode ended, ignoring that step's action (next-step autoreset).
:class:`EnvPoolVecEnv` makes that an exact same-step autoreset: right after a step in which some
envs ended, it steps just those envs (``step(..., env_id=ended)``), which EnvPool answers with
its autoreset of them, so that ``obs[i]`` is already the reset observation, ``final_obs[i]`` the
true last one, and ``final_info`` is laid out as gymnasium's ``SyncVectorEnv`` (same-step) lays
it out. EnvPool's explicit ``reset(env_id)`` is not used for this because it always restarts an
Atari game, which would undo episodic life.

Ids: ``ALE/Pong-v5`` and ``PongNoFrameskip-v4`` are EnvPool's ``Pong-v5``; other gymnasium ids
are looked up as they are (EnvPool 1.2 has e.g. CartPole-v1, Pendulum-v1, LunarLander-v3 and the
MuJoCo ids in versions v3, v4 and v5, so ``HalfCheetah-v5`` is ``HalfCheetah-v5``). An id EnvPool
lacks is a ConfigError naming its nearest EnvPool ids.

Atari, with the defaults of the framework's pipeline (``a2c_ppo.envs.atari``): 4 frames per
action with the last two max-pooled, 84x84 grayscale (INTER_AREA resize), 4 stacked frames as
uint8 ``(4, 84, 84)``, 1..30 no-op frames at a game reset, FIRE at reset in games that have it,
sticky actions 0.25 for ``ALE/...-v5`` ids and 0 for ``...NoFrameskip-v4`` ids (as those ids
have), the minimal action set, and a game limit of 27000 steps (108000 frames, as ALE v5).
With ``episodic_life`` a lost life ends the learner's episode (``terminated``) while the game
goes on; the game restarts only at game over or truncation. Rewards are clipped to their sign in
the adapter (``clip_reward``); the episode statistics sum the raw game score over a whole game
(all lives), and their length counts emulator frames, ``frame_skip`` per agent step. Differences
from the framework's gymnasium pipeline:

* EnvPool's reset no-ops are hidden from the adapter, so a game's length lacks them (up to 30
  frames, plus up to 30 after each lost life).
* After a lost life EnvPool takes 1..30 random no-op frames and one FIRE frame, and its frame
  stack goes on; the framework's pipeline takes one no-op step (4 frames), then a FIRE step and
  an action-2 step in games with FIRE, and restarts the stack. After a game reset EnvPool
  presses FIRE for one frame instead of those two steps.
* If a game ends during EnvPool's no-ops after a lost life (rare), EnvPool starts a new game
  without the adapter seeing the end; the statistics then count the two games as one.

MuJoCo, classic control, Box2D: EnvPool's own C++ versions of gymnasium's envs, observations as
gymnasium's (MuJoCo float64), rewards computed in float64 but returned by EnvPool as float32.
Box actions are clipped to the action space, as the framework's ``ClipAction`` does (EnvPool does
not clip). Every end is an episode end; the statistics sum the rewards.

Seeds: EnvPool fixes its seeds when the pool is built; env i gets ``seed + i`` (EnvPool's
per-env seed list), modulo ``2**31 - 1`` as EnvPool takes only int32 seeds (``--seed`` goes to
4,000,000,000). ``reset(seed=s)`` therefore rebuilds the pool with seeds ``s + i`` (unless
the pool was just built with ``s``); ``reset()`` without a seed restarts every env, each
continuing its own random stream.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import time
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from a2c_ppo.envs.native import EpisodeTracker, info_rows
from a2c_ppo.errors import ConfigError

__all__ = ["EnvPoolVecEnv", "envpool_supports", "to_envpool_id"]

_NO_FRAMESKIP = "NoFrameskip-v4"
_SEEDS = 2**31 - 1  # EnvPool's seeds: int32 below its INT_MAX
_ROUTING_KEYS = ("env_id", "players")  # EnvPool's keys that say where a result belongs


def _envpool() -> Any:
    try:
        import envpool
    except (ImportError, OSError) as exc:  # OSError: a native library EnvPool needs is missing
        raise ConfigError(
            f'EnvPool is not available ({exc}). Install the extra (pip install -e ".[envpool]"), or drop '
            "--vec-env envpool to use the framework's own vector env."
        ) from exc
    return envpool


@functools.cache
def _envpool_ids() -> frozenset[str]:
    return frozenset(_envpool().list_all_envs())


def _lookup_name(env_id: str) -> str:
    """The EnvPool id a gymnasium id stands for (whether EnvPool has it or not)."""
    if env_id.startswith("ALE/"):
        return env_id[len("ALE/") :]
    if env_id.endswith(_NO_FRAMESKIP):
        return env_id[: -len(_NO_FRAMESKIP)] + "-v5"
    return env_id


def _base(env_id: str) -> str:
    return env_id.rsplit("-v", 1)[0].lower()


def to_envpool_id(env_id: str) -> str:
    """EnvPool's id for a gymnasium id; a ConfigError naming the nearest EnvPool ids if it has none."""
    ids = _envpool_ids()
    name = _lookup_name(env_id)
    if name in ids:
        return name
    close = sorted(other for other in ids if _base(other) == _base(name))  # the same env, other versions
    close = close or difflib.get_close_matches(name, sorted(ids), n=3, cutoff=0.75)
    hint = f" Its nearest EnvPool ids: {', '.join(close)}." if close else ""
    raise ConfigError(
        f"EnvPool has no env for {env_id!r} (looked for {name!r}).{hint} Use one of EnvPool's ids "
        "(envpool.list_all_envs()), or train this id with the framework's own vector env instead of EnvPool."
    )


def envpool_supports(env_id: str) -> bool:
    """Whether EnvPool is installed and has an env for the gymnasium id ``env_id``."""
    try:
        to_envpool_id(env_id)
    except ConfigError:
        return False
    return True


@contextlib.contextmanager
def _quiet_space_casts() -> Iterator[None]:
    with warnings.catch_warnings():
        # EnvPool gives float64 bounds to float32 Boxes, and gymnasium warns about the cast.
        warnings.filterwarnings("ignore", message=".*precision lowered")
        yield


def _with_masks(info: dict[str, Any], num_envs: int) -> dict[str, Any]:
    """EnvPool's info (every key for every env) in gymnasium's layout, with all-True masks."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key not in _ROUTING_KEYS:
            out[key] = _with_masks(value, num_envs) if isinstance(value, dict) else value
            out[f"_{key}"] = np.ones(num_envs, dtype=bool)
    return out


def _scatter(info: dict[str, Any], part: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """``info`` (every env) with the rows ``rows`` replaced by ``part`` (those envs, in that order)."""
    out = dict(info)
    for key, value in part.items():
        if key in _ROUTING_KEYS or key not in info:
            continue
        if isinstance(value, dict):
            out[key] = _scatter(info[key], value, rows)
        else:
            out[key] = np.array(info[key], copy=True)
            out[key][rows] = value
    return out


class EnvPoolVecEnv(VectorEnv):
    """An EnvPool pool of ``num_envs`` envs of ``env_id`` with same-step autoreset.

    ``step`` returns obs (N, ...) (Atari: uint8 (N, 4, 84, 84)), rewards float64 (N,) (Atari:
    clipped to -1/0/1 with ``clip_reward``), terminated / truncated bool (N,) and infos with
    ``final_obs`` / ``final_info`` (and ``final_info["episode"]`` at the end of a game or
    episode), plus EnvPool's own per-env infos (e.g. ``lives``, ``elapsed_step``) with masks.
    The Atari settings apply to Atari ids only; see the module docstring.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        seed: int,
        clip_reward: bool = True,
        episodic_life: bool = True,
        frame_stack: int = 4,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 84,
        repeat_action_probability: float | None = None,
        num_threads: int = 0,
    ) -> None:
        if num_envs < 1:
            raise ConfigError(f"EnvPoolVecEnv needs num_envs >= 1, got {num_envs}.")
        self.env_id = env_id
        self.envpool_id = to_envpool_id(env_id)
        self.num_envs = num_envs
        self._options: dict[str, Any] = {"num_envs": num_envs, "num_threads": num_threads}
        self.is_atari = {"noop_max", "use_fire_reset"} <= set(_envpool().make_spec(self.envpool_id).config._fields)
        if self.is_atari:
            if repeat_action_probability is None:
                repeat_action_probability = 0.0 if env_id.endswith(_NO_FRAMESKIP) else 0.25
            self._options.update(
                episodic_life=episodic_life,
                reward_clip=False,  # clipped here, so that the statistics can sum the raw score
                use_fire_reset=True,
                noop_max=noop_max,
                frame_skip=frame_skip,
                stack_num=frame_stack,
                img_height=screen_size,
                img_width=screen_size,
                gray_scale=True,
                repeat_action_probability=repeat_action_probability,
                full_action_space=False,
            )
        self._clip_reward = clip_reward and self.is_atari
        self._episodic_life = episodic_life and self.is_atari
        self._frames_per_step = frame_skip if self.is_atari else 1
        self._seed = seed
        self._pool = self._make_pool(seed)
        self._fresh = True  # built with self._seed and not reset or stepped since
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "envpool_id": self.envpool_id}
        space = self.single_action_space
        self._action_bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        # Any valid actions: EnvPool ignores the action of an env it resets.
        self._reset_actions = np.zeros((num_envs, *(space.shape or ())), dtype=space.dtype)
        self._episodes = EpisodeTracker(num_envs)

    def _make_pool(self, seed: int) -> Any:
        with _quiet_space_casts():
            pool = _envpool().make_gymnasium(
                self.envpool_id, seed=[(seed + i) % _SEEDS for i in range(self.num_envs)], **self._options
            )
            # EnvPool builds its spaces on first use (its reset reads them): here, quietly.
            _ = pool.observation_space, pool.action_space
        return pool

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Restart every env (with seeds ``seed + i`` if given): obs (N, ...) and infos."""
        if options:
            raise ValueError(f"EnvPoolVecEnv.reset takes no options, got {options!r}")
        if seed is not None and not (self._fresh and seed == self._seed):
            self._pool.close()
            self._pool = self._make_pool(seed)
            self._seed = seed
        self._fresh = False
        obs, info = self._pool.reset()
        self._episodes.restart()
        return obs, _with_masks(info, self.num_envs)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env: obs (N, ...), rewards float64 (N,), terminated, truncated bool (N,), infos."""
        actions = np.asarray(actions)
        if self._action_bounds is not None:
            actions = np.clip(actions, *self._action_bounds)
        self._fresh = False
        obs, raw, terminated, truncated, info = self._pool.step(actions)
        raw = np.asarray(raw, dtype=np.float64)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        self._episodes.add(raw, steps=self._frames_per_step)
        ended = terminated | truncated
        if ended.any():
            obs, infos = self._autoreset(obs, ended, info)
        else:
            infos = _with_masks(info, self.num_envs)
        rewards = np.sign(raw) if self._clip_reward else raw
        return obs, rewards, terminated, truncated, infos

    def _autoreset(self, obs: np.ndarray, ended: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the envs in ``ended`` now: their reset obs go into ``obs``, their step's obs and
        infos into ``final_obs`` / ``final_info``."""
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.flatnonzero(ended):
            final_obs[i] = obs[i].copy()
        ids = np.flatnonzero(ended).astype(np.int32)
        # Stepping an env that ended makes EnvPool autoreset it (the action is ignored). Unlike
        # reset(env_id), this goes on with the game after a lost life.
        reset_obs, _, _, _, reset_info = self._pool.step(self._reset_actions[: len(ids)], env_id=ids)
        rows = reset_info["env_id"]
        obs[rows] = reset_obs
        if self._episodic_life:
            # A lost life resets nothing in the game; a new game starts at elapsed_step 0.
            game_over = np.zeros(self.num_envs, dtype=bool)
            game_over[rows] = reset_info["elapsed_step"] == 0
        else:
            game_over = ended
        final_info = info_rows(_with_masks(info, self.num_envs), ended)
        if game_over.any():
            final_info["episode"] = self._episodes.finish(game_over)
            final_info["_episode"] = game_over
        infos = _with_masks(_scatter(info, reset_info, rows), self.num_envs)
        infos["final_obs"], infos["_final_obs"] = final_obs, ended.copy()
        infos["final_info"], infos["_final_info"] = final_info, ended.copy()
        return obs, infos

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        return f"EnvPoolVecEnv({self.env_id!r} as EnvPool's {self.envpool_id!r}, num_envs={self.num_envs})"


def measure_step_s(env_id: str, num_envs: int, steps: int = 30) -> float:
    """Median seconds of one vector step of an ``EnvPoolVecEnv`` of ``num_envs`` envs of
    ``env_id``, random actions (``layout.choose_layout`` weighs it against our own)."""
    envs = EnvPoolVecEnv(env_id, num_envs, seed=0)
    try:
        envs.reset(seed=0)
        envs.action_space.seed(0)
        times = []
        for i in range(steps + 5):
            actions = envs.action_space.sample()
            start = time.perf_counter()
            envs.step(actions)
            if i >= 5:  # the first steps fill EnvPool's queues and caches
                times.append(time.perf_counter() - start)
        return float(np.median(times))
    finally:
        envs.close()
