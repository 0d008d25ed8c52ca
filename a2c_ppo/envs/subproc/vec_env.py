"""SubprocVecEnv: many envs on a few worker processes, data through shared memory.

``SubprocVecEnv(env_fns, num_workers=None)`` behaves exactly like
``gymnasium.vector.SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)``: same
observations, rewards, flags and infos (``final_obs`` / ``final_info`` for envs whose episode
ended, the reset observation in ``obs``), with the envs stepped in parallel.

* ``num_envs`` envs are split into contiguous blocks: one per worker process, plus the last
  ``in_main`` envs, stepped by the main process while the workers step theirs. Each block is
  an :class:`EnvBlock` (constructors travel with cloudpickle, so lambdas and closures work).
* Observations, actions, rewards and the flags live in shared memory. A step writes the
  actions, sends a one-byte command to each worker and reads one reply per worker: empty when
  no env produced an info, else the infos that exist (see ``infos``).
* Faults: an exception in an env becomes one :class:`EnvWorkerError` naming the env index
  and carrying its traceback; a dead worker is noticed at once through its pipe, or within
  ``poll_interval`` seconds. After a fault in ``step`` / ``reset`` the vector env closes itself.
* Workers are daemonic and are ended by ``close()`` (idempotent: ask, wait ``close_timeout``,
  terminate, kill) or by a ``weakref.finalize`` hook at garbage collection or interpreter exit.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium.error import AlreadyPendingCallError, ClosedEnvironmentError, NoAsyncCallError
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, create_empty_array

from a2c_ppo.envs.subproc.block import EnvBlock, SharedBuffers, obs_arrays, obs_layout, obs_rows
from a2c_ppo.envs.subproc.handles import LocalBlock, RemoteBlock
from a2c_ppo.envs.subproc.infos import merge_infos
from a2c_ppo.envs.subproc.protocol import CMD_CALL, CMD_RESET, CMD_SET_ATTR, CMD_STEP, EnvWorkerError
from a2c_ppo.envs.subproc.worker import (
    default_context,
    default_in_main,
    default_workers,
    main_script_hidden,
    release_blocks,
    start_quietly,
    worker_main,
)
from a2c_ppo.envs.timeouts import build_limit, close_within, env_time_limit

Handle = LocalBlock | RemoteBlock

_SUPPORTED = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


class SubprocVecEnv(VectorEnv):
    """A same-step-autoreset vector env whose envs run on ``num_workers`` worker processes,
    plus (``in_main``) a block stepped by the main process while the workers step theirs.

    Args:
        env_fns: one constructor per env (any callable; shipped with cloudpickle).
        num_workers: worker processes, *not* counting the main process. Default: the number
            of usable CPUs, minus one when the main process steps envs too, at least 1.
            Capped at the number of envs left to the workers.
        in_main: how many envs the main process steps itself (the last ``in_main`` envs),
            after sending the step to the workers and before collecting their replies.
            ``None``: ``default_in_main(num_envs, num_workers)``; ``0``: workers only;
            ``num_envs``: no workers at all. Results do not depend on the split.
        start_method: ``"forkserver"`` (default where available), ``"spawn"`` or ``"fork"``.
        copy: return copies of the shared observation buffer (default). ``False`` returns
            views of the buffer itself, overwritten by the next ``step`` / ``reset``.
        poll_interval: seconds between liveness checks while waiting for a worker.
        timeout: seconds an env's step, reset or call may take (``None`` or 0: no limit). An env
            of a worker that has not answered by then (it hangs, or its process was stopped)
            gets its worker killed; an env of the main process is interrupted (a signal). Either
            way an EnvWorkerError names the env and what it was doing, and the vector env closes.
        close_timeout: seconds ``close()`` waits for workers before terminating them.
        step_infos: ``False``: infos only for the envs whose episode ended (their final info and
            reset info), ``{}`` on steps where none did. The training loop reads no others
            (``TorchVecEnv``), and gathering MuJoCo's or ALE's per-step infos into vector infos
            is a measurable part of a one-env step (docs/BENCHMARKS.md).

    ``reset(seed=s)`` seeds env ``i`` with ``s + i``. The spaces are read from one env built
    (and closed again) in the main process, as gymnasium's AsyncVectorEnv does.

    Split-phase stepping: ``step_async(actions, envs)`` starts stepping a contiguous range
    ``envs`` (a ``slice``) and returns once the workers have it (envs of the main block in the
    range are stepped before it returns); ``step_wait(envs)`` returns ``(obs, rewards,
    terminated, truncated, infos)`` of that range only, exactly what ``step`` returns
    restricted to those rows (infos: arrays of the range's length). Several disjoint ranges
    may be in flight (e.g. two halves, double-buffered); a range may cut through a block.
    ``step(a)`` is ``step_async(a, slice(None))`` then ``step_wait(slice(None))``.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        num_workers: int | None = None,
        *,
        in_main: int | None = None,
        start_method: str | None = None,
        copy: bool = True,
        poll_interval: float = 0.5,
        close_timeout: float = 5.0,
        timeout: float | None = None,
        step_infos: bool = True,
    ) -> None:
        super().__init__()
        env_fns = list(env_fns)
        if not env_fns:
            raise ValueError("SubprocVecEnv needs at least one env constructor")
        self.num_envs = n = len(env_fns)
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if in_main is not None and not 0 <= in_main <= n:
            raise ValueError(f"in_main must be between 0 and num_envs={n}, got {in_main}")
        if num_workers is None:
            num_workers = default_workers(main_process_busy=in_main != 0)
        self.in_main = int(default_in_main(n, num_workers) if in_main is None else in_main)
        self.num_workers = min(int(num_workers), n - self.in_main)
        self.copy = copy
        self.step_infos = step_infos
        self.close_timeout = close_timeout
        self.autoreset_mode = AutoresetMode.SAME_STEP
        self._read_spaces(env_fns[0], timeout or None)

        ctx = default_context() if start_method is None else mp.get_context(start_method)
        act = cast(np.ndarray, create_empty_array(self.single_action_space, n=n, fn=np.zeros))
        layout = {
            **obs_layout(self.single_observation_space, n),
            "actions": (act.shape, act.dtype.str),
            "rewards": ((n,), np.dtype(np.float64).str),
            "terminated": ((n,), np.dtype(np.bool_).str),
            "truncated": ((n,), np.dtype(np.bool_).str),
            "where": ((max(1, self.num_workers), 2), np.dtype(np.int64).str),  # see EnvBlock.where
        }
        buffers = SharedBuffers.allocate(ctx, layout)
        self._obs, self._act = obs_arrays(buffers.arrays), buffers.arrays["actions"]
        self._rew, self._term, self._trunc = (buffers.arrays[k] for k in ("rewards", "terminated", "truncated"))
        self._procs: list = []
        self._conns: list = []
        self._local: list[LocalBlock] = []
        self._blocks: list[Handle] = []  # in env order; the main block (if any) last
        self._in_flight: dict[tuple[int, int], list[Handle]] = {}  # step ranges awaiting step_wait
        self._step_plans: dict[tuple[int, int], tuple[list[Handle], list[Any]]] = {}  # see step_async
        self._dirty = False  # a command was cut short: its unread replies must be dropped first
        self._finalizer = weakref.finalize(self, release_blocks, self._procs, self._conns, close_timeout, self._local)
        try:
            self._start_blocks(ctx, env_fns, buffers, poll_interval, timeout or None)
            self._collect(self._blocks, "creating the envs", fatal=True)
        except BaseException:
            self.close(timeout=1.0)
            raise
        self._pids = [p.pid for p in self._procs]

    def _start_blocks(
        self, ctx: Any, env_fns: list, buffers: SharedBuffers, poll_interval: float, timeout: float | None
    ) -> None:
        """Start one worker per block, then build the main block here while they build theirs."""
        spaces = (self.single_observation_space, self.single_action_space)
        main_lo = self.num_envs - self.in_main
        bounds = np.linspace(0, main_lo, self.num_workers + 1).round().astype(int).tolist()
        if self.num_workers:
            start_quietly(ctx)
        for w in range(self.num_workers):
            lo, hi = bounds[w], bounds[w + 1]
            parent_conn, child_conn = ctx.Pipe(duplex=True)
            fns = cloudpickle.dumps(env_fns[lo:hi])
            payload = (child_conn, fns, lo, buffers.raws, buffers.layout, cloudpickle.dumps(spaces), w, self.step_infos)
            proc = ctx.Process(
                target=worker_main,
                name=f"SubprocVecEnv-worker-{w}",
                args=(*payload, os.getpid()),  # the main process's pid: the worker ends with it
                daemon=True,
            )
            with main_script_hidden():
                proc.start()
            child_conn.close()  # our copy: the worker's death then shows as EOF here
            self._procs.append(proc)
            self._conns.append(parent_conn)
            where = buffers.arrays["where"][w]
            remote = RemoteBlock(w, proc, parent_conn, range(lo, hi), poll_interval, where, timeout)
            remote.expect()  # its "ready" (or its error) once its envs are built
            self._blocks.append(remote)
        if self.in_main:
            block = EnvBlock(main_lo, buffers.arrays, spaces, step_infos=self.step_infos)
            local = LocalBlock(block, range(main_lo, self.num_envs), timeout)
            self._local.append(local)
            self._blocks.append(local)
            local.run(lambda: block.build(env_fns[main_lo:]), building=True)

    def _read_spaces(self, env_fn: Callable[[], gym.Env], timeout: float | None) -> None:
        with env_time_limit("env 0", "its construction (to read its spaces)", build_limit(timeout), timeout):
            dummy = env_fn()
        try:
            self.single_observation_space = dummy.observation_space
            self.single_action_space = dummy.action_space
            self.metadata = dict(dummy.metadata)
            self.render_mode = dummy.render_mode
        finally:
            close_within(dummy)
        self.metadata["autoreset_mode"] = self.autoreset_mode
        obs_space = self.single_observation_space
        obs_parts = obs_space.spaces.values() if isinstance(obs_space, gym.spaces.Dict) else [obs_space]
        for space, what in [*((part, "observation") for part in obs_parts), (self.single_action_space, "action")]:
            if not isinstance(space, _SUPPORTED):
                raise TypeError(
                    f"SubprocVecEnv supports Box, Discrete, MultiDiscrete and MultiBinary {what} spaces (observations "
                    f"also a flat Dict of them), got {space}. Lay the observations out first "
                    "(a2c_ppo.envs.wrappers.ObservationLayout), or use gymnasium's SyncVectorEnv."
                )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    # ----------------------------------------------------------------- plumbing

    def _begin(self, *, stepping: bool = False) -> None:
        """Before a command: refuse when closed, or (except for split-phase steps) while a
        ``step_async`` awaits its ``step_wait``; drop the replies of an interrupted command."""
        if self.closed:
            raise ClosedEnvironmentError(f"Trying to operate on {type(self).__name__} after a call to close().")
        if self._dirty:  # e.g. Ctrl-C arrived while waiting for the last step
            for handle in self._blocks:
                handle.drain("finishing an interrupted command")
            self._in_flight.clear()
            self._dirty = False
        if self._in_flight and not stepping:
            raise AlreadyPendingCallError(
                f"step_async for envs {sorted(self._in_flight)} is waiting for its step_wait", "step"
            )

    def _submit(self, handles: list[Handle], cmd: bytes, payloads: list[Any], tag: Any = None) -> None:
        """Send ``cmd`` to each handle; the main block (last) then runs it here. An interrupt
        in the main block leaves the workers' replies unread: ``_dirty`` drops them later."""
        self._dirty = True
        for handle, payload in zip(handles, payloads):
            try:
                handle.submit(cmd, payload, tag)
            except EnvWorkerError:  # a dead worker: the envs' state is unknown now
                self.close(timeout=1.0)
                raise
        self._dirty = False

    def _collect(self, handles: list[Handle], what: str, *, fatal: bool, tag: Any = None) -> list[Any]:
        """Each handle's result, in env order. The first error (the lowest env index, as in
        SyncVectorEnv) raises at once; with ``fatal`` (or a dead worker) after closing."""
        self._dirty = True
        results = []
        for handle in handles:
            try:
                results.append(handle.collect(what, tag))
            except EnvWorkerError:
                if fatal or handle.dead:
                    self.close(timeout=1.0)
                raise
        self._dirty = False
        return results

    def _run(self, cmd: bytes, payloads: list[Any], what: str, *, fatal: bool) -> list[Any]:
        """One command to every block (``payloads``: one per block, in block order)."""
        self._begin()
        self._submit(self._blocks, cmd, payloads)
        return self._collect(self._blocks, what, fatal=fatal)

    def _range(self, envs: slice) -> tuple[int, int]:
        start, stop, step = envs.indices(self.num_envs)
        if step != 1 or stop <= start:
            raise ValueError(f"envs must be a non-empty contiguous slice of 0..{self.num_envs - 1}, got {envs}")
        return start, stop

    # ----------------------------------------------------------------- VectorEnv API

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all envs (or those in ``options["reset_mask"]``); ``seed=s`` gives env ``i`` ``s + i``."""
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"reset(seed=[...]) needs num_envs={n} seeds, got {len(seeds)}")
        mask = None
        if options is not None and "reset_mask" in options:
            options = dict(options)
            mask = np.asarray(options.pop("reset_mask"))
            if mask.shape != (n,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}"
                )
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
        payloads = [
            (seeds[h.envs.start : h.envs.stop], options, None if mask is None else mask[h.envs.start : h.envs.stop])
            for h in self._blocks
        ]
        infos = merge_infos(self._run(CMD_RESET, payloads, "resetting", fatal=True), 0, n)
        return obs_rows(self._obs, 0, n, self.copy), infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env; finished episodes are reset at once (same-step autoreset)."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any, envs: slice = slice(None)) -> None:
        """Start stepping the envs of ``envs`` with ``actions`` (one row per env of the range)."""
        start, stop = self._range(envs)
        act = np.asarray(actions)
        expected = (stop - start, *self._act.shape[1:])
        if act.shape != expected:
            raise ValueError(
                f"actions of shape {act.shape} for envs {start}..{stop - 1}: expected {expected} "
                f"(one action of {self.single_action_space} per env)"
            )
        self._begin(stepping=True)
        if any(a < stop and start < b for a, b in self._in_flight):
            raise AlreadyPendingCallError(f"envs {start}..{stop - 1} overlap a range still being stepped", "step")
        self._act[start:stop] = act
        plan = self._step_plans.get((start, stop))
        if plan is None:  # the blocks a range touches, and what each steps (None: all its envs)
            handles = [h for h in self._blocks if h.envs.start < stop and start < h.envs.stop]
            ranges = [(max(h.envs.start, start), min(h.envs.stop, stop)) for h in handles]
            payloads = [None if r == (h.envs.start, h.envs.stop) else r for h, r in zip(handles, ranges)]
            plan = self._step_plans[start, stop] = (handles, payloads)
        self._submit(plan[0], CMD_STEP, plan[1], tag=(start, stop))
        self._in_flight[start, stop] = plan[0]

    def step_wait(
        self, envs: slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """``(obs, rewards, terminated, truncated, infos)`` of the range started by ``step_async``."""
        start, stop = self._range(envs)
        handles = self._in_flight.pop((start, stop), None)
        if handles is None:
            raise NoAsyncCallError(f"step_wait for envs {start}..{stop - 1} without a step_async", "step")
        payloads = self._collect(handles, "stepping", fatal=True, tag=(start, stop))
        return (
            obs_rows(self._obs, start, stop, self.copy),
            self._rew[start:stop].copy(),
            self._term[start:stop].copy(),
            self._trunc[start:stop].copy(),
            merge_infos(payloads, start, stop - start),
        )

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call (or read, if not callable) ``name`` on every env; results in env order.

        An exception in an env raises EnvWorkerError but leaves the vector env usable.
        """
        payloads = [(name, args, kwargs)] * len(self._blocks)
        results = self._run(CMD_CALL, payloads, f"calling {name!r}", fatal=False)
        return tuple(r for block in results for r in block)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Set ``name`` on every env: one value each (list/tuple of num_envs) or the same one."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr needs num_envs={self.num_envs} values, got {len(values)}")
        payloads = [(name, list(values[h.envs.start : h.envs.stop])) for h in self._blocks]
        self._run(CMD_SET_ATTR, payloads, f"setting {name!r}", fatal=False)

    def render(self) -> tuple[Any, ...]:
        return self.call("render")

    @property
    def np_random_seed(self) -> tuple[int, ...]:  # type: ignore[override]
        """Each env's seed, as SyncVectorEnv gives them."""
        return self.get_attr("np_random_seed")

    @property  # type: ignore[misc]
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """Copies of each env's generator (they live in other processes)."""
        return self.get_attr("np_random")

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the worker processes (for monitoring and tests; kept after close)."""
        return list(self._pids)

    def close_extras(self, timeout: float | None = None, **kwargs: Any) -> None:
        """Stop the workers: ask, wait ``timeout`` (default ``close_timeout``), terminate, kill.
        Close the envs of the main process."""
        if self._finalizer.alive:
            self._finalizer.detach()
            release_blocks(self._procs, self._conns, self.close_timeout if timeout is None else timeout, self._local)
        self._in_flight.clear()
        self._dirty = False

    def __del__(self) -> None:
        try:
            if not getattr(self, "closed", True):
                self.close(timeout=1.0)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"SubprocVecEnv(num_envs={self.num_envs}, num_workers={self.num_workers}, in_main={self.in_main})"
