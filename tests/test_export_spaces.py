"""ONNX export of the observation layouts beyond a flat Dict: vector envs of one's own (masked,
recurrent) and Atari's frames. The exported model must give ``Agent.act``'s actions on batches
of the env's observations."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import a2c_ppo
from a2c_ppo import onnx_export as export
from tests.custom_nets import cartpole_next_step
from tests.envs_for_spaces import native_part_masks
from tests.helpers import ROOT
from tests.test_export import train

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def exported(checkpoint: str, tmp_path, *flags: str) -> str:
    out = str(tmp_path / "policy.onnx")
    assert export.main([checkpoint, out, "--trust-checkpoint", *flags]) == 0
    return out


def input_names_of(out: str) -> list[str]:
    return [i.name for i in onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"]).get_inputs()]


def assert_acts_as_the_agent(checkpoint: str, out: str, envs: gym.vector.VectorEnv, steps: int = 40) -> None:
    """onnxruntime gives ``Agent.act``'s actions (values and dtype) on ``steps`` batches of
    ``envs``' observations, which the agent's actions step; a recurrent state is carried on both
    sides, restarted on the rows whose episode ended, alike."""
    agent = a2c_ppo.load(checkpoint, trust_checkpoint=True)
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    space = agent.observation_space
    keys = list(space.spaces) if isinstance(space, gym.spaces.Dict) else [None]
    names = ["obs" if key is None else key for key in keys]
    obs, _ = envs.reset(seed=5)
    state = np.zeros((envs.num_envs, agent.policy.recurrent_hidden_state_size), np.float32)
    start = np.ones(envs.num_envs, bool)
    for _ in range(steps):
        want = agent.act(obs, episode_start=start)
        inputs = {name: np.asarray(obs if key is None else obs[key]) for name, key in zip(names, keys)}
        if agent.policy.is_recurrent:
            inputs.update(rnn_hxs=state, masks=(~start).astype(np.float32)[:, None])
            got, state = session.run(None, inputs)
        else:
            (got,) = session.run(None, inputs)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.reshape(want.shape), want)
        obs, _, terminated, truncated, _ = envs.step(want)
        start = terminated | truncated
    envs.close()


def test_a_masked_policy_of_a_vector_env_of_its_own_exports(tmp_path):
    """Its envs raise on a forbidden action: the check's random actions follow each row's mask."""
    checkpoint = train(tmp_path, "tests.envs_for_spaces:native_part_masks", native=True)
    out = exported(checkpoint, tmp_path)
    assert_acts_as_the_agent(checkpoint, out, native_part_masks())


def test_a_recurrent_policy_of_a_vector_env_of_its_own_exports(tmp_path):
    """Four CartPoles in one vector env: the graph is traced on one row, its state one row."""
    checkpoint = train(tmp_path, "tests.custom_nets:cartpole_next_step", "--recurrent-policy", native=True)
    out = exported(checkpoint, tmp_path)
    assert input_names_of(out) == ["obs", "rnn_hxs", "masks"]
    assert_acts_as_the_agent(checkpoint, out, cartpole_next_step(), steps=60)


def test_atari_metadata_names_the_pipeline_and_ale_stays_quiet(tmp_path):
    """The export as its own process: ALE prints its banner once a process, at its first env."""
    pytest.importorskip("ale_py")
    checkpoint, out = train(tmp_path, "ALE/Pong-v5"), str(tmp_path / "policy.onnx")
    done = subprocess.run([sys.executable, "-m", "a2c_ppo.export", checkpoint, out], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "Exported" in done.stdout, done.stderr
    assert "Stella" not in done.stdout + done.stderr
    model = onnx.load(out)
    meta = {prop.key: prop.value for prop in model.metadata_props}
    assert {key: meta[key] for key in ("frame_skip", "frame_size", "grayscale", "frame_stack")} == {
        "frame_skip": "4", "frame_size": "84", "grayscale": "True", "frame_stack": "4"}  # fmt: skip
    assert "Atari pipeline" in meta["frame_processing"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [4, 84, 84]
