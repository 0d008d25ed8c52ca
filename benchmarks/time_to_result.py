"""Wall-clock time to a result, the number users feel: seconds from launch until the mean true
return of the last 10 training episodes first reaches a threshold (CartPole-v1 475,
HalfCheetah-v5 1,500), ours against Stable-Baselines3 with the same settings.

The settings are ours for the env (``python main.py --env-name ID --show-settings``: the
per-env entry, which is rl-baselines3-zoo's tuned one for both ids here, or a family preset
with ``--preset``), given to SB3's PPO as its own arguments, so each library trains exactly
what the zoo publishes. Each run is a fresh process (imports and start-up counted), stopped as
soon as it reaches the threshold or its budget; runs interleave (ours, SB3, ours, ...) so the
noise of a shared machine falls on both. Results append to ``--out`` (JSON lines) and the
script resumes: finished runs are skipped.

    python benchmarks/time_to_result.py                        # CartPole 5 seeds, HalfCheetah 2 seeds
    python benchmarks/time_to_result.py --workloads cartpole --seeds 1 2 3
    python benchmarks/time_to_result.py --report-only

Needs the ``[bench]`` extra (stable-baselines3) for the SB3 column.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from a2c_ppo.env_entries import VF_COEF_TO_OURS  # noqa: E402

WINDOW = 10  # episodes in the mean that must reach the threshold, as main.py's console shows


@dataclass(frozen=True)
class Workload:
    env_id: str
    threshold: float
    budget: int
    preset: str | None = None  # a family preset instead of the env's entry


WORKLOADS = {
    # the classic preset: 8 x 32, 20 epochs, after the zoo's CartPole-v1 (which weighs the value
    # loss twice as much, does not clip it, and decays the clip range with the learning rate)
    "cartpole": Workload("CartPole-v1", 475.0, 100_000),
    "halfcheetah": Workload("HalfCheetah-v5", 1500.0, 1_000_000),  # the zoo's tuned HalfCheetah-v4
    "halfcheetah-preset": Workload("HalfCheetah-v5", 1500.0, 1_000_000, "mujoco"),  # 1 x 2048, 10 x 32
}


def settings(workload: Workload, seed: int) -> dict:
    """Our resolved settings for the workload (what main.py would train)."""
    from a2c_ppo.arguments import resolve

    argv = ["--env-name", workload.env_id, "--seed", str(seed), "--num-env-steps", str(workload.budget)]
    argv += ["--preset", workload.preset] if workload.preset else []
    return resolve(argv).config.to_dict()


def ours_worker(spec: dict) -> None:
    """Train with our API until the threshold; print the wall time since ``spec['launched']``."""
    import a2c_ppo

    workload, seed = Workload(**spec["workload"]), spec["seed"]
    reached: list[tuple[int, float]] = []

    def stop_at_threshold(info) -> bool:
        if len(info.returns) >= WINDOW and statistics.fmean(info.returns[-WINDOW:]) >= workload.threshold:
            reached.append((info.env_steps, time.time() - spec["launched"]))
            return False
        return True

    a2c_ppo.train(workload.env_id, seed=seed, num_env_steps=workload.budget, log_dir=spec["tmp"],
                  save_dir=spec["tmp"], callbacks=[stop_at_threshold], preset=workload.preset)  # fmt: skip
    print(json.dumps({"steps": reached[0][0] if reached else None, "seconds": reached[0][1] if reached else None,
                      "total_seconds": time.time() - spec["launched"]}))  # fmt: skip


def sb3_worker(spec: dict) -> None:
    """The same settings as SB3's PPO (``sb3_arguments``), stopped at the threshold."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    config, workload = spec["config"], Workload(**spec["workload"])
    torch.set_num_threads(config["num_threads"])
    env_kwargs = json.loads(config["env_kwargs"])
    envs = make_vec_env(lambda: gym.make(workload.env_id, **env_kwargs), n_envs=config["num_processes"],
                        seed=config["seed"], vec_env_cls=DummyVecEnv)  # fmt: skip
    if config["norm_obs"] or config["norm_reward"]:
        envs = VecNormalize(envs, norm_obs=config["norm_obs"], norm_reward=config["norm_reward"], gamma=config["gamma"])
    reached: list[tuple[int, float]] = []

    class StopAtThreshold(BaseCallback):
        def _on_step(self) -> bool:
            returns = [info["r"] for info in list(self.model.ep_info_buffer)[-WINDOW:]]
            if len(returns) >= WINDOW and np.mean(returns) >= workload.threshold:
                reached.append((self.num_timesteps, time.time() - spec["launched"]))
                return False
            return True

    model = PPO(env=envs, seed=config["seed"], device="cpu", **sb3_arguments(config))
    model.learn(total_timesteps=workload.budget, callback=StopAtThreshold())
    print(json.dumps({"steps": reached[0][0] if reached else None, "seconds": reached[0][1] if reached else None,
                      "total_seconds": time.time() - spec["launched"]}))  # fmt: skip


#: What SB3's PPO does whatever our config says: it standardises each minibatch's advantages
#: (``--norm-adv-scope minibatch``); a run with ``rollout`` has no SB3 equivalent.
SB3_PPO_FIXED = {"norm_adv_scope": "minibatch"}


def sb3_arguments(config: dict) -> dict:
    """SB3's PPO or A2C arguments (by ``config["algo"]``) for our settings (two towers of
    ``hidden_size``, as our MLPBase). A2C: SB3's RMSprop, whose smoothing constant is fixed at
    our default 0.99."""
    import torch

    lr, width = config["lr"], config["hidden_size"] or 64
    decay = config["use_linear_lr_decay"]
    common = {
        "policy": "MlpPolicy",
        "learning_rate": (lambda progress: lr * progress) if decay else lr,  # SB3's progress runs 1 -> 0
        "n_steps": config["num_steps"],
        "gamma": config["gamma"],
        "gae_lambda": config["gae_lambda"],
        "normalize_advantage": config["norm_adv"],
        "ent_coef": config["entropy_coef"],
        "vf_coef": config["value_loss_coef"] / VF_COEF_TO_OURS,  # SB3's value loss has no 1/2
        "max_grad_norm": config["max_grad_norm"],
        "use_sde": config["use_sde"],
        "sde_sample_freq": config["sde_sample_freq"],
        "policy_kwargs": {
            "net_arch": {"pi": [width, width], "vf": [width, width]},
            "activation_fn": torch.nn.ReLU if config["activation"] == "relu" else torch.nn.Tanh,
            "log_std_init": config["log_std_init"],
            "ortho_init": config["ortho_init"],
        },
    }
    if config["algo"] == "a2c":
        return {**common, "use_rms_prop": True, "rms_prop_eps": config["eps"]}
    clip, rollout = config["clip_param"], config["num_processes"] * config["num_steps"]
    return {
        **common,
        "batch_size": rollout // config["num_mini_batch"],
        "n_epochs": config["ppo_epoch"],
        "clip_range": clip,
        "clip_range_vf": clip if config["clip_value_loss"] else None,
    }


def launch(library: str, workload: Workload, seed: int, tmp: str) -> dict:
    spec = {"workload": asdict(workload), "seed": seed, "launched": time.time(), "tmp": tmp,
            "config": settings(workload, seed) if library == "sb3" else None}  # fmt: skip
    argv = [sys.executable, __file__, f"--{library}-worker", json.dumps(spec)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode in (130, 143):  # a Ctrl-C reached the worker too
        raise SystemExit(f"{library} {workload.env_id} seed {seed}: stopped; the same command goes on from here.")
    if proc.returncode != 0:  # the worker's own words, not a CalledProcessError carrying the whole spec
        raise SystemExit(f"{library} {workload.env_id} seed {seed} failed (status {proc.returncode}):\n"
                         f"{proc.stderr.strip()[-2000:]}")  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(results: list[dict]) -> None:
    print("| workload | library | seeds | reached | median seconds to threshold | median steps to threshold | "
          "ratio (SB3 / ours) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in WORKLOADS:
        medians = {}
        for library in ("ours", "sb3"):
            rows = [r for r in results if r["workload"] == name and r["library"] == library]
            if not rows:
                continue
            done = [r for r in rows if r["seconds"] is not None]
            seconds = statistics.median(r["seconds"] for r in done) if done else float("nan")
            steps = statistics.median(r["steps"] for r in done) if done else float("nan")
            medians[library] = seconds
            ratio = f"{medians['sb3'] / medians['ours']:.2f}x" if library == "sb3" and "ours" in medians else ""
            print(f"| {name} | {library} | {len(rows)} | {len(done)}/{len(rows)} | {seconds:.1f} | {steps:,.0f} | "
                  f"{ratio} |")  # fmt: skip


def _seed(text: str) -> int:
    """An argparse type: a seed (``runs.seed_number``, imported late: the timed workers start without it)."""
    from benchmarks.runs import seed_number

    return seed_number(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["cartpole", "halfcheetah"], choices=list(WORKLOADS))
    parser.add_argument("--seeds", type=_seed, nargs="+", help="default: 1-5 for CartPole, 1-2 for the others")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "time_to_result.jsonl"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--ours-worker", help=argparse.SUPPRESS)
    parser.add_argument("--sb3-worker", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.ours_worker:
        return ours_worker(json.loads(opts.ours_worker))
    if opts.sb3_worker:
        return sb3_worker(json.loads(opts.sb3_worker))
    from benchmarks.runs import ResultLog  # here, not at the top: the timed workers start without it

    log = ResultLog(opts.out)
    if not opts.report_only:
        import tempfile

        for name in opts.workloads:
            seeds = opts.seeds or ([1, 2, 3, 4, 5] if name == "cartpole" else [1, 2])
            for seed in seeds:
                for library in ("ours", "sb3"):
                    if log.has(workload=name, library=library, seed=seed):
                        continue
                    with tempfile.TemporaryDirectory() as tmp:
                        try:
                            result = launch(library, WORKLOADS[name], seed, tmp)
                        except KeyboardInterrupt:  # the run under way is lost; those logged are kept
                            raise SystemExit("stopped by Ctrl-C; the same command goes on from here.") from None
                    log.add({"workload": name, "library": library, "seed": seed, **result})
    report(log.rows)


if __name__ == "__main__":
    main()
