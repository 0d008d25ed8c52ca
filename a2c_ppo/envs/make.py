"""Building single envs and vector envs from an id, with the right wrappers."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics

from a2c_ppo.envs.atari import is_atari_id
from a2c_ppo.envs.frames import PLAIN, EnvRecipe, process_frames
from a2c_ppo.envs.layout import choose_layout, measure_step_times
from a2c_ppo.envs.mujoco_warnings import route_mujoco_warnings
from a2c_ppo.envs.native import NativeVecEnv, check_vector_env
from a2c_ppo.envs.native_layout import LaidOutVecEnv
from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.snapshot import Snapshot
from a2c_ppo.envs.timeouts import close_within
from a2c_ppo.envs.wrappers import ActionMaskObservation, EpisodeRecorder, ObservationLayout, clip_box_actions
from a2c_ppo.errors import ConfigError
from a2c_ppo.mp4 import WholeVideos
from a2c_ppo.spaces import plan_observations

EnvFn = Callable[[], gym.Env]


def import_module(name: str) -> ModuleType:
    """``importlib.import_module``, also finding modules in the current directory, as
    ``python -m`` does (a script's own folder, not the current one, starts ``sys.path``):
    ``--env-name toy_env:GoToTarget`` works where ``toy_env.py`` is. The current directory
    goes last, so it shadows no installed package. A module whose own code raises comes as an
    ImportError saying what it raised and where (its ``__cause__`` the exception)."""
    try:
        return _import_module(name)
    except ImportError:
        raise
    except Exception as exc:  # the module's own code: a bug to point at, not a traceback through a2c_ppo
        frames = traceback.extract_tb(exc.__traceback__)
        try:
            origin = getattr(importlib.util.find_spec(name), "origin", None)
        except Exception:
            origin = None
        frame = ([f for f in frames if f.filename == origin] or frames)[-1]
        raise ImportError(
            f"importing it raised {type(exc).__name__}: {exc}, at {frame.filename}, line {frame.lineno}", name=name
        ) from exc


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        try:
            return importlib.import_module(name)
        except ImportError:
            sys.path.remove(cwd)  # not there either: the caller's sys.path stays as it was
            raise


#: Env factories handed over as Python objects (the Python API's ``train(env=...)``), by the
#: name a run records for them; worker processes get the object itself (cloudpickle).
FACTORIES: dict[str, Callable[..., Any]] = {}


def register_factory(factory: Callable[..., Any]) -> str:
    """Make ``factory`` (a class or function returning an env or a vector env) known by the
    name a run records for it, ``module:qualname`` (what ``--env-name`` would say).

    A ``functools.partial``, a bound method or a callable object is named in ``<...>``
    (``module:<partial make>``, ``module:<Maker.build bound>``, ``module:<Maker object>``): an
    import of its function or class would find another callable, so a new process must be
    given it (``load(path, env=...)``), as a lambda's.
    A name that does not lead back to ``factory`` (a lambda's or a nested function's ``<...>``)
    and that another factory already holds gets a number (``__main__:<lambda>#2``): two
    lambdas are two envs, with their own checkpoint copies. A name that leads back to it goes
    to the latest object (a class defined again in a notebook replaces the old one, as the
    import would)."""
    if isinstance(factory, functools.partial):
        inner = factory.func
        module = getattr(inner, "__module__", None) or "__main__"
        qualname = f"<partial {getattr(inner, '__qualname__', type(inner).__name__)}>"
    elif inspect.ismethod(factory):  # an import finds the function, not the object it is bound to
        module, qualname = factory.__module__ or "__main__", f"<{factory.__qualname__} bound>"
    elif hasattr(factory, "__qualname__"):  # a function or a class
        module, qualname = getattr(factory, "__module__", None) or "__main__", factory.__qualname__
    else:
        module, qualname = type(factory).__module__, f"<{type(factory).__qualname__} object>"
    name = base = f"{module}:{qualname}"
    number = 1
    while not _found_at(module, qualname, factory) and FACTORIES.get(name, factory) is not factory:
        number += 1
        name = f"{base}#{number}"
    FACTORIES[name] = factory
    return name


def _found_at(module: str, qualname: str, factory: Any) -> bool:
    """Whether ``module:qualname`` of an imported module is ``factory`` itself (imports nothing)."""
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is factory


def load_entry_point(env_id: str) -> Callable[..., gym.Env] | None:
    """``module:Class`` or ``module:factory`` that is not a registered id -> the callable."""
    if env_id in FACTORIES:
        return FACTORIES[env_id]
    if ":" not in env_id:
        return None
    module_name, attr = env_id.split(":", 1)
    try:
        module = import_module(module_name)
    except ImportError:
        return None
    entry_point = getattr(module, attr, None)
    return entry_point if callable(entry_point) else None


def register_atari() -> bool:
    """Register the ALE ids with gymnasium; ``False`` when ale_py is not installed."""
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def make_env(
    env_id: str,
    *,
    render_mode: str | None = None,
    clip_reward: bool = True,
    video_dir: str | None = None,
    video_episodes: int | None = None,
    action_masks: bool | None = None,
    factory: Callable[..., Any] | None = None,
    record_episodes: list[dict[str, np.ndarray]] | None = None,
    recipe: EnvRecipe = PLAIN,
    episodic_life: bool = True,
) -> gym.Env:
    """One env with the pipeline its kind needs; episode statistics stay unnormalised.

    Observations come in the layout the framework trains on (``spaces.py``: composite spaces as
    a flat Dict, images channels-first), with the env's action mask as their ``action_mask``
    part when ``action_masks``; ``False`` leaves out an ``action_mask`` part the env's own
    observations have (a run without masks), ``None`` keeps it (what the env gives). With
    ``video_dir`` every episode of the raw env (or the first ``video_episodes``) is written there
    as an mp4 (``render_mode="rgb_array"``, ``[video]``).
    Each finished episode is appended to ``record_episodes`` (``EpisodeRecorder``, below the
    action mask: its observations are the env's own) if given.
    ``recipe`` (``frames.EnvRecipe``): the constructor's keyword arguments (``gym.make``'s or the
    factory's) and the frame processing above the episode statistics. ``episodic_life=False``:
    an Atari id's episode is a whole game, not a life (``atari.WholeGames``; for a loop of one's
    own, where training's envs end the learner's episode at a lost life).
    """
    entry_point = factory or load_entry_point(env_id)
    kwargs: dict[str, Any] = {**recipe.kwargs, **({"render_mode": render_mode} if render_mode else {})}
    if entry_point is not None:
        env = entry_point(**kwargs)
        if not isinstance(env, gym.Env):
            raise TypeError(f"{env_id} returned {type(env).__name__}, not a gymnasium.Env")
    else:
        if is_atari_id(env_id):
            register_atari()
        if env_id.startswith("ALE/"):
            kwargs["frameskip"] = 1  # wrap_atari skips 4 frames with max-pooling; v5 keeps sticky actions
        spec = gym.envs.registry.get(env_id)
        if spec is not None and str(spec.entry_point).startswith("gymnasium.envs.mujoco."):
            route_mujoco_warnings()
        env = gym.make(env_id, **kwargs)
    if video_dir is not None:
        limit = video_episodes if video_episodes is not None else float("inf")
        env = WholeVideos(env, video_dir, episode_trigger=lambda episode: episode < limit, disable_logger=True)
    env = RecordEpisodeStatistics(env)
    if recipe.processes_frames:
        env = process_frames(env, recipe, f"--env-name {env_id!r}")
    if is_atari_id(env_id):
        from a2c_ppo.envs.atari import wrap_atari

        # recorded episodes keep the game's rewards (EpisodeRecorder: "as the env paid them")
        env = wrap_atari(env, clip_reward=clip_reward and record_episodes is None, episodic_life=episodic_life)
    elif isinstance(env.action_space, gym.spaces.Box):
        # The env sees the clipped action; the storage keeps the sampled one.
        env = clip_box_actions(env)
    plan = plan_observations(env.observation_space, f"--env-name {env_id!r}", without_mask=action_masks is False)
    if plan.changes:
        env = ObservationLayout(env, plan)
    if record_episodes is not None:  # the env's observations, without the mask a masked run adds
        env = EpisodeRecorder(env, record_episodes, whole_games=is_atari_id(env_id))
    if action_masks:
        env = ActionMaskObservation(env)
    return Snapshot(env)  # outermost: vec.get_attr("snapshot") reaches it first


def make_env_fn(env_id: str, **kwargs) -> EnvFn:
    """A picklable constructor for workers (closures are shipped with cloudpickle, so a factory
    the Python API was given, even one defined in a notebook, travels by value)."""
    factory = FACTORIES.get(env_id)
    return lambda: make_env(env_id, factory=factory, **kwargs)


def _spaces(env_id: str, recipe: EnvRecipe) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of one env built (and closed) here."""
    env = make_env(env_id, recipe=recipe)
    try:
        return env.observation_space, env.action_space
    finally:
        close_within(env)


def is_continuous_control(obs_space: gym.Space, act_space: gym.Space) -> bool:
    """1-D Box observations and Box actions (MuJoCo-like): the automatic normalisation is on
    for these, and ``--preset auto`` picks ``mujoco``."""
    return isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1 and isinstance(act_space, gym.spaces.Box)


def make_vec_envs(
    env_id: str,
    num_envs: int,
    *,
    gamma: float = 0.99,
    norm_obs: bool | None = None,
    norm_reward: bool | None = None,
    vec_env: str = "sync",
    num_workers: int | None = None,
    render_mode: str | None = None,
    clip_reward: bool = True,
    video_dir: str | None = None,
    video_episodes: int | None = None,
    overlap: str = "off",
    policy_step_s: Callable[[int], float] | None = None,
    env_timeout: float | None = None,
    action_masks: bool | None = None,
    record_episodes: list[dict[str, np.ndarray]] | None = None,
    step_infos: bool = True,
    recipe: EnvRecipe = PLAIN,
) -> VectorEnv:
    """``num_envs`` copies of ``env_id`` as one same-step-autoreset vector env.

    Call ``reset(seed=seed)`` on the result: env ``i`` then gets ``seed + i``. ``norm_obs`` /
    ``norm_reward`` of ``None`` choose automatically (see ``is_continuous_control``); when
    either is on, the result is a ``VecNormalize``.

    ``vec_env`` (``sync``: every env in this process; ``subproc``: on ``num_workers`` worker
    processes plus a share in the main process; ``auto``), ``num_workers`` and ``overlap``
    (``on``, ``off``, ``auto``: timed with ``policy_step_s``) choose the layout
    (``layout.choose_layout``); both kinds are our ``SubprocVecEnv``, so errors, contract
    checks and snapshots behave alike. The overlap choice is recorded as
    ``metadata["overlap"]`` for the rollout loop. ``env_timeout``: see ``SubprocVecEnv``'s ``timeout``.
    ``record_episodes``: a list every env appends its finished episodes to (``EpisodeRecorder``;
    the envs then run in this process). ``step_infos=False``: infos only at the steps that end
    an episode (``SubprocVecEnv``'s ``step_infos``; the native and EnvPool kinds keep theirs).
    ``recipe``: how each env is built beyond its id (``frames.EnvRecipe``: a native vector env
    takes its keyword arguments only, EnvPool neither).
    """
    if vec_env == "native":
        if recipe.processes_frames:
            raise ValueError("a native vector env processes its frames itself")
        envs: VectorEnv = NativeVecEnv(native_vector_env(env_id, recipe.kwargs, without_mask=action_masks is False))
        return _normalized(envs, norm_obs, norm_reward, gamma)
    if vec_env == "envpool":
        if recipe != PLAIN:
            raise ValueError("EnvPool builds its envs without env kwargs or frame processing")
        return _envpool(env_id, num_envs, clip_reward, norm_obs, norm_reward, gamma)
    kwargs = {"clip_reward": clip_reward, "action_masks": action_masks, "recipe": recipe}
    if record_episodes is not None:
        vec_env = "sync"  # the recorders append to this process's list
    fns = [
        make_env_fn(
            env_id,
            render_mode=render_mode,
            video_dir=video_dir,
            video_episodes=video_episodes,
            record_episodes=record_episodes,
            **kwargs,
        )  # fmt: skip
        for _ in range(num_envs)
    ]
    # Timed on an env without rendering or video, so the probe leaves no trace; at most once.
    probe = make_env_fn(env_id, **kwargs)
    layout = choose_layout(
        num_envs,
        vec_env=vec_env,
        num_workers=num_workers,
        overlap=overlap,
        step_times=functools.cache(lambda: measure_step_times(probe, timeout=env_timeout)),
        policy_step_s=policy_step_s,
        rendering=render_mode is not None,
        envpool_step_s=_envpool_candidate(
            env_id, num_envs, vec_env, action_masks or record_episodes is not None or recipe != PLAIN
        ),
    )
    if layout.kind == "envpool":
        return _envpool(env_id, num_envs, clip_reward, norm_obs, norm_reward, gamma)
    from a2c_ppo.envs.subproc import SubprocVecEnv

    # VecNormalize builds new arrays: a copy of the shared observation buffer would be waste.
    will_norm_obs = norm_obs if norm_obs is not None else is_continuous_control(*_spaces(env_id, recipe))
    envs = SubprocVecEnv(
        fns,
        num_workers=layout.num_workers,
        in_main=layout.in_main,
        copy=not will_norm_obs,
        timeout=env_timeout,
        step_infos=step_infos,
    )
    envs.metadata["overlap"] = layout.overlap
    envs.metadata["vec_env"] = layout.kind
    return _normalized(envs, norm_obs, norm_reward, gamma)


def _envpool(
    env_id: str, num_envs: int, clip_reward: bool, norm_obs: bool | None, norm_reward: bool | None, gamma: float
) -> VectorEnv:
    from a2c_ppo.envs.envpool_env import EnvPoolVecEnv

    envs = EnvPoolVecEnv(env_id, num_envs, seed=0, clip_reward=clip_reward)
    envs.metadata["vec_env"] = "envpool"
    return _normalized(envs, norm_obs, norm_reward, gamma)


def _envpool_candidate(env_id: str, num_envs: int, vec_env: str, wrapped: bool) -> Callable[[], float] | None:
    """For ``--vec-env auto`` on an Atari id that an installed EnvPool has: the timer of one
    EnvPool vector step (see ``layout``); None where EnvPool is no candidate (``wrapped``: the
    run needs our own wrappers or constructor, e.g. action masks, episode recording or env kwargs)."""
    if vec_env != "auto" or wrapped or not is_atari_id(env_id):
        return None
    from a2c_ppo.envs.envpool_env import envpool_supports, measure_step_s

    return functools.partial(measure_step_s, env_id, num_envs) if envpool_supports(env_id) else None


def _normalized(envs: VectorEnv, norm_obs: bool | None, norm_reward: bool | None, gamma: float) -> VectorEnv:
    """``envs`` in a VecNormalize where normalisation is on (``None``: on for continuous control)."""
    auto = is_continuous_control(envs.single_observation_space, envs.single_action_space)
    norm_obs = auto if norm_obs is None else norm_obs
    norm_reward = auto if norm_reward is None else norm_reward
    if norm_obs or norm_reward:
        envs = VecNormalize(envs, norm_obs=norm_obs, norm_reward=norm_reward, gamma=gamma)
    return envs


def native_vector_env(env_id: str, env_kwargs: dict[str, Any] | None = None, without_mask: bool = False) -> VectorEnv:
    """The user's own vector env that ``env_id`` (``module:factory``) builds with ``env_kwargs``,
    checked, its observations laid out (``without_mask``: an ``action_mask`` part left out, a run
    without masks); a ConfigError saying what to change when it is not one the framework can
    train on."""
    factory = load_entry_point(env_id)
    envs = factory(**(env_kwargs or {})) if factory is not None else None
    if not isinstance(envs, VectorEnv):
        raise ConfigError(
            f"--vec-env native: --env-name {env_id!r} must be module:factory returning a gymnasium VectorEnv, "
            f"got {type(envs).__name__}; drop --vec-env native for a factory of single envs."
        )
    try:
        check_vector_env(envs)
        space = envs.single_observation_space
        plan = plan_observations(space, f"--env-name {env_id!r}", without_mask=without_mask)
    except BaseException:
        envs.close()
        raise
    if plan.transpose or plan.space != space:  # a flat Dict of channels-first parts is its own layout
        return LaidOutVecEnv(envs, plan)
    return envs


def episode_stats(infos: dict) -> list[tuple[int, float, int]]:
    """(env index, true return, length) of every episode that ended in this vector step."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return []
    ep, done = final["episode"], final["_episode"]
    return [(int(i), float(ep["r"][i]), int(ep["l"][i])) for i in np.flatnonzero(done)]
