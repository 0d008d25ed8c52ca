"""MuJoCo's warnings, routed through Python's ``warnings`` for the envs ``make_env`` builds."""

from __future__ import annotations

import warnings

#: A warning of gymnasium's own MuJoCo models that no user can act on: half_cheetah.xml's
#: ``settotalmass``, deprecated by MuJoCo 3.3.
ASSET_DEPRECATIONS = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(text: str) -> None:
    if not text.startswith(ASSET_DEPRECATIONS):
        warnings.warn(f"MuJoCo: {text}", RuntimeWarning, stacklevel=2)


def route_mujoco_warnings() -> None:
    """MuJoCo's warnings as Python warnings (shown once each, filterable), without those of
    gymnasium's own models: MuJoCo's default prints each one for every env built and appends it
    to MUJOCO_LOG.TXT in the working folder. A handler the program set itself is kept."""
    try:
        import mujoco
    except ImportError:  # gym.make says what to install
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)
