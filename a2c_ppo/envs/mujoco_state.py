"""A MuJoCo env's physics as plain data: what ``mj_step`` continues from, and what the env's
Python reads of the last step before it steps again.

``mj_getState`` with ``mjSTATE_INTEGRATION`` makes ``mj_step`` continue bit-identically, but an
env reads more of ``MjData`` than that: gymnasium's Ant takes its forward reward from the torso's
``xpos`` before and after the step, Humanoid from the bodies' ``xipos``. Those are outputs of the
last step's ``mj_forward`` (computed at the state before its final integration, so
``mj_forward`` after a restore would not give them back); they are kept too, all of them that
the model sizes, so that the first step after a restore reads what the run that never stopped
read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The outputs of ``mj_forward`` that an env may read between steps, each sized by the model
#: (never by the step's contacts): positions, centres of mass, velocities, forces, sensors.
DERIVED_FIELDS = (
    "xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos", "geom_xmat", "site_xpos",
    "site_xmat", "cam_xpos", "cam_xmat", "light_xpos", "light_xdir", "subtree_com", "cinert", "cdof",
    "ten_length", "actuator_length", "cvel", "cdof_dot", "subtree_linvel", "subtree_angmom", "ten_velocity",
    "actuator_velocity", "qacc", "cacc", "cfrc_int", "cfrc_ext", "qfrc_bias", "qfrc_passive", "qfrc_actuator",
    "qfrc_constraint", "qfrc_smooth", "qacc_smooth", "actuator_force", "sensordata", "energy",
)  # fmt: skip


def capture_physics(model: Any, data: Any) -> dict[str, Any]:
    """``data``'s integration state and its model-sized derived fields, as bytes (float64)."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
    mujoco.mj_getState(model, data, physics, spec)
    # a model without cameras or sensors has empty fields: left out (empty bytes do not load with weights_only)
    derived = {name: field.tobytes() for name in DERIVED_FIELDS if (field := getattr(data, name)).size}
    return {"__mjdata__": physics.tobytes(), "derived": derived}


def restore_physics(model: Any, data: Any, saved: dict[str, Any]) -> None:
    """Put ``saved`` (from :func:`capture_physics`) into ``data`` in place; a checkpoint written
    before the derived fields were kept restores the integration state alone. ValueError where
    a field is not one of ``DERIVED_FIELDS`` or does not fit this model."""
    import mujoco

    derived = saved.get("derived", {})
    unknown = set(derived) - set(DERIVED_FIELDS)
    if unknown:
        raise ValueError(f"the snapshot sets MjData fields {sorted(unknown)[:3]}, which capture never writes")
    fields = []  # all checked before any is set
    for name, raw in derived.items():
        field = getattr(data, name)
        if not isinstance(raw, bytes) or len(raw) != field.nbytes:
            raise ValueError(f"the snapshot's MjData.{name} does not fit this model's ({field.size} numbers)")
        fields.append((field, np.frombuffer(raw, dtype=field.dtype).reshape(field.shape)))
    physics = np.frombuffer(saved["__mjdata__"], dtype=np.float64)
    mujoco.mj_setState(model, data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
    for field, value in fields:
        field[...] = value
