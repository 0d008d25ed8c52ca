"""Checkpoints as data: state_dicts, the run config as JSON, normalisation stats, counters, RNG.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint cannot run code. Written
atomically (``files.write_atomically``), so a crash or a full disk mid-write never leaves a
broken checkpoint behind; a model or statistics that are not finite are refused, so NaNs
never overwrite a good checkpoint.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import re
import shlex
import sys
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo import __version__
from a2c_ppo.algo.common import Optimizer
from a2c_ppo.checkpoint_formats import check_action_start, upgrade
from a2c_ppo.errors import ConfigError, NonFiniteError
from a2c_ppo.files import check_archive, larger_than_its_data, write_atomically

#: 3: PPO's Adam state is ``FlatAdam``'s vectors (algo/flat_params.py); 4: A2C's RMSprop state
#: ``FlatRMSprop``'s; 5: the spaces record the ``start`` of Discrete and MultiDiscrete spaces.
#: Formats 2 to 4 are upgraded on load (``checkpoint_formats``).
FORMAT_VERSION = 5
#: Fields stored as JSON text (plain data that is not a tensor).
JSON_FIELDS = ("config", "normalization", "spaces")


def describe_space(space: gym.Space) -> dict[str, Any]:
    """Plain-data description of a space, enough to tell whether two spaces match: discrete ones
    with their ``start``, from which the env counts the policy's classes and actions."""
    desc: dict[str, Any] = {"type": type(space).__name__, "shape": list(space.shape or ())}
    if isinstance(space, gym.spaces.Discrete):
        desc.update(n=int(space.n), start=int(space.start))
    if isinstance(space, gym.spaces.MultiDiscrete):
        desc.update(nvec=space.nvec.reshape(-1).tolist(), start=space.start.reshape(-1).tolist())
    return desc


def rng_state() -> dict[str, Any]:
    """Every generator's state (torch, CUDA, numpy's and Python's global ones) as a checkpoint stores it."""
    return rng_payload(raw_rng_state())


def raw_rng_state() -> tuple[Any, ...]:
    """The generators' states as they come, for :func:`rng_payload` to convert when a checkpoint
    is written: the run takes them after every update, where the conversion (the JSON of
    Python's state, numpy's keys as a tensor) cost some 150 us of a 5-step A2C update."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()


def set_raw_rng_state(raw: tuple[Any, ...]) -> None:
    """Put the generators back in :func:`raw_rng_state`'s states."""
    torch_state, cuda, np_state, python_state = raw
    torch.set_rng_state(torch_state)
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(np_state)
    random.setstate(python_state)


def rng_payload(raw: tuple[Any, ...]) -> dict[str, Any]:
    """:func:`raw_rng_state`'s states as tensors and plain data."""
    torch_state, cuda, np_state, python_state = raw  # numpy's: ("MT19937", keys, pos, has_gauss, gauss)
    return {
        "torch": torch_state,
        "cuda": cuda,
        # with the normal numpy drew in pair with the last one, which its next draw takes
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": json.dumps(python_state),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put the generators in a checkpoint's states (:func:`rng_payload`'s form)."""
    cuda = state["cuda"][: torch.cuda.device_count()] if torch.cuda.is_available() else []  # the GPUs here
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    version, internal, gauss = json.loads(state["python"])
    saved = state["numpy"]  # written without the cached normal before 2026-12: none cached
    numpy_state = ("MT19937", keys, saved["pos"], saved.get("has_gauss", 0), saved.get("gauss", 0.0))
    set_raw_rng_state((state["torch"], cuda, numpy_state, (version, tuple(internal), gauss)))


def first_non_finite(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor holding a NaN or infinity, else ``None``; checked
    as float32, the policy's own type (a float64 1e300 from a file loads as infinity)."""
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor.to(torch.float32)).all()):
            return name
    return None


class FiniteCheck:
    """``first_non_finite`` of a module's state, as run after every update. Where every floating
    tensor of the state is a view into ``flat`` (an algorithm's ``FlatParameters.data``, which
    holds the parameters themselves), one op checks them all: a tensor at a time cost 380 us
    per update for a 64x64 actor-critic, some 5% of a 5-step A2C update. The views are checked
    once, here: the state's tensors are updated in place, never replaced."""

    def __init__(self, module: torch.nn.Module, flat: torch.Tensor | None = None) -> None:
        self.module = module
        floating = [t for t in module.state_dict().values() if t.is_floating_point()]
        storage = None if flat is None else flat.untyped_storage().data_ptr()
        self.flat = flat if all(t.untyped_storage().data_ptr() == storage for t in floating) else None

    def first_non_finite(self) -> str | None:
        """The name of the first floating tensor of the state holding a NaN or infinity, else ``None``."""
        if self.flat is not None and bool(torch.isfinite(self.flat).all()):
            return None
        return first_non_finite(self.module.state_dict())


def _all_finite(data: Any) -> bool:
    """Whether every number in nested plain data (dicts, lists, floats) is finite."""
    if isinstance(data, dict):
        return all(_all_finite(value) for value in data.values())
    if isinstance(data, (list, tuple)):
        return all(_all_finite(value) for value in data)
    return not isinstance(data, float) or math.isfinite(data)


def save_checkpoint(
    path: str,
    *,
    model: torch.nn.Module,
    optimizer: Optimizer | None,
    config: dict[str, Any],
    normalization: dict[str, Any] | None,
    counters: dict[str, int],
    observation_space: gym.Space,
    action_space: gym.Space,
    resume_state: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    algorithm: dict[str, Any] | None = None,
    make_folder: bool = True,
) -> None:
    """Atomically write a checkpoint to ``path`` (``make_folder``: making its folder where
    there is none); NonFiniteError (and nothing written) if the
    model or the normalisation statistics hold a NaN or infinity.

    ``resume_state``: what an exact resume needs beyond the rest (tensors and plain data);
    ``rng``: the RNG states to store (default: the current ones, ``rng_state()``);
    ``algorithm``: the algorithm's own state beyond the optimizer (PPO's KL coefficient, the
    GAIL discriminator), tensors and plain data.
    """
    bad = first_non_finite(model.state_dict())
    if bad is not None:
        raise NonFiniteError(f"not saving {path}: model parameter {bad!r} is not finite")
    if normalization is not None and not _all_finite(normalization):
        raise NonFiniteError(f"not saving {path}: the observation/return normalisation statistics are not finite")
    payload = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": json.dumps(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "normalization": json.dumps(normalization),
        "counters": dict(counters),
        "rng": rng if rng is not None else rng_state(),
        "spaces": json.dumps(
            {"observation": describe_space(observation_space), "action": describe_space(action_space)}
        ),
        "resume_state": resume_state,
        "algorithm": algorithm or {},
    }
    write_atomically(path, lambda f: torch.save(payload, f), make_folder=make_folder)


def load_checkpoint(
    path: str,
    map_location: str | torch.device = "cpu",
    what: str = "checkpoint",
    remedy: str = "pass a checkpoint that a2c_ppo wrote (a run folder's checkpoint.pt), or train first.",
) -> dict[str, Any]:
    """Read a checkpoint; JSON fields come back decoded. ConfigError if it is unusable.

    ``what`` names the flag the path came from, ``remedy`` what to do, for the message.
    """
    check_archive(path, f"{what} {path!r}", "checkpoint file", remedy)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError(
            f"{what} {path!r} is refused: it contains code or Python objects besides tensors and plain data, "
            "and loading it could run that code. a2c_ppo checkpoints never do; use one written by a2c_ppo."
        ) from None
    except Exception:
        raise ConfigError(
            f"{what} {path!r} cannot be read: it was not written by a2c_ppo, or it is truncated or damaged "
            f"(e.g. copied while being written); {remedy}"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ConfigError(f"{what} {path!r} is not an a2c_ppo checkpoint.")
    try:
        upgrade(payload, f"{what} {path!r}")
        if payload["format_version"] != FORMAT_VERSION:
            raise ConfigError(
                f"{what} {path!r} has checkpoint format {payload['format_version']}, but this a2c_ppo reads format "
                f"{FORMAT_VERSION}; use the a2c_ppo version that wrote it ({payload.get('package_version')})."
            )
        for key in JSON_FIELDS:
            payload[key] = json.loads(payload[key])
        _check_structure(payload)
    except ConfigError:
        raise
    except (LookupError, TypeError, ValueError, AttributeError, RuntimeError) as exc:  # an upgrade's too
        raise ConfigError(
            f"{what} {path!r} is damaged or was not written by a2c_ppo: {exc}. Use another checkpoint."
        ) from None
    return payload


#: The parts of a checkpoint and their types (``restore_check`` checks that their contents fit a
#: run); a policy saved without training state has no optimizer or rollout state (None).
PARTS: dict[str, tuple[type, ...]] = {"config": (dict,), "model": (Mapping,), "optimizer": (dict, type(None)),
         "counters": (dict,), "rng": (dict,), "resume_state": (dict, type(None)), "algorithm": (dict,),
         "spaces": (dict,)}  # fmt: skip


def _check_structure(payload: dict[str, Any]) -> None:
    """Each part present with its type, the model's parameters named tensors (TypeError or KeyError)."""
    payload.setdefault("algorithm", {})  # written since the Python API's commit (2bae9c9)
    for key, kinds in PARTS.items():
        if not isinstance(payload[key], kinds):
            raise TypeError(f"its {key} is a {type(payload[key]).__name__}, not a {kinds[0].__name__}")
    if not all(isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in payload["model"].items()):
        raise TypeError("its model holds something besides named tensors")
    for name, value in payload["model"].items():
        if value.is_complex():
            raise TypeError(f"its parameter {name!r} is {value.dtype}, which no a2c_ppo policy holds")
    _check_tensor_sizes(payload, "")
    for name in ("update", "env_steps"):
        count = payload["counters"].get(name)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise TypeError(f"its counter {name} is {count!r}, not a count")
    if not all(isinstance(payload["spaces"].get(role), dict) for role in ("observation", "action")):
        raise TypeError("its spaces lack the observation or action space")


def _check_tensor_sizes(data: Any, where: str) -> None:
    """ValueError for a tensor anywhere in ``data`` that is ``larger_than_its_data``."""
    if isinstance(data, torch.Tensor):
        if larger_than_its_data(data):
            raise ValueError(f"its tensor {where or 'part'} of shape {tuple(data.shape)} is larger than its data")
    elif isinstance(data, dict):
        for key, value in data.items():
            _check_tensor_sizes(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            _check_tensor_sizes(value, f"{where}[{index}]")


def check_spaces(
    checkpoint: dict[str, Any], observation_space: gym.Space, action_space: gym.Space, env_name: str
) -> None:
    """Raise ConfigError if the env's spaces differ from those the checkpoint was trained on, or
    where an older checkpoint's actions could reach this env shifted (``check_action_start``)."""
    saved = checkpoint["spaces"]
    for kind, space in (("observation", observation_space), ("action", action_space)):
        expected = describe_space(space)
        if "start" not in saved[kind]:  # written before format 5, which records it
            expected.pop("start", None)
        if saved[kind] != expected:
            raise ConfigError(
                f"the checkpoint was trained on an env with {kind} space {saved[kind]}, but "
                f"{env_name!r} has {expected}; use the env it was trained on "
                f"({checkpoint['config'].get('env_name')!r})."
            )
    check_action_start(checkpoint, action_space, env_name)


#: Settings whose value names code to import (``module:attribute``).
CODE_REFERENCES = ("env_name", "policy_base")


def check_trusted(saved: Any, typed: Mapping[str, Any], trust: bool, what: str) -> None:
    """A checkpoint is data: refuse (ConfigError) one whose settings name code to import
    (``module:attribute``), or give the env text arguments (which can name files it reads or
    writes), unless the user typed that setting (the same value, or another) or trusts the
    file (``trust``)."""
    if not (trust or "env_kwargs" in typed) and any(map(_has_text, json.loads(saved.env_kwargs).values())):
        raise ConfigError(
            f"{what} gives the env text arguments, --env-kwargs {saved.env_kwargs}, and a checkpoint is data: "
            "a2c_ppo passes no text a file gives to an env, as it could name files. If you trust them, give them "
            "yourself (--env-kwargs '...', or env_kwargs= in Python) or pass --trust-checkpoint "
            "(trust_checkpoint=True)."
        )
    # a reference this process was handed as an object (the Python API) needs no import: as typed
    references = [(name, str(getattr(saved, name))) for name in CODE_REFERENCES if name not in typed]
    named = [(name, ref) for name, ref in references if not handed_over(ref)]
    gone = [(name, ref) for name, ref in named if _unreachable(ref)]
    if gone:  # trusted or not, no import in this program finds them
        shown = " and ".join(f"{_flag(name)} {ref!r}" for name, ref in gone)
        raise ConfigError(
            f"{what} was trained with {shown}, code the training script made itself (a lambda, a nested function, "
            "or a class of the script run as the main program), which no import in this program finds: load the "
            "checkpoint from that script (a2c_ppo.load, train(resume=...)), or give that code again (--env-name / "
            "--policy-base module:attribute, env= / policy_base= in Python), or move it into a module you can "
            "import."
        )
    untrusted = [(name, ref) for name, ref in named if ":" in ref and not trust]
    if untrusted:
        shown = " and ".join(f"{_flag(name)} {ref!r}" for name, ref in untrusted)
        flags = ", ".join(f"{_flag(name)} {ref}" for name, ref in untrusted)
        raise ConfigError(
            f"{what} names code to import, {shown}, and a checkpoint is data: a2c_ppo imports no code a file "
            f"names. If you trust that code, name it yourself ({flags}; env= / policy_base= in "
            "Python) or pass --trust-checkpoint (trust_checkpoint=True)."
        )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resume_command(saved: Any, path: str) -> str:
    """How to continue the run of ``saved`` (its RunConfig) from the checkpoint ``path``: the
    command that ``check_trusted`` accepts, naming the code and the env's text arguments the
    checkpoint names, as whoever started the run gave them."""
    # a lambda's, a second object of one name, a script's own: main.py's imports find none of them
    script_only = [name for name in CODE_REFERENCES if re.search(r"[<#]|^__main__:", str(getattr(saved, name) or ""))]
    keyword = {"env_name": "env"}  # train()'s name for a setting, where it is not the setting's
    if script_only:
        given = ", ".join(f"{keyword.get(name, name)}=..." for name in script_only)
        return f"train(resume={path!r}, {given}) in the script that trained it"
    named = [(name, getattr(saved, name)) for name in CODE_REFERENCES if ":" in str(getattr(saved, name))]
    flags = [f"--resume {shlex.quote(path)}", *(f"{_flag(name)} {shlex.quote(ref)}" for name, ref in named)]
    keywords = [f"resume={path!r}", *(f"{keyword.get(name, name)}={ref!r}" for name, ref in named)]
    if any(map(_has_text, json.loads(saved.env_kwargs).values())):
        flags.append(f"--env-kwargs {shlex.quote(saved.env_kwargs)}")
        keywords.append(f"env_kwargs={json.loads(saved.env_kwargs)!r}")
    return f"python main.py {' '.join(flags)}, or train({', '.join(keywords)}) in Python"


def handed_over(reference: str | None) -> bool:
    """Whether this process registered ``reference`` from an object (``envs.make.FACTORIES``)."""
    from a2c_ppo.envs.make import FACTORIES

    return reference is not None and reference in FACTORIES


def _unreachable(reference: str) -> bool:
    """Whether no import can find ``reference``: a lambda's or nested function's (``<``), a
    second object of one name (``#2``), or ``__main__:X`` where this program's main module has
    no ``X`` (it is another script than the one that trained)."""
    if "<" in reference or "#" in reference:
        return True
    module, _, attribute = reference.partition(":")
    if module != "__main__":
        return False
    found: Any = sys.modules.get("__main__")
    for part in attribute.split("."):
        found = getattr(found, part, None)
    return found is None


def _has_text(value: Any) -> bool:
    """Whether a JSON value holds a string anywhere (a nested object's keys count)."""
    if isinstance(value, str):
        return True
    if isinstance(value, dict):
        return any(_has_text(item) for pair in value.items() for item in pair)
    if isinstance(value, list):
        return any(_has_text(item) for item in value)
    return False
