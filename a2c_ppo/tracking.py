"""Weights & Biases tracking (``--track``, the ``[wandb]`` extra): a ``logger.Sink``.

The W&B run mirrors what the run logs: the same scalars at the same step (env steps), the
videos of ``--capture-video``, and at the end the checkpoints as a model artifact. It is named
after the run folder and writes its files there (``RUN_DIR/wandb``), so ``WANDB_MODE=offline``
keeps everything beside the run's TensorBoard events and ``wandb sync`` uploads it later.
Rank 0 alone tracks (it alone has a Logger).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from a2c_ppo.config import RunConfig
from a2c_ppo.errors import ConfigError

INSTALL_HINT = 'pip install -e ".[wandb]"'
#: W&B's files inside the run folder (``wandb.init(dir=RUN_DIR)``).
WANDB_FOLDER = "wandb"


class Tracker:
    """One W&B run; ``finish`` uploads the checkpoints, ``close`` alone marks the run failed."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.finished = False

    def describe(self) -> str:
        """A console line naming the run and how to continue it."""
        where = "offline" if getattr(self.run, "offline", False) else getattr(self.run, "url", None)
        if where is None:  # WANDB_MODE=disabled: nothing to continue
            return "W&B is disabled (WANDB_MODE): nothing is tracked."
        return f"W&B run {self.run.id} ({where}); a resume continues it with --track --wandb-id {self.run.id}."

    def record_config(self, config: RunConfig) -> None:
        """The run's settings as training uses them (``auto`` choices made)."""
        self.run.config.update(config.to_dict(), allow_val_change=True)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def video(self, tag: str, path: str, step: int) -> None:
        import wandb

        self.run.log({tag: wandb.Video(path, format="mp4")}, step=step)

    def finish(self, checkpoints: Sequence[str]) -> None:
        """Upload ``checkpoints`` (the files that exist) as one model artifact; end the run."""
        import wandb

        artifact = wandb.Artifact(artifact_name(self.run.name), type="model")
        for path in checkpoints:
            if os.path.isfile(path):
                artifact.add_file(path)
        self.run.log_artifact(artifact)
        self.run.finish()
        self.finished = True

    def close(self) -> None:
        """End a run that did not reach ``finish`` (stopped or failed) as failed."""
        if not self.finished:
            self.run.finish(exit_code=1)
            self.finished = True


def artifact_name(run_name: str) -> str:
    """W&B artifact names take letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^\w.-]", "_", f"{run_name}-model")


def start_tracking(config: RunConfig) -> Tracker | None:
    """The W&B run of ``config`` (``None`` without ``--track``); ConfigError if W&B cannot start."""
    if not config.track:
        return None
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"--track needs Weights & Biases: {INSTALL_HINT}.") from None
    try:
        run = wandb.init(
            project=config.wandb_project,
            entity=config.wandb_entity,
            group=config.wandb_group,
            tags=[tag.strip() for tag in config.wandb_tags.split(",") if tag.strip()] or None,
            name=os.path.basename(os.path.normpath(config.run_dir)),
            # a typed id continues that run (a new one where the project has none by it)
            id=config.wandb_id,
            resume="allow" if config.wandb_id else None,
            dir=config.run_dir,
            config=config.to_dict(),
            # The console stays ours: W&B would otherwise wrap stdout, progress bar and all.
            settings=wandb.Settings(console="off", quiet=True),
        )
    except Exception as exc:  # not logged in, no network, a bad entity: W&B's own words
        raise ConfigError(
            f"--track: Weights & Biases could not start a run ({type(exc).__name__}: {str(exc).strip()}). Log in "
            "with 'wandb login', or track offline with WANDB_MODE=offline (upload later with 'wandb sync'), or "
            "drop --track."
        ) from None
    return Tracker(run)
