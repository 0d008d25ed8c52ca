"""GAIL's absorbing states (DAC): the pairs, the terminal reward by hand, which way the
discriminator learns them, the expert file's record of terminations, and the run's refusals."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from a2c_ppo.algo.discriminator import discriminator_loss
from a2c_ppo.algo.gail import GAIL
from a2c_ppo.algo.gail_pairs import PairLayout
from a2c_ppo.arguments import resolve
from a2c_ppo.envs.wrappers import EpisodeRecorder
from a2c_ppo.errors import ConfigError
from a2c_ppo.trajectories import describe_space, load_trajectories, save_trajectories, select_episodes, subsample
from tests.helpers import local_run_flags
from tests.test_gail import BOX_ACTIONS, DISCRETE_ACTIONS, OBS, ThreadReducer, episodes, expert_set


def ending(expert, *terminated: bool):
    return replace(expert, terminated=torch.tensor(terminated))


def test_pairs_carry_an_indicator_and_the_absorbing_pair_is_zero_but_for_it():
    layout = PairLayout(2, describe_space(DISCRETE_ACTIONS), with_absorbing=True)
    obs, encoded = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.eye(4)[:2]
    assert layout.width == 2 + 1 + 4
    assert layout.join(obs, encoded).tolist() == [[1, 2, 0, 1, 0, 0, 0], [3, 4, 0, 0, 1, 0, 0]]
    # a row marked absorbing loses its observation and action (a normalised zero is not zero)
    marked = layout.join(obs, encoded, torch.tensor([[0.0], [1.0]]))
    assert marked.tolist() == [[1, 2, 0, 1, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0]]
    assert layout.absorbing_pairs(2, torch.device("cpu")).tolist() == [[0, 0, 1, 0, 0, 0, 0]] * 2
    plain = PairLayout(2, describe_space(DISCRETE_ACTIONS), with_absorbing=False)
    assert plain.width == 6 and plain.join(obs, encoded).tolist() == [[1, 2, 1, 0, 0, 0], [3, 4, 0, 1, 0, 0]]


def test_the_expert_gets_one_absorbing_row_per_terminated_episode():
    gail = GAIL(ending(expert_set(lengths=(5, 3, 4)), True, False, True), absorbing=True)
    assert gail.expert_obs.shape == (12 + 2, 3)
    assert gail.expert_absorbing is not None and gail.expert_absorbing[:, 0].tolist() == [0.0] * 12 + [1.0] * 2
    policy = gail.pairs(torch.randn(3, 3), torch.zeros(3, 2), absorbing_rows=2)
    assert policy.shape == (5, 3 + 1 + 2) and policy[3:].tolist() == [[0, 0, 0, 1, 0, 0]] * 2
    assert policy[:3, 3].tolist() == [0.0] * 3


def test_an_expert_file_that_does_not_record_terminations_is_refused():
    with pytest.raises(ConfigError, match="does not say: record it again"):
        GAIL(expert_set(), absorbing=True)
    GAIL(expert_set())  # without absorbing states the record is not needed


class Linear(nn.Module):
    """f(x) = w . x, to compute rewards by hand."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.w = torch.tensor(weights)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return (pairs @ self.w).unsqueeze(1)


@pytest.mark.parametrize("form", ["logit", "positive"])
def test_a_terminated_step_also_earns_the_absorbing_reward_for_ever_after(form):
    """Pairs [obs (3), indicator, action (2)], f = w . x with the indicator's weight -2: the
    absorbing state's reward is f = -2 (softplus(-2) = 0.1269 for the positive form), and a
    terminated step earns r + gamma / (1 - gamma) * r_abs = r + 9 * r_abs at gamma 0.9; a
    truncated or ongoing step earns r alone."""
    gail = GAIL(ending(expert_set(), False, False, False), absorbing=True, reward_form=form)
    gail.discriminator = Linear([1.0, 0.0, 0.0, -2.0, 0.5, 0.0])  # type: ignore[assignment]
    obs = torch.tensor([[[1.0, 7.0, 7.0], [2.0, 7.0, 7.0]]])  # T = 1, N = 2
    actions = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    terminated = torch.tensor([[[True], [False]]])
    rewards = gail.reward(obs, actions, torch.ones(1, 2, 1), 0.9, terminated=terminated)[0, :, 0]
    shape = (lambda f: f) if form == "logit" else (lambda f: float(torch.nn.functional.softplus(torch.tensor(f))))
    raw = np.array([shape(1.5) + 9.0 * shape(-2.0), shape(2.0)])
    # the first statistics: one batch of the two returns (= the raw rewards) merged into var 1, count 1e-4
    mean, count = raw.mean(), 2 + 1e-4
    var = (1e-4 + raw.var() * 2 + mean**2 * 1e-4 * 2 / count) / count
    assert rewards.tolist() == pytest.approx((raw / np.sqrt(var + 1e-8)).tolist(), rel=1e-5)
    if form == "logit":
        assert rewards[0] < 0 < rewards[1]  # terminating costs: the absorbing state's logit is negative


def test_subsampled_experts_absorbing_rows_weigh_one_over_the_step():
    """DAC: the expert keeps 1/n of its steps but every absorbing row, so those weigh 1/n."""
    expert = ending(expert_set(lengths=(5, 3, 4)), True, False, True)
    gail = GAIL(expert, absorbing=True, expert_subsample=4)
    assert gail.expert_weights is not None and gail.expert_weights[:, 0].tolist() == [1.0] * 12 + [0.25] * 2
    assert (
        GAIL(expert, absorbing=True).expert_weights is None and GAIL(expert, expert_subsample=4).expert_weights is None
    )
    # the weighted bce by hand: mean over the expert rows of w * -log sigmoid(f), plus the policy's
    expert_logits, policy_logits = torch.tensor([[0.0], [2.0]]), torch.tensor([[-1.0], [0.5]])
    bce, _, _ = discriminator_loss(expert_logits, policy_logits, torch.tensor([[1.0], [0.25]]))
    softplus = torch.nn.functional.softplus
    by_hand = (softplus(torch.tensor(0.0)) + 0.25 * softplus(torch.tensor(-2.0))) / 2
    by_hand += (softplus(torch.tensor(-1.0)) + softplus(torch.tensor(0.5))) / 2
    assert float(bce) == pytest.approx(float(by_hand), rel=1e-6)


def test_the_expert_absorbing_rows_stay_zero_through_the_observation_normaliser(monkeypatch):
    expert = ending(expert_set(lengths=(5, 3, 4)), True, True, True)
    gail = GAIL(expert, absorbing=True, expert_subsample=2)
    seen = []
    monkeypatch.setattr(gail, "_step", lambda e, p, w: seen.append((e, w)) or torch.zeros(4))
    gail.update(torch.randn(15, 3), torch.zeros(15, 2), epochs=1, batch_size=15, obs_normalizer=lambda x: x + 5.0)
    pairs, weights = seen[0]
    absorbing = pairs[:, 3] == 1.0
    assert int(absorbing.sum()) == 3  # 15 expert rows in one minibatch: all 3 absorbing rows
    assert pairs[absorbing].tolist() == [[0, 0, 0, 1, 0, 0]] * 3 and weights[absorbing, 0].tolist() == [0.5] * 3
    # the 12 steps normalised (each is an expert observation + 5), the absorbing rows not
    assert float(torch.cdist(pairs[~absorbing, :3] - 5.0, expert.obs).min(1).values.max()) < 1e-5


def test_the_update_logs_the_absorbing_rows_and_logit():
    """``absorbing_rows`` the policy side's absorbing rows (this rollout's terminations),
    ``absorbing_logit`` f of the absorbing pair after the update; neither without absorbing states."""
    gail = GAIL(ending(expert_set(), False, False, False), absorbing=True, seed=0)
    before = gail.discriminator(gail.layout.absorbing_pairs(1, torch.device("cpu"))).item()
    metrics = gail.update(torch.randn(16, 3), torch.zeros(16, 2), epochs=1, batch_size=8, policy_absorbing=3)
    assert metrics["absorbing_rows"] == 3.0 and metrics["absorbing_logit"] != before  # read after the update
    assert "absorbing_logit" not in GAIL(expert_set()).update(torch.randn(16, 3), torch.zeros(16, 2), epochs=1)


def test_reward_with_absorbing_states_needs_the_terminations():
    gail = GAIL(ending(expert_set(), False, False, False), absorbing=True)
    with pytest.raises(ValueError, match="needs the steps' terminations"):
        gail.reward(torch.zeros(1, 1, 3), torch.zeros(1, 1, 2), torch.ones(1, 1, 1), 0.9)
    with pytest.raises(ValueError, match="no absorbing state"):
        GAIL(expert_set()).update(torch.zeros(4, 3), torch.zeros(4, 2), policy_absorbing=1)


@pytest.mark.parametrize("expert_terminates", [False, True])
def test_the_discriminator_judges_the_absorbing_state_as_the_experts_endings(expert_terminates):
    """Same steps on both sides; only the endings differ. An expert that never terminates,
    against a policy that does, makes the absorbing state's logit negative (terminating costs);
    an expert that ends every episode, against a policy that never does, makes it positive."""
    torch.manual_seed(0)
    lengths = (5,) * 8
    expert = ending(expert_set(lengths=lengths), *([expert_terminates] * len(lengths)))
    gail = GAIL(expert, absorbing=True, seed=0)
    policy_absorbing = 0 if expert_terminates else 8
    for _ in range(150):
        gail.update(expert.obs, expert.actions, epochs=1, batch_size=16, policy_absorbing=policy_absorbing)
    with torch.no_grad():
        logit = gail.discriminator(gail.layout.absorbing_pairs(1, torch.device("cpu"))).item()
        steps = gail.discriminator(gail.pairs(expert.obs, expert.actions)).abs().max().item()
    assert (logit > 0.7) if expert_terminates else (logit < -0.7), logit  # the gradient penalty bounds it near 1
    assert steps < 0.5  # the steps, alike on both sides, stay undecided


def test_ranks_with_different_absorbing_rows_take_the_same_steps():
    """Rank 0 has 8 policy rows, rank 1 8 and 5 absorbing ones: 2 and 3 minibatches of 4 alone.
    Each Adam step all-reduces, so both take the mean, 2 (rank 0 would otherwise wait for ever),
    and their discriminators stay equal."""
    expert = ending(expert_set(lengths=(5, 3, 4)), True, True, False)
    slots, barrier, gails = [None, None], threading.Barrier(2, timeout=30), []
    for rank in range(2):
        torch.manual_seed(0)
        gails.append(GAIL(expert, reducer=ThreadReducer(rank, slots, barrier), seed=rank, absorbing=True))
    metrics: list = [None, None]

    def run(rank: int) -> None:
        obs = torch.randn(8, 3, generator=torch.Generator().manual_seed(rank))
        metrics[rank] = gails[rank].update(obs, torch.zeros(8, 2), epochs=2, batch_size=4, policy_absorbing=5 * rank)

    calls = [0, 0]
    for rank in range(2):
        reducer, all_reduce_sum = gails[rank].reducer, gails[rank].reducer.all_reduce_sum  # type: ignore[union-attr]

        def counted(tensor: torch.Tensor, rank: int = rank, call=all_reduce_sum) -> torch.Tensor:
            calls[rank] += 1
            return call(tensor)

        reducer.all_reduce_sum = counted  # type: ignore[union-attr]
    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics[0] is not None and metrics[0] == metrics[1]
    assert calls == [1 + 2 * 2 + 1] * 2  # the counts, 2 epochs of 2 steps, the metrics
    for a, b in zip(gails[0].discriminator.parameters(), gails[1].discriminator.parameters()):
        assert torch.equal(a, b)
    alone = GAIL(expert, absorbing=True)
    assert (alone._minibatches(4, 8), alone._minibatches(4, 13)) == ((4, 2), (4, 3))  # what each would take alone


def test_the_file_records_terminations_and_selection_keeps_them(tmp_path):
    eps = [{**episode, "terminated": flag} for episode, flag in zip(episodes(BOX_ACTIONS), (True, False, True))]
    for name in ("expert.npz", "expert.pt"):
        path = str(tmp_path / name)
        save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS, episodes=eps)
        loaded = load_trajectories(path)
        assert loaded.terminated is not None and loaded.terminated.tolist() == [True, False, True]
    kept = subsample(loaded, 2, start=0)
    assert kept.terminated is not None and kept.terminated.tolist() == [True, False, True]
    # every 4th step from step 3 leaves the 3-step episode none: the flags of the others stay theirs
    flags = replace(loaded, terminated=torch.tensor([False, True, True]))
    dropped = subsample(flags, 4, start=3)
    assert dropped.lengths.tolist() == [1, 1] and dropped.terminated is not None
    assert dropped.terminated.tolist() == [False, True]
    picked = select_episodes(loaded, 3, generator=0)
    order = [loaded.lengths.tolist().index(length) for length in picked.lengths.tolist()]  # lengths 5, 3, 4 differ
    assert picked.terminated is not None and picked.terminated.tolist() == [[True, False, True][k] for k in order]
    # files without the record still load; a half record is refused when written
    save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS, episodes=episodes(OBS))
    assert load_trajectories(path).terminated is None
    for bad in ("False", 2, float("nan"), np.array([True])):
        with pytest.raises(ValueError, match="episode 1: 'terminated' must be a bool"):
            save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS,
                              episodes=[eps[0], {**eps[1], "terminated": bad}])  # fmt: skip
    for good in (np.bool_(False), np.array(False)):
        save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS,
                          episodes=[eps[0], {**eps[1], "terminated": good}])  # fmt: skip
        assert load_trajectories(path).terminated.tolist() == [True, False]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="give 'terminated' for all or none"):
        save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS,
                          episodes=[eps[0], episodes(BOX_ACTIONS)[1]])  # fmt: skip


def test_a_crafted_termination_record_of_the_wrong_type_is_refused(tmp_path):
    eps = [{**episode, "terminated": True} for episode in episodes(BOX_ACTIONS)]
    path = str(tmp_path / "expert.npz")
    save_trajectories(path, env_id="Test-v0", observation_space=OBS, action_space=BOX_ACTIONS, episodes=eps)
    with np.load(path) as archive:
        fields = {key: archive[key] for key in archive.files}
    for bad in (np.ones(3, dtype=np.int64), np.ones(2, dtype=np.bool_)):
        np.savez(path, **{**fields, "terminated": bad})
        with pytest.raises(ConfigError, match="'terminated' has (dtype int64|shape)"):
            load_trajectories(path)


def test_the_recorder_tells_terminations_from_time_limits():
    recorded: list[dict] = []
    env = EpisodeRecorder(gym.make("CartPole-v1", max_episode_steps=5), recorded)
    env.reset(seed=0)
    for action in (1, 0, 1, 0, 1):  # balanced for 5 steps: the time limit ends the episode
        env.step(action)
    env = EpisodeRecorder(gym.make("CartPole-v1"), recorded)
    env.reset(seed=0)
    for _ in range(500):  # always left: the pole falls long before the 500-step limit
        env.step(0)
        if len(recorded) == 2:
            break
    assert [bool(episode["terminated"]) for episode in recorded] == [False, True]
    assert [len(episode["rewards"]) for episode in recorded][0] == 5 and len(recorded[1]["rewards"]) < 500


def test_absorbing_states_need_proper_time_limits_and_a_gamma_below_one(tmp_path):
    from tests.test_gail_training import record_expert

    experts = record_expert(str(tmp_path / "expert.npz"), "CartPole-v1")
    for flags in (["--no-use-proper-time-limits"], ["--gamma", "1"]):
        argv = ["--gail", "--gail-experts", experts, "--gail-absorbing", *flags, *local_run_flags(tmp_path)]
        with pytest.raises(
            ConfigError,
            match="drop --no-use-proper-time-limits or --gail-absorbing|Give --gamma below 1, or drop --gail-absorbing",
        ):
            resolve(argv)
    assert os.listdir(tmp_path) == ["expert.npz"]  # refused before anything was written
    resolve(["--gail", "--gail-experts", experts, "--gail-absorbing", *local_run_flags(tmp_path)])


def test_the_trainer_passes_terminations_not_time_limits(tmp_path, monkeypatch, capsys):
    """A run whose time limit is 1 step truncates every episode: no step terminated, no absorbing
    row. With CartPole's own limit the learner's episodes end by falling: the terminations the
    reward sees are the absorbing rows the discriminator trains on, and there are some."""
    from a2c_ppo.envs.frames import env_identity
    from a2c_ppo.session import run
    from tests.test_gail_training import balancing_action

    seen: dict[str, list] = {"terminated": [], "rows": []}
    reward, update = GAIL.reward, GAIL.update

    def recording_reward(self, *args, **kwargs):
        seen["terminated"].append(args[5].clone())
        return reward(self, *args, **kwargs)

    def recording_update(self, *args, **kwargs):
        seen["rows"].append(args[5])
        return update(self, *args, **kwargs)

    monkeypatch.setattr(GAIL, "reward", recording_reward)
    monkeypatch.setattr(GAIL, "update", recording_update)
    for limit in (1, None):
        kwargs = ["--env-kwargs", '{"max_episode_steps": 1}'] if limit else []
        flags = [*kwargs, "--num-processes", "2", "--num-steps", "32", "--num-env-steps", "128",
                 *local_run_flags(tmp_path / f"limit{limit}")]  # fmt: skip
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=0)
        rows: dict[str, list] = {"obs": [], "actions": [], "rewards": []}
        for _ in range(50):
            rows["obs"].append(obs)
            rows["actions"].append([balancing_action(obs)])
            obs, step_reward, *_ = env.step(rows["actions"][-1][0])
            rows["rewards"].append(step_reward)
        experts = str(tmp_path / f"expert{limit}.npz")
        cut = limit or 50  # the 50 steps as the env's time limit cuts them (a longer episode is refused)
        recorded = [{**{k: np.asarray(v[i : i + cut]) for k, v in rows.items()}, "terminated": False}
                    for i in range(0, 50, cut)]  # fmt: skip
        save_trajectories(experts, env_id=env_identity(resolve(flags).config), observation_space=env.observation_space,
                          action_space=env.action_space, episodes=recorded)  # fmt: skip
        request = resolve([*flags, "--gail", "--gail-experts", experts, "--gail-absorbing", "--gail-warmup", "1"])
        seen["terminated"].clear(), seen["rows"].clear()
        run(request.config)
        summary = f"GAIL: 50 expert steps of {len(recorded)} episodes, 0 of them terminated; reward logit, with"
        assert summary in capsys.readouterr().out
        ended = [int(terminated.sum()) for terminated in seen["terminated"]]
        assert len(ended) == 2 and ended == seen["rows"]
        assert (sum(ended) == 0) if limit else (sum(ended) > 0), ended
