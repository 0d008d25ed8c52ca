"""Training throughput side by side with Stable-Baselines3, the env limit, and start-up time.

One invocation runs, per workload and interleaved (ours, SB3, env limit, then SB3, ours, env
limit, ...: each round starts with the next contender) so that the noise of a shared machine,
and the place in a round, fall on every column alike:

* ours: ``main.py`` as a user runs it (fixed hyper-parameters, normal logging); training SPS
  is the last ``charts/SPS`` of its progress.csv (env steps over the time of the training loop,
  start-up excluded) and rollout SPS the median ``charts/rollout_SPS`` (stepping + acting only);
  a line under the row names the vector env ``auto`` chose in each run (its console's);
* SB3: ``stable_baselines3.PPO`` with the same hyper-parameters and networks (separate 64x64
  tanh actor and critic, orthogonal init, the same normalisation), ``DummyVecEnv`` (faster
  than its SubprocVecEnv for these envs on 2 cores), 1 torch thread; SPS = steps / time of
  ``learn``;
* env limit: our vector env, as main.py's ``auto`` builds it, stepping random actions;
* start-up: launch to the first line of ``python main.py`` against ``python -c "import torch"``.

Needs the ``[bench]`` extra (stable-baselines3) for the SB3 column. Example:
``python benchmarks/throughput.py --reps 3`` (about 15 minutes on 2 cores);
``python benchmarks/throughput.py --workloads --reps 9``: the start-up time alone;
``git worktree add /tmp/before <commit>`` then ``--baseline /tmp/before``: that commit beside this one.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Workload:
    env_id: str
    num_envs: int
    num_steps: int
    epochs: int
    minibatches: int
    lr: float
    steps: int  # env steps per run
    normalise: bool = False
    sb3: bool = True  # whether SB3 runs it (its Atari pipeline differs from ours: not compared)
    extra: list[str] = field(default_factory=list)
    vec_env: str = "auto"  # native: env_id is a factory of a VectorEnv; envpool: EnvPool steps it
    hidden_size: int = 64  # SB3's MlpPolicy towers; 512: the Nature CNN's feature layer
    algo: str = "ppo"  # a2c: SB3's A2C defaults (RMSprop, gae_lambda 1, no advantage normalisation)
    log_interval: int = 1  # updates between log rows; an A2C update every 5 steps logs as SB3's A2C does, every 100

    def our_flags(self) -> list[str]:
        norm = ["--norm-obs", "--norm-reward"] if self.normalise else ["--no-norm-obs", "--no-norm-reward"]
        algo = (["--ppo-epoch", str(self.epochs), "--num-mini-batch", str(self.minibatches), "--gae-lambda", "0.95",
                 "--clip-param", "0.2", "--norm-adv", "--no-clip-value-loss"] if self.algo == "ppo"
                else ["--gae-lambda", "1.0", "--no-norm-adv", "--no-norm-value",
                      "--value-norm-stats", "returns"])  # fmt: skip
        return ["--env-name", self.env_id, "--algo", self.algo, "--num-processes", str(self.num_envs),
                "--num-steps", str(self.num_steps), "--lr", str(self.lr), *algo,
                "--gamma", "0.99", "--entropy-coef", "0", "--value-loss-coef", "0.5", "--max-grad-norm", "0.5",
                "--no-use-linear-lr-decay", "--num-env-steps", str(self.steps), "--num-threads", "1", *norm,
                # the policy too: a per-env entry (HalfCheetah's: 256 x 256 ReLU) must not change what is compared
                "--hidden-size", str(self.hidden_size), "--activation", "tanh", "--ortho-init",
                *(["--log-std-init", "0"] if self.env_id.startswith("HalfCheetah") else []),  # a Gaussian policy's
                *(["--vec-env", self.vec_env] if self.vec_env != "auto" else []), *self.extra]  # fmt: skip


WORKLOADS = {
    "cartpole": Workload("CartPole-v1", 8, 128, 4, 4, 2.5e-4, 65_536),
    "halfcheetah": Workload("HalfCheetah-v5", 1, 2048, 10, 32, 3e-4, 20_480, normalise=True),
    # A2C at the zoo's MuJoCo setting (SB3's defaults, normalised; a2c.yml HalfCheetah-v4): an update
    # every 5 steps, where what an update costs besides its maths shows
    "halfcheetah-a2c": Workload("HalfCheetah-v5", 1, 5, 1, 1, 7e-4, 20_480, normalise=True, algo="a2c",
                                log_interval=100),
    "halfcheetah-x8": Workload("HalfCheetah-v5", 8, 256, 10, 32, 3e-4, 20_480, normalise=True, sb3=False),
    "pong": Workload("ALE/Pong-v5", 8, 128, 4, 4, 2.5e-4, 8_192, sb3=False, hidden_size=512),
    # gymnasium's own vectorised CartPole as a native vector env, beside the cartpole row
    "cartpole-native": Workload("benchmarks.native_cartpole:make", 8, 128, 4, 4, 2.5e-4, 65_536, sb3=False,
                                vec_env="native"),
    "halfcheetah-x8-envpool": Workload("HalfCheetah-v5", 8, 256, 10, 32, 3e-4, 20_480, normalise=True, sb3=False,
                                       vec_env="envpool"),
    "pong-envpool": Workload("ALE/Pong-v5", 8, 128, 4, 4, 2.5e-4, 8_192, sb3=False, vec_env="envpool", hidden_size=512),
}  # fmt: skip


def run_ours(workload: Workload, extra: list[str], root: str = ROOT) -> tuple[float, float, str]:
    """(training SPS, median rollout SPS, the vector env its console names) of one run of
    ``root``'s main.py (another checkout's for ``--baseline``): ``auto`` picks the layout from
    timings, so a run's speed is read beside the layout it got."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, os.path.join(root, "main.py"), *workload.our_flags(), *extra,
                "--log-interval", str(workload.log_interval), "--log-dir", os.path.join(tmp, "runs"),
                "--save-dir", os.path.join(tmp, "models")]  # fmt: skip
        out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=root).stdout
        (path,) = glob.glob(os.path.join(tmp, "runs", "*", "progress.csv"))
        rows = list(csv.DictReader(open(path)))
    rollout = statistics.median(float(row["charts/rollout_SPS"]) for row in rows)
    layout = re.search(r"^Vector env: (.*?)\.?$", out, re.MULTILINE)
    return float(rows[-1]["charts/SPS"]), rollout, layout.group(1) if layout else "?"


def layouts(runs: list[tuple[float, float, str]]) -> str:
    """The layouts of ``runs`` with their counts, e.g. ``SubprocVecEnv(...), overlap off (3 of 3)``."""
    return "; ".join(f"{name} ({n} of {len(runs)})" for name, n in Counter(r[2] for r in runs).most_common())


def run_sb3(workload: Workload) -> float:
    """SPS of SB3's ``learn`` in a fresh process (so imports and threads are its own)."""
    out = subprocess.run(
        [sys.executable, __file__, "--sb3-worker", json.dumps(workload.__dict__)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return float(out.strip().splitlines()[-1])


def sb3_worker(spec: str) -> None:
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from a2c_ppo.env_entries import VF_COEF_TO_OURS

    torch.set_num_threads(1)
    w = Workload(**json.loads(spec))
    envs = make_vec_env(lambda: gym.make(w.env_id), n_envs=w.num_envs, seed=1, vec_env_cls=DummyVecEnv)
    if w.normalise:
        envs = VecNormalize(envs, norm_obs=True, norm_reward=True, gamma=0.99)
    common = dict(
        learning_rate=w.lr,
        n_steps=w.num_steps,
        gamma=0.99,
        ent_coef=0.0,
        vf_coef=0.5 / VF_COEF_TO_OURS,  # our --value-loss-coef 0.5: SB3's value loss has no 1/2
        max_grad_norm=0.5,
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh},
        device="cpu",
        seed=1,
    )
    if w.algo == "a2c":  # SB3's A2C defaults otherwise: RMSprop, gae_lambda 1, advantages as they are
        model = A2C("MlpPolicy", envs, **common)
    else:
        batch_size = w.num_envs * w.num_steps // w.minibatches
        model = PPO("MlpPolicy", envs, batch_size=batch_size, n_epochs=w.epochs, gae_lambda=0.95, clip_range=0.2,
                    **common)  # fmt: skip
    start = time.perf_counter()
    model.learn(total_timesteps=w.steps)
    print(w.steps / (time.perf_counter() - start))


def env_limit(workload: Workload, seconds: float = 5.0) -> float:
    """Steps/s of our vector env (main.py's ``auto`` choice) stepping random actions."""
    code = (
        "import sys, time, numpy as np\n"
        "from a2c_ppo.envs import make_vec_envs\n"
        f"envs = make_vec_envs({workload.env_id!r}, {workload.num_envs}, vec_env={workload.vec_env!r}, "
        f"norm_obs={workload.normalise}, norm_reward={workload.normalise})\n"
        "envs.reset(seed=0); envs.action_space.seed(0)\n"
        "actions = [envs.action_space.sample() for _ in range(64)]\n"
        "for i in range(20): envs.step(actions[i % 64])\n"
        "n, start = 0, time.perf_counter()\n"
        f"while time.perf_counter() - start < {seconds}:\n"
        "    envs.step(actions[n % 64]); n += 1\n"
        f"print(n * {workload.num_envs} / (time.perf_counter() - start)); envs.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return float(out.strip().splitlines()[-1])


def first_line_seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.kill()
    proc.wait()
    return elapsed


def startup(reps: int) -> tuple[float, float]:
    """Median seconds to the first line of ``python main.py`` and to ``import torch``."""
    ours, floor = [], []
    with tempfile.TemporaryDirectory() as tmp:
        main = [sys.executable, os.path.join(ROOT, "main.py"), "--log-dir", tmp, "--save-dir", tmp]
        torch_only = [sys.executable, "-c", "import torch; print('ok')"]
        for _ in range(reps):
            ours.append(first_line_seconds(main))
            floor.append(first_line_seconds(torch_only))
    return statistics.median(ours), statistics.median(floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workloads",
        nargs="*",
        default=list(WORKLOADS),
        choices=list(WORKLOADS),
        help="none (--workloads alone): the start-up time only",
    )
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (medians are reported)")
    parser.add_argument("--our-flags", default="", help="extra main.py flags for our runs, e.g. '--overlap off'")
    parser.add_argument("--no-sb3", action="store_true", help="skip the Stable-Baselines3 column")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every run's env steps (smoke tests)")
    parser.add_argument(
        "--baseline",
        help="another checkout (a worktree of an older commit): its main.py runs "
        "the same workloads, interleaved, and a line per workload compares the two",
    )
    parser.add_argument("--sb3-worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.sb3_worker:
        sb3_worker(opts.sb3_worker)
        return
    if opts.baseline and not os.path.isfile(os.path.join(opts.baseline, "a2c_ppo", "__init__.py")):
        parser.error(f"--baseline {opts.baseline!r} holds no a2c_ppo checkout (git worktree add PATH COMMIT)")
    extra = opts.our_flags.split()
    print(f"{'workload':<15} | {'ours SPS':>9} | {'rollout SPS':>11} | {'SB3 SPS':>8} | {'ours/SB3':>8} | "
          f"{'env limit':>9} | {'ours/limit':>10} | {'rollout/limit':>13}")  # fmt: skip
    for name in opts.workloads:
        w = WORKLOADS[name]
        batch = w.num_envs * w.num_steps
        w.steps = max(batch, int(w.steps * opts.scale) // batch * batch)
        runs: list[tuple[float, float, str]] = []
        baseline: list[tuple[float, float, str]] = []
        sb3: list[float] = []
        limits: list[float] = []
        contenders: list[tuple[list[Any], Callable[[], Any]]] = [(runs, partial(run_ours, w, extra))]
        if opts.baseline:
            contenders.append((baseline, partial(run_ours, w, extra, os.path.abspath(opts.baseline))))
        if w.sb3 and not opts.no_sb3:
            contenders.append((sb3, partial(run_sb3, w)))
        for rep in range(opts.reps):
            # each round starts with the next contender: the one run first measured up to 1.17x
            # faster than the same code run second (sixteenth session), so no side keeps that place
            for k in range(len(contenders)):
                results, measure = contenders[(rep + k) % len(contenders)]
                results.append(measure())
            limits.append(env_limit(w))
        ours, rollouts = [r[0] for r in runs], [r[1] for r in runs]
        o, r, lim = statistics.median(ours), statistics.median(rollouts), statistics.median(limits)
        s = statistics.median(sb3) if sb3 else float("nan")
        print(f"{name:<15} | {o:>9,.0f} | {r:>11,.0f} | {s:>8,.0f} | {o / s:>7.2f}x | {lim:>9,.0f} | "
              f"{o / lim:>9.2f}x | {r / lim:>12.2f}x", flush=True)  # fmt: skip
        print(f"{'':<15}   layout: {layouts(runs)}", flush=True)
        if baseline:
            bo, br = statistics.median(b[0] for b in baseline), statistics.median(b[1] for b in baseline)
            print(f"{'':<15}   baseline {bo:,.0f} SPS, rollout {br:,.0f}: ours / baseline {o / bo:.2f}x, "
                  f"rollout {r / br:.2f}x; layout: {layouts(baseline)}", flush=True)  # fmt: skip
    ours_start, torch_start = startup(max(opts.reps, 3))
    print(f"\nstart-up: first line of main.py {ours_start:.2f} s, import torch {torch_start:.2f} s, "
          f"ratio {ours_start / torch_start:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
