"""Env state snapshots as plain data, for an exact resume.

``make_env`` puts :class:`Snapshot` outermost; its ``snapshot`` property reads the whole env
state (every wrapper layer and the unwrapped env) and restores it, so that
``vec.get_attr("snapshot")`` / ``vec.set_attr("snapshot", states)`` work on SyncVectorEnv and
SubprocVecEnv alike. What is captured, per layer, generically:

* plain attributes: numbers, bools, strings, ``None``, bytes, numpy arrays and scalars, and
  lists / tuples / dicts / deques of those;
* numpy random generators (``np_random``) and the generators of the spaces;
* MuJoCo physics: ``MjData``'s full integration state (``mj_getState`` with
  ``mjSTATE_INTEGRATION``: time, qpos, qvel, act, warm start, controls, ...), which makes
  ``mj_step`` continue bit-identically, and the last step's positions, velocities and forces
  the env reads before its next step (``mujoco_state.py``).

Not captured, as configuration rather than state: construction arguments, specs and metadata,
functions, the MuJoCo model (assumed unchanged by the env) and its renderer, the MDP tables of
gymnasium's toy-text envs. Anything else
(e.g. the Atari emulator) raises :class:`UnsupportedEnvState` naming it.

The snapshot is a dict of Python scalars, strings, bytes, lists, tuples and dicts only
(arrays are ``{"__ndarray__": dtype, "shape": [...], "data": bytes}``, sequences of numpy scalars of
one dtype ``{"__scalars__": dtype, "data": bytes}``), so it survives
``torch.save`` / ``torch.load(weights_only=True)`` and JSON-free checkpoints as it is.
"""

from __future__ import annotations

import inspect
import types
from collections import deque
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from a2c_ppo.envs.mujoco_state import capture_physics, restore_physics

# Attributes that are configuration, never state (gymnasium's bookkeeping of how it was built).
_SKIPPED_NAMES = frozenset(
    {"env", "_saved_kwargs", "_ezpickle_args", "_ezpickle_kwargs", "spec", "_cached_spec", "metadata", "_metadata"}
)
_SKIPPED_TYPES = ("MjModel", "MujocoRenderer", "EnvSpec", "ObservationPlan")
# gymnasium's PassiveEnvChecker keeps the last (obs, info) of the first steps to warn about
# reused objects: a checker's, not the env's. Not captured, and passed over in older snapshots
# (after one step of Hopper it held that step's info, whose keys a fresh env's reset lacks).
_CHECKER_NAMES = frozenset({"_previous_data"})
# gymnasium's toy-text envs build their MDP at construction and never change it: Taxi's
# transition table alone (500 states x 6 actions) cost two thirds of a CartPole-sized update
# to capture, after every update.
_TOY_TEXT = "gymnasium.envs.toy_text."
_TOY_TEXT_MDP = frozenset({"P", "initial_state_distrib", "desc"})
#: Text gymnasium's toy-text games keep as state, with every value it takes: restored where a
#: snapshot gives one of these (Blackjack's dealer card, drawn at reset), never other text.
_GAME_TEXT = {
    ("BlackjackEnv", "dealer_top_card_suit"): frozenset("CDHS"),
    ("BlackjackEnv", "dealer_top_card_value_str"): frozenset(["A", "J", "Q", "K", *map(str, range(2, 10))]),
}
_CODE = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, partial)
_PLAIN = (bool, int, float, str, bytes, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)


class UnsupportedEnvState(RuntimeError):
    """Some part of an env's state cannot be captured as plain data (named in the message)."""


class UntrustedEnvState(ValueError):
    """A snapshot gives an env text it does not hold (which could name a file): a checkpoint's
    text is never put into an env, so the resume starts new episodes instead, except for the
    cards gymnasium's Blackjack keeps as text (``_GAME_TEXT``)."""


class Snapshot(gym.Wrapper):
    """Adds the ``snapshot`` property (see the module docstring); otherwise transparent."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        # The hot path skips this layer: a pass-through Wrapper.step would cost a call per step.
        self.step = env.step  # type: ignore[method-assign]

    @property
    def snapshot(self) -> dict[str, Any]:
        return capture(self.env)

    @snapshot.setter
    def snapshot(self, state: dict[str, Any]) -> None:
        restore(self.env, state)


def get_snapshots(envs: Any) -> list[dict[str, Any]]:
    """Every env's snapshot, in env order (of the vector env below VecNormalize or any wrapper;
    VecNormalize's own state is its ``state_dict``).

    Raises :class:`UnsupportedEnvState` when some env cannot be captured, also when that
    happened in a worker process (where it arrives as an EnvWorkerError).
    """
    from a2c_ppo.envs.subproc import EnvWorkerError, SubprocVecEnv

    vector_env = envs.unwrapped  # below VecNormalize, which has no get_attr
    if not isinstance(vector_env, SubprocVecEnv):  # a native vector env or EnvPool keep their own state
        raise UnsupportedEnvState(f"{type(vector_env).__name__} steps its envs itself")
    try:
        return list(vector_env.get_attr("snapshot"))
    except EnvWorkerError as exc:
        if exc.error_type == UnsupportedEnvState.__name__:
            raise UnsupportedEnvState(str(exc).split("\n", 1)[0]) from exc
        raise


def set_snapshots(envs: Any, states: list[dict[str, Any]]) -> None:
    """Restore every env from ``states`` (one per env, from :func:`get_snapshots`)."""
    if len(states) != envs.num_envs:
        raise ValueError(f"{len(states)} env snapshots for {envs.num_envs} envs")
    envs.unwrapped.set_attr("snapshot", list(states))


def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def capture(env: gym.Env) -> dict[str, Any]:
    """The state of ``env`` and all its wrappers, as plain data."""
    layers = []
    for layer in _layers(env):
        attrs = {}
        skipped = _skipped_names(layer) | _CHECKER_NAMES
        for name, value in vars(layer).items():
            if name in skipped:
                continue
            if type(value) in _PLAIN_TYPES:  # most attributes: kept as they are, at once
                attrs[name] = value
            elif not isinstance(value, _CODE) and type(value).__name__ not in _SKIPPED_TYPES:
                attrs[name] = _encode(value, layer, f"{type(layer).__name__}.{name}")
        layers.append({"class": type(layer).__name__, "attrs": attrs})
    return {"layers": layers}


def restore(env: gym.Env, state: dict[str, Any]) -> None:
    """Put ``state`` (from :func:`capture` on an env built the same way) into ``env``.
    ValueError for a state that sets what is not env state (code, gymnasium's configuration)
    or changes text (which could name a file), or names a function other than a bit generator."""
    layers = _layers(env)
    classes = [type(layer).__name__ for layer in layers]
    saved = [layer["class"] for layer in state["layers"]]
    if classes != saved:
        raise ValueError(f"the snapshot was taken of wrappers {saved}, but this env has {classes}")
    restored = []  # everything checked before any of it is set
    for layer, entry in zip(layers, state["layers"]):
        for name, value in entry["attrs"].items():
            if name in _CHECKER_NAMES:
                continue
            where = f"{type(layer).__name__}.{name}"
            current = _restorable(layer, name, where)
            decoded = _decode(value, current, layer)
            new_text = set(_text_in(decoded)) - set(_text_in(current))
            if _is_toy_text(layer):  # gymnasium's own games: the cards they keep as text
                new_text -= _GAME_TEXT.get((type(layer).__name__, name), frozenset())
            if new_text:  # an env's text is set as it is built (paths, modes), not by a file
                raise UntrustedEnvState(
                    f"the snapshot gives {where} text this env does not hold ({sorted(new_text, key=repr)[:3]}), "
                    "and a checkpoint's text could name a file"
                )
            restored.append((layer, name, decoded))
    for layer, name, decoded in restored:
        setattr(layer, name, decoded)


def _is_toy_text(layer: Any) -> bool:
    return type(layer).__module__.startswith(_TOY_TEXT)


def _skipped_names(layer: Any) -> frozenset[str]:
    """The attribute names of ``layer`` that are configuration, never captured nor restored."""
    return _SKIPPED_NAMES | _TOY_TEXT_MDP if _is_toy_text(layer) else _SKIPPED_NAMES


def _restorable(layer: Any, name: str, where: str) -> Any:
    """The value ``layer`` holds as ``name`` (None if not yet set); ValueError where a snapshot
    may not set it: a name ``capture`` never keeps, or one whose value is code (a method,
    property or function; a file must not replace them)."""
    static = inspect.getattr_static(type(layer), name, None)
    current = vars(layer).get(name)
    if name in _skipped_names(layer) or callable(static) or isinstance(static, property) or isinstance(current, _CODE):
        raise ValueError(f"the snapshot sets {where}, which is not env state")
    return current


def _text_in(value: Any) -> list[Any]:
    """Every string and bytes in ``value``, containers searched (dict keys too), in order."""
    if isinstance(value, (str, bytes)):
        return [value]
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "US":  # numpy's strings
        return [str(text) for text in np.ravel(value)]
    if isinstance(value, dict):
        return [text for pair in value.items() for item in pair for text in _text_in(item)]
    if isinstance(value, (list, tuple, deque)):
        return [text for item in value for text in _text_in(item)]
    return []


def _encode(value: Any, layer: Any, where: str) -> Any:
    if type(value) in _PLAIN:  # exact: np.float64 is a float, but must stay a numpy scalar
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise UnsupportedEnvState(f"{where} is an object array, which cannot be captured")
        scalar = isinstance(value, np.generic)
        return {"__ndarray__": array.dtype.str, "shape": list(array.shape), "data": array.tobytes(), "scalar": scalar}
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, gym.Space):
        rng = value._np_random  # None until the space is seeded or sampled
        return {"__space_rng__": None if rng is None else rng.bit_generator.state}
    if type(value).__name__ == "MjData":
        return capture_physics(layer.model, value)
    if isinstance(value, deque):
        return {"__deque__": _encode_items(value, layer, where), "maxlen": value.maxlen}
    if isinstance(value, (list, tuple)):
        items = _encode_items(value, layer, where)
        if isinstance(items, dict):  # numpy scalars of one dtype, as one array
            return {**items, "tuple": isinstance(value, tuple)}
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict) and all(type(k) in _PLAIN for k in value):
        return {"__dict__": [(k, _encode(v, layer, f"{where}[{k!r}]")) for k, v in value.items()]}
    raise UnsupportedEnvState(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be captured as plain data"
    )


def _encode_items(values: Any, layer: Any, where: str) -> list | dict[str, Any]:
    """The items of a sequence: a list, or ``{"__scalars__": dtype, "data": bytes}`` for
    numpy scalars of one numeric dtype."""
    # RecordEpisodeStatistics keeps 3 x 100 numbers per env, captured after every update: plain
    # ones are copied as they are (the type check runs in C), not encoded one call each, and numpy
    # scalars (a MuJoCo env's returns are np.float64) as one array: 104 us a queue one by one, 6 us so.
    types = set(map(type, values))
    if _PLAIN_TYPES.issuperset(types):
        return list(values)
    if len(types) == 1 and issubclass(kind := types.pop(), np.generic) and np.dtype(kind).kind in "biuf":
        array = np.array(values, dtype=kind)
        return {"__scalars__": array.dtype.str, "data": array.tobytes()}
    return [_encode(v, layer, f"{where}[]") for v in values]


def _decode(value: Any, current: Any, layer: Any) -> Any:
    """The attribute value for ``value``; generators, spaces and MuJoCo data are restored in
    place into ``current`` (the object the env holds), so that every reference sees it."""
    if isinstance(value, list):
        return [_decode(v, None, layer) for v in value]
    if isinstance(value, tuple):
        return tuple(_decode(v, None, layer) for v in value)
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        array = np.frombuffer(value["data"], dtype=_plain_dtype(value["__ndarray__"])).reshape(value["shape"]).copy()
        return array[()] if value["scalar"] else array
    if "__generator__" in value:
        return _generator(value["__generator__"], current)
    if "__space_rng__" in value:
        rng = value["__space_rng__"]
        current._np_random = None if rng is None else _generator(rng, current._np_random)
        return current
    if "__mjdata__" in value:
        restore_physics(layer.model, current, value)
        return current
    if "__scalars__" in value:
        scalars = list(np.frombuffer(value["data"], dtype=_plain_dtype(value["__scalars__"])))
        return tuple(scalars) if value.get("tuple") else scalars
    if "__deque__" in value:
        return deque(_decode(value["__deque__"], None, layer), maxlen=value["maxlen"])  # a list or scalars
    return {k: _decode(v, None, layer) for k, v in value["__dict__"]}


def _plain_dtype(text: str) -> np.dtype:
    """The dtype a snapshot names: numbers, bools or strings, never objects or records."""
    dtype = np.dtype(text)
    if dtype.kind not in "biufcUS":
        raise ValueError(f"the snapshot holds an array of dtype {dtype}, which capture never writes")
    return dtype


#: The bit generators numpy provides: a snapshot names one, and a file must name no other function.
_BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})


def _generator(state: dict[str, Any], current: Any) -> np.random.Generator:
    if state.get("bit_generator") not in _BIT_GENERATORS:
        raise ValueError(f"the snapshot names bit generator {state.get('bit_generator')!r}, not one of numpy's")
    if (
        not isinstance(current, np.random.Generator)
        or current.bit_generator.state["bit_generator"] != state["bit_generator"]
    ):
        current = np.random.Generator(getattr(np.random, state["bit_generator"])())
    current.bit_generator.state = state
    return current
