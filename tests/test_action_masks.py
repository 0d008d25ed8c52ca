"""Action masks: a forbidden action is never sampled, log-probabilities and entropies under a
mask are the hand computation's, the generators carry the masks, and a masked run trains and
replays (its env raises on a forbidden action); a mask that allows nothing is an env error."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from a2c_ppo.api import load
from a2c_ppo.distributions import CategoricalHead, MultiCategoricalHead
from a2c_ppo.observations import TensorDict
from a2c_ppo.storage import RolloutStorage
from tests.helpers import ROOT, local_run_flags, output_flags, run_checkpoint

MASKED_ENV = "tests.envs_for_spaces:MaskedChoiceEnv"


def random_masks(rows: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, size) bool masks with at least one allowed action per row."""
    masks = torch.rand(rows, size, generator=generator) < 0.4
    masks[torch.arange(rows), torch.randint(size, (rows,), generator=generator)] = True
    return masks


def test_no_forbidden_action_is_ever_sampled():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    head = CategoricalHead(3, 6)
    head.linear.weight.data.mul_(500.0)  # sharp logits: forbidden actions would be the likely ones
    x = torch.randn(20_000, 3)
    masks = random_masks(len(x), 6, generator)
    action, log_prob = head.act(x, deterministic=False, mask=masks)
    assert bool(masks.gather(1, action).all())
    assert bool(torch.isfinite(log_prob).all()) and float(log_prob.max()) <= 0.0
    deterministic, _ = head.act(x, deterministic=True, mask=masks)
    assert bool(masks.gather(1, deterministic).all())

    multi = MultiCategoricalHead(3, [2, 4])
    multi_masks = torch.cat([random_masks(len(x), 2, generator), random_masks(len(x), 4, generator)], dim=1)
    actions, _ = multi.act(x, deterministic=False, mask=multi_masks)
    assert bool(multi_masks[:, :2].gather(1, actions[:, :1]).all())
    assert bool(multi_masks[:, 2:].gather(1, actions[:, 1:]).all())


def test_log_probabilities_and_entropy_under_the_mask_by_hand():
    head = CategoricalHead(1, 4)
    head.linear.weight.data.zero_()
    head.linear.bias.data.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))  # logits 1..4 whatever the input
    mask = torch.tensor([[True, False, True, False]])
    dist = head(torch.zeros(1, 1), mask)
    # Only actions 0 and 2 remain: p = softmax([1, 3]).
    normaliser = math.log(math.exp(1.0) + math.exp(3.0))
    p0, p2 = math.exp(1.0 - normaliser), math.exp(3.0 - normaliser)
    assert dist.log_probs(torch.tensor([[2]])).item() == pytest.approx(3.0 - normaliser, abs=1e-6)
    assert dist.log_probs(torch.tensor([[0]])).item() == pytest.approx(1.0 - normaliser, abs=1e-6)
    assert dist.entropy().item() == pytest.approx(-(p0 * math.log(p0) + p2 * math.log(p2)), abs=1e-6)
    unmasked = head(torch.zeros(1, 1))  # the control: without the mask all four count
    assert unmasked.entropy().item() > dist.entropy().item() + 0.3


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_allowed_logits_below_minus_1e8_still_beat_a_forbidden_action(bf16):
    """Logits [-2e8, -3e8, 0] with action 2 forbidden: p = [1, 0, 0] (0 and 1 differ by 1e8), so
    act takes 0, deterministic or not, at log p 0, and the entropy is 0. A forbidden logit set to
    -1e8 (sb3-contrib's value) outweighed both allowed ones: deterministic acting took action 2,
    sampling fell back to action 1 at log p -2e8."""
    head = CategoricalHead(1, 3)
    head.linear.weight.data.zero_()
    head.linear.bias.data.copy_(torch.tensor([-2e8, -3e8, 0.0]))
    x, mask = torch.zeros(4, 1), torch.tensor([[True, True, False]]).expand(4, -1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for deterministic in (True, False):
            action, log_prob = head.act(x, deterministic, mask)
            assert action.flatten().tolist() == [0] * 4 and log_prob.flatten().tolist() == [0.0] * 4
        dist = head(x, mask)
        assert dist.log_probs(torch.zeros(4, 1, dtype=torch.long)).flatten().tolist() == [0.0] * 4
        assert dist.entropy().tolist() == [0.0] * 4


@pytest.mark.parametrize("recurrent", [False, True], ids=["feed-forward", "recurrent"])
def test_the_generators_carry_each_rows_mask(recurrent):
    T, N, K = 8, 4, 5
    layout = {"obs": ((1,), torch.float32), "action_mask": ((K,), torch.bool)}
    storage = RolloutStorage(T, N, layout, 1, torch.long)
    rows = torch.arange((T + 1) * N, dtype=torch.float32).view(T + 1, N, 1)
    storage.obs = TensorDict({"obs": rows, "action_mask": (rows.long() % K == torch.arange(K)).bool()})
    advantages = torch.zeros(T, N, 1)
    if recurrent:
        batches = list(storage.recurrent_generator(advantages, 2, chunk_length=4))
    else:
        batches = list(storage.feed_forward_generator(advantages, 4))
    seen = 0
    for batch in batches:
        row_ids = batch.obs["obs"].reshape(-1).long()
        expected = row_ids.unsqueeze(1) % K == torch.arange(K)
        assert torch.equal(batch.obs["action_mask"].reshape(-1, K), expected)
        seen += len(row_ids)
    assert seen == T * N


def main_py(*argv: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)  # fmt: skip


def test_a_masked_run_learns_and_replays_with_masks(tmp_path):
    """The env raises on a forbidden action: training and replay both take allowed ones only."""
    proc = main_py("--env-name", MASKED_ENV, "--num-env-steps", "8192", *local_run_flags(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Action masks: on" in proc.stdout
    assert float(proc.stdout.split("mean/median return ")[-1].split("/")[0]) >= 9.0  # random allowed actions: 5
    replay = subprocess.run(
        [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", run_checkpoint(tmp_path), "--num-episodes",
         "3", "--trust-checkpoint"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert "mean return over 3 episodes: 10.00" in replay.stdout


def test_without_masks_the_same_env_fails(tmp_path):
    """The control that makes the test above bite: --action-masks off takes forbidden actions."""
    proc = main_py("--env-name", MASKED_ENV, "--num-env-steps", "512", "--action-masks", "off",
                   *local_run_flags(tmp_path))  # fmt: skip
    assert proc.returncode == 3 and "is forbidden by the mask" in proc.stderr


def test_a_mask_part_of_the_observation_masks_and_off_leaves_it_out(tmp_path):
    env = "tests.envs_for_spaces:PartMaskEnv"
    masked = main_py("--env-name", env, "--num-env-steps", "512", *local_run_flags(tmp_path / "on"))
    assert masked.returncode == 0 and "Action masks: on" in masked.stdout, masked.stderr  # the env raises otherwise
    off = main_py("--env-name", env, "--env-kwargs", '{"strict": false}', "--action-masks", "off", "--num-env-steps",
                  "512", *local_run_flags(tmp_path / "off"))  # fmt: skip
    assert off.returncode == 0, off.stderr
    assert "'action_mask' observation part is left out" in off.stdout and "Observation parts obs." in off.stdout
    agent = load(run_checkpoint(tmp_path / "off"), trust_checkpoint=True)
    assert list(agent.observation_space.spaces) == ["obs"] and not agent.policy.masked  # no mask reaches the policy
    assert len(agent.evaluate(episodes=2)) == 2  # replayed as trained: the env's part left out again


def test_masks_from_an_action_masks_method(tmp_path):
    proc = main_py("--env-name", "tests.envs_for_spaces:MethodMaskEnv", "--num-env-steps", "512",
                   *local_run_flags(tmp_path))  # fmt: skip
    assert proc.returncode == 0 and "Action masks: on" in proc.stdout, proc.stderr


def test_a_mask_that_allows_nothing_stops_the_run_naming_the_env_and_the_step(tmp_path):
    proc = main_py("--env-name", "tests.envs_for_spaces:EmptyMaskEnv", "--num-env-steps", "512",
                   *local_run_flags(tmp_path))  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "allows no action" in proc.stderr and "after step 3 of the episode" in proc.stderr
    assert "env 0" in proc.stderr and "Traceback" not in proc.stderr.split("allows no action")[0][:200]


@pytest.mark.parametrize(
    "env",
    [
        "tests.envs_for_spaces:GameOverMaskEnv",
        "tests.envs_for_spaces:native_game_over",
        "tests.envs_for_spaces:native_game_over",
    ],
    ids=["single", "same-step", "next-step"],
)
def test_a_game_over_mask_that_allows_nothing_is_no_fault(tmp_path, env, request):
    """No action is chosen from an ended episode's last observation: its mask may allow nothing."""
    kwargs = ["--env-kwargs", '{"mode": "NextStep"}'] if request.node.callspec.id == "next-step" else []
    proc = main_py("--env-name", env, *kwargs, "--num-env-steps", "512", *output_flags(tmp_path))
    assert proc.returncode == 0 and "Action masks: on" in proc.stdout, proc.stderr


def test_a_vector_envs_mask_that_allows_nothing_mid_episode_stops_the_run(tmp_path):
    proc = main_py("--env-name", "tests.envs_for_spaces:native_game_over", "--env-kwargs", '{"mid_episode": true}',
                   "--num-env-steps", "512", *output_flags(tmp_path))  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "env 0 gave the action mask [0, 0, 0, 0], which allows no action" in proc.stderr


def test_masks_on_for_an_env_without_masks_is_refused_before_anything_starts(tmp_path):
    proc = main_py("--env-name", "CartPole-v1", "--action-masks", "on", *local_run_flags(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "runs")


def test_a_network_of_ones_own_that_fails_on_masked_observations_is_told_what_it_gets(tmp_path):
    """With masks on, a --policy-base gets the env's observations with the mask as a part: its
    failure says so, and what to do."""
    from a2c_ppo.arguments import resolve
    from a2c_ppo.errors import ConfigError

    with pytest.raises(ConfigError, match="The run masks actions, so the base gets observations with an "
                                          "'action_mask' part .* or pass --action-masks off"):  # fmt: skip
        resolve(["--env-name", "tests.envs_for_spaces:MaskedChoiceEnv", "--policy-base", "tests.custom_nets:SmallNet"])
    resolve(["--env-name", "tests.envs_for_spaces:MaskedChoiceEnv", "--policy-base", "tests.custom_nets:SmallNet",
             "--action-masks", "off"])  # fmt: skip


def test_masks_an_env_gives_for_actions_they_cannot_mask_are_said_to_be_off():
    from a2c_ppo.arguments import resolve

    request = resolve(["--env-name", "tests.envs_for_spaces:BinaryActionsWithMaskEnv"])
    assert request.config.action_masks == "off"
    assert any(note.startswith("Action masks: off (the env gives them, and its actions MultiBinary(4) take none")
               for note in request.notes), request.notes  # fmt: skip


@pytest.mark.parametrize("env", ["BinaryActionsWithMaskEnv", "native_box_actions", "Pendulum-v1"])
def test_masks_on_for_actions_no_mask_fits_says_to_drop_the_flag_only(env):
    """An env whose actions are not discrete (masks given or not, single or a vector env of its
    own): the one fix is dropping --action-masks, not giving the env masks."""
    from a2c_ppo.envs.check import inspect_env
    from a2c_ppo.errors import ConfigError

    env_id = env if "-v" in env else f"tests.envs_for_spaces:{env}"
    with pytest.raises(ConfigError) as caught:
        inspect_env(env_id, "on")
    message = str(caught.value)
    assert message.startswith(f"--action-masks on: {env_id!r} has actions ") and "give the env masks" not in message
    assert message.endswith("; action masks apply to Discrete and MultiDiscrete actions only. Drop --action-masks.")
