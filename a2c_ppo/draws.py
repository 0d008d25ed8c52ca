"""The random numbers actions are drawn from: torch's global generator, filled in place, and
the per-step draws that let envs act in blocks of rows with the numbers one act on all rows
would draw (the overlapped rollout, ``rollout.py``).

Every sampling path (the torch heads in ``distributions.py``, numpy acting in ``fastpath.py``)
takes its numbers from ``uniform_draws`` / ``normal_draws``, so one seed gives the same
actions on every path and every schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch


def uniform_draws(shape: tuple[int, ...], out: torch.Tensor | None = None) -> torch.Tensor:
    """Uniforms in [0, 1) of ``shape`` (``(B, 1)`` for ``categorical_sample``) from torch's
    generator, written into ``out`` where given: the same numbers (``torch.rand`` fills an empty
    tensor with ``uniform_``), without allocating. Inside ``StepDraws.rows`` they are the block's
    rows of the step's draws instead (``out`` unused): read them, do not keep or write them."""
    block = _active.block
    if block is not None:
        return block.take(torch.Tensor.uniform_, shape)
    return torch.rand(shape) if out is None else out.uniform_()


def normal_draws(shape: tuple[int, ...], out: torch.Tensor | None = None) -> torch.Tensor:
    """The standard normals a Gaussian head's sample takes, ``shape`` from torch's generator,
    written into ``out`` where given (the same numbers: ``torch.randn`` is ``normal_`` on an
    empty tensor); inside ``StepDraws.rows`` as ``uniform_draws``."""
    block = _active.block
    if block is not None:
        return block.take(torch.Tensor.normal_, shape)
    return torch.randn(shape) if out is None else out.normal_()


class StepDraws:
    """Each step's random numbers for ``num_rows`` envs that act in blocks of rows (the
    overlapped rollout acts on half of the envs at a time): ``next_step()``, then each block
    acts inside ``with draws.rows(block):``.

    The first block to ask for its ``i``-th draw of a step makes it for every row, as a single
    act on all rows makes it (the same fill of the same shape, so the same numbers), and each
    block takes its own rows. The generator is therefore consumed exactly as in the plain
    schedule, and a seed gives the same random numbers whichever schedule runs (drawn per
    block, torch's vectorised normal kernel and a head with several draws would order them
    differently). Every block must ask for the same draws in the same order (one policy does).
    The buffers and their row views are kept from step to step: a rollout draws the same shapes.
    """

    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows
        self._draws: list[torch.Tensor] = []  # (num_rows, ...) each, in the order asked for
        self._fills: list[Callable[[torch.Tensor], torch.Tensor]] = []  # how each was drawn
        self._views: dict[tuple[int, int | None, int | None], torch.Tensor] = {}  # (draw, rows) -> view
        self._made = 0  # draws made this step
        self._rows = slice(None)
        self._taken = 0  # draws the current block has taken
        self._outer: StepDraws | None = None  # the block active before ``with`` (restored after)

    def next_step(self) -> None:
        self._made = 0

    def rows(self, rows: slice) -> StepDraws:
        """Draws made inside ``with draws.rows(rows):`` come from rows ``rows`` of the step's draws."""
        self._rows, self._taken = rows, 0
        return self

    def __enter__(self) -> None:
        self._outer, _active.block = _active.block, self

    def __exit__(self, *exc: object) -> None:
        _active.block = self._outer

    def take(self, fill: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
        i, self._taken = self._taken, self._taken + 1
        if i == self._made:
            full = (self.num_rows, *shape[1:])
            if i == len(self._draws) or self._draws[i].shape != full or self._fills[i] is not fill:
                del self._draws[i:], self._fills[i:]
                self._views.clear()
                self._draws.append(torch.empty(full))
                self._fills.append(fill)
            fill(self._draws[i])
            self._made = i + 1
        elif self._fills[i] is not fill:
            raise RuntimeError("the blocks of envs asked for different kinds of draws (uniform, normal)")
        key = (i, self._rows.start, self._rows.stop)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = self._draws[i][self._rows]
        if view.shape != shape:
            raise RuntimeError(
                f"a block of envs asked for draws of shape {tuple(shape)}; its rows hold {tuple(view.shape)}"
            )
        return view


class _ActiveBlock(threading.local):
    """The step's draws while a block of envs acts (``StepDraws.rows``), per thread: two runs
    of the Python API in threads of one process do not share it."""

    block: StepDraws | None = None


_active = _ActiveBlock()
