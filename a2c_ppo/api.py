"""The library face: ``train(env, **settings)`` and ``load(path) -> Agent``.

``main.py`` is a thin layer over the same pieces: a keyword of ``train`` is a flag of
``main.py`` with underscores (``num_env_steps=50_000`` is ``--num-env-steps 50000``), with the
same presets and defaults, and bad settings raise ``ConfigError`` (a ``ValueError``) with the
message ``main.py`` prints. ``env`` is a registered id, a ``"module:factory"`` string, or a
callable returning a ``gymnasium.Env`` or a ``gymnasium.vector.VectorEnv`` (its own batch of
envs); a callable defined in a script or notebook reaches the worker processes by value.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from a2c_ppo import console
from a2c_ppo.agent import Agent
from a2c_ppo.api_values import EnvSpec, env_name, json_text, plain, reference, switch_word
from a2c_ppo.builders import policy_for, replay_config
from a2c_ppo.callbacks import Callback
from a2c_ppo.checkpoint import check_trusted, handed_over, load_checkpoint
from a2c_ppo.config import RunConfig
from a2c_ppo.errors import ConfigError
from a2c_ppo.resolve import resolve_request
from a2c_ppo.restore_check import check_finite, check_normalization, load_model
from a2c_ppo.session import TrainResult, launch
from a2c_ppo.signals import StopSignals


@contextlib.contextmanager
def _signals() -> Iterator[StopSignals]:
    """Ctrl-C as the CLI handles it (a checkpoint of the last finished update), in the main
    thread; elsewhere (another thread) no handler can be installed: see ``_thread_note``."""
    signals = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    with signals:
        yield signals


def _thread_note() -> str | None:
    """What a run in a thread other than the main one goes without, said before it starts:
    signals reach the main thread alone (Ctrl-C and SIGTERM, and the one with which
    ``--env-timeout`` interrupts env code in this process, ``envs/timeouts.py``); ``None`` in
    the main thread."""
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return None
    return (
        f"train(): this run trains in thread {thread.name!r}, not the main thread, which alone gets signals: Ctrl-C "
        "and SIGTERM do not stop it (it saves its checkpoint every --save-interval updates and at its end), and "
        "--env-timeout limits only envs in worker processes: env code in this process (the start-up check's env, "
        "the evaluation's, training envs stepped here) has no time limit."
    )


#: Held by the thread whose ``train`` runs: runs share the process's generators (torch's, numpy's,
#: Python's) and torch's thread count, and two at once would draw each other's numbers, neither
#: training as its seed says. Another thread's ``train`` waits its turn; a run a callback starts
#: (in the run's own thread) goes on, its draws put back after the callback (``own_draws``).
_ONE_RUN = threading.RLock()


def _no_run_in_a_forked_child() -> None:
    """A forked child has none of its parent's threads, nor the run one of them held the lock for."""
    global _ONE_RUN
    _ONE_RUN = threading.RLock()


os.register_at_fork(after_in_child=_no_run_in_a_forked_child)


@contextlib.contextmanager
def _one_run_at_a_time() -> Iterator[None]:
    """Hold ``_ONE_RUN``, waiting (and saying so) where another thread's run holds it."""
    lock = _ONE_RUN  # the one released, whatever a fork replaces meanwhile
    if not lock.acquire(blocking=False):
        console.out.line(
            "train(): another train() is running in this process; this one starts when it ends (the runs of one "
            "process share its random generators and torch's thread count; to train at once, use a process each)."
        )
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch's CPU thread count ``count`` in the block, the caller's after it.

    ``train``'s checks and ``load`` build small networks (an orthogonal init is a LAPACK call)
    on one thread: torch's parallel regions (GNU OpenMP in Linux's wheels) run once on several
    threads leave a child forked later hanging at its first, so a process that never ran one
    must not get one from us, unasked (``--num-threads`` asks)."""
    caller = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(caller)


def train(
    env: EnvSpec | None = None,
    *,
    callbacks: Callback | Iterable[Callback] = (),
    resume: str | None = None,
    trust_checkpoint: bool = False,
    **settings: Any,
) -> TrainResult:
    """Train on ``env`` with ``settings`` (the flags' names, see ``python main.py --help``; a
    setting given as ``None`` takes its default), calling ``callbacks`` (one callable or several)
    after every update: one returning ``False`` (or ``np.False_``) stops the run, its
    checkpoint saved. ``resume``: a checkpoint to continue, as ``--resume`` (``env`` left out:
    the checkpoint's). ``env`` left out of a new run: ``CartPole-v1``, as ``main.py``'s default.

    ``policy_base`` may be a ``torch.nn.Module`` subclass, ``policy_kwargs`` and ``env_kwargs``
    dicts, and a setting of auto / on / off (``action_masks``, ``overlap``) True or False.
    Returns a ``TrainResult`` (``checkpoint``, ``run_dir``, ``env_steps``, ``history``,
    ``stopped``); raises ``ConfigError`` for bad settings, before anything starts, and
    ``EnvWorkerError`` where an env fails. Like ``main.py`` it seeds Python's, numpy's and torch's
    global generators with ``seed``; torch's thread count is restored on return. A call while
    another thread's run trains waits for it (the runs of a process share those generators).
    """
    typed = {name: switch_word(name, plain(value)) for name, value in settings.items() if value is not None}
    if env is not None:
        if "env_name" in typed and typed["env_name"] != env:
            raise ConfigError(f"train() got the env twice ({env!r} and env_name={typed['env_name']!r}); give one.")
        typed["env_name"] = env
    if "env_name" in typed:
        typed["env_name"] = env_name(typed["env_name"])
    if "policy_base" in typed:
        typed["policy_base"] = reference(typed["policy_base"])
    for name in ("policy_kwargs", "env_kwargs"):
        if name in typed:
            typed[name] = json_text(typed[name], name)
    hooks = _callbacks(callbacks)
    # the run sets its own thread count (--num-threads); the caller's comes back
    with _one_run_at_a_time(), _torch_threads(1):
        note = _thread_note()
        if note is not None:  # before the start-up check, whose env may hang
            console.out.line(note)
        with _signals() as signals:
            # As main.py's start-up: a Ctrl-C inside C++ code that calls back into Python (torch,
            # a simulator building the check's env) would abort the process (pybind11's
            # "terminate called"), the caller's notebook kernel with it; it waits for the checks
            # to finish instead (a second one does not), then reaches the caller.
            with signals.deferred(escalate=True):
                request = resolve_request(typed, resume, trust_checkpoint)
            return launch(request, signals=signals, callbacks=hooks)


def _callbacks(callbacks: Callback | Iterable[Callback]) -> list[Callback]:
    """``callbacks`` as a list of callables; ConfigError for anything else, before the run starts."""
    hooks: list[Any]
    if callable(callbacks):
        hooks = [callbacks]
    else:
        try:
            hooks = list(callbacks)
        except TypeError:
            hooks = [callbacks]
    for hook in hooks:
        if not callable(hook):
            raise ConfigError(
                f"callbacks must be a callable or a list of callables taking an UpdateInfo, and {hook!r} is not "
                "callable."
            )
        try:
            inspect.signature(hook).bind(None)
        except TypeError:
            raise ConfigError(
                f"callbacks are called with one argument, an UpdateInfo, and {hook!r} cannot take it: give it one "
                "parameter (def callback(info): ...)."
            ) from None
        except ValueError:  # no signature to read (some builtins): called as it is
            pass
    return hooks


def load(
    path: str,
    *,
    env: EnvSpec | None = None,
    trust_checkpoint: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    policy_base: type | str | None = None,
) -> Agent:
    """The agent a checkpoint holds. Loading follows ``--resume``'s rules: the file is data
    (``torch.load(weights_only=True)``), and code it names (an env or a network given as
    ``module:attribute``) is imported, or text env arguments it gives are passed, only with
    ``trust_checkpoint=True``, or when this process was handed that object (an env given to
    ``train(env=...)`` here), or the call names it (``env=``, ``policy_base=``) or gives
    ``env_kwargs`` (which replace the checkpoint's).

    ``env``: the env to build the policy for, and ``evaluate``'s default, in place of the one the
    checkpoint names (which another process may not have: an env made by a lambda in a script
    or notebook); its spaces must be the checkpoint's. ``policy_base``: the network class (or
    ``module:Class``) in place of the one the checkpoint names; its weights must fit."""
    checkpoint = load_checkpoint(path)
    notes: list[str] = []
    config = RunConfig.from_dict(checkpoint["config"], notes)
    if env is not None:
        config = config.replace(env_name=env_name(env))
    elif "<" in config.env_name and not handed_over(config.env_name):  # a lambda's, or a nested function's
        raise ConfigError(
            f"load({path!r}): the checkpoint was trained on an env made by {config.env_name!r}, which only the "
            "process that trained it knows; give the env: load(path, env=...) with an id or a callable that makes it."
        )
    if env_kwargs is not None:
        config = config.replace(env_kwargs=json_text(env_kwargs, "env_kwargs"))
    known: dict[str, Any] = {}
    if env is not None:
        known["env_name"] = config.env_name
    if policy_base is not None:
        config = config.replace(policy_base=reference(policy_base))
        known["policy_base"] = config.policy_base
    if env_kwargs is not None:
        known["env_kwargs"] = config.env_kwargs
    check_trusted(config, known, trust_checkpoint, what=f"load({path!r})")
    check_finite(checkpoint, f"checkpoint {path!r}")
    from a2c_ppo.checkpoint import check_spaces

    config, spaces = replay_config(config)
    check_spaces(checkpoint, *spaces, config.env_name)
    with _torch_threads(1):
        policy = policy_for(config, *spaces)  # on the CPU: an agent acts on one observation at a time
        load_model(policy, checkpoint, f"checkpoint {path!r}", named_base=known.get("policy_base"))
    check_normalization(checkpoint, spaces[0], f"checkpoint {path!r}")
    return Agent(policy, config, checkpoint["normalization"])


__all__ = ["Agent", "ConfigError", "TrainResult", "load", "train"]
