"""Building the pieces of a run from its RunConfig: device, seeds, envs, policy, algorithm.

Shared by training (``trainer.py``, ``session.py``), replay (``enjoy.py``) and validation (``resolve.py``), so
each piece is described by the config in one place.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo.algo import A2C, ACKTR, PPO, KFACOptimizer, make_rmsprop
from a2c_ppo.algo.common import Reducer
from a2c_ppo.algo.gail import GAIL
from a2c_ppo.algo.hand_gradient import HandGradient
from a2c_ppo.config import RunConfig, json_object
from a2c_ppo.distributions import DiagGaussianHead
from a2c_ppo.envs import make_vec_envs
from a2c_ppo.envs.frames import env_identity, recipe_of
from a2c_ppo.envs.make import import_module
from a2c_ppo.envs.torch_env import TorchVecEnv
from a2c_ppo.errors import ConfigError
from a2c_ppo.fastpath import acting_function, fast_mlp
from a2c_ppo.init import default_init
from a2c_ppo.model import Policy, make_policy
from a2c_ppo.observations import probe_obs
from a2c_ppo.precision import PROBE_ROWS, autocast, preserved_buffers, preserved_rng
from a2c_ppo.sde import make_sde_head
from a2c_ppo.spaces import ACTION_MASK
from a2c_ppo.trajectories import load_trajectories, select_episodes, subsample


def select_device(config: RunConfig) -> torch.device:
    if torch.cuda.is_available() and not config.no_cuda:
        if config.cuda_deterministic:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_envs(
    config: RunConfig, num_envs: int, device: torch.device, policy: Policy | None = None, **overrides: Any
) -> TorchVecEnv:
    """The vector env ``config`` describes (``overrides`` go to make_vec_envs), as tensors.

    With ``policy`` the layout is the training one: ``--overlap auto`` times the policy's act.
    Our SubprocVecEnv gives infos only where an episode ended (``step_infos=False``): the rest
    TorchVecEnv never reads (a native or EnvPool vector env keeps all of its infos, its
    ``_reset_step`` marker included)."""
    timer = None
    if policy is not None and config.overlap == "auto":
        timer = policy_step_timer(policy, device, fast=config.fast_path == "auto")
    kwargs = {
        "overlap": config.overlap if policy is not None else "off",
        "policy_step_s": timer,
        "gamma": config.gamma,
        "norm_obs": config.norm_obs,
        "norm_reward": config.norm_reward,
        "vec_env": config.vec_env,
        "num_workers": config.num_workers,
        "env_timeout": config.env_timeout,
        "action_masks": config.action_masks == "on",
        "step_infos": False,
        "recipe": recipe_of(config),
        **overrides,
    }
    return TorchVecEnv(make_vec_envs(config.env_name, num_envs, **kwargs), device)


def replay_vec_env(config: RunConfig) -> str:
    """The vector env evaluation and replay build: the user's own for ``native`` (a factory of
    vector envs builds no single env), else every env in this process."""
    return "native" if config.vec_env == "native" else "sync"


def replay_config(config: RunConfig) -> tuple[RunConfig, tuple[gym.Space, gym.Space]]:
    """``config`` for replaying on its env, whose kind is the env's own (``env=`` and
    ``--env-name`` may name another env than the one trained on, with the same spaces): a factory
    of vector envs is replayed as one (``native``), any other env as single envs. With the env's
    (observation, action) spaces; ConfigError for an env that cannot be made."""
    from a2c_ppo.envs.check import inspect_env

    report = inspect_env(config.env_name, config.action_masks, "auto", recipe_of(config), config.env_timeout)
    native = report.vector_envs is not None
    vec_env = "native" if native else "sync" if config.vec_env == "native" else config.vec_env
    return config.replace(vec_env=vec_env), (report.observation_space, report.action_space)


def make_agent(
    config: RunConfig, policy: Policy, reducer: Reducer | None = None, device: torch.device | None = None
) -> PPO | A2C | ACKTR:
    """The algorithm object for ``config.algo``; ``reducer`` for data-parallel training; the
    policy's passes in ``config.precision`` (resolved: fp32 or bf16) on ``device``."""
    precision = "bf16" if config.precision == "bf16" else "fp32"
    cast = functools.partial(autocast, precision, device or torch.device("cpu"))
    common: dict[str, Any] = {
        "value_loss_coef": config.value_loss_coef,
        "entropy_coef": config.entropy_coef,
        "norm_adv": config.norm_adv,
    }
    if config.algo == "acktr":  # refused under torchrun (distributed.check_algorithm)
        return ACKTR(policy, KFACOptimizer(policy, lr=config.lr), **common)
    # The hand-written gradients are A2C's and PPO's clip objective's in float32; the rest is autograd's.
    hand = config.fast_path == "auto" and precision == "fp32" and (config.algo == "a2c" or config.ppo_variant == "clip")
    parts = fast_mlp(policy) if hand else None
    if config.algo == "a2c":
        optimizer = make_rmsprop(policy.parameters(), lr=config.lr, eps=config.eps, alpha=config.alpha)
        return A2C(policy, optimizer, max_grad_norm=config.max_grad_norm, reducer=reducer, autocast=cast,
                   gradient=HandGradient(parts) if parts is not None else None, **common)  # fmt: skip
    return PPO(
        policy,
        gradient=HandGradient(parts) if parts is not None else None,
        lr=config.lr,
        clip_param=config.clip_param,
        ppo_epoch=config.ppo_epoch,
        num_mini_batch=config.num_mini_batch,
        norm_adv_scope=config.norm_adv_scope,
        eps=config.eps,
        max_grad_norm=config.max_grad_norm,
        use_clipped_value_loss=config.clip_value_loss,
        target_kl=config.target_kl,
        reducer=reducer,
        variant=config.ppo_variant,
        kl_coef=config.kl_coef,
        kl_target=config.kl_target,
        autocast=cast,
        **common,
    )


def make_gail(
    config: RunConfig,
    spaces: tuple[gym.Space, gym.Space],
    reducer: Reducer | None,
    device: str | torch.device,
    rank: int,
    new_run: bool = False,
    time_limit: int | None = None,
) -> GAIL:
    """GAIL's discriminator on ``--gail-experts`` (checked against the run's env and spaces:
    ConfigError otherwise), ``--gail-trajectories`` episodes of it, every ``--gail-subsample``-th
    step (the selection and the minibatch order seeded by ``--seed``; each rank draws its own).
    ``new_run``: refuse a subsample step longer than an episode (a resume keeps its run's).
    ``time_limit``: the env's (``EnvReport.time_limit``), which no expert episode can exceed."""
    if not config.gail_experts:
        raise ConfigError("--gail needs --gail-experts FILE (written by enjoy.py --record-trajectories FILE).")
    _check_vector_observations(config, spaces[0])
    if config.gail_absorbing and not config.use_proper_time_limits:
        raise ConfigError(
            "--gail-absorbing treats episodes that terminate apart from those a time limit cuts, and "
            "--no-use-proper-time-limits makes the two alike: drop --no-use-proper-time-limits or --gail-absorbing."
        )
    if config.gail_absorbing and config.gamma >= 1.0:
        raise ConfigError(
            "--gail-absorbing pays a terminated step the absorbing state's reward for every step after it, "
            "discounted: with --gamma 1 that sum is infinite. Give --gamma below 1, or drop --gail-absorbing."
        )
    expert = load_trajectories(
        config.gail_experts,
        env_id=env_identity(config),
        observation_space=spaces[0],
        action_space=spaces[1],
        max_episode_steps=time_limit,
    )
    if config.gail_absorbing and expert.terminated is None:
        raise ConfigError(
            f"--gail-absorbing needs to know which expert episodes terminated, and {config.gail_experts!r} was "
            "recorded before a2c_ppo recorded that: record it again (enjoy.py --record-trajectories), or drop "
            "--gail-absorbing."
        )
    if config.gail_trajectories is not None:
        held = len(expert.lengths)
        if config.gail_trajectories > held:
            raise ConfigError(
                f"--gail-trajectories {config.gail_trajectories}, but {config.gail_experts!r} holds only {held} "
                f"episode{'s' if held != 1 else ''}: "
                f"give at most {held}, or record more (enjoy.py --num-episodes N --record-trajectories FILE)."
            )
        expert = select_episodes(expert, config.gail_trajectories, generator=config.seed)
    if config.gail_subsample > 1:
        shortest = int(expert.lengths.min())
        if new_run and config.gail_subsample > shortest:  # the random start would decide which episodes are left
            raise ConfigError(
                f"--gail-subsample {config.gail_subsample} is longer than the shortest expert episode kept "
                f"({shortest} steps): such an episode would keep one step or none, as the seed falls; give at most "
                f"{shortest}."
            )
        expert = subsample(expert, config.gail_subsample, generator=config.seed)
    return GAIL(expert, reducer=reducer, seed=config.seed + rank, device=device, reward_form=config.gail_reward,
                absorbing=config.gail_absorbing, expert_subsample=config.gail_subsample)  # fmt: skip


def _check_vector_observations(config: RunConfig, observation_space: gym.Space) -> None:
    """ConfigError for a run whose observations are a Dict, before the expert file is read (its
    format holds one space, and the discriminator reads one vector). Where the Dict is the action
    mask's, the env is probed without masks to say whether --action-masks off is the fix."""
    if not isinstance(observation_space, gym.spaces.Dict):
        return  # GAIL itself refuses any other observation that is not a vector, naming its shape
    parts = observation_space.spaces
    what = f"GAIL learns from vector observations, and the observations of {config.env_name!r}"
    if ACTION_MASK not in parts:
        raise ConfigError(
            f"{what} are a Dict of the parts {', '.join(parts)}: train GAIL on an env with 1-D observations (wrap "
            "this one to give them, e.g. with gymnasium's FlattenObservation)."
        )
    from a2c_ppo.envs.check import inspect_env

    # the env's own observations: what an expert file records, and what a run without masks sees
    own = inspect_env(config.env_name, "off", config.vec_env, recipe_of(config), config.env_timeout).observation_space
    masked = (
        f"{what} are a Dict with action masks: the env's own, {own}, with the action mask that --action-masks adds "
        "(its default, auto, adds the masks an env gives)."
    )
    if isinstance(own, (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)) and len(own.shape) == 1:
        raise ConfigError(
            f"{masked} Pass --action-masks off: an expert file records the env's own observations, without the "
            "mask, and GAIL learns from those."
        )
    raise ConfigError(
        f"{masked} Without the mask (--action-masks off) they are {own}, which is no vector either: train GAIL on "
        "an env with 1-D observations (wrap this one to give them, e.g. one-hot as a Box)."
    )


def policy_for(config: RunConfig, observation_space: gym.Space, action_space: gym.Space) -> Policy:
    """The Policy ``config`` describes for these spaces (on the CPU): the default base for the
    observation space, or the user's ``--policy-base`` built with ``--policy-kwargs``; a gSDE
    head (``sde.py``) with ``--use-sde``; PyTorch's default initialisation with ``--no-ortho-init``."""
    if config.policy_base:
        base = user_base(config.policy_base, observation_space, json_object(config.policy_kwargs, "--policy-kwargs"))
        policy = Policy(observation_space, action_space, base=base)  # type: ignore[arg-type]
    else:
        policy = make_policy(
            observation_space,
            action_space,
            hidden_size=config.hidden_size,
            recurrent=config.recurrent_policy,
            rnn_type=config.recurrent_type,
            activation=config.activation,
            cnn_head_size=config.cnn_head_size,
        )
    if config.use_sde:
        sde = make_sde_head(action_space, policy.base.output_size, config.log_std_init, config.sde_sample_freq)
        policy.add_module("dist", sde)  # in place of Policy's head (not an assignment: dist is typed as make_head's)
    if not config.ortho_init:  # a user's base initialises itself: only the head here
        default_init(policy.dist if config.policy_base else policy)
    if not config.use_sde and isinstance(policy.dist, DiagGaussianHead):
        with torch.no_grad():
            policy.dist.log_std.bias.fill_(config.log_std_init)
    return policy


def user_base(reference: str, observation_space: gym.Space, kwargs: dict[str, Any]) -> torch.nn.Module:
    """``module:Class`` built as ``Class(observation_space, **kwargs)``, checked to be a base
    (see ``model.Base``); ConfigError saying what is wrong otherwise."""
    module_name, _, name = reference.partition(":")
    what = f"--policy-base {reference!r}"
    try:
        module = import_module(module_name)
    except ImportError as exc:
        fix = "fix that module" if exc.__cause__ is not None else "install it or fix the path"  # its code raised
        raise ConfigError(f"{what}: cannot import module {module_name!r} ({exc}); {fix}.") from None
    if name and not hasattr(module, name):
        raise ConfigError(
            f"{what}: module {module_name!r} has no {name!r}; give module:Class, a base (see the README)."
        )
    cls = getattr(module, name) if name else None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ConfigError(f"{what}: give module:Class, a torch.nn.Module subclass (a base, see the README).")
    try:
        base = cls(observation_space, **kwargs)
    except Exception as exc:
        failed = f"{what}({observation_space}, **{kwargs}) raised {type(exc).__name__}: {exc}."
        raise ConfigError(failed + _masked_hint(observation_space)) from None
    missing = [
        attr for attr in ("is_recurrent", "recurrent_hidden_state_size", "output_size") if not hasattr(base, attr)
    ]
    if missing:
        raise ConfigError(f"{what} lacks {', '.join(missing)}; a base has these (see the README's Python API).")
    return base


def _masked_hint(observation_space: gym.Space) -> str:
    """What a base meets when the run masks actions (said where a base fails), else nothing."""
    if not (isinstance(observation_space, gym.spaces.Dict) and ACTION_MASK in observation_space.spaces):
        return ""
    return (
        f" The run masks actions, so the base gets observations with an {ACTION_MASK!r} part (an env's observations "
        "that are not a Dict under 'obs'): read the parts it needs, or pass --action-masks off."
    )


def check_user_base(policy: Policy, reference: str) -> None:
    """One pass of a ``--policy-base`` network as the run will make them, on ``probe_obs``:
    acting on 4 envs, then an update's pass (a recurrent base: 2 steps of 2 envs, the rows of a
    sequence minibatch with one state per env). ConfigError naming the base and what it returned,
    before any worker starts."""
    complex_parts = [name for name, tensor in policy.state_dict().items() if tensor.is_complex()]
    if complex_parts:  # a checkpoint holding them is refused on loading: a NaN would hide from its checks
        raise ConfigError(f"--policy-base {reference!r} holds complex tensors ({', '.join(complex_parts)}), which "
                          "a2c_ppo's checkpoints do not; keep them as real ones (torch.view_as_real).")  # fmt: skip
    rows = 4
    envs = 2 if policy.is_recurrent else rows
    obs = probe_obs(policy.obs_space, rows)
    masks = torch.ones(rows, 1)
    expected = (
        f"its forward(obs, rnn_hxs, masks) must return (value (B, 1), features (B, output_size "
        f"{policy.base.output_size}), rnn_hxs)"
    )
    if policy.is_recurrent:
        expected += (
            ", for B rows and B states (acting), and for T x N rows, time-major, with the N states the "
            "sequences start from (an update; a mask of 0 starts an episode): see the README's Python API"
        )
    states = torch.zeros(rows, policy.recurrent_hidden_state_size)
    try:
        with torch.no_grad():
            value, features, new_states = policy.base(obs, states, masks)
            # its shapes before the action head reads the features: a head's error would not name them
            if tuple(value.shape) != (rows, 1) or tuple(features.shape) != (rows, policy.base.output_size):
                raise ConfigError(
                    f"--policy-base {reference!r} returned a value of shape {tuple(value.shape)} and features of "
                    f"shape {tuple(features.shape)} for {rows} observations; {expected}."
                )
            _, action, _, _ = policy.act(obs, states, masks)
            policy.evaluate_actions(obs, states[:envs], masks, action)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"--policy-base {reference!r} failed on {rows} observations (each part 0, or its space's value "
            f"nearest 0) ({type(exc).__name__}: {str(exc).strip()}); {expected}.{_masked_hint(policy.obs_space)}"
        ) from None
    if policy.is_recurrent and tuple(new_states.shape) != tuple(states.shape):
        raise ConfigError(
            f"--policy-base {reference!r} returned rnn_hxs of shape {tuple(new_states.shape)} for {rows} states of "
            f"its recurrent_hidden_state_size {policy.recurrent_hidden_state_size}; it must return one state of that "
            "size per row (the rollout stores them)."
        )
    if not (torch.isfinite(value).all() and torch.isfinite(features).all()):
        raise ConfigError(f"--policy-base {reference!r} returned values or features that are not finite on "
                          "observations of 0 (or the space's value nearest 0); check its initialisation.")  # fmt: skip


def precision_probe(policy: Policy, device: torch.device, rows: int = PROBE_ROWS) -> Callable[[str], None]:
    """``step(precision)``: one forward and backward pass of ``policy`` on ``rows`` zero
    observations, as an update makes them (for ``precision.choose_precision``)."""
    obs = probe_obs(policy.obs_space, rows, device)
    rnn_hxs = torch.zeros(rows, policy.recurrent_hidden_state_size, device=device)
    masks = torch.ones(rows, 1, device=device)

    def step(precision: str) -> None:
        with preserved_buffers(policy):  # restored after the backward pass, which may read them (batch norm)
            with autocast(precision, device):
                value, dist, _ = policy.evaluate(obs, rnn_hxs, masks)
            (value.float().mean() - dist.entropy().float().mean()).backward()
        policy.zero_grad(set_to_none=True)

    return step


def policy_step_timer(policy: Policy, device: torch.device | str = "cpu", fast: bool = True) -> Callable[[int], float]:
    """``seconds(n)``: the median time of one deterministic act (as the rollout acts) on ``n``
    envs (observations of the policy's space), for the ``auto`` overlap choice of ``make_vec_envs``.

    Deterministic, and with torch's RNG and the policy's buffers restored, so that timing leaves
    the run's results alone (a network of one's own may draw for dropout in train mode).
    """
    act = acting_function(policy, deterministic=True, fast=fast)

    def seconds(n: int, repeats: int = 7) -> float:
        obs = probe_obs(policy.obs_space, n, device)
        rnn_hxs = torch.zeros(n, policy.recurrent_hidden_state_size, device=device)
        masks = torch.ones(n, 1, device=device)
        times = []
        with torch.inference_mode(), preserved_rng(), preserved_buffers(policy):  # a base's dropout, batch norm
            for _ in range(repeats + 1):
                start = time.perf_counter()
                act(obs, rnn_hxs, masks)
                times.append(time.perf_counter() - start)
        return float(np.median(times[1:]))  # the first call warms caches up

    return seconds
