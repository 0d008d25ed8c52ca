"""Per-step costs of the training loop's pieces, to tell what a speed change bought.

Times, in microseconds (median of 5 windows, 1 torch thread): one PPO minibatch step
(HalfCheetah's shapes, 64 samples; CartPole's, 256), acting (what the rollout calls: 1 env of
HalfCheetah, 8 of CartPole), returns and GAE over 2048 x 1 steps, one env step of the env
stack (HalfCheetah with normalisation, 1 env; CartPole, 8 envs; in-process), one storage
insert (8 envs), and what an update records for an exact resume and checks: the env snapshots
(8 CartPole envs; 1 HalfCheetah env, whose episode returns are numpy scalars), the finite check
of the parameters and the RNG states.

``--repo PATH`` measures another checkout of the project (say, a worktree of an older commit)
with this script, so that two commits can be compared side by side::

    git worktree add /tmp/before <commit>
    for i in 1 2 3; do python benchmarks/components.py --repo /tmp/before; python benchmarks/components.py; done
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))


def median_us(fn: Callable[[], object], calls: int, windows: int = 5) -> float:
    """Median over ``windows`` of the mean time of ``calls`` calls, in microseconds."""
    fn()
    means = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - start) / calls)
    return statistics.median(means) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=os.path.dirname(HERE), help="the checkout to measure (default: this one)")
    repo = os.path.abspath(p.parse_args().repo)
    if not os.path.isfile(os.path.join(repo, "a2c_ppo", "__init__.py")):  # else the installed one is measured
        p.error(f"--repo {repo!r} holds no a2c_ppo checkout")
    sys.path.insert(0, repo)

    import gymnasium as gym
    import numpy as np
    import torch

    from a2c_ppo.algo.ppo import PPO
    from a2c_ppo.arguments import parse_args
    from a2c_ppo.builders import build_envs
    from a2c_ppo.model import make_policy
    from a2c_ppo.storage import RolloutStorage

    torch.set_num_threads(1)
    has_fastpath = os.path.exists(os.path.join(repo, "a2c_ppo", "fastpath.py"))
    box6, discrete2 = gym.spaces.Box(-1, 1, (6,), np.float32), gym.spaces.Discrete(2)

    def vector_obs(dim: int) -> gym.spaces.Box:
        return gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def ppo_minibatch(obs_dim: int, space: gym.Space, T: int, N: int, minibatches: int, epochs: int) -> float:
        policy = make_policy(vector_obs(obs_dim), space)
        continuous = isinstance(space, gym.spaces.Box)
        storage = RolloutStorage(T, N, (obs_dim,), 6 if continuous else 1, torch.float32 if continuous else torch.long)
        for tensor in (storage.obs, storage.returns, storage.value_preds, storage.action_log_probs):
            tensor.normal_()
        if continuous:
            storage.actions.normal_()
        kwargs = {}
        if has_fastpath:  # the gradient backend a run uses (older checkouts chose it inside PPO)
            from a2c_ppo.algo.hand_gradient import HandGradient
            from a2c_ppo.fastpath import fast_mlp

            kwargs["gradient"] = HandGradient(fast_mlp(policy))
        agent = PPO(policy, clip_param=0.2, ppo_epoch=epochs, num_mini_batch=minibatches, value_loss_coef=0.5,
                    entropy_coef=0.0, lr=3e-4, **kwargs)  # fmt: skip
        return median_us(lambda: agent.update(storage), 2, 3) / (minibatches * epochs)

    def a2c_update(obs_dim: int, space: gym.Space, T: int, N: int, by_hand: bool) -> float:
        """One A2C update (one RMSprop step on all T x N rows), its gradient by hand or by autograd."""
        from a2c_ppo.algo import A2C, make_rmsprop
        from a2c_ppo.algo.hand_gradient import HandGradient
        from a2c_ppo.fastpath import fast_mlp

        policy = make_policy(vector_obs(obs_dim), space)
        continuous = isinstance(space, gym.spaces.Box)
        storage = RolloutStorage(T, N, (obs_dim,), 6 if continuous else 1, torch.float32 if continuous else torch.long)
        for tensor in (storage.obs, storage.returns, storage.value_preds):
            tensor.normal_()
        if continuous:
            storage.actions.normal_()
        gradient = {"gradient": HandGradient(fast_mlp(policy))} if by_hand else {}
        agent = A2C(policy, make_rmsprop(policy.parameters(), lr=7e-4, eps=1e-5, alpha=0.99), value_loss_coef=0.5,
                    entropy_coef=0.01, **gradient)  # fmt: skip
        return median_us(lambda: agent.update(storage), 50)

    def acting(obs_dim: int, space: gym.Space, n: int) -> float:
        policy = make_policy(vector_obs(obs_dim), space)
        # What the rollout calls. (Checked by path: in an older checkout an editable install of
        # this one would otherwise serve its modules.)
        if has_fastpath:
            from a2c_ppo.fastpath import acting_function

            act = acting_function(policy)
        elif os.path.exists(os.path.join(repo, "a2c_ppo", "numpy_actor.py")):
            from a2c_ppo.numpy_actor import acting_function  # type: ignore[no-redef]

            act = acting_function(policy)
        else:

            def act(obs, rnn_hxs, masks):
                return policy.act(obs, rnn_hxs, masks)

        obs, rnn_hxs, masks = torch.randn(n, obs_dim), torch.zeros(n, 1), torch.ones(n, 1)
        with torch.inference_mode():
            return median_us(lambda: act(obs, rnn_hxs, masks), 2000)

    def returns() -> float:
        storage = RolloutStorage(2048, 1, (17,), 6)
        storage.rewards.normal_()
        storage.value_preds.normal_()
        return median_us(lambda: storage.compute_returns(torch.zeros(1, 1), True, 0.99, 0.95), 5, 3)

    def env_step(env_name: str, n: int) -> float:
        config = parse_args(["--env-name", env_name, "--num-processes", str(n), "--vec-env", "sync"])
        envs = build_envs(config, n, "cpu")
        envs.reset(seed=1)
        space = envs.action_space
        actions = torch.from_numpy(np.stack([space.sample() for _ in range(n)])).reshape(n, -1)
        if isinstance(space, gym.spaces.Discrete):
            actions = actions.long()
        try:
            return median_us(lambda: envs.step(actions), 2000)
        finally:
            envs.close()

    def storage_insert(n: int) -> float:
        storage = RolloutStorage(128, n, (4,), 1, torch.long)
        step = {name: torch.zeros(n, 1) for name in ("action_log_probs", "value_preds", "rewards", "bootstrap_values")}
        flags = {name: torch.zeros(n, 1, dtype=torch.bool) for name in ("terminated", "truncated")}
        obs, hxs, actions = torch.randn(n, 4), torch.zeros(n, 1), torch.zeros(n, 1, dtype=torch.long)
        with torch.inference_mode():
            return median_us(
                lambda: storage.insert(obs=obs, recurrent_hidden_states=hxs, actions=actions, **step, **flags), 5000
            )

    def env_snapshots(env_name: str, n: int, steps: int) -> float:
        from a2c_ppo.envs.snapshot import get_snapshots

        config = parse_args(["--env-name", env_name, "--num-processes", str(n), "--vec-env", "sync"])
        envs = build_envs(config, n, "cpu")
        envs.reset(seed=1)
        space = envs.action_space
        for _ in range(steps):  # fill RecordEpisodeStatistics' queues as a run does
            actions = torch.as_tensor(np.stack([space.sample() for _ in range(n)])).reshape(n, -1)
            envs.step(actions.long() if isinstance(space, gym.spaces.Discrete) else actions)
        try:
            return median_us(lambda: get_snapshots(envs.envs), 50)
        finally:
            envs.close()

    def update_checks() -> float:
        """What an update records besides the env snapshots: the parameters' finite check and the RNG states."""
        from a2c_ppo import checkpoint
        from a2c_ppo.algo.flat_params import FlatParameters

        policy = make_policy(vector_obs(17), box6)
        flat = FlatParameters(policy.parameters())
        if hasattr(checkpoint, "FiniteCheck"):
            check = checkpoint.FiniteCheck(policy, flat.data)

            def checks() -> None:
                check.first_non_finite()
                checkpoint.raw_rng_state()
        else:  # older checkouts: a tensor at a time, the RNG states converted at once

            def checks() -> None:
                checkpoint.first_non_finite(policy.state_dict())
                checkpoint.rng_state()

        return median_us(checks, 500)

    rows = [
        ("PPO minibatch step, HalfCheetah, 64 samples", lambda: ppo_minibatch(17, box6, 2048, 1, 32, 10)),
        ("PPO minibatch step, CartPole, 256 samples", lambda: ppo_minibatch(4, discrete2, 128, 8, 4, 4)),
        ("A2C update, CartPole, 5 x 16, autograd", lambda: a2c_update(4, discrete2, 5, 16, False)),
        ("A2C update, CartPole, 5 x 16, by hand", lambda: a2c_update(4, discrete2, 5, 16, True)),
        ("A2C update, HalfCheetah, 5 x 8, autograd", lambda: a2c_update(17, box6, 5, 8, False)),
        ("A2C update, HalfCheetah, 5 x 8, by hand", lambda: a2c_update(17, box6, 5, 8, True)),
        ("acting, HalfCheetah, 1 env", lambda: acting(17, box6, 1)),
        ("acting, CartPole, 8 envs", lambda: acting(4, discrete2, 8)),
        ("returns and GAE, 2048 x 1", returns),
        ("env step, HalfCheetah, 1 env, normalised", lambda: env_step("HalfCheetah-v5", 1)),
        ("env step, CartPole, 8 envs", lambda: env_step("CartPole-v1", 8)),
        ("storage insert, 8 envs", lambda: storage_insert(8)),
        ("env snapshots (once per update), CartPole, 8 envs", lambda: env_snapshots("CartPole-v1", 8, 3000)),
        ("env snapshot (once per update), HalfCheetah, 1 env", lambda: env_snapshots("HalfCheetah-v5", 1, 30_000)),
        ("finite check and RNG states (once per update)", update_checks),
    ]
    print(f"# {repo}")
    for name, measure in rows:
        print(f"{name:50s} {measure():10.1f} us")


if __name__ == "__main__":
    main()
