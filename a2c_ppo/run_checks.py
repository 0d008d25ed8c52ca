"""The checks ``resolve.resolve_request`` makes on a whole run's settings, before anything
starts: settings consistent with each other, the policy buildable on the env's spaces (and
whether it is recurrent), and a recurrent policy's sequences making the minibatches."""

from __future__ import annotations

import math
import os
import re
from importlib.util import find_spec
from typing import Any

from a2c_ppo.config import RunConfig
from a2c_ppo.errors import ConfigError
from a2c_ppo.storage import chunks_split, fitting_chunk_length


def validate(config: RunConfig, origins: dict[str, str]) -> None:
    """Raise ConfigError with what to change when settings are inconsistent with each other
    (each one alone was checked against its declaration); ``origins`` says where each came from."""
    batch = config.batch_size
    if batch % config.num_mini_batch != 0:
        origin = origins.get("num_mini_batch", "typed")
        whose = "" if origin == "typed" else f" (that count is the {origin}'s, made for its own batch)"
        raise ConfigError(
            f"the batch of --num-processes x --num-steps = {config.num_processes} x {config.num_steps} = {batch} "
            f"samples does not split into --num-mini-batch {config.num_mini_batch} equal minibatches{whose}; "
            "choose a --num-mini-batch that divides it."
        )
    if config.algo == "acktr" and config.recurrent_policy:
        _refuse_recurrent_acktr("--recurrent-policy", "drop --recurrent-policy")
    if config.policy_base and config.cnn_head_size:
        raise ConfigError(
            "--cnn-head-size adds layers to the built-in CNN, and a --policy-base network builds its own; drop "
            "--cnn-head-size (give your network its sizes with --policy-kwargs)."
        )
    if config.value_norm_stats != "returns" and not config.norm_value:
        raise ConfigError(
            f"--value-norm-stats {config.value_norm_stats} chooses the statistics of --norm-value, which is off; "
            "add --norm-value or drop --value-norm-stats."
        )
    if config.num_env_steps < batch:
        raise ConfigError(
            f"--num-env-steps {config.num_env_steps} is less than one update's batch "
            f"({batch} = --num-processes x --num-steps); raise it or shrink the batch."
        )
    if config.wandb_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", config.wandb_id):
        raise ConfigError(
            f"--wandb-id {config.wandb_id!r} is not a W&B run id: give 1 to 64 letters, digits, '_' or '-' (the "
            "console prints a tracked run's id, and its page's address ends with it)."
        )

    for flag, wanted, package, extra in (
        ("--track", config.track, "wandb", "wandb"),
        ("--capture-video", config.capture_video, "imageio_ffmpeg", "video"),
    ):
        if wanted and find_spec(package) is None:
            raise ConfigError(f'{flag} needs {package}, which is not installed: pip install -e ".[{extra}]".')


def _refuse_recurrent_acktr(what: str, instead: str) -> None:
    """ConfigError: ACKTR with a recurrent network (``what``), and ``instead`` of it."""
    raise ConfigError(
        f"--algo acktr does not support {what}: K-FAC keeps Kronecker factors only for Linear and Conv2d "
        "layers and cannot precondition the recurrent layer's shared weights. Use --algo a2c or --algo ppo "
        f"for a recurrent policy, or {instead}."
    )


def check_chunk_length(config: RunConfig, notes: list[str], recurrent: bool) -> None:
    """Recurrent PPO trains on whole sequences: there must be ``num_mini_batch`` equal sets of them.

    ``recurrent``: whether the policy is (``--recurrent-policy``, or a ``--policy-base`` that
    says so). A given ``--recurrent-chunk-length`` must make them (ConfigError). Without one, the
    storage takes ``fitting_chunk_length`` at each launch, for the batch of that launch (a resume
    with other minibatches chooses again); a length other than whole columns is said in ``notes``.
    """
    if not (recurrent and config.algo == "ppo"):
        return
    T, N, M = config.num_steps, config.num_processes, config.num_mini_batch
    length = config.recurrent_chunk_length
    if length is not None:
        if T % length != 0:
            raise ConfigError(
                f"--recurrent-chunk-length {length} does not divide --num-steps {T}; choose a chunk length "
                "that divides it."
            )
        if not chunks_split(T, N, length, M):
            raise ConfigError(
                f"a recurrent policy trains on sequences of --recurrent-chunk-length {length} steps: "
                f"--num-processes x --num-steps / chunk length = {N} x {T} / {length} = {N * (T // length)} "
                f"sequences, which do not split into --num-mini-batch {M} equal minibatches; use a shorter "
                "--recurrent-chunk-length, more --num-processes, or a --num-mini-batch that divides the number "
                "of sequences."
            )
        return
    length = fitting_chunk_length(T, N, M)
    if length != T:
        notes.append(
            f"Recurrent chunk length {length}: whole columns ({N} sequences of {T} steps) cannot make "
            f"{M} minibatches (set --recurrent-chunk-length to choose)."
        )


def check_policy_fits(config: RunConfig, observation_space: Any, action_space: Any) -> bool:
    """Build the policy once on the CPU: unsupported spaces fail here, not after workers start.
    Returns whether the policy is recurrent (a ``--policy-base`` network says so itself)."""
    from a2c_ppo.builders import check_user_base, policy_for

    check_memory_fits(config, observation_space)  # before building a network that may be huge itself
    try:
        policy = policy_for(config, observation_space, action_space)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"--env-name {config.env_name!r}: {str(exc).rstrip('.')}.") from None
    check_memory_fits(config, observation_space, policy)
    if config.policy_base:
        check_user_base(policy, config.policy_base)
        if policy.is_recurrent and config.algo == "acktr":
            _refuse_recurrent_acktr(f"--policy-base {config.policy_base!r}, a recurrent network (is_recurrent)",
                                    "give a feed-forward network")  # fmt: skip
    return policy.is_recurrent


def check_memory_fits(config: RunConfig, observation_space: Any, policy: Any = None) -> None:
    """ConfigError where the rollout storage and ``policy`` (with its gradients and Adam's two
    moments; None: the storage alone) need more than the machine's physical memory (and the
    GPU's, where the run trains on one: a lower bound of the need against an upper bound of the
    room, so that no run that fits is refused): such a run could only fail to allocate once its
    folder exists (``--num-steps 1000000000000``), or swap."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # a platform that does not say
        return
    import torch

    if torch.cuda.is_available() and not config.no_cuda:  # storage and network there: a GPU may hold more
        memory += torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    from a2c_ppo.observations import obs_layout

    observation = sum(math.prod(shape) * dtype.itemsize for shape, dtype in obs_layout(observation_space).values())
    # besides the observation: the recurrent state, and about ten float32 per step (masks,
    # values, rewards, log-probabilities, returns, actions, flags)
    state = 0 if policy is None else policy.recurrent_hidden_state_size
    per_step = observation + 4 * (state + 10)
    storage = (config.num_steps + 1) * config.num_processes * per_step
    parameters = 0 if policy is None else sum(p.numel() for p in policy.parameters())
    needed = storage + 4 * 4 * parameters
    if needed > memory:
        network = f", and the network's {parameters:,} parameters with their gradients and optimizer state" * bool(
            parameters
        )
        raise ConfigError(
            f"this run needs at least {needed / 2**30:,.1f} GiB of memory, more than this machine's "
            f"{memory / 2**30:,.1f} GiB: the rollout storage of --num-processes x --num-steps = "
            f"{config.num_processes:,} x {config.num_steps:,} steps of {per_step:,} bytes each{network}. Lower "
            "--num-steps or --num-processes (or what makes the observations or the network large: --frame-stack, "
            "--frame-size, --hidden-size)."
        )
