"""ONNX export: onnxruntime gives the same actions as enjoy.py's policy (VecNormalize's frozen
statistics, then Policy.act deterministic) on the same raw observations, for MLP Discrete, MLP
Box with normalisation, GRU and LSTM policies and Dict observations with an action mask; bad
input is one paragraph and exit status 2."""

from __future__ import annotations

import glob
import os
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo import onnx_export as export
from a2c_ppo.arguments import resolve
from a2c_ppo.enjoy import load_replay
from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.model import make_policy
from a2c_ppo.observations import obs_from_numpy
from a2c_ppo.session import run
from tests.helpers import local_run_flags, output_flags

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

STEPS = 80


class MixedObsEnv(gym.Env):
    """Dict observations: a float vector (normalised), a Discrete part and an action mask."""

    observation_space = gym.spaces.Dict(
        {
            "state": gym.spaces.Box(-10.0, 10.0, (3,), np.float32),
            "mode": gym.spaces.Discrete(3),
            "action_mask": gym.spaces.MultiBinary(4),
        }
    )
    action_space = gym.spaces.Discrete(4)

    def _obs(self) -> dict:
        mask = self.np_random.integers(0, 2, 4).astype(np.int8)
        mask[self.t % 4] = 1  # at least one action allowed
        state = (self.np_random.normal(size=3) * 2 + 1).astype(np.float32)
        return {"state": state, "mode": int(self.np_random.integers(3)), "action_mask": mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(int(action) == self.t % 4), False, self.t >= 20, {}


def train(tmp_path, env_name: str, *extra: str, native: bool = False) -> str:
    """``native``: the env is a vector env of its own, which steps its own envs (no --vec-env, no
    --num-processes)."""
    flags = ["--env-name", env_name, "--num-steps", "16", "--num-env-steps", "64", "--num-mini-batch", "1", *extra]
    if native:
        flags += ["--num-threads", "1", *output_flags(tmp_path)]
    else:
        flags += ["--num-processes", "2", *local_run_flags(tmp_path)]
    request = resolve(flags)
    run(request.config, notes=request.notes)
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.pt"))
    return path


def raw_steps(envs, steps: int, seed: int) -> list[tuple[object, bool]]:
    """(raw observation batch of one, whether it starts an episode) of random steps of the
    vector env below the normalisation."""
    inner = envs.env if isinstance(envs, VecNormalize) else envs
    inner.action_space.seed(seed + 1)
    obs, _ = inner.reset(seed=seed)
    seen = [(export.first_row(obs), True)]
    for _ in range(steps - 1):
        obs, _, terminated, truncated, _ = inner.step(inner.action_space.sample())
        seen.append((export.first_row(obs), bool(terminated[0] or truncated[0])))  # same-step autoreset: a new episode
    flat = [np.concatenate([np.ravel(v) for v in o.values()]) if isinstance(o, dict) else o for o, _ in seen]
    assert len({f.tobytes() for f in flat}) > steps // 2  # real, changing observations
    return seen


@pytest.mark.parametrize(
    "env_name, extra",
    [
        ("CartPole-v1", ["--no-norm-obs"]),
        ("Pendulum-v1", ["--norm-obs"]),  # a Gaussian policy
        ("CartPole-v1", ["--no-norm-obs", "--recurrent-policy"]),
        ("CartPole-v1", ["--norm-obs", "--recurrent-policy", "--recurrent-type", "lstm"]),
        ("tests.test_export:MixedObsEnv", ["--norm-obs"]),  # the float vector part alone is normalised
    ],
    ids=["mlp-discrete", "mlp-box-normalised", "gru", "lstm-normalised", "dict-masked"],
)
def test_onnxruntime_acts_as_the_replayed_policy(tmp_path, env_name, extra, capsys):
    checkpoint = train(tmp_path, env_name, *extra)
    out = str(tmp_path / "policy.onnx")
    assert export.main([checkpoint, out, "--trust-checkpoint"]) == 0
    assert "checked against the policy" in capsys.readouterr().out

    replay = load_replay(checkpoint, "--checkpoint", trust=True)  # as enjoy.py plays it
    envs, policy = replay.envs.envs, replay.policy
    assert isinstance(envs, VecNormalize) == ("--norm-obs" in extra)
    space = envs.single_observation_space
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    keys = list(space.spaces) if isinstance(space, gym.spaces.Dict) else [None]
    assert names[: len(keys)] == [key or "obs" for key in keys]
    hxs = torch.zeros(1, policy.recurrent_hidden_state_size)
    onnx_hxs = np.zeros((1, policy.recurrent_hidden_state_size), np.float32)
    for raw, start in raw_steps(envs, STEPS, seed=7):
        masks = torch.full((1, 1), 0.0 if start else 1.0)
        normalised = envs.normalize_obs(raw) if isinstance(envs, VecNormalize) else raw
        with torch.no_grad():
            _, action, _, hxs = policy.act(obs_from_numpy(normalised, space), hxs, masks, deterministic=True)
        inputs = {name: np.asarray(raw if key is None else raw[key]) for name, key in zip(names, keys)}
        if policy.is_recurrent:
            inputs.update(rnn_hxs=onnx_hxs, masks=masks.numpy())
            got, onnx_hxs = session.run(None, inputs)
            np.testing.assert_allclose(onnx_hxs, hxs.numpy(), rtol=1e-5, atol=1e-6)
        else:
            (got,) = session.run(None, inputs)
        if isinstance(envs.single_action_space, gym.spaces.Box):
            np.testing.assert_allclose(got, action.numpy(), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, action.numpy())
    replay.envs.close()


def test_an_env_that_raises_on_a_forbidden_action_exports(tmp_path, capsys):
    """The check's random steps take only the actions the mask allows (a forbidden one raises)."""
    checkpoint = train(tmp_path, "tests.envs_for_spaces:MaskedChoiceEnv")
    assert export.main([checkpoint, str(tmp_path / "policy.onnx"), "--trust-checkpoint"]) == 0
    assert "checked against the policy" in capsys.readouterr().out


def test_a_batch_of_observations_gives_a_batch_of_actions(tmp_path, capsys):
    checkpoint = train(tmp_path, "Pendulum-v1", "--norm-obs")
    out = str(tmp_path / "policy.onnx")
    assert export.main([checkpoint, out]) == 0
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    (actions,) = session.run(None, {"obs": obs})
    assert actions.shape == (5, 1) and actions.dtype == np.float32


def outcome(argv, capsys) -> tuple[int, str]:
    try:
        code = export.main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_bad_input_is_one_paragraph_and_exit_2(tmp_path, capsys, monkeypatch):
    checkpoint = train(tmp_path, "tests.test_export:MixedObsEnv")
    out = str(tmp_path / "policy.onnx")
    cases = [
        ([str(tmp_path / "missing.pt"), out], "no such checkpoint file"),
        ([checkpoint, str(tmp_path / "no" / "such" / "folder" / "p.onnx")], "does not exist"),
        ([checkpoint, out], "names code to import"),  # a checkpoint is data: the env it names is not imported
        ([checkpoint, checkpoint], "is the file being read"),  # writing it would replace the checkpoint
        ([checkpoint, str(tmp_path)], "is a folder"),
        ([checkpoint, out, "--opset", "-1"], "give an ONNX opset from 7 to"),
        ([checkpoint, out, "--opset", "999"], "give an ONNX opset from 7 to"),
    ]
    size = os.path.getsize(checkpoint)
    for argv, phrase in cases:
        code, err = outcome(argv, capsys)
        assert code == 2 and phrase in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1
    assert os.path.getsize(checkpoint) == size
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, err = outcome([checkpoint, out, "--trust-checkpoint"], capsys)
    assert code == 2 and 'pip install -e ".[onnx]"' in err
    assert not (tmp_path / "policy.onnx").exists()


def test_a_policy_the_exporter_cannot_take_is_refused(tmp_path, capsys, monkeypatch):
    checkpoint = train(tmp_path, "CartPole-v1")

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset version 17 is not supported.")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    code, err = outcome([checkpoint, str(tmp_path / "policy.onnx")], capsys)
    assert code == 2 and "cannot be exported to ONNX" in err and "aten::fancy" in err
    assert not (tmp_path / "policy.onnx").exists()


def test_a_sigterm_while_the_model_is_written_ends_in_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    """A job scheduler's SIGTERM stops the export as Ctrl-C does: exit 143, one line, OUT
    written whole or not at all (before, SIGTERM killed it without a word)."""
    import signal

    from tests.helpers import sigterm_caught_by_the_test

    checkpoint, out = train(tmp_path, "CartPole-v1"), str(tmp_path / "policy.onnx")

    def half_written(data: bytes, f) -> None:
        f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(export, "write_bytes", half_written)
    with sigterm_caught_by_the_test():
        code, err = outcome([checkpoint, out], capsys)
    assert (code, err) == (143, "Stopped by SIGTERM.\n")
    assert not [name for name in os.listdir(tmp_path) if name.startswith("policy.onnx") or ".tmp-" in name]


def test_an_observation_part_named_like_the_recurrent_state_is_refused():
    space = gym.spaces.Dict({"masks": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
    policy = make_policy(space, gym.spaces.Discrete(2), recurrent=True)
    with pytest.raises(export.ConfigError, match="'masks' has the name of the recurrent state's input"):
        export.input_names(export.DeterministicPolicy(policy, space, None))


@pytest.mark.parametrize("delay", [None, 0.3, 1.2, 1.6, 2.0])
def test_the_export_command_runs_and_a_ctrl_c_at_any_moment_ends_it_in_one_line(tmp_path, delay):
    """``python -m a2c_ppo.export`` as the README gives it; Ctrl-C while torch loads or during the
    export: exit 130, one line, and no OUT (it is written whole or not at all)."""
    import signal
    import subprocess
    import time

    from tests.helpers import ROOT

    checkpoint, out = train(tmp_path, "CartPole-v1"), str(tmp_path / "policy.onnx")
    proc = subprocess.Popen([sys.executable, "-m", "a2c_ppo.export", checkpoint, out], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    if delay is not None:
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    if delay is None or proc.returncode == 0:  # (a machine fast enough to finish first)
        assert proc.returncode == 0 and "Exported" in stdout and os.path.getsize(out) > 0, stderr
        return
    assert proc.returncode == 130 and stderr.strip() == "Stopped by Ctrl-C.", stderr
    assert not [name for name in os.listdir(tmp_path) if name.startswith("policy.onnx") or ".tmp-" in name]


def test_a_ctrl_c_during_an_import_is_held_until_the_import_is_done(tmp_path, monkeypatch):
    """A pybind11 extension interrupted as it initialises fails as "not installed", or crashes at
    exit: onnx, onnxruntime and ale_py are imported with the Ctrl-C held, then raised."""
    import signal

    from a2c_ppo.onnx_export import imported_holding_ctrl_c

    (tmp_path / "interrupted_on_import.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nfor _ in range(10_000):\n    pass\nDONE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        imported_holding_ctrl_c("interrupted_on_import")
    assert sys.modules["interrupted_on_import"].DONE  # the import ran to its end first
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
