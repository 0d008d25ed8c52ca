"""Every setting of a run, declared once: name, type, default (or "by preset"), range or
choices, the algorithms it applies to, and its help text.

``RunConfig`` is the frozen, typed run description library code receives (never an argparse
Namespace). The command line (``arguments.py``), validation (``check_value``,
``declaration.check_applies``), ``--help`` and the checkpoint's config (``to_dict`` /
``from_dict``) are all generated from the declarations below, in the spirit of CleanRL's ``Args`` dataclass.
Adding a setting means declaring it here, giving it preset values if it has any
(``presets.py``) and using it; nothing else.

How a setting is declared and a value checked is in ``declaration.py``. A checkpoint written
before a setting existed still loads: the missing field takes its
default, and ``from_dict`` says so; a field this version does not know is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

from a2c_ppo.declaration import (
    ALGOS,
    BY_PRESET,
    Declared,
    check_declared,
    json_object,
    saved_values,
    setting,
)

CONFIG_VERSION = 2

PRESETS = ("classic", "mujoco", "atari")
RNN_TYPES = ("gru", "lstm")
VEC_ENV_KINDS = ("auto", "subproc", "sync", "envpool", "native")
OVERLAP_CHOICES = ("auto", "on", "off")
GAIL_REWARDS = ("logit", "positive")  # algo/gail.py: the reward from the discriminator's logit
#: Seeds go to numpy (< 2**32) after adding per-env, per-rank and evaluation offsets.
MAX_SEED = 4_000_000_000


# The --help groups, in order.
ALGORITHM = "algorithm"
POLICY = "policy"
ENVIRONMENT = "environment"
LOGGING = "logging and checkpoints"
DEVICE = "device and processes"


#: The GAIL settings: for PPO and A2C, and only with --gail.
GAIL_ONLY: dict[str, Any] = {"algos": ("ppo", "a2c"), "needs": "gail"}
#: The settings of PPO's KL-penalty objective.
KL_PENALTY: dict[str, Any] = {"algos": ("ppo",), "needs": "ppo_variant=kl-penalty"}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run, resolved (``None`` only where a setting is chosen at run time)."""

    # algorithm
    algo: str = setting("ppo", "algorithm to train with", ALGORITHM, choices=ALGOS)
    preset: str = setting(
        "auto",
        "hyper-parameters of a task family; auto: atari for Atari ids, mujoco for continuous control, else classic",
        ALGORITHM,
        choices=("auto", *PRESETS),
    )
    lr: float = setting(BY_PRESET, "learning rate", ALGORITHM, low=0.0, high=1e6, low_open=True, preset=True)
    eps: float = setting(1e-5, "Adam / RMSprop epsilon", ALGORITHM, low=0.0, low_open=True, algos=("ppo", "a2c"))
    alpha: float = setting(
        0.99, "RMSprop smoothing constant", ALGORITHM, low=0.0, high=1.0, low_open=True, high_open=True, algos=("a2c",)
    )
    gamma: float = setting(BY_PRESET, "discount factor", ALGORITHM, low=0.0, high=1.0, low_open=True, preset=True)
    use_gae: bool = setting(True, "generalized advantage estimation, else n-step returns", ALGORITHM, flag="on-off")
    gae_lambda: float = setting(BY_PRESET, "GAE lambda", ALGORITHM, low=0.0, high=1.0, preset=True, needs="use_gae")
    entropy_coef: float = setting(0.0, "entropy bonus", ALGORITHM, low=0.0, preset=True)
    value_loss_coef: float = setting(
        0.5, "weight of the value loss 0.5 * mean((V - R)^2) (twice an SB3 / Tianshou vf_coef)", ALGORITHM, low=0.0
    )
    max_grad_norm: float = setting(
        0.5, "global gradient-norm clip", ALGORITHM, low=0.0, low_open=True, algos=("ppo", "a2c")
    )
    clip_param: float = setting(
        0.2, "PPO ratio clip (and value clip)", ALGORITHM, low=0.0, low_open=True, algos=("ppo",), preset=True,
        needs="ppo_variant=clip|clip_value_loss",
    )  # fmt: skip
    ppo_epoch: int = setting(1, "PPO epochs per update", ALGORITHM, low=1, algos=("ppo",), preset=True)
    num_mini_batch: int = setting(1, "PPO minibatches per epoch", ALGORITHM, low=1, algos=("ppo",), preset=True)
    clip_value_loss: bool = setting(True, "PPO clipped value loss", ALGORITHM, algos=("ppo",), flag="on-off")
    norm_adv: bool = setting(False, "standardise advantages over the batch", ALGORITHM, preset=True, flag="on-off")
    norm_adv_scope: str = setting(
        "rollout",
        "the batch --norm-adv standardises over: the whole rollout (ikostrikov's PPO) or each minibatch "
        "(Stable-Baselines3's, CleanRL's and Tianshou's)",
        ALGORITHM,
        choices=("rollout", "minibatch"),
        algos=("ppo",),
        needs="norm_adv",
    )
    target_kl: float | None = setting(
        None,
        "stop a PPO update at the first minibatch whose approx KL exceeds this (the step not taken; SB3 stops at 1.5x "
        "its target_kl: give 1.5x an SB3 value)",
        ALGORITHM, low=0.0, low_open=True, algos=("ppo",),
    )  # fmt: skip
    use_linear_lr_decay: bool = setting(True, "decay the learning rate linearly to 0", ALGORITHM, flag="on-off")
    lr_decay_steps: int | None = setting(
        None,
        "env steps (all ranks) over which the linear decay reaches 0; a longer horizon than the run stops "
        "above 0, as Tianshou's MuJoCo A2C, whose 1M results come from its 3M-step decay",
        ALGORITHM,
        low=1,
        auto="--num-env-steps",
        needs="use_linear_lr_decay",
    )
    ppo_variant: str = setting(
        "clip",
        "PPO's objective: the clipped surrogate, or the KL penalty with an adaptive coefficient (PPO paper, sec. 4)",
        ALGORITHM,
        choices=("clip", "kl-penalty"),
        algos=("ppo",),
    )
    kl_target: float = setting(
        0.01, "kl-penalty: the KL each update aims at (d_targ; 0 keeps --kl-coef fixed)", ALGORITHM, low=0.0,
        **KL_PENALTY,
    )  # fmt: skip
    kl_coef: float = setting(1.0, "kl-penalty: the initial KL coefficient (beta)", ALGORITHM, low=0.0, **KL_PENALTY)
    gail: bool = setting(
        False, "GAIL: learn from --gail-experts with a discriminator's reward", ALGORITHM, flag="switch",
        algos=("ppo", "a2c"),
    )  # fmt: skip
    gail_experts: str | None = setting(
        None, "GAIL's expert trajectories (a file of enjoy.py --record-trajectories)", ALGORITHM, **GAIL_ONLY
    )
    gail_epoch: int = setting(5, "GAIL: discriminator epochs per update", ALGORITHM, low=1, **GAIL_ONLY)
    gail_warmup: int = setting(
        10, "GAIL: the first updates train the discriminator 100 epochs each", ALGORITHM, low=0, **GAIL_ONLY
    )
    gail_batch_size: int = setting(128, "GAIL: discriminator minibatch size", ALGORITHM, low=1, **GAIL_ONLY)
    # 1, not the GAIL paper's 20: a user's handful of recorded episodes subsampled 20-fold leaves
    # too few pairs (CartPole, 10 episodes: 250 pairs reach 0.15 of the expert, 5,000 reach it all;
    # docs/BENCHMARKS.md). Pass 20 to reproduce the paper's MuJoCo setting.
    gail_subsample: int = setting(
        1, "GAIL: keep every n-th expert step (1: all; the GAIL paper used 20 on MuJoCo)", ALGORITHM, low=1,
        **GAIL_ONLY,
    )  # fmt: skip
    gail_reward: str = setting(
        "logit", "GAIL's reward from D = sigmoid(f): logit, log D - log(1 - D) = f, of either sign (the reference "
        "PyTorch implementation's; a step can cost, so an env that ends on failure can teach dying early, see "
        "--gail-absorbing); positive, -log(1 - D) = softplus(f) > 0 (the GAIL paper's; a bonus for every step "
        "survived: not for envs whose goal ends the episode)", ALGORITHM, choices=GAIL_REWARDS, **GAIL_ONLY,
    )  # fmt: skip
    gail_absorbing: bool = setting(
        False, "GAIL: absorbing states (Kostrikov et al. 2019): a step that terminates its episode also earns the "
        "absorbing state's learnt reward for ever after, so ending an episode is judged as the expert's endings are "
        "(removes both reward forms' bias; needs an expert file that records terminations)", ALGORITHM,
        flag="switch", **GAIL_ONLY,
    )  # fmt: skip
    gail_trajectories: int | None = setting(
        None, "GAIL: how many expert episodes to use", ALGORITHM, low=1, auto="all of them", **GAIL_ONLY
    )
    precision: str = setting(
        "auto",
        "the policy's forward and backward passes (parameters, optimizer state and losses stay float32); auto: bf16 "
        "where the hardware has bf16 matrix units and the policy is big enough to gain (measured), else fp32",
        ALGORITHM,
        choices=("auto", "fp32", "bf16"),
        algos=("ppo", "a2c"),
    )
    fast_path: str = setting(
        "auto",
        "auto: small feed-forward MLP policies act in numpy and PPO and A2C compute their gradient by hand (the same "
        "maths, faster); off: always Policy.act and autograd",
        ALGORITHM,
        choices=("auto", "off"),
    )
    # policy
    hidden_size: int | None = setting(
        None,
        "width of the MLP towers / CNN feature layer and of the recurrent layer",
        POLICY,
        low=1,
        # wider would not fit in memory: a 16,384 x 16,384 layer is 1 GiB, and the MLP's two
        # towers hold one each, with its gradient and Adam's two moments beside it (8 GiB)
        high=16_384,
        auto="64 for vector observations, 512 for images",
    )
    activation: str = setting(
        "tanh",
        "hidden activation of the MLP towers and --cnn-head-size's layers",
        POLICY,
        choices=("tanh", "relu", "gelu"),
    )
    cnn_head_size: int = setting(
        0,
        "a layer of N units per head (actor, critic) on the Nature CNN's features, SB3's net_arch=dict(pi=[N], "
        "vf=[N]) (0: the heads read the features)",
        POLICY,
        low=0,
    )
    log_std_init: float = setting(
        0.0,
        "initial log-std of a Gaussian policy",
        POLICY,
        low=-20.0,
        high=20.0,  # a std of 2e-9 to 5e8
    )
    ortho_init: bool = setting(
        True,
        "orthogonal initialisation of the policy's layers (off: PyTorch's default, SB3's ortho_init=False)",
        POLICY,
        flag="on-off",
    )
    use_sde: bool = setting(
        False, "generalized state-dependent exploration (gSDE) for Gaussian policies", POLICY, flag="on-off"
    )
    sde_sample_freq: int = setting(
        -1, "gSDE: resample the noise every n steps (-1: once per rollout)", POLICY, low=-1, needs="use_sde"
    )
    policy_base: str | None = setting(
        None, "your own base network, module:Class (see the README's Python API)", POLICY, auto="by observation space"
    )
    policy_kwargs: str = setting(
        "{}",
        "keyword arguments of --policy-base, a JSON object of plain values",
        POLICY,
        json_object=True,
        needs="policy_base",
    )
    recurrent_policy: bool = setting(False, "GRU/LSTM after the MLP or CNN", POLICY, flag="switch")
    recurrent_type: str = setting(
        "gru", "recurrent layer of --recurrent-policy", POLICY, choices=RNN_TYPES, needs="recurrent_policy"
    )
    recurrent_chunk_length: int | None = setting(
        None,
        "recurrent PPO trains on sequences of this many steps; must divide --num-steps",
        POLICY,
        low=1,
        auto="whole columns, or the longest chunk that makes --num-mini-batch minibatches",
        algos=("ppo",),
        needs="recurrent_policy",
    )
    # environment
    env_name: str = setting("CartPole-v1", "gymnasium id, or module:Class / module:factory", ENVIRONMENT)
    env_kwargs: str = setting(
        "{}",
        "keyword arguments of the env (gymnasium.make's, or module:factory's), a JSON object of plain values, "
        "e.g. '{\"include_cfrc_ext_in_observation\": false}'",
        ENVIRONMENT,
        json_object=True,
    )
    frame_skip: int = setting(
        1, "take each action this many times, summing the rewards (not for Atari ids: they skip 4)", ENVIRONMENT, low=1
    )
    frame_size: int = setting(
        0, "resize image observations to N x N pixels (0: as the env gives them; needs OpenCV)", ENVIRONMENT, low=0
    )
    grayscale: bool = setting(False, "turn RGB image observations gray (one channel)", ENVIRONMENT, flag="on-off")
    # at most 1,024: the start-up check's env took minutes to stack the bounds of 10,000,000 frames
    frame_stack: int = setting(
        1, "observe the last N frames (images: stacked channels; vectors: stacked features)", ENVIRONMENT, low=1,
        high=1024,
    )  # fmt: skip
    num_processes: int = setting(
        BY_PRESET, "parallel environments per training process", ENVIRONMENT, low=1, preset=True
    )
    num_steps: int = setting(BY_PRESET, "steps per env per update", ENVIRONMENT, low=1, preset=True)
    num_env_steps: int = setting(
        BY_PRESET, "total env steps to train for, all ranks together", ENVIRONMENT, low=1, preset=True
    )
    seed: int = setting(
        1, "random seed; env i of rank r gets seed + r * num_processes + i", ENVIRONMENT, low=0, high=MAX_SEED
    )
    use_proper_time_limits: bool = setting(
        True,
        "bootstrap truncated episodes from V(final obs), else treat truncation as termination",
        ENVIRONMENT,
        flag="on-off",
    )
    norm_obs: bool | None = setting(
        None, "normalise observations", ENVIRONMENT, preset=True, flag="on-off", auto="on for continuous control"
    )
    norm_reward: bool | None = setting(
        None,
        "scale rewards by the return std",
        ENVIRONMENT,
        preset=True,
        flag="on-off",
        auto="on for continuous control; off with --norm-value unless typed",
    )
    norm_value: bool = setting(
        False,
        "the critic learns the returns over their running std; the advantages stay in reward units "
        "(Tianshou's reward_normalization)",
        ALGORITHM,
        flag="on-off",
    )
    value_norm_stats: str = setting(
        "returns",
        "what --norm-value's std is taken over: the rollouts' bootstrapped returns (returns, Tianshou's) or each "
        "env's running discounted sum of rewards (rewards, as --norm-reward's: no feedback from the critic)",
        ALGORITHM,
        choices=("returns", "rewards"),
    )
    vec_env: str = setting(
        "auto",
        "how envs are stepped: our vector env (sync: in this process; subproc: on worker processes too), EnvPool "
        "([envpool] extra), or native: --env-name gives a gymnasium VectorEnv of its own (chosen by itself)",
        ENVIRONMENT,
        choices=VEC_ENV_KINDS,
    )
    num_workers: int | None = setting(
        None,
        "worker processes for subproc, besides the main process, which steps a share of the envs",
        ENVIRONMENT,
        low=1,
        auto="cores - 1",
    )
    overlap: str = setting(
        "auto",
        "step one half of the envs while the policy acts on the other (auto: where it is measured to pay)",
        ENVIRONMENT,
        choices=OVERLAP_CHOICES,
    )
    action_masks: str = setting(
        "auto",
        "never take the actions the env's mask forbids (info['action_mask'], an action_masks() method, or an "
        "'action_mask' observation part); auto: on where the env gives masks",
        ENVIRONMENT,
        choices=("auto", "on", "off"),
    )
    env_timeout: float = setting(
        300.0,
        "seconds an env step or reset (a worker's start: 60 or more) may take before the run stops (0: forever)",
        ENVIRONMENT,
        low=0.0,
    )
    # logging and checkpoints
    log_dir: str = setting("runs", "each run writes TensorBoard + CSV to its own folder here", LOGGING)
    run_dir: str = setting("", "this run's folder under --log-dir", LOGGING, flag=None)
    save_dir: str = setting(
        "trained_models",
        "each run's checkpoint is RUN_FOLDER/checkpoint.pt; a finished run's is also copied to SAVE_DIR/ALGO/ENV.pt",
        LOGGING,
    )
    log_interval: int = setting(10, "updates between console/TensorBoard logs", LOGGING, low=1)
    save_interval: int = setting(100, "updates between checkpoints (also at the end and on exit)", LOGGING, low=1)
    eval_interval: int = setting(
        0, "updates between evaluations, also after the budget's last update (0: none)", LOGGING, low=0
    )
    eval_episodes: int = setting(10, "episodes per evaluation", LOGGING, low=1, needs="eval_interval")
    track: bool = setting(
        False, "track the run with Weights & Biases (the [wandb] extra; WANDB_MODE=offline works)", LOGGING,
        flag="switch",
    )  # fmt: skip
    wandb_project: str = setting("a2c_ppo", "W&B project", LOGGING, needs="track")
    wandb_entity: str | None = setting(None, "W&B entity (user or team)", LOGGING, auto="yours", needs="track")
    wandb_group: str | None = setting(
        None, "W&B group, e.g. to gather the seeds of one setting", LOGGING, needs="track"
    )
    wandb_tags: str = setting("", "W&B tags, comma-separated", LOGGING, needs="track")
    wandb_id: str | None = setting(
        None, "the W&B run to continue (its id: the console's, the end of its page's address), e.g. with --resume",
        LOGGING, auto="a new run", needs="track",
    )  # fmt: skip
    capture_video: bool = setting(
        False, "record an evaluation episode every --video-interval updates into the run folder", LOGGING, flag="switch"
    )
    video_interval: int = setting(
        100, "updates between videos of --capture-video", LOGGING, low=1, needs="capture_video"
    )
    # device and processes
    no_cuda: bool = setting(False, "train on the CPU even with CUDA", DEVICE, flag="switch")
    cuda_deterministic: bool = setting(False, "deterministic cuDNN (slower)", DEVICE, flag="switch")
    # torch's OpenMP pool starts every thread asked for: 100,000 crashed a 2-core machine's run
    num_threads: int = setting(1, "torch CPU threads (small nets: 1 is fastest)", DEVICE, low=1, high=1024)
    dist_backend: str = setting(
        "auto", "torchrun backend (auto: nccl on CUDA)", DEVICE, choices=("auto", "gloo", "nccl")
    )
    dist_timeout: float = setting(
        600.0, "seconds a rank waits for the others (above --env-timeout, evaluations)", DEVICE, low=0.0, low_open=True
    )

    @property
    def batch_size(self) -> int:
        """Samples per update on one rank: ``num_processes * num_steps``."""
        return self.num_processes * self.num_steps

    @property
    def env_arguments(self) -> dict[str, Any]:
        """``--env-kwargs`` as the keyword arguments each env is built with."""
        return json_object(self.env_kwargs, "--env-kwargs")

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able) with a ``config_version`` key."""
        return {"config_version": CONFIG_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], notes: list[str] | None = None) -> RunConfig:
        """The config saved by ``to_dict``. Fields it lacks (it predates them) take their
        defaults, said in ``notes``; every value is checked as the same flag typed by hand.
        ConfigError for another version, an unknown field or a bad value."""
        return cls(**saved_values(SETTINGS, data, CONFIG_VERSION, notes))


def _declared() -> dict[str, Declared]:
    hints = get_type_hints(RunConfig)
    return {f.name: Declared(f.name, hints[f.name], f.default, f.metadata["setting"]) for f in fields(RunConfig)}


#: Every setting, in declaration order.
SETTINGS: dict[str, Declared] = _declared()


def check_value(name: str, value: Any, source: str = "") -> None:
    """ConfigError (saying what to change) unless ``value`` fits setting ``name``'s declaration
    (``source`` qualifies the flag in the message, e.g. "the checkpoint's")."""
    check_declared(SETTINGS[name], value, source)


def defaults() -> dict[str, Any]:
    """The declared defaults of the settings no preset must decide."""
    return {name: d.default for name, d in SETTINGS.items() if d.default is not BY_PRESET}
