"""The Python API: train with every kind of env, callbacks, ConfigError, load / act, a user's
network through a checkpoint into enjoy.py, native vector envs, and the README's script."""

from __future__ import annotations

import csv
import glob
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import a2c_ppo
from a2c_ppo.api import load, train
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.storage import RolloutStorage
from tests.helpers import ROOT

SMALL = {"num_processes": 2, "num_steps": 16, "vec_env": "sync", "log_interval": 1}


def folders(tmp_path) -> dict[str, str]:
    return {"log_dir": str(tmp_path / "runs"), "save_dir": str(tmp_path / "models")}


def make_pendulum() -> gym.Env:
    return gym.make("Pendulum-v1")


@pytest.mark.parametrize(
    "env", ["CartPole-v1", "tests.envs_failing:tiny_env", make_pendulum, lambda: gym.make("MountainCar-v0")],
    ids=["id", "module-factory", "callable", "lambda"],
)  # fmt: skip
def test_train_with_each_kind_of_env(tmp_path, env):
    result = train(env, num_env_steps=64, **SMALL, **folders(tmp_path))
    assert result.env_steps == 64 and os.path.isfile(result.checkpoint)


def test_a_native_vector_env_gives_masks_as_an_observation_part_or_is_refused(tmp_path):
    """Its masks are an observation part (left out with action_masks="off"), or it is refused."""
    result = train("tests.envs_for_spaces:native_part_masks", num_env_steps=128, num_steps=16, **folders(tmp_path))
    assert result.env_steps == 128  # its envs raise on a forbidden action
    with pytest.raises(a2c_ppo.ConfigError, match=r"through infos\['action_mask'\], which a2c_ppo reads from single"):
        train("tests.envs_for_spaces:native_info_masks", num_env_steps=128, num_steps=16, **folders(tmp_path))
    unmasked = train("tests.envs_for_spaces:native_part_masks", env_kwargs={"strict": False}, action_masks="off",
                     num_env_steps=128, num_steps=16, **folders(tmp_path / "off"))  # fmt: skip
    agent = load(unmasked.checkpoint, trust_checkpoint=True)
    assert "action_mask" not in agent.observation_space.spaces and len(agent.evaluate(episodes=1)) == 1


def test_the_mask_probe_of_an_async_vector_env_fails_none_of_its_workers(capfd):
    from a2c_ppo.envs.check import _native_masks

    envs = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2,
                                     autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)  # fmt: skip
    try:
        assert _native_masks(envs, "m:f", "auto", envs.reset()[1]) is False
        assert envs.step(np.zeros(2, np.int64))[0].shape == (2, 4)  # its workers still answer
    finally:
        envs.close()
    assert "Error" not in capfd.readouterr().err


def test_a_native_vector_env_whose_observations_need_a_layout_is_laid_out_and_learns(tmp_path):
    """A channels-last image, a vector and a class in a vector env of one's own: only a policy
    that reads all three parts (the image transposed as single envs have it) earns about 10."""
    result = train("tests.envs_for_spaces:native_bits", num_env_steps=12_288, **folders(tmp_path))
    assert result.history[-1][1] >= 9.5, result.history[-5:]
    agent = load(result.checkpoint, trust_checkpoint=True)
    assert agent.evaluate(episodes=2) == [10.0, 10.0]
    bright = {"image": np.full((6, 6, 3), 255, np.uint8), "vector": -np.ones(2, np.float32), "discrete": 1}
    assert agent.act(bright).tolist() == [1, 0, 1]


def test_a_native_vector_env_of_tuple_observations_trains_in_every_autoreset_mode(tmp_path):
    for mode in ("NextStep", "SameStep", "Disabled"):
        result = train("tests.envs_for_spaces:native_blackjack", env_kwargs={"mode": mode}, num_env_steps=512,
                       num_steps=64, **folders(tmp_path / mode))  # fmt: skip
        assert result.env_steps == 512 and result.history, mode


@pytest.mark.parametrize("factory", ["cartpole_next_step", "cartpole_same_step", "cartpole_disabled"])
def test_a_native_vector_env_trains_and_resumes(tmp_path, factory):
    env = f"tests.custom_nets:{factory}"
    result = train(env, num_env_steps=2048, num_steps=64, **folders(tmp_path))  # 4 envs: its own
    config = load_checkpoint(result.checkpoint)["config"]
    assert (config["num_processes"], config["vec_env"]) == (4, "native")
    resumed = train(env, resume=result.checkpoint, num_env_steps=4096, **folders(tmp_path))
    assert resumed.env_steps == 4096 and resumed.history[-1][1] > 0


def test_a_native_vector_env_is_evaluated_and_replayed_in_its_own_kind(tmp_path):
    env = "tests.custom_nets:cartpole_next_step"  # builds no single env: evaluation and replay use it whole
    result = train(env, num_env_steps=512, num_steps=64, eval_interval=1, eval_episodes=4, **folders(tmp_path))
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    with open(os.path.join(run_dir, "progress.csv")) as f:
        assert sum(bool(row["eval/mean_return"]) for row in csv.DictReader(f)) == 2  # after updates 1 and 2
    assert len(load(result.checkpoint, trust_checkpoint=True).evaluate(episodes=3)) == 3
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", result.checkpoint,
                           "--num-episodes", "2", "--trust-checkpoint"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0 and "mean return over 2 episodes" in proc.stdout, proc.stderr
    for flag in ("--video-dir", "--record-trajectories"):  # its envs are its own: nothing records them
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", result.checkpoint,
                               "--trust-checkpoint", flag, str(tmp_path / "out")], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)  # fmt: skip
        assert proc.returncode == 2 and "a vector env of its own" in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "out")
    # the same spaces in the other kind of env, either way round: each replayed in its own kind
    single = load(result.checkpoint, env="CartPole-v1")
    assert single.config.vec_env == "sync" and len(single.evaluate(episodes=2)) == 2
    assert len(single.evaluate(env="tests.custom_nets:cartpole_same_step", episodes=2)) == 2
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", result.checkpoint,
                           "--env-name", "CartPole-v1", "--num-episodes", "1", "--video-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0 and "mean return over 1 episode" in proc.stdout, proc.stderr


def test_a_masked_policy_replays_on_either_kind_of_env_whatever_space_holds_the_mask(tmp_path):
    """A vector env of one's own may give its mask as an int8 Box, single envs' is MultiBinary:
    the policy reads either as != 0."""
    native = train("tests.envs_for_spaces:native_part_masks", num_env_steps=256, num_steps=32, **folders(tmp_path))
    agent = load(native.checkpoint, trust_checkpoint=True)
    assert len(agent.evaluate(env="tests.envs_for_spaces:PartMaskEnv", episodes=1)) == 1
    single = load(native.checkpoint, env="tests.envs_for_spaces:PartMaskEnv")
    assert len(single.evaluate(env="tests.envs_for_spaces:native_part_masks", episodes=1)) == 1


def test_next_step_reset_rows_are_never_trained_on():
    storage = RolloutStorage(4, 2, (3,), 1, torch.long)
    dummy = torch.tensor([[True], [False]])
    storage.mark_dummy(2, dummy)  # env 0's step 2 is a reset step
    seen = torch.cat([b.obs for b in storage.feed_forward_generator(torch.zeros(4, 2, 1), 3, num_epochs=2)])
    storage.obs[:-1] = torch.arange(8, dtype=torch.float32).view(4, 2, 1).expand(4, 2, 3)
    rows = torch.cat([b.obs[:, 0] for b in storage.feed_forward_generator(torch.zeros(4, 2, 1), 3)])
    assert len(seen) == 2 * 7 and sorted(rows.tolist()) == [0, 1, 2, 3, 5, 6, 7]  # row 4 = step 2, env 0
    storage.after_update()
    assert storage.valid is not None and bool(storage.valid.all())


@pytest.mark.parametrize(
    "settings, phrase",
    [({"lr": -1.0}, "--lr must be in"), ({"no_such_setting": 1}, "'no_such_setting' is not a setting; see"),
     ({"num_env_step": 1}, "'num_env_step' is not a setting \\(did you mean num_env_steps"),
     ({"algo": "dqn"}, "--algo must be one of"), ({"env": "NoSuchEnv-v0"}, "not a registered gymnasium id")],
)  # fmt: skip
def test_bad_settings_raise_config_error_never_system_exit(tmp_path, settings, phrase):
    env = settings.pop("env", "CartPole-v1")
    with pytest.raises(a2c_ppo.ConfigError, match=phrase) as info:
        train(env, **settings, **folders(tmp_path))
    assert isinstance(info.value, ValueError)
    assert not os.path.exists(tmp_path / "runs")


def test_a_callback_that_stops_at_update_3_leaves_its_checkpoint(tmp_path, capsys):
    seen: list[int] = []

    def stop_at_3(info: a2c_ppo.UpdateInfo) -> bool:
        seen.append(info.update)
        assert {"policy_loss", "SPS", "learning_rate"} <= set(info.metrics)
        return info.update < 3

    result = train("CartPole-v1", callbacks=[stop_at_3], num_env_steps=6400, **SMALL, **folders(tmp_path))
    assert seen == [1, 2, 3] and result.stopped
    with open(os.path.join(result.run_dir, "progress.csv")) as f:  # logged every update: each row once
        assert [row["update"] for row in csv.DictReader(f)] == ["1", "2", "3"]
    assert load_checkpoint(result.checkpoint)["counters"] == {"update": 3, "env_steps": 3 * 32}
    # logged every 5 updates, the stopping update still gets its row; the console says who stopped it
    assert "Stopped by a callback at update 3/200: 96 env steps" in capsys.readouterr().out
    again = train("CartPole-v1", callbacks=[stop_at_3], num_env_steps=6400, **{**SMALL, "log_interval": 5},
                  **folders(tmp_path / "again"))  # fmt: skip
    with open(os.path.join(again.run_dir, "progress.csv")) as f:
        assert [row["update"] for row in csv.DictReader(f)] == ["3"]
    assert "Stopped by a callback at update 3/200" in capsys.readouterr().out
    assert not train("CartPole-v1", num_env_steps=64, **SMALL, **folders(tmp_path / "whole")).stopped


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])  # Pendulum: normalised observations
def test_load_act_equals_the_policy_deterministic_action(tmp_path, env):
    result = train(env, num_env_steps=2048, num_steps=64, num_processes=2, **folders(tmp_path))
    agent = a2c_ppo.load(result.checkpoint)
    raw = gym.make(env)
    observations = np.stack([raw.reset(seed=s)[0] for s in range(5)])
    stats = load_checkpoint(result.checkpoint)["normalization"]
    obs = observations
    if stats and stats["norm_obs"]:  # what the policy saw: the frozen standardisation
        rms = stats["obs_rms"]
        obs = np.clip((obs - np.array(rms["mean"])) / np.sqrt(np.array(rms["var"]) + 1e-8), -10, 10)
    with torch.no_grad():
        _, expected, _, _ = agent.policy.act(torch.as_tensor(obs, dtype=torch.float32), torch.zeros(5, 1),
                                              torch.ones(5, 1), deterministic=True)  # fmt: skip
    if isinstance(raw.action_space, gym.spaces.Box):  # as the env takes them
        expected = expected.clamp(float(raw.action_space.low[0]), float(raw.action_space.high[0]))
    batch = agent.act(observations)
    one = agent.act(observations[0])
    assert np.allclose(batch.reshape(5, -1), expected.numpy().reshape(5, -1), atol=1e-6)
    assert np.allclose(np.asarray(one).reshape(-1), batch[0].reshape(-1))


def test_box_actions_keep_the_envs_bounds_and_act_clips_to_them(tmp_path):
    result = train("Pendulum-v1", num_env_steps=128, num_steps=64, num_processes=2, num_mini_batch=1,
                   **folders(tmp_path))  # fmt: skip
    agent = a2c_ppo.load(result.checkpoint)
    assert agent.action_space == gym.make("Pendulum-v1").action_space  # Box(-2, 2), not widened to infinity
    with torch.no_grad():
        agent.policy.dist.mean.bias.fill_(100.0)  # a mean far above the bound
    assert agent.act(np.zeros(3, np.float32)).tolist() == [2.0]
    assert agent.act(np.zeros((4, 3), np.float32), deterministic=False).max() == 2.0


def test_a_user_network_round_trips_into_enjoy(tmp_path):
    result = train("CartPole-v1", policy_base="tests.custom_nets:SmallNet", policy_kwargs={"width": 8},
                   num_env_steps=128, **SMALL, **folders(tmp_path))  # fmt: skip
    state = load_checkpoint(result.checkpoint)
    assert state["config"]["policy_base"] == "tests.custom_nets:SmallNet" and "base.body.0.weight" in state["model"]
    enjoy = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", result.checkpoint, "--num-episodes", "1"]
    refused = subprocess.run(enjoy, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "--trust-checkpoint" in refused.stderr  # code named by a file: asked first
    played = subprocess.run([*enjoy, "--trust-checkpoint"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert played.returncode == 0, played.stderr
    assert "mean return" in played.stdout


@pytest.mark.parametrize(
    "base, phrase",
    [("tests.no_such_module:Net", "cannot import module"), ("tests.custom_nets:Missing", "module:Class")],
)
def test_a_network_that_cannot_be_built_is_refused_with_exit_2(tmp_path, base, phrase):
    argv = [sys.executable, os.path.join(ROOT, "main.py"), "--policy-base", base, "--num-env-steps", "64",
            "--num-processes", "2", "--num-steps", "16", "--log-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path):
    result = train("CartPole-v1", policy_base="tests.custom_nets:SmallNet", policy_kwargs={"width": 8},
                   num_env_steps=64, **SMALL, **folders(tmp_path))  # fmt: skip
    payload = torch.load(result.checkpoint, weights_only=True)
    payload["config"] = payload["config"].replace('"{\\"width\\": 8}"', '"{\\"width\\": 9}"')
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(a2c_ppo.ConfigError, match="the model cannot be restored"):
        a2c_ppo.load(str(tmp_path / "edited.pt"), trust_checkpoint=True)


def readme_script() -> str:
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = readme.split("<!-- python-api -->")[1].split("<!-- /python-api -->")[0]
    return block.strip().removeprefix("```python").removesuffix("```")


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_the_readme_script_trains_and_replays_as_a_user_runs_it(tmp_path, how):
    """The script learns (random play returns about -10) and runs from a file and from stdin
    (as a notebook would), with worker processes."""
    script = readme_script().replace("num_env_steps=40_000", 'num_env_steps=40_000, vec_env="subproc"')
    (tmp_path / "example.py").write_text(script)
    argv = [sys.executable, "example.py"] if how == "file" else [sys.executable, "-"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          input=script if how == "stdin" else None,
                          env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    mean = float(re.search(r"mean return (-?[\d.]+)", proc.stdout).group(1))  # type: ignore[union-attr]
    assert mean > -4.0, proc.stdout


def test_a_run_resumed_into_a_new_folder_never_takes_another_runs(tmp_path, monkeypatch):
    """Two runs of one env, algorithm and seed started in the same second: the second got a
    suffixed folder; resuming its copy in SAVE_DIR names a new folder that the first one holds
    (the same second again, here by a fixed name), and must claim another, not go on in it."""
    first = train("CartPole-v1", num_env_steps=64, **SMALL, **folders(tmp_path))
    train("CartPole-v1", num_env_steps=64, lr=0.01, **SMALL, **folders(tmp_path))
    before = open(first.checkpoint, "rb").read()
    monkeypatch.setattr(a2c_ppo.resolve, "new_run_dir", lambda *args: first.run_dir)
    resumed = train(resume=str(tmp_path / "models" / "ppo" / "CartPole-v1.pt"), num_env_steps=128, **folders(tmp_path))
    assert resumed.run_dir != first.run_dir and resumed.env_steps == 128
    assert open(first.checkpoint, "rb").read() == before
    # its own folder's checkpoint still goes on in place
    again = train(resume=resumed.checkpoint, num_env_steps=160, **folders(tmp_path))
    assert again.run_dir == resumed.run_dir


def test_a_callback_records_its_own_values_and_reads_a_mean_return_only_once_there_is_one(tmp_path):
    """Pendulum's episodes end at step 200: before, ``mean_return`` is None (a bare
    ``np.mean`` of no returns would be NaN, and ``NaN < x`` a stop)."""
    means: list[float | None] = []

    def watch(info: a2c_ppo.UpdateInfo) -> bool:
        means.append(info.mean_return)
        info.record("custom/twice_update", 2.0 * info.update)
        if info.update == 5:
            info.save(str(tmp_path / "saved" / "update5.pt"))
        return info.mean_return is None or info.mean_return < 1e9

    result = train("Pendulum-v1", callbacks=watch, num_env_steps=512, num_mini_batch=1,
                   **{**SMALL, "log_interval": 3}, **folders(tmp_path))  # fmt: skip
    # 2 envs x 16 steps an update: each env's first episode ends in update 13 (steps 193 to 208)
    assert not result.stopped and means[:12] == [None] * 12 and None not in means[12:]
    with open(os.path.join(result.run_dir, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(row["update"], row["custom/twice_update"]) for row in rows] == [
        (str(u), str(2.0 * u)) for u in range(1, 17)
    ]
    assert rows[2]["losses/policy_loss"] and not rows[0]["losses/policy_loss"]  # update 3 logged, 1 not
    saved = load_checkpoint(str(tmp_path / "saved" / "update5.pt"))  # the update the callback saved at
    assert saved["counters"]["update"] == 5 and load(str(tmp_path / "saved" / "update5.pt")).act(np.zeros(3)).shape
    resumed = train(resume=str(tmp_path / "saved" / "update5.pt"), num_env_steps=512, **folders(tmp_path))
    assert resumed.env_steps == 512
    info = a2c_ppo.UpdateInfo(1, 1, 1, 1, {}, [], [], None, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="only the callbacks of a run"):
        info.save(str(tmp_path / "x.pt"))
    with pytest.raises(TypeError, match="non-empty str"):
        info.record("", 1.0)
    for own in ("update", "env_steps", "charts/SPS", "losses/value_loss", "eval/mean_return"):
        with pytest.raises(ValueError, match="a value the run logs itself"):
            info.record(own, 1.0)


def test_the_console_says_what_a_budget_trains(tmp_path, capsys):
    """A budget that is not a whole number of updates trains the whole ones that fit, and says
    so; a resume with nothing left to train says that too."""
    result = train("CartPole-v1", num_env_steps=100, **SMALL, **folders(tmp_path))
    assert (
        result.env_steps == 96
        and "3 updates of 32 steps, 96 env steps of --num-env-steps 100" in capsys.readouterr().out
    )
    again = train(resume=result.checkpoint, num_env_steps=100, **folders(tmp_path))
    out = capsys.readouterr().out
    assert again.env_steps == 96 and "Nothing to train: the checkpoint has trained the 3 updates" in out
    # a resume with another batch counts the updates left in its own batch
    longer = train(resume=result.checkpoint, num_env_steps=400, num_processes=4, **folders(tmp_path))
    out = capsys.readouterr().out
    assert "4 updates of 64 steps (updates 4 to 7), 352 env steps of --num-env-steps 400" in out
    assert longer.env_steps == 352 and "Updates 7/7" in out
