"""ONNX export of the observation and action layouts beyond a flat Dict: nested Dict / Tuple
parts, Tuple observations, vector envs of one's own (masked, recurrent), low opsets, Atari's
frames and MultiBinary actions. The exported model must give ``Agent.act``'s actions, in its
dtype, on batches of the env's observations."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

import a2c_ppo
from a2c_ppo import onnx_export as export
from a2c_ppo.errors import ConfigError
from a2c_ppo.model import make_policy
from a2c_ppo.onnx_graph import DeterministicPolicy, input_name, input_names
from a2c_ppo.spaces import plan_observations
from tests.custom_nets import cartpole_next_step
from tests.envs_for_spaces import native_part_masks
from tests.helpers import ROOT
from tests.test_export import outcome, train

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
    names = [input_name(key) for key in keys]
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


def agent_envs(checkpoint: str) -> gym.vector.VectorEnv:
    """Two of the checkpoint's envs, built as the run built them (``Agent.make_env``)."""
    agent = a2c_ppo.load(checkpoint, trust_checkpoint=True)
    return gym.vector.SyncVectorEnv([agent.make_env, agent.make_env])


def test_nested_parts_with_normalisation_export_and_act_as_the_agent(tmp_path):
    """A Dict holding a Tuple: the normalised parts ``t.1`` and ``pos`` keep their statistics."""
    checkpoint = train(tmp_path, "tests.envs_for_export:NestedPartsEnv", "--norm-obs")
    out = exported(checkpoint, tmp_path)
    assert input_names_of(out) == ["pos", "t.0", "t.1"]
    assert_acts_as_the_agent(checkpoint, out, agent_envs(checkpoint))


def test_tuple_observations_are_inputs_obs_dot_index(tmp_path):
    """Blackjack's Tuple of three classes: torch's exporter drops the names "0", "1", "2"."""
    checkpoint = train(tmp_path, "Blackjack-v1")
    out = exported(checkpoint, tmp_path)
    assert input_names_of(out) == ["obs.0", "obs.1", "obs.2"]
    assert_acts_as_the_agent(checkpoint, out, agent_envs(checkpoint))


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


def test_multibinary_actions_come_in_the_agents_dtype(tmp_path):
    checkpoint = train(tmp_path, "tests.envs_for_export:BinaryActionsEnv")
    out = exported(checkpoint, tmp_path)
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].type == "tensor(int8)"
    assert_acts_as_the_agent(checkpoint, out, agent_envs(checkpoint))


def test_normalised_observations_export_at_the_oldest_opsets(tmp_path):
    """The normaliser clips in float32: onnxruntime has no float64 Clip before opset 12."""
    checkpoint = train(tmp_path, "CartPole-v1", "--norm-obs")
    for opset in (7, 9, 11):
        out = exported(checkpoint, tmp_path, "--opset", str(opset))
        assert onnx.load(out).opset_import[0].version == opset
        assert_acts_as_the_agent(checkpoint, out, agent_envs(checkpoint))


def test_a_model_onnxruntime_cannot_load_is_one_paragraph(tmp_path, capsys, monkeypatch):
    checkpoint = train(tmp_path, "CartPole-v1", "--norm-obs")

    def no_kernel(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for Clip(6)")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_kernel)
    code, err = outcome([checkpoint, str(tmp_path / "policy.onnx"), "--opset", "9"], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "onnxruntime cannot run the model exported at opset 9" in err and "Clip(6)" in err
    assert not (tmp_path / "policy.onnx").exists()


def test_an_operation_an_old_opset_lacks_is_one_paragraph_without_torchs_graph(tmp_path, capfd):
    """torch's exporter prints the whole traced graph on standard output where an operation has no
    export at the opset (masked logits' masked_fill below 9): the user sees our paragraph alone."""
    checkpoint = train(tmp_path, "Taxi-v4")
    capfd.readouterr()  # the training's console
    with pytest.raises(SystemExit) as stop:
        export.main([checkpoint, str(tmp_path / "policy.onnx"), "--opset", "8"])
    code, (out, err) = stop.value.code, capfd.readouterr()
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "masked_fill" in err and "opset 8" in err
    assert "graph" not in out + err, out
    assert not (tmp_path / "policy.onnx").exists()


def test_the_export_runs_with_standard_output_closed(tmp_path):
    """Started with descriptor 1 closed (``>&-``), ``sys.stdout`` is None: the export still writes."""
    checkpoint, out = train(tmp_path, "CartPole-v1"), str(tmp_path / "policy.onnx")
    done = subprocess.run([sys.executable, "-m", "a2c_ppo.export", checkpoint, out], cwd=ROOT, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
                          preexec_fn=lambda: os.close(1))  # fmt: skip
    assert done.returncode == 0 and os.path.exists(out), done.stderr


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


def test_parts_that_would_share_an_input_name_are_refused():
    """``"0"`` becomes ``obs.0``, which the part ``0`` of a Tuple under ``obs`` already is."""
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    space = plan_observations(gym.spaces.Dict({"0": box, "obs": gym.spaces.Tuple((box,))})).space
    policy = make_policy(space, gym.spaces.Discrete(2))
    with pytest.raises(ConfigError, match="the observation part 'obs.0' has the name of the observation part '0'"):
        input_names(DeterministicPolicy(policy, space, None))


def test_random_steps_of_a_masked_multidiscrete_of_rank_2_take_the_allowed_classes():
    """The export's random steps gave gymnasium's sample a flat tuple of 4 mask parts, which an
    nvec of shape (2, 2) refuses: the export ended in an AssertionError's traceback."""
    space = gym.spaces.MultiDiscrete([[2, 3], [2, 2]], start=[[0, 1], [5, 0]])
    envs = SimpleNamespace(single_action_space=space)
    mask = np.array([[1, 0, 0, 0, 1, 0, 1, 1, 0]], np.int8)  # one class allowed in each dimension
    actions = export.random_actions(envs, {"action_mask": mask})
    assert actions.tolist() == [[[0, 3], [6, 0]]] and actions.dtype == space.dtype
