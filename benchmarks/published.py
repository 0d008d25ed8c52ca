"""Published results of PPO and A2C on the ids of ``a2c_ppo.env_entries``, to set ours beside.

Copied from (the spreads mean different things, so the tables say which is which):

* rl-baselines3-zoo: DLR-RM/rl-baselines3-zoo ``benchmark.md`` at commit 22e3ff2. One trained
  seed per row (at the entry's budget), evaluated deterministically for about 150k steps; the
  ± is the std over those evaluation episodes, not over seeds. Its MuJoCo rows are -v3, its
  LunarLander rows -v2, its CarRacing row -v0.
* CleanRL: vwxyzjn/cleanrl ``docs/benchmark/ppo.md`` (ppo.py, classic control, 500k steps),
  ``docs/benchmark/ppo_continuous_action.md`` (MuJoCo v4, 1M steps) and ``docs/rl-algorithms/rpo.md``
  (the PPO baseline at 8M steps); mean ± std over 3 (10 for 8M) seeds of the training episodes'
  return, with CleanRL's own settings.
* Tianshou: thu-ml/tianshou ``examples/mujoco/README.md`` (MuJoCo v3/v2, 1M steps): the maximum
  over training of the mean test return of 10 seeds ± the std over the seeds, its test episodes
  sampling actions (``MEASURES``), with Tianshou's settings (for A2C: this framework's MuJoCo
  entries, which take Tianshou's settings).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published result: ``mean`` ± ``std`` after ``steps`` env steps on ``env`` (its id there)."""

    mean: float
    std: float
    steps: int
    env: str


K, M = 1_000, 1_000_000

#: rl-baselines3-zoo benchmark.md, by (our id, algo).
ZOO: dict[tuple[str, str], Published] = {
    ("Acrobot-v1", "ppo"): Published(-73.506, 18.201, 1 * M, "Acrobot-v1"),
    ("Acrobot-v1", "a2c"): Published(-83.353, 17.213, 500 * K, "Acrobot-v1"),
    ("MountainCar-v0", "ppo"): Published(-110.423, 19.473, 1 * M, "MountainCar-v0"),
    ("MountainCar-v0", "a2c"): Published(-111.263, 24.087, 1 * M, "MountainCar-v0"),
    ("MountainCarContinuous-v0", "ppo"): Published(88.343, 2.572, 20 * K, "MountainCarContinuous-v0"),
    ("MountainCarContinuous-v0", "a2c"): Published(91.166, 0.255, 100 * K, "MountainCarContinuous-v0"),
    ("Pendulum-v1", "ppo"): Published(-172.225, 104.159, 100 * K, "Pendulum-v1"),
    ("Pendulum-v1", "a2c"): Published(-162.965, 103.210, 1 * M, "Pendulum-v1"),
    ("LunarLander-v3", "ppo"): Published(242.119, 31.823, 1 * M, "LunarLander-v2"),
    ("LunarLander-v3", "a2c"): Published(155.751, 80.419, 200 * K, "LunarLander-v2"),
    ("LunarLanderContinuous-v3", "ppo"): Published(270.863, 32.072, 1 * M, "LunarLanderContinuous-v2"),
    ("LunarLanderContinuous-v3", "a2c"): Published(84.225, 145.906, 5 * M, "LunarLanderContinuous-v2"),
    ("BipedalWalker-v3", "ppo"): Published(287.939, 2.448, 5 * M, "BipedalWalker-v3"),
    ("BipedalWalker-v3", "a2c"): Published(299.754, 23.459, 5 * M, "BipedalWalker-v3"),
    ("CarRacing-v3", "ppo"): Published(153.938, 74.465, 4 * M, "CarRacing-v0"),
    ("Ant-v5", "ppo"): Published(1327.158, 451.577, 1 * M, "Ant-v3"),
    ("Ant-v5", "a2c"): Published(-44.023, 63.206, 1 * M, "Ant-v3"),
    ("HalfCheetah-v5", "ppo"): Published(5819.099, 663.530, 1 * M, "HalfCheetah-v3"),
    ("HalfCheetah-v5", "a2c"): Published(3041.174, 157.265, 1 * M, "HalfCheetah-v3"),
    ("Hopper-v5", "ppo"): Published(2410.435, 10.026, 1 * M, "Hopper-v3"),
    ("Hopper-v5", "a2c"): Published(733.454, 376.574, 1 * M, "Hopper-v3"),
    ("Humanoid-v5", "a2c"): Published(388.321, 92.652, 2 * M, "Humanoid-v3"),
    ("Swimmer-v5", "ppo"): Published(281.561, 9.671, 1 * M, "Swimmer-v3"),
    ("Swimmer-v5", "a2c"): Published(200.627, 2.544, 1 * M, "Swimmer-v3"),
    ("Walker2d-v5", "ppo"): Published(3478.798, 821.708, 1 * M, "Walker2d-v3"),
    ("Walker2d-v5", "a2c"): Published(581.835, 127.597, 1 * M, "Walker2d-v3"),
}


def _tianshou(algo: str, results: dict[str, tuple[float, float]]) -> dict[tuple[str, str], Published]:
    """Tianshou's 1M-step MuJoCo rows (``robot: (mean, std)``) under our v5 ids."""
    versions = {"Reacher": "v2", "InvertedPendulum": "v2", "InvertedDoublePendulum": "v2"}
    return {
        (f"{robot}-v5", algo): Published(mean, std, 1 * M, f"{robot}-{versions.get(robot, 'v3')}")
        for robot, (mean, std) in results.items()
    }


#: CleanRL's PPO results, by (our id, algo) (8M: the RPO page's PPO baseline).
CLEANRL: dict[tuple[str, str], Published] = {
    ("Acrobot-v1", "ppo"): Published(-86.36, 1.32, 500 * K, "Acrobot-v1"),
    ("MountainCar-v0", "ppo"): Published(-200.00, 0.00, 500 * K, "MountainCar-v0"),
    ("Pendulum-v1", "ppo"): Published(-1141.98, 135.55, 8 * M, "Pendulum-v1"),
    ("BipedalWalker-v3", "ppo"): Published(172.12, 96.05, 8 * M, "BipedalWalker-v3"),
    ("HalfCheetah-v5", "ppo"): Published(1442.64, 46.03, 1 * M, "HalfCheetah-v4"),
    ("Walker2d-v5", "ppo"): Published(2287.95, 571.78, 1 * M, "Walker2d-v4"),
    ("Hopper-v5", "ppo"): Published(2382.86, 271.74, 1 * M, "Hopper-v4"),
    ("InvertedPendulum-v5", "ppo"): Published(963.09, 22.20, 1 * M, "InvertedPendulum-v4"),
    ("Humanoid-v5", "ppo"): Published(716.11, 49.08, 1 * M, "Humanoid-v4"),
    ("Pusher-v5", "ppo"): Published(-40.38, 7.15, 1 * M, "Pusher-v4"),
    ("HumanoidStandup-v5", "ppo"): Published(109325.87, 16161.71, 8 * M, "HumanoidStandup-v4"),
    ("Ant-v5", "ppo"): Published(1824.17, 905.78, 8 * M, "Ant-v4"),
    ("InvertedDoublePendulum-v5", "ppo"): Published(5626.22, 289.23, 8 * M, "InvertedDoublePendulum-v4"),
    ("Reacher-v5", "ppo"): Published(-4.65, 0.96, 8 * M, "Reacher-v4"),
    ("Swimmer-v5", "ppo"): Published(124.88, 22.24, 8 * M, "Swimmer-v4"),
}

#: Tianshou's 1M-step results, by (our id, algo).
TIANSHOU: dict[tuple[str, str], Published] = {
    **_tianshou("ppo", {
        "Ant": (3258.4, 1079.3), "HalfCheetah": (5783.9, 1244.0), "Hopper": (2609.3, 700.8),
        "Walker2d": (3588.5, 756.6), "Swimmer": (66.7, 99.1), "Humanoid": (787.1, 193.5), "Reacher": (-4.1, 0.3),
        "InvertedPendulum": (1000.0, 0.0), "InvertedDoublePendulum": (9231.3, 270.4),
    }),
    **_tianshou("a2c", {
        "Ant": (3485.4, 433.1), "HalfCheetah": (1829.9, 1068.3), "Hopper": (1253.2, 458.0),
        "Walker2d": (1091.6, 709.2), "Swimmer": (36.6, 2.1), "Humanoid": (1726.0, 1070.1), "Reacher": (-6.7, 2.3),
        "InvertedPendulum": (1000.0, 0.0), "InvertedDoublePendulum": (9257.7, 277.4),
    }),
}  # fmt: skip


#: Which of our summary's numbers (``benchmarks/results_table.py``) measures what each other
#: source publishes, with its name. CleanRL's: the training episodes' return. Tianshou's: the best
#: over training of the seeds' mean test return, its tests every 30,000 steps (``step-per-epoch``)
#: sampling actions as training does (``PGPolicy.forward`` draws ``dist.sample()``, eval mode or
#: not, in the versions that made its A2C and PPO tables: commits 1730a900 and 6426a397), so our
#: best training return at those points. The zoo's, a final deterministic evaluation, is ``eval_mean``.
MEASURES: dict[str, tuple[str, str]] = {
    "CleanRL": ("train_mean", "training return"),
    "Tianshou": ("best_train_mean", "best training return"),
}
TIANSHOU_TEST_EVERY = 30_000


def others(env_id: str, algo: str) -> list[tuple[str, Published]]:
    """CleanRL's and Tianshou's results for ``env_id`` and ``algo``: (who, result)."""
    tables = (("CleanRL", CLEANRL), ("Tianshou", TIANSHOU))
    return [(who, table[env_id, algo]) for who, table in tables if (env_id, algo) in table]
