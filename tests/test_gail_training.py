"""GAIL in a run: the learner is paid by the discriminator only, an expert file that does not
fit the env is refused before anything starts (exit 2), and a resumed GAIL run equals one
that never stopped (discriminator, its optimizer and return statistics in the checkpoint)."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from a2c_ppo.api import train as train_api
from a2c_ppo.arguments import resolve
from a2c_ppo.checkpoint import load_checkpoint
from a2c_ppo.errors import ConfigError
from a2c_ppo.session import launch, run
from tests.envs_for_tests import thousandfold_cartpole
from tests.helpers import ROOT, local_run_flags
from tests.test_resume import assert_same_state

BIG_REWARD_ENV = "tests.envs_for_tests:thousandfold_cartpole"


def balancing_action(obs: np.ndarray) -> int:
    """A hand-made CartPole controller that holds the pole for all 500 steps."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def record_expert(path: str, env_id: str, episodes: int = 3, max_steps: int = 200) -> str:
    """Save ``episodes`` of the balancing controller on ``env_id`` to ``path``."""
    from a2c_ppo.trajectories import save_trajectories

    env = thousandfold_cartpole() if env_id == BIG_REWARD_ENV else gym.make(env_id)
    recorded = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        rows: dict[str, list] = {"obs": [], "actions": [], "rewards": []}
        for _ in range(max_steps):
            action = balancing_action(obs)
            rows["obs"].append(obs)
            rows["actions"].append([action])
            obs, reward, terminated, truncated, _ = env.step(action)
            rows["rewards"].append(reward)
            if terminated or truncated:
                break
        recorded.append({**{key: np.asarray(value) for key, value in rows.items()}, "terminated": terminated})
    save_trajectories(path, env_id=env_id, observation_space=env.observation_space,
                      action_space=env.action_space, episodes=recorded)  # fmt: skip
    return path


RUN_SETTINGS = dict(num_processes=2, num_steps=32, vec_env="sync")
GAIL_SETTINGS = dict(gail=True, gail_warmup=1, gail_epoch=1)


def value_losses(env: str, tmp_path, **settings) -> list[float]:
    seen: list[float] = []
    train_api(env, num_env_steps=64 * 4, log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "models"),
              callbacks=[lambda info: seen.append(info.metrics["value_loss"])],
              **RUN_SETTINGS, **settings)  # fmt: skip
    return seen


def test_the_learner_is_paid_by_the_discriminator_not_the_env(tmp_path):
    experts = record_expert(str(tmp_path / "expert.npz"), BIG_REWARD_ENV)
    with_gail = value_losses(BIG_REWARD_ENV, tmp_path / "gail", gail_experts=experts, **GAIL_SETTINGS)
    env_paid = value_losses(BIG_REWARD_ENV, tmp_path / "env")
    assert max(with_gail) < 10.0  # the discriminator's normalised rewards
    assert min(env_paid) > 1e3  # the same run on the env's reward: the control that makes this test bite


def test_an_expert_file_of_another_env_exits_2_before_anything_starts(tmp_path):
    experts = record_expert(str(tmp_path / "expert.npz"), "CartPole-v1")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--env-name", "Acrobot-v1", "--gail", "--gail-experts",
         experts, *local_run_flags(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "recorded on 'CartPole-v1'" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "runs")  # no run folder: nothing started


def test_more_expert_episodes_than_the_file_holds_exits_2(tmp_path):
    from a2c_ppo.resolve import resolve_request

    experts = record_expert(str(tmp_path / "expert.npz"), "CartPole-v1", episodes=3)
    typed = {"gail": True, "gail_experts": experts, "gail_trajectories": 4, "log_dir": str(tmp_path / "runs")}
    with pytest.raises(ConfigError, match="--gail-trajectories 4, but .* holds only 3 episodes: give at most 3"):
        resolve_request(typed, None)
    typed["gail_trajectories"] = 3
    assert resolve_request(typed, None).config.gail_trajectories == 3


def test_a_subsample_step_longer_than_an_episode_is_refused_whatever_the_seed(tmp_path):
    from a2c_ppo.resolve import resolve_request

    experts = record_expert(str(tmp_path / "expert.npz"), "CartPole-v1", episodes=2, max_steps=50)
    typed = {"gail": True, "gail_experts": experts, "gail_subsample": 51, "log_dir": str(tmp_path / "runs")}
    for seed in (1, 2, 3):  # a random start in [0, 51) kept a 50-step episode's one step, or none
        with pytest.raises(ConfigError, match="--gail-subsample 51 is longer than the shortest .* give at most 50"):
            resolve_request({**typed, "seed": seed}, None)
    typed["gail_subsample"] = 50
    config = resolve_request(typed, None).config
    assert config.gail_subsample == 50
    from a2c_ppo.builders import make_gail

    # a run started before the check resumes with its own step (here one pair is left per episode, or none)
    spaces = (gym.make("CartPole-v1").observation_space, gym.make("CartPole-v1").action_space)
    make_gail(config.replace(gail_subsample=51, seed=1), spaces, None, "cpu", 0, new_run=False)


def test_gail_without_an_expert_file_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--gail", *local_run_flags(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and "--gail-experts" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("algo, absorbing", [("ppo", []), ("a2c", []), ("ppo", ["--gail-absorbing"])])
def test_a_resumed_gail_run_equals_one_that_never_stopped(tmp_path, algo, absorbing):
    experts = record_expert(str(tmp_path / "expert.npz"), "CartPole-v1")
    flags = ["--algo", algo, *absorbing, "--gail", "--gail-experts", experts, "--gail-warmup", "1", "--gail-epoch", "1",
             "--num-processes", "2", "--num-steps", "16", "--no-use-linear-lr-decay", "--save-interval", "1",
             "--vec-env", "sync"]  # fmt: skip

    def train(folder: str, steps: int, *extra: str) -> str:
        request = resolve([*flags, "--num-env-steps", str(steps), "--log-dir", str(tmp_path / folder),
                           "--save-dir", str(tmp_path / folder / "m"), *extra])  # fmt: skip
        return launch(request).checkpoint

    whole = load_checkpoint(train("a", 160))
    half = train("b", 96)
    assert "gail" in load_checkpoint(half)["algorithm"]
    resumed = load_checkpoint(train("b", 160, "--resume", half))
    assert_same_state(whole["algorithm"], resumed["algorithm"], "algorithm")
    assert_same_state(whole["model"], resumed["model"], "model")


def test_enjoy_records_raw_episodes_that_gail_then_learns_from(tmp_path):
    """The user's path: train, record expert episodes with enjoy.py, train with --gail on them.
    Pendulum's observations are normalised in training; the file holds them as the env gave them."""
    request = resolve(["--env-name", "Pendulum-v1", "--num-env-steps", "1024", "--num-processes", "1",
                       "--num-steps", "512",
                       "--num-mini-batch", "4", *local_run_flags(tmp_path)])  # fmt: skip
    checkpoint = run(request.config).checkpoint
    experts = str(tmp_path / "expert.npz")
    played = subprocess.run(
        [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", checkpoint, "--num-episodes", "2",
         "--seed", "7", "--record-trajectories", experts],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert played.returncode == 0, played.stderr
    from a2c_ppo.trajectories import load_trajectories

    recorded = load_trajectories(experts, env_id="Pendulum-v1")
    first_obs, _ = gym.make("Pendulum-v1").reset(seed=7)
    np.testing.assert_array_equal(recorded.obs[0].numpy(), first_obs)  # un-normalised, the step before acting
    assert recorded.lengths.tolist() == [200, 200]
    assert recorded.terminated is not None and recorded.terminated.tolist() == [False, False]  # time limits
    assert "2 episodes of expert trajectories (0 terminated, 2 cut by a time limit)" in played.stdout
    printed = [float(line.split("return ")[1].split(",")[0]) for line in played.stdout.splitlines()
               if line.startswith("episode ")]  # fmt: skip
    np.testing.assert_allclose(recorded.returns.numpy(), printed, atol=0.006)  # printed with 2 decimals
    assert float(recorded.actions.abs().max()) <= 2.0  # as the env took them: clipped to Pendulum's [-2, 2]
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--env-name", "Pendulum-v1", "--gail", "--gail-experts",
         experts, "--num-env-steps", "1024", "--num-processes", "1", "--num-steps", "512", "--num-mini-batch", "4",
         "--gail-warmup", "1", "--gail-absorbing",
         *local_run_flags(tmp_path / "gail")],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Done: 1024 env steps" in proc.stdout


def test_an_expert_file_names_the_frame_processing_it_was_recorded_with(tmp_path):
    """Frames skipped in recording but not in training keep the shapes: the env's name catches it."""
    result = train_api("CartPole-v1", frame_skip=2, num_processes=2, num_steps=16, num_env_steps=64,
                       log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "models"))  # fmt: skip
    experts = str(tmp_path / "expert.npz")
    enjoy = [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", result.checkpoint, "--num-episodes", "2",
             "--record-trajectories", experts]  # fmt: skip
    assert subprocess.run(enjoy, capture_output=True, text=True, timeout=120, cwd=ROOT).returncode == 0
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--env-name", "CartPole-v1", "--gail", "--gail-experts",
         experts, *local_run_flags(tmp_path / "gail")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "recorded on 'CartPole-v1 --frame-skip 2', but the env is 'CartPole-v1'" in proc.stderr


def test_a_resume_cannot_add_or_drop_absorbing_states(tmp_path):
    experts = record_expert(str(tmp_path / "expert.npz"), "CartPole-v1")
    flags = ["--gail", "--gail-experts", experts, "--gail-warmup", "1", "--num-processes", "2", "--num-steps", "16",
             "--num-env-steps", "32", *local_run_flags(tmp_path)]  # fmt: skip
    request = resolve(flags)
    checkpoint = run(request.config).checkpoint
    with pytest.raises(ConfigError, match="the checkpoint's GAIL discriminator has --gail-absorbing off, and its "
                                          "weights do not fit --gail-absorbing on; drop --gail-absorbing"):  # fmt: skip
        resolve([*flags, "--resume", checkpoint, "--gail-absorbing"])


MASKED_CHOICE_SPACES = (gym.spaces.Box(0.0, 1.0, (4,), np.float32), gym.spaces.Discrete(4))
TAXI_SPACES = (gym.spaces.Discrete(500), gym.spaces.Discrete(6))


@pytest.mark.parametrize(
    "env_id, spaces", [("tests.envs_for_spaces:MaskedChoiceEnv", MASKED_CHOICE_SPACES), ("Taxi-v4", TAXI_SPACES)]
)
def test_a_policy_trained_with_action_masks_records_the_envs_own_observations(tmp_path, capsys, env_id, spaces):
    """The mask made the run's observations a Dict ({"obs": ..., "action_mask": ...}); the file
    holds the env's own observations, as a GAIL run without masks reads them. MaskedChoiceEnv
    shows its mask in its observation and raises on a forbidden action: every recorded action
    is one its mask allowed."""
    from a2c_ppo.enjoy import main as enjoy
    from a2c_ppo.trajectories import load_trajectories

    result = train_api(env_id, action_masks="on", num_processes=2, num_steps=16, num_env_steps=32,
                       log_dir=str(tmp_path / "runs"), save_dir=str(tmp_path / "models"))  # fmt: skip
    experts = str(tmp_path / "expert.npz")
    argv = ["--checkpoint", result.checkpoint, "--num-episodes", "2", "--record-trajectories", experts]
    assert enjoy([*argv, "--trust-checkpoint"]) == 0
    assert "the file holds the env's observations without them, for a GAIL run with --action-masks off" in (
        capsys.readouterr().out.replace("\n", " ")
    )
    recorded = load_trajectories(experts, env_id=env_id, observation_space=spaces[0], action_space=spaces[1])
    assert len(recorded.lengths) == 2
    if env_id != "Taxi-v4":
        assert bool((recorded.obs.gather(1, recorded.actions.long()) == 1.0).all())


def test_an_expert_episode_longer_than_the_envs_time_limit_is_refused_before_anything_starts(tmp_path):
    """The file names the env with a 20-step limit, and holds a 30-step episode: it was recorded
    with another limit. The refusal comes before anything starts."""
    from a2c_ppo.envs.frames import env_identity
    from a2c_ppo.trajectories import save_trajectories

    flags = ["--env-kwargs", '{"max_episode_steps": 20}', *local_run_flags(tmp_path / "run")]
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    rows: dict[str, list] = {"obs": [], "actions": [], "rewards": []}
    for _ in range(30):  # the balancing controller holds the pole far longer
        rows["obs"].append(obs)
        rows["actions"].append([balancing_action(obs)])
        obs, reward, *_ = env.step(rows["actions"][-1][0])
        rows["rewards"].append(reward)
    experts = str(tmp_path / "expert.npz")
    save_trajectories(experts, env_id=env_identity(resolve(flags).config), observation_space=env.observation_space,
                      action_space=env.action_space,
                      episodes=[{**{k: np.asarray(v) for k, v in rows.items()}, "terminated": False}])  # fmt: skip
    with pytest.raises(ConfigError, match="its episode 0 has 30 steps, more than the time limit of 20 steps"):
        resolve([*flags, "--gail", "--gail-experts", experts])
    assert os.listdir(tmp_path) == ["expert.npz"]


def test_gail_on_taxi_with_its_action_masks_exits_2_in_one_paragraph(tmp_path):
    """Taxi-v4 gives action masks, which --action-masks auto puts into a Dict observation; GAIL
    learns from vectors, and Taxi's own observations (Discrete(500)) are none either."""
    from a2c_ppo.trajectories import save_trajectories

    env = gym.make("Taxi-v4")
    obs, _ = env.reset(seed=0)
    actions = [0, 1, 2, 3]
    observed = [obs] + [env.step(action)[0] for action in actions[:-1]]
    experts = str(tmp_path / "taxi.npz")
    save_trajectories(experts, env_id="Taxi-v4", observation_space=env.observation_space,
                      action_space=env.action_space,
                      episodes=[{"obs": np.asarray(observed), "actions": np.asarray(actions)[:, None],
                                 "rewards": -np.ones(4), "terminated": False}])  # fmt: skip
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--env-name", "Taxi-v4", "--gail", "--gail-experts", experts,
         *local_run_flags(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "GAIL learns from vector observations" in proc.stderr and "Discrete(500)" in proc.stderr
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize(
    "env_id, advice",
    [
        ("tests.envs_for_spaces:MaskedChoiceEnv", r"the env's own, Box\(0.0, 1.0, \(4,\), float32\), with the action "
         "mask .* Pass --action-masks off: an expert file records the env's own observations, without the mask"),
        ("tests.envs_for_spaces:PartMaskEnv", r"Without the mask \(--action-masks off\) they are Dict\('obs': .*\), "
         "which is no vector either"),
        ("tests.envs_for_spaces:BitsDictEnv", "are a Dict of the parts discrete, image, vector"),
    ],
)  # fmt: skip
def test_gail_on_dict_observations_is_refused_saying_what_to_change(tmp_path, env_id, advice):
    """Where the Dict is only the action mask's around a vector, --action-masks off is the fix;
    an env whose own observations are a Dict (PartMaskEnv's mask is a part of it) is told that
    GAIL needs another env or a wrapper."""
    argv = ["--env-name", env_id, "--gail", "--gail-experts", str(tmp_path / "expert.npz"), *local_run_flags(tmp_path)]
    with pytest.raises(ConfigError, match=f"GAIL learns from vector observations, .*{advice}"):
        resolve(argv)
