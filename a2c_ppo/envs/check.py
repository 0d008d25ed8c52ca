"""Validating ``--env-name`` before any worker starts: the id, one env built here, its spaces.

Every problem becomes a :class:`ConfigError` whose message says what to change.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import reprlib
import warnings
from typing import Any, NamedTuple

import gymnasium as gym
from gymnasium.vector import VectorEnv

from a2c_ppo.envs.atari import is_atari_id
from a2c_ppo.envs.frames import PLAIN, EnvRecipe
from a2c_ppo.envs.keywords import RESERVED_ENV_KWARGS, build_error_text, keyword_not_taken
from a2c_ppo.envs.make import (
    FACTORIES,
    import_module,
    load_entry_point,
    make_env,
    native_vector_env,
    register_atari,
)
from a2c_ppo.envs.native_checks import check_reset, guarded, obs_problem
from a2c_ppo.envs.native_layout import LaidOutVecEnv
from a2c_ppo.envs.subproc.protocol import EnvWorkerError
from a2c_ppo.envs.suggest import newer_version, suggestions
from a2c_ppo.envs.timeouts import build_limit, close_within, env_time_limit
from a2c_ppo.envs.wrappers import provides_action_masks
from a2c_ppo.errors import ConfigError
from a2c_ppo.spaces import ACTION_MASK, check_action_space, mask_size

_MODULE_FORM = "module:name (a callable that returns an env, or an id the module registers, e.g. mypkg.envs:MyEnv-v0)"


class EnvReport(NamedTuple):
    """What ``inspect_env`` learnt of an env, as the framework will train on it."""

    observation_space: gym.Space  # in the training layout, with the action mask part if masked
    action_space: gym.Space
    action_masks: bool  # whether the run uses the env's action masks
    notes: list[str]  # for the console: how observations are laid out, whether masks are used
    vector_envs: int | None = None  # a native vector env's num_envs (None: single envs)
    # the steps by which the env's TimeLimit ends an episode (its spec's max_episode_steps);
    # None without one, or for vector envs, whose limits are their own
    time_limit: int | None = None


def check_env_id(
    env_id: str, action_masks: str = "off", vec_env: str = "auto", recipe: EnvRecipe = PLAIN
) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of ``env_id``'s env (see ``inspect_env``)."""
    report = inspect_env(env_id, action_masks, vec_env, recipe)
    return report.observation_space, report.action_space


def inspect_env(
    env_id: str,
    action_masks: str = "auto",
    vec_env: str = "auto",
    recipe: EnvRecipe = PLAIN,
    timeout: float | None = None,
) -> EnvReport:
    """``env_id``'s env as the framework will train on it; a ConfigError if it cannot be made
    or makes an env this framework cannot train: the id is checked (with close ids suggested),
    then one env is built here (with the pipeline ``make_env`` adds) and its spaces are checked,
    so that a broken constructor or an unsupported space is reported before any worker starts.
    ``action_masks`` ``auto`` / ``on`` / ``off`` (``--action-masks``): with ``auto`` the env is
    reset once to see whether it gives masks. A ``module:factory`` that returns a gymnasium
    VectorEnv is a native vector env (``vector_envs``: its number of envs). ``recipe``: the
    keyword arguments of the env's constructor and the frame processing (``frames.EnvRecipe``).
    ``timeout`` (``--env-timeout``): the env's construction here gets as long as a worker's
    (``build_limit``), its first reset ``timeout``; past it, an env failure (``EnvWorkerError``)."""
    if not env_id.strip():
        raise ConfigError("--env-name is empty: give a gymnasium id such as CartPole-v1, or " + _MODULE_FORM + ".")
    _check_recipe(env_id, recipe)
    if ":" in env_id:
        _check_module_id(env_id)
        vector = _native_report(env_id, vec_env, recipe, action_masks, timeout)
        if vector is not None:
            return vector
    else:
        _check_registered(env_id)
    if vec_env == "native":
        raise ConfigError(f"--vec-env native needs --env-name module:factory returning a VectorEnv, not {env_id!r}.")
    if vec_env == "envpool":
        if recipe != PLAIN:
            raise ConfigError(
                f"--vec-env envpool builds its envs without --env-kwargs or frame processing ({_given(recipe)}); "
                "drop one of them."
            )
        return _envpool_report(env_id, action_masks)
    return _check_constructs(env_id, action_masks, recipe, timeout)


def _given(recipe: EnvRecipe) -> str:
    kwargs = [f"--env-kwargs {json.dumps(recipe.kwargs)}"] if recipe.kwargs else []
    return ", ".join(kwargs + ([recipe.flags()] if recipe.processes_frames else []))


def _check_recipe(env_id: str, recipe: EnvRecipe) -> None:
    for name, which in RESERVED_ENV_KWARGS.items():
        if name in recipe.kwargs and (which == "every id" or is_atari_id(env_id)):
            raise ConfigError(f"--env-kwargs: a2c_ppo sets {name!r} itself for {which}; drop it from --env-kwargs.")
    if is_atari_id(env_id) and recipe.kwargs.get("obs_type") == "ram":
        raise ConfigError(
            f"--env-kwargs: {env_id!r} gets the Atari pipeline, which reads the screen (4 frames skipped with "
            "max-pooling, 84x84 gray, 4 stacked), so its obs_type is 'rgb' (the default) or 'grayscale', not 'ram'. "
            "For the RAM as the observation, make the env in a factory of your own (--env-name module:factory), "
            "which gets no Atari pipeline."
        )
    if recipe.processes_frames and is_atari_id(env_id):
        raise ConfigError(
            f"{recipe.flags()}: {env_id!r} gets the Atari pipeline (4 frames skipped with max-pooling, 84x84 gray, "
            "4 stacked); drop them."
        )


def _construction_failed(env_id: str, env_kwargs: dict[str, Any], exc: Exception) -> ConfigError:
    """The ConfigError for an env constructor that raised ``exc``."""
    not_taken = keyword_not_taken(env_id, env_kwargs, exc)
    if not_taken is not None:
        return ConfigError(f"--env-name {env_id!r}: {not_taken}")
    given = f" with keyword arguments {json.dumps(env_kwargs)}" if env_kwargs else ""
    fix = "Fix the env, its id or its keyword arguments (--env-kwargs)." if env_kwargs else "Fix the env or its id."
    newer = newer_version(env_id)
    if newer is not None:
        fix = f"{fix.rstrip('.')}: {env_id} is out of date, and gymnasium's current version is {newer}."
    text = build_error_text(exc).rstrip(".")
    return ConfigError(f"--env-name {env_id!r}: building the env{given} raised {type(exc).__name__}: {text}. {fix}")


def _native_report(
    env_id: str, vec_env: str, recipe: EnvRecipe, action_masks: str, timeout: float | None
) -> EnvReport | None:
    """The report of a factory that returns a VectorEnv, else ``None`` (a factory of single envs)."""
    factory = load_entry_point(env_id)
    if factory is None:
        return None
    with env_time_limit(f"env {env_id!r}", "its construction in the start-up check", build_limit(timeout), timeout):
        try:
            product = factory(**recipe.kwargs)
        except Exception as exc:
            raise _construction_failed(env_id, recipe.kwargs, exc) from exc
    if not isinstance(product, VectorEnv):
        if isinstance(product, gym.Env):
            close_within(product)
        return None
    close_within(product)
    # checked; built again by each run as it needs
    envs = native_vector_env(env_id, recipe.kwargs, without_mask=action_masks == "off")
    try:
        check_action_space(envs.single_action_space, env_id)
        if recipe.processes_frames:
            raise ConfigError(
                f"{recipe.flags()}: {env_id!r} gives a vector env of its own, whose frames a2c_ppo does not "
                "process; drop them (process the frames in the vector env)."
            )
        if vec_env not in ("auto", "native"):
            raise ConfigError(
                f"--env-name {env_id!r} gives a vector env of its own; drop --vec-env {vec_env} (it steps its envs "
                "itself)."
            )
        notes = [f"Native vector env: {envs!r}.", *(envs.plan.notes if isinstance(envs, LaidOutVecEnv) else [])]
        masks = _native_masks(envs, env_id, action_masks, _first_native_reset(envs, env_id, timeout))
        if masks:
            notes.append("Action masks: on (its observations' 'action_mask' part; masked actions are never taken).")
        space = envs.single_observation_space
        return EnvReport(space, envs.single_action_space, masks, notes, envs.num_envs)
    finally:
        close_within(envs)


def _first_native_reset(envs: VectorEnv, env_id: str, timeout: float | None) -> dict[str, Any]:
    """The infos of an unseeded reset of a native vector env, checked as the run checks it
    (``native_checks``); ConfigError where it raises or returns what the run cannot read."""
    name = type(envs.env if isinstance(envs, LaidOutVecEnv) else envs).__name__
    with env_time_limit(f"env {env_id!r}", "its first reset in the start-up check", timeout, timeout):
        try:
            result = guarded(name, "reset", envs.reset)
            check_reset(name, envs.observation_space, result)
        except EnvWorkerError as exc:
            raise ConfigError(f"--env-name {env_id!r}: {str(exc).splitlines()[0]}.") from exc
    return result[1]


def _native_masks(envs: VectorEnv, env_id: str, action_masks: str, infos: dict[str, Any]) -> bool:
    """Whether a native vector env's run masks actions (``infos``: its first reset's): from an
    ``action_mask`` part of its Dict observations, the one way a vector env can give them here.
    ConfigError where the env gives masks another way (``infos["action_mask"]``, an
    ``action_masks()`` method of its envs) that the run would otherwise ignore, or where
    ``--action-masks`` asks what it cannot do."""
    space, discrete = envs.single_observation_space, mask_size(envs.single_action_space) is not None
    part = isinstance(space, gym.spaces.Dict) and ACTION_MASK in space.spaces
    if part and discrete:  # (with --action-masks off the part is left out already)
        return True
    if action_masks == "on" and not discrete:
        raise _no_mask_fits(env_id, envs.single_action_space)
    if action_masks == "off" or not discrete:
        return False
    try:  # asked of each env: a missing method must not make an async vector env's workers fail
        method = any(envs.call("has_wrapper_attr", "action_masks"))  # type: ignore[attr-defined]
    except Exception:  # a vector env without gymnasium's call
        method = False
    if ACTION_MASK in infos or method:
        how = f"infos[{ACTION_MASK!r}]" if ACTION_MASK in infos else "an action_masks() method of its envs"
        raise ConfigError(
            f"{env_id!r} gives a vector env whose envs give action masks through {how}, which a2c_ppo reads from "
            f"single envs only (a vector env's masks: an {ACTION_MASK!r} part of its Dict observations). Give a "
            "factory of single envs (a2c_ppo vectorises them and reads their masks), add the part, or train "
            "without masks (--action-masks off)."
        )
    if action_masks == "on":
        raise ConfigError(
            f"--action-masks on: {env_id!r} gives a vector env without an {ACTION_MASK!r} part in its observations, "
            "the one way a vector env gives masks here. Drop --action-masks, or add the part."
        )
    return False


def _no_mask_fits(env_id: str, action_space: gym.Space) -> ConfigError:
    """``--action-masks on`` for actions no mask fits, whatever the env gives: drop the flag."""
    return ConfigError(
        f"--action-masks on: {env_id!r} has actions {action_space}; action masks apply to Discrete and "
        "MultiDiscrete actions only. Drop --action-masks."
    )


def _envpool_report(env_id: str, action_masks: str) -> EnvReport:
    from a2c_ppo.envs.envpool_env import EnvPoolVecEnv

    if action_masks == "on":
        raise ConfigError("--vec-env envpool gives no action masks; drop --action-masks on.")
    envs = EnvPoolVecEnv(env_id, 1, seed=0)
    try:
        return EnvReport(envs.single_observation_space, envs.single_action_space, False, ["Vector env: EnvPool."])
    finally:
        envs.close()


def _check_module_id(env_id: str) -> None:
    if env_id in FACTORIES:  # handed over as an object (the Python API)
        return
    module_name, name = env_id.split(":", 1)
    if not module_name.strip() or not name.strip():
        raise ConfigError(f"--env-name {env_id!r}: both parts are needed, {_MODULE_FORM}.")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        fix = "Fix that module" if exc.__cause__ is not None else "Install it or fix the module path"  # its code raised
        raise ConfigError(f"--env-name {env_id!r}: cannot import module {module_name!r} ({exc}). {fix}.") from exc
    if load_entry_point(env_id) is not None or name in gym.registry:  # importing may register the id
        return
    public = [attr for attr in dir(module) if not attr.startswith("_") and callable(getattr(module, attr))]
    close = difflib.get_close_matches(name, public + list(gym.registry), n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(f'{module_name}:{c}' for c in close)}?" if close else ""
    raise ConfigError(
        f"--env-name {env_id!r}: module {module_name!r} has no callable {name!r} and registers no id {name!r}.{hint}"
    )


def _check_registered(env_id: str) -> None:
    # ale_py registers ALE/... and legacy ids (Pong-v4): load it before deciding an id is unknown.
    has_ale = env_id in gym.registry or register_atari()
    if env_id in gym.registry:
        return
    if is_atari_id(env_id) and not has_ale:
        raise ConfigError(f"--env-name {env_id!r}: Atari ids need the extra: pip install -e '.[atari]'.")
    close = suggestions(env_id)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(f"--env-name {env_id!r} is not a registered gymnasium id.{hint}")


def _built(env_id: str, recipe: EnvRecipe, action_masks: bool | None = None) -> gym.Env:
    try:
        # held until the env is built: a refusal says it all (gymnasium's "out of date" stood above it)
        with warnings.catch_warnings(record=True) as said:
            env = make_env(env_id, action_masks=action_masks, recipe=recipe)
        for warning in said:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return env
    except ConfigError:
        raise
    except Exception as exc:
        # gymnasium's own hint ("pip install swig", "gymnasium[box2d]") does not fit an install of
        # a2c_ppo: name the project's extra for the env's family (the Atari message does the same).
        entry_point = str(getattr(gym.registry.get(env_id), "entry_point", ""))
        extra = next((family for family in ("box2d", "mujoco") if f"gymnasium.envs.{family}." in entry_point), None)
        if isinstance(exc, gym.error.DependencyNotInstalled) and extra is not None:
            raise ConfigError(
                f"--env-name {env_id!r}: its {extra} simulator is not installed; install the extra: "
                f'pip install -e ".[{extra}]".'
            ) from exc
        if isinstance(exc, ModuleNotFoundError) and exc.name == "jax":  # gymnasium's phys2d/ and tabular/ ids
            raise ConfigError(
                f"--env-name {env_id!r} is one of gymnasium's jax envs, and jax is not installed (no a2c_ppo extra "
                "has it): pip install 'gymnasium[jax]', or pick another id."
            ) from exc
        raise _construction_failed(env_id, recipe.kwargs, exc) from exc


def _check_constructs(env_id: str, action_masks: str, recipe: EnvRecipe, timeout: float | None) -> EnvReport:
    def limit(what: str, seconds: float | None) -> contextlib.AbstractContextManager[None]:
        return env_time_limit(f"env {env_id!r}", f"{what} in the start-up check", seconds, timeout)

    with limit("its construction", build_limit(timeout)):
        env = _built(env_id, recipe)
    try:
        check_action_space(env.action_space, env_id)
        notes = list(getattr(env.get_wrapper_attr("plan"), "notes", [])) if _has_plan(env) else []
        discrete = mask_size(env.action_space) is not None
        if action_masks == "on" and not discrete:
            raise _no_mask_fits(env_id, env.action_space)
        with limit("its first reset", timeout):
            reset_info = _first_reset(env, env_id, recipe)
        offers = provides_action_masks(env, reset_info)
        masks = action_masks != "off" and discrete and offers
        if action_masks == "on" and not masks:
            raise ConfigError(
                f"--action-masks on: {env_id!r} gives no action mask at reset (an 'action_mask' observation part, "
                "info['action_mask'] from reset and every step, or an action_masks() method). Drop --action-masks, "
                "or give the env masks."
            )
        spaces = env.observation_space, env.action_space
        time_limit = getattr(env.spec, "max_episode_steps", None)  # set by every TimeLimit wrapper
    finally:
        close_within(env)
    own_part = isinstance(spaces[0], gym.spaces.Dict) and ACTION_MASK in spaces[0].spaces
    if masks or own_part:  # the run's env: the mask made a part, or the env's own part left out
        with limit("its construction", build_limit(timeout)):
            run_env = _built(env_id, recipe, action_masks=masks)
        try:
            spaces = run_env.observation_space, run_env.action_space
            if masks:
                with limit("its first reset", timeout):
                    _first_reset(run_env, env_id, recipe)  # a mask of the wrong shape, refused before anything starts
            else:
                notes = list(run_env.get_wrapper_attr("plan").notes)
        finally:
            close_within(run_env)
    if "ale_py" in str(getattr(gym.registry.get(env_id), "entry_point", "")) and not is_atari_id(env_id):
        notes.append(
            f"{env_id} is one of ale_py's older Atari ids, which train on its raw frames without the Atari pipeline "
            "(frame skip with max-pooling, 84x84 gray, 4 stacked, episodic life): ALE/...-v5 and ...NoFrameskip-v4 "
            "ids get it."
        )
    if masks:
        notes.append("Action masks: on (the env gives them; masked actions are never taken).")
    elif action_masks == "auto" and mask_size(spaces[1]) is not None:
        notes.append("Action masks: off (the env gives none at reset).")
    elif action_masks == "auto" and offers:
        notes.append(f"Action masks: off (the env gives them, and its actions {spaces[1]} take none: they mask "
                     "Discrete and MultiDiscrete actions).")  # fmt: skip
    return EnvReport(*spaces, masks, notes, time_limit=time_limit)


def _first_reset(env: gym.Env, env_id: str, recipe: EnvRecipe) -> dict[str, Any]:
    """The info of an unseeded reset of ``env`` (the probe must not replay the seeds training
    envs will get); ConfigError where the reset raises or gives no info dict."""
    try:
        result = env.reset()
    except Exception as exc:
        given = f" with keyword arguments {json.dumps(recipe.kwargs)}" if recipe.kwargs else ""
        raise ConfigError(
            f"--env-name {env_id!r}: the env{given} was built, and its first reset raised {type(exc).__name__}: "
            f"{str(exc).rstrip('.')}. Fix the env, or the settings it cannot run with."
        ) from exc
    info = result[1] if isinstance(result, tuple) and len(result) == 2 else None
    if not isinstance(info, dict):  # read for masks here, and by every wrapper and the vector env later
        shown = f"the info {reprlib.repr(info)}" if isinstance(result, tuple) and len(result) == 2 else "no pair"
        raise ConfigError(
            f"--env-name {env_id!r}: its first reset returned {shown}; gymnasium's reset returns (observation, "
            "info), the info a dict ({} where there is nothing to say). Fix the env's reset."
        )
    problem = obs_problem(result[0], env.observation_space, "an observation", single=True)
    if problem is not None:  # else each env's first reset fails in the run, an env failure with a traceback
        raise ConfigError(
            f"--env-name {env_id!r}: its first reset returned {problem}. Fix the env's reset or its space."
        )
    return info


def _has_plan(env: gym.Env) -> bool:
    try:
        env.get_wrapper_attr("plan")
        return True
    except AttributeError:
        return False
