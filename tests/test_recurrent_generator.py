"""Minibatch generators: coverage, layout of recurrent sequences, chunking, storage size."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from a2c_ppo.algo import PPO
from a2c_ppo.algo.ppo import LOSS_NAMES
from a2c_ppo.model import Policy
from a2c_ppo.storage import Minibatch, RolloutStorage, fitting_chunk_length
from tests.helpers import BOX_OBS, rollout_from_policy


def labelled_storage(T: int, N: int, H: int = 2) -> tuple[RolloutStorage, torch.Tensor]:
    """Every per-sample field of sample (t, n) holds its id t * N + n, so rows can be traced."""
    s = RolloutStorage(T, N, (3,), 1, torch.long, recurrent_hidden_state_size=H)
    ids = torch.arange((T + 1) * N, dtype=torch.float32).view(T + 1, N, 1)
    s.obs.copy_(ids.expand(T + 1, N, 3))
    s.recurrent_hidden_states.copy_(ids.expand(T + 1, N, H))
    s.value_preds.copy_(ids)
    s.returns.copy_(ids[:-1])
    s.actions.copy_(ids[:-1].long())
    s.action_log_probs.copy_(ids[:-1])
    s.masks.copy_((ids % 5 != 0).float())
    return s, ids[:-1].clone()


def assert_rows_aligned(batch: Minibatch, masks: torch.Tensor, N: int) -> torch.Tensor:
    ids = batch.obs[:, 0]
    for field in (batch.actions, batch.value_preds, batch.returns, batch.old_action_log_probs, batch.advantages):
        assert torch.equal(field[:, 0].float(), ids)
    assert torch.equal(batch.masks[:, 0], masks.view(-1)[ids.long()])
    return ids


@pytest.mark.parametrize("T,N,num_mini_batch", [(8, 3, 4), (8, 3, 24), (5, 1, 5)])
def test_feed_forward_generator_yields_every_sample_exactly_once(T, N, num_mini_batch):
    s, advantages = labelled_storage(T, N)
    seen = []
    for batch in s.feed_forward_generator(advantages, num_mini_batch):
        seen.append(assert_rows_aligned(batch, s.masks[:-1], N))
        assert torch.equal(batch.recurrent_hidden_states[:, 0], batch.obs[:, 0])
    assert sorted(torch.cat(seen).long().tolist()) == list(range(T * N))


@pytest.mark.parametrize(
    "T,N,chunk_length,num_mini_batch",
    [
        (8, 3, None, 3),  # whole columns, one per minibatch
        (8, 3, None, 1),
        (8, 3, 8, 3),  # chunk length = num_steps: whole columns again
        (8, 3, 4, 2),
        (8, 1, 2, 4),  # one env, four minibatches: beyond the classic limit
        (8, 2, 1, 16),  # chunks of a single step
        (8, 3, None, 2),  # 3 columns cannot make 2 equal minibatches: chunks of 4 (6 sequences) do
        (8, 3, 8, 2),  # 3 columns into 2 minibatches as asked: uneven, still all covered
    ],
)
def test_recurrent_generator_yields_every_sample_exactly_once_as_sequences(T, N, chunk_length, num_mini_batch):
    s, advantages = labelled_storage(T, N)
    L = chunk_length or fitting_chunk_length(T, N, num_mini_batch)
    assert L == (chunk_length or (4 if (N, num_mini_batch) == (3, 2) else T))
    seen = []
    batches = list(s.recurrent_generator(advantages, num_mini_batch, chunk_length=chunk_length))
    assert len(batches) == num_mini_batch
    for batch in batches:
        ids = assert_rows_aligned(batch, s.masks[:-1], N)
        n = batch.recurrent_hidden_states.shape[0]
        assert ids.numel() == L * n
        grid = ids.view(L, n)  # time-major: row t * n + i is step t of sequence i
        # each sequence is L consecutive steps of one env ...
        assert torch.equal(grid - grid[:1], torch.arange(L).view(L, 1).float().expand(L, n) * N)
        # ... starting at a chunk boundary, with the hidden state stored before its first step
        assert torch.all((grid[0] // N) % L == 0)
        assert torch.equal(batch.recurrent_hidden_states, grid[0].view(n, 1).expand(n, 2))
        seen.append(ids)
    assert sorted(torch.cat(seen).long().tolist()) == list(range(T * N))


def test_recurrent_generator_uses_the_storage_chunk_length_and_checks_it():
    s, advantages = labelled_storage(8, 1)
    s.recurrent_chunk_length = 2
    assert len(list(s.recurrent_generator(advantages, 4))) == 4
    with pytest.raises(ValueError, match="cannot make 8 minibatches"):
        list(s.recurrent_generator(advantages, 8))
    with pytest.raises(ValueError, match="must be positive and divide num_steps 8"):
        list(s.recurrent_generator(advantages, 1, chunk_length=3))


def total_loss(agent: PPO, storage: RolloutStorage, chunk_length: int | None) -> dict[str, float]:
    storage.recurrent_chunk_length = chunk_length
    advantages = storage.returns - storage.value_preds[:-1]
    (batch,) = agent._minibatches(storage, advantages)
    losses = agent.losses(batch)
    return {name: losses[name].item() for name in LOSS_NAMES}


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_chunked_and_whole_column_generators_give_the_same_loss(rnn_type):
    torch.manual_seed(0)
    action_space = gym.spaces.Discrete(3)
    policy = Policy(BOX_OBS, action_space, base_kwargs={"hidden_size": 16, "recurrent": True, "rnn_type": rnn_type})
    storage = rollout_from_policy(policy, BOX_OBS, action_space, T=8, N=3)
    agent = PPO(policy, clip_param=0.2, ppo_epoch=1, num_mini_batch=1, value_loss_coef=0.5, entropy_coef=0.01, lr=1e-3)
    whole = total_loss(agent, storage, None)
    # Same data, chunks that are whole columns: the same loss.
    assert total_loss(agent, storage, 8) == pytest.approx(whole, abs=1e-6)
    # Shorter chunks start from the hidden states stored during the rollout; with the
    # policy that produced them they are exactly the states a whole-column pass computes.
    for L in (4, 2, 1):
        assert total_loss(agent, storage, L) == pytest.approx(whole, abs=1e-5)


def storage_bytes(storage: RolloutStorage) -> int:
    return sum(v.element_size() * v.nelement() for v in vars(storage).values() if isinstance(v, torch.Tensor))


def test_atari_rollout_storage_fits_in_60_mb():
    # 8 envs x 128 steps of (4, 84, 84) frames, recurrent CNN (512-wide GRU state).
    storage = RolloutStorage(128, 8, (4, 84, 84), 1, torch.long, recurrent_hidden_state_size=512, obs_dtype=torch.uint8)
    assert storage.obs.dtype == torch.uint8
    size = storage_bytes(storage)
    assert size <= 60e6, f"{size / 1e6:.1f} MB"
    # The same storage with float32 frames would not fit: uint8 is what keeps it small.
    assert storage.obs.nelement() * 4 > 60e6


@pytest.mark.parametrize("recurrent", [False, True], ids=["feed-forward", "recurrent"])
def test_epochs_of_one_call_cover_every_sample_each_and_match_one_call_per_epoch(recurrent):
    """The flattened views are built once for all epochs; the minibatches (and the RNG draws)
    are those of one call per epoch, each epoch a fresh permutation."""
    s, advantages = labelled_storage(8, 4)

    def generate(**kwargs):
        if recurrent:
            return s.recurrent_generator(advantages, 4, chunk_length=4, **kwargs)
        return s.feed_forward_generator(advantages, 4, **kwargs)

    torch.manual_seed(0)
    together = list(generate(num_epochs=3))
    torch.manual_seed(0)
    separate = [batch for _ in range(3) for batch in generate()]
    assert len(together) == len(separate) == 12
    for a, b in zip(together, separate):
        for x, y in zip(a, b):
            assert (x is None and y is None) or torch.equal(x, y)
    epochs = [torch.cat([b.obs[:, 0] for b in together[4 * e : 4 * e + 4]]) for e in range(3)]
    for ids in epochs:
        assert sorted(ids.long().tolist()) == list(range(32))
    assert not torch.equal(epochs[0], epochs[1])
