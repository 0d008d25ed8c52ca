"""Where each stream of a run's episodes takes its seeds, so that no two streams share one.

Env ``i`` of a stream is seeded ``base + i`` (a vector env's ``reset(seed=base)``). The
streams' bases are ``seed`` plus a fixed offset a million apart, more than any stream's env
count, so they never overlap: a resume's training envs (which restart their episodes where the
checkpoint could not restore them) sit above all the fixed ones, so that a resume at a round
budget (1,000,000 steps, say) does not play evaluation's episodes again.
"""

from __future__ import annotations

EVALUATION = 1_000_000  # evaluation during training (--eval-interval, the final evaluation)
REPLAY = 2_000_000  # enjoy.py without --seed
VIDEO = 3_000_000  # each video's episode: every video starts from the same state
RESUMED_TRAINING = 4_000_000  # plus the env steps done: each resume gets its own


def training_base(seed: int, env_steps: int, rank: int, num_processes: int) -> int:
    """The base of rank ``rank``'s training envs (``num_processes`` per rank) when they start
    new episodes ``env_steps`` into the run: ``seed + rank * num_processes`` on a new run."""
    start = seed if env_steps == 0 else seed + RESUMED_TRAINING + env_steps
    return start + rank * num_processes
