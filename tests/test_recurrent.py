"""Recurrent bases: sequence mode equals step-by-step, masks reset the state, PPO on top."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from a2c_ppo.algo import PPO
from a2c_ppo.algo.ppo import ratio_metrics
from a2c_ppo.arguments import parse_args
from a2c_ppo.model import CNNBase, MLPBase, Policy, make_policy
from tests.helpers import BOX_OBS, local_run_flags, output_flags, progress_rows, rollout_from_policy, run_main

TYPES = ["gru", "lstm"]


def make_base(kind: str, rnn_type: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return MLPBase(5, hidden_size=16, recurrent=True, rnn_type=rnn_type)
    return CNNBase((2, 36, 36), hidden_size=16, recurrent=True, rnn_type=rnn_type)


def inputs(kind: str, T: int, N: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        return torch.randn(T, N, 5, generator=g)
    return torch.randint(0, 256, (T, N, 2, 36, 36), generator=g, dtype=torch.uint8)


def episode_masks(T: int, N: int) -> torch.Tensor:
    """(T, N, 1) masks with episode starts at t=0 in one env and mid-sequence elsewhere."""
    masks = torch.ones(T, N, 1)
    masks[0, 0] = 0.0  # a start right at the first step
    masks[3, 1] = 0.0
    masks[3, 2] = 0.0  # two envs starting on the same step
    masks[5, 0] = 0.0
    masks[T - 1, 2] = 0.0  # and on the last step
    return masks


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("rnn_type", TYPES)
def test_sequence_mode_equals_step_by_step_across_episode_boundaries(kind, rnn_type):
    T, N = 7, 3
    base = make_base(kind, rnn_type)
    x, masks = inputs(kind, T, N), episode_masks(T, N)
    h0 = torch.randn(N, base.recurrent_hidden_state_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        step_values, step_features, h = [], [], h0
        for t in range(T):
            value, features, h = base(x[t], h, masks[t])
            step_values.append(value)
            step_features.append(features)
        seq_value, seq_features, seq_h = base(x.reshape(T * N, *x.shape[2:]), h0, masks.reshape(T * N, 1))
    torch.testing.assert_close(seq_value, torch.cat(step_values), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seq_features, torch.cat(step_features), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seq_h, h, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rnn_type", TYPES)
def test_state_carries_information_without_a_reset(rnn_type):
    base = make_base("mlp", rnn_type)
    x = torch.randn(2, 5)
    h0 = torch.randn(2, base.recurrent_hidden_state_size)
    with torch.no_grad():
        _, kept, _ = base(x, h0, torch.ones(2, 1))
        _, fresh, _ = base(x, torch.zeros_like(h0), torch.ones(2, 1))
    assert not torch.allclose(kept, fresh)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("rnn_type", TYPES)
def test_zero_mask_equals_fresh_zero_state(kind, rnn_type):
    T, N = 4, 3
    base = make_base(kind, rnn_type)
    x = inputs(kind, T, N).reshape(T * N, *inputs(kind, T, N).shape[2:])
    h = torch.randn(N, base.recurrent_hidden_state_size) * 3
    masks = torch.ones(T * N, 1)
    masks[:N] = 0.0
    with torch.no_grad():
        # step mode
        a = base(x[:N], h, torch.zeros(N, 1))
        b = base(x[:N], torch.zeros_like(h), torch.ones(N, 1))
        # sequence mode
        c = base(x, h, masks)
        d = base(x, torch.zeros_like(h), torch.ones(T * N, 1))
    for left, right in ((a, b), (c, d)):
        for u, v in zip(left, right):
            torch.testing.assert_close(u, v, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("rnn_type,size", [("gru", 16), ("lstm", 32)])
def test_hidden_state_size_packs_lstm_h_and_c(rnn_type, size):
    base = make_base("mlp", rnn_type)
    assert base.is_recurrent and base.recurrent_hidden_state_size == size and base.output_size == 16
    _, features, h = base(torch.randn(3, 5), torch.zeros(3, size), torch.ones(3, 1))
    assert features.shape == (3, 16) and h.shape == (3, size)
    out, h = base._forward_rnn(torch.randn(3, 5), torch.zeros(3, size), torch.ones(3, 1))
    torch.testing.assert_close(out, h[:, :16])  # the output is h; an LSTM's c follows it
    if rnn_type == "lstm":
        assert not torch.allclose(h[:, :16], h[:, 16:])


def test_non_recurrent_base_keeps_dummy_state():
    base = MLPBase(5)
    assert not base.is_recurrent and base.recurrent_hidden_state_size == 1


def test_make_policy_takes_its_fields():
    obs = gym.spaces.Box(-1, 1, (4,), np.float32)
    act = gym.spaces.Discrete(2)
    policy = make_policy(obs, act)
    assert not policy.is_recurrent and policy.recurrent_hidden_state_size == 1
    assert policy.base.actor[0].out_features == 64  # the MLP's default width
    lstm = make_policy(obs, act, recurrent=True, rnn_type="lstm")
    assert lstm.is_recurrent and lstm.recurrent_hidden_state_size == 128  # 2 x default 64
    assert isinstance(lstm.base.rnn, torch.nn.LSTM)
    gru = make_policy(obs, act, hidden_size=32, recurrent=True)
    assert isinstance(gru.base.rnn, torch.nn.GRU) and gru.recurrent_hidden_state_size == 32


@pytest.mark.parametrize("rnn_type", TYPES)
@pytest.mark.parametrize("chunk_length,num_mini_batch", [(None, 2), (4, 4), (2, 8)])
def test_ppo_first_epoch_minibatches_have_ratio_one(rnn_type, chunk_length, num_mini_batch):
    torch.manual_seed(0)
    policy = Policy(
        BOX_OBS, gym.spaces.Discrete(3), base_kwargs={"hidden_size": 16, "recurrent": True, "rnn_type": rnn_type}
    )
    storage = rollout_from_policy(policy, BOX_OBS, gym.spaces.Discrete(3), T=8, N=2)
    storage.recurrent_chunk_length = chunk_length
    agent = PPO(
        policy,
        clip_param=0.2,
        ppo_epoch=1,
        num_mini_batch=num_mini_batch,
        value_loss_coef=0.5,
        entropy_coef=0.0,
        lr=1e-3,
    )
    advantages = storage.returns - storage.value_preds[:-1]
    batches = list(agent._minibatches(storage, advantages))
    assert len(batches) == num_mini_batch
    for batch in batches:
        with torch.no_grad():
            values, log_probs, _, _ = policy.evaluate_actions(
                batch.obs, batch.recurrent_hidden_states, batch.masks, batch.actions
            )
        torch.testing.assert_close(log_probs, batch.old_action_log_probs, atol=1e-5, rtol=0)
        torch.testing.assert_close(values, batch.value_preds, atol=1e-5, rtol=0)
    first = ratio_metrics(agent.losses(batches[0])["log_ratio"], agent.clip_param)
    assert abs(first["approx_kl"].item()) < 1e-6 and first["clipfrac"].item() == 0.0
    metrics = agent.update(storage)
    assert metrics["num_gradient_steps"] == num_mini_batch


@pytest.mark.parametrize(
    "flags",
    [
        ["--num-processes", "2", "--num-mini-batch", "2"],
        ["--recurrent-type", "lstm", "--num-processes", "1", "--num-mini-batch", "4", "--recurrent-chunk-length", "8"],
    ],
)
def test_main_trains_a_recurrent_policy_on_cartpole(tmp_path, flags):
    procs = int(flags[flags.index("--num-processes") + 1])
    steps = f"--num-steps 32 --ppo-epoch 2 --num-env-steps {2 * 32 * procs} --log-interval 1"
    out = run_main("--recurrent-policy", *flags, *steps.split(), "--num-threads", "1", *output_flags(tmp_path))
    assert "Updates 2/2" in out
    assert (tmp_path / "models" / "ppo" / "CartPole-v1.pt").is_file()


def test_flags_explain_too_few_sequences(tmp_path, capsys):
    # A typed chunk length that leaves too few sequences is refused with the arithmetic.
    with pytest.raises(SystemExit) as exc:
        parse_args(["--recurrent-policy", "--num-processes", "2", "--num-mini-batch", "4", "--recurrent-chunk-length",
                    "32"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--recurrent-chunk-length" in err and "2 x 32 / 32 = 2 sequences" in err
    # Chunks of 8 steps make 2 x 4 = 8 sequences: enough for 4 minibatches.
    args = parse_args(
        ["--recurrent-policy", "--num-processes", "2", "--num-mini-batch", "4", "--recurrent-chunk-length", "8"]
    )
    assert args.recurrent_chunk_length == 8 and args.recurrent_type == "gru"


def test_flags_reject_a_chunk_length_that_does_not_divide_num_steps(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--recurrent-policy", "--num-steps", "32", "--recurrent-chunk-length", "5"])
    assert "does not divide --num-steps 32" in capsys.readouterr().err


def test_recurrent_ppo_learns_cue_recall(tmp_path):
    """The cue is shown on step 0 and asked for 11 steps later: only memory beats chance (1/4;
    an untrained deterministic policy names one fixed cue). Seeds 1-4 evaluate at 1.0 with
    these flags (10-45 s on one busy core)."""
    flags = (
        "--env-name a2c_ppo.envs.memory_envs:make_cue_recall --recurrent-policy --num-processes 8 --num-steps 24 "
        "--num-mini-batch 4 --lr 5e-3 --gamma 0.99 --gae-lambda 0.95 --entropy-coef 0.01 --num-env-steps 15360 "
        "--eval-interval 80 --eval-episodes 32 --log-interval 1000"
    )
    run_main(*flags.split(), *local_run_flags(tmp_path), timeout=300)
    assert float(progress_rows(tmp_path / "runs")[-1]["eval/mean_return"]) >= 0.8
