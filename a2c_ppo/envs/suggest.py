"""Registered gymnasium ids close to one that was given: the suggestions of a refusal."""

from __future__ import annotations

import difflib

import gymnasium as gym

from a2c_ppo.envs.make import register_atari


def _base_name(env_id: str) -> str:
    """``"ALE/Pong-v5"`` -> ``"pong"``: the id without namespace and version, lower case."""
    return env_id.rsplit("/", 1)[-1].rsplit("-v", 1)[0].lower()


def suggestions(env_id: str, n: int = 3) -> list[str]:
    """Registered ids for an unknown one: the same env in another namespace or version first
    (``Pong-v5`` -> ``ALE/Pong-v5``), else ids whose names are close (``CartPol-v1``)."""
    register_atari()
    version = env_id.rsplit("-v", 1)[-1] if "-v" in env_id else None
    target = _base_name(env_id)
    by_name: dict[str, list[str]] = {}
    for other in gym.registry:
        if other != env_id:
            by_name.setdefault(_base_name(other), []).append(other)
    names = [target] if target in by_name else difflib.get_close_matches(target, list(by_name), n=n, cutoff=0.75)
    from importlib.util import find_spec  # looked up at each call: tests hide packages

    # gymnasium's jax versions (phys2d/CartPole-v1, ...) cannot be built without jax: never suggested then.
    needs = {"phys2d": "jax", "tabular": "jax"}

    def buildable(other: str) -> bool:
        namespace = other.split("/")[0] if "/" in other else ""
        return namespace not in needs or find_spec(needs[namespace]) is not None

    def newest_first(other: str) -> int:
        number = other.rsplit("-v", 1)[-1]
        return -int(number) if number.isdigit() else 0

    candidates = [other for name in names for other in by_name[name] if buildable(other)]
    # The same version first, then the namespaced (ALE/...) ids, then the newest, then the shortest.
    candidates.sort(key=lambda other: (other.rsplit("-v", 1)[-1] != version, "/" not in other, newest_first(other),
                                       len(other)))  # fmt: skip
    return candidates[:n]


def newer_version(env_id: str) -> str | None:
    """The newest registered version of registered ``env_id``'s env where it is newer (``HalfCheetah-v3``
    -> ``HalfCheetah-v5``), else None."""
    if env_id not in gym.registry or "-v" not in env_id:
        return None
    prefix, version = env_id.rsplit("-v", 1)
    versions = [other.rsplit("-v", 1)[-1] for other in gym.registry if other.rsplit("-v", 1)[0] == prefix]
    newest = max((int(v) for v in versions if v.isdigit()), default=-1)
    return f"{prefix}-v{newest}" if version.isdigit() and newest > int(version) else None
