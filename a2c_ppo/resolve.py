"""From the typed settings (and maybe a checkpoint) to a validated RunConfig.

Everything here runs before any worker process starts or any env step is spent: one env is
built in this process to learn its spaces (for ``--preset auto``, the automatic
normalisation and the checks), and the output folders are proven writable. Each value is
checked against its declaration (``config.check_value``); the rules that tie settings
together are in ``validate``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from a2c_ppo.api_values import unknown_setting
from a2c_ppo.config import (
    SETTINGS,
    RunConfig,
    check_value,
    defaults,
    json_object,
)
from a2c_ppo.declaration import flag_name, show
from a2c_ppo.envs.check import inspect_env
from a2c_ppo.envs.frames import RECIPE_SETTINGS, recipe_of
from a2c_ppo.envs.make import is_continuous_control
from a2c_ppo.errors import ConfigError
from a2c_ppo.paths import RUN_CHECKPOINT, check_writable_dir, new_run_dir
from a2c_ppo.presets import PRESET_VALUES, auto_preset, env_entry, preset_values
from a2c_ppo.run_checks import check_chunk_length, check_policy_fits, validate
from a2c_ppo.unused_settings import check_typed_settings_apply, drop_unused

#: The settings that send a run's data to Weights & Biases: a resume takes them only as typed.
TRACKING = ("track", "wandb_project", "wandb_entity", "wandb_group", "wandb_tags", "wandb_id")
#: The settings that shape what a checkpoint holds weights of: a resume cannot change them.
SHAPE_FLAGS = {
    "hidden_size": "network",
    "cnn_head_size": "network",
    "recurrent_policy": "network",
    "recurrent_type": "network",
    "use_sde": "network",
    "gail_absorbing": "GAIL discriminator",
}
#: What a checkpoint's network learned, by normalisation setting (on, off): a resume cannot switch
#: them (the statistics would be dropped, ignored, or start from nothing under trained weights).
NORMALISATION_UNITS = {
    "norm_obs": ("network reads observations over their running mean and std", "network reads the env's observations"),
    "norm_reward": (
        "critic learned returns of rewards over their running std",
        "critic learned returns in reward units",
    ),
    "norm_value": ("critic learned the returns over their running std", "critic learned the returns in reward units"),
}


@dataclass
class LaunchRequest:
    """What to do: train ``config``, maybe resuming ``resume`` (a checkpoint path)."""

    config: RunConfig
    resume: str | None = None
    typed: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # printed at the start of the run
    checkpoint: dict[str, Any] | None = None  # the loaded --resume checkpoint
    best_model: bytes | None = None  # the resumed run's best model (its file), for a new run folder
    in_place: bool = False  # the resumed run goes on in its own folder (config.run_dir), not a new one
    origins: dict[str, str] = field(
        default_factory=dict
    )  # setting -> typed / env entry / preset / default / checkpoint
    show_settings: bool = False  # print the settings and train nothing


def resolve_request(typed: dict[str, Any], resume: str | None, trust_checkpoint: bool = False) -> LaunchRequest:
    """The validated LaunchRequest for the settings the user typed (``typed``: name -> value)
    and ``resume``; ConfigError saying what to change otherwise. ``trust_checkpoint``: import
    the code a resumed checkpoint names (see ``checkpoint.check_trusted``)."""
    _check_typed(typed)
    if trust_checkpoint and resume is None:
        raise ConfigError("--trust-checkpoint (trust_checkpoint=True) trusts the checkpoint of --resume (resume=...), "
                          "and there is none: drop it, or give the checkpoint to resume.")  # fmt: skip
    notes: list[str] = []
    checkpoint = None
    if resume is not None:
        from a2c_ppo.checkpoint import check_trusted, load_checkpoint
        from a2c_ppo.checkpointer import best_checkpoint_path, best_mean_return, resumed_best_model

        checkpoint = load_checkpoint(resume, what="--resume")
        saved = RunConfig.from_dict(checkpoint["config"], notes)
        check_trusted(saved, typed, trust_checkpoint, what=f"--resume {resume!r}")
        values = _resumed_values(saved, typed, resume)
        _restart_beta_where_typed(checkpoint, saved, typed, notes)
        notes.insert(0, f"Resuming {resume} at update {checkpoint['counters']['update']}.")
        if saved.track and "track" not in typed:
            notes.append(
                "The checkpoint's run was tracked with W&B; this one is not: a file never decides where data goes "
                "(type --track and the --wandb-* flags to track it)."
            )
        if values["env_name"] != saved.env_name:  # the same spaces (checked below), another env
            notes.append(f"The env is {values['env_name']}, where the checkpoint trained on {saved.env_name}.")
        best_model = None if values["run_dir"] else resumed_best_model(resume, checkpoint)  # a new folder takes it
        if values["run_dir"]:  # its own folder: the best model there is read as the run starts; checked now
            best_mean_return(best_checkpoint_path(values["run_dir"]))
    else:
        values, best_model = {**defaults(), **typed}, None
    new_with_entry = resume is None and values["preset"] == "auto"
    entry, source = env_entry(values["env_name"], values["algo"]) if new_with_entry else ({}, None)
    # The entry's recipe builds the env whose spaces decide the preset (typed settings win).
    recipe = recipe_of({name: typed.get(name, entry.get(name, values[name])) for name in RECIPE_SETTINGS})
    report = inspect_env(values["env_name"], values["action_masks"], values["vec_env"], recipe, values["env_timeout"])
    spaces = report.observation_space, report.action_space
    if checkpoint is not None:
        from a2c_ppo.checkpoint import check_spaces

        # first: another env's spaces are the cause of any setting that does not fit them
        check_spaces(checkpoint, *spaces, values["env_name"])
        _check_auto_width(saved, typed, spaces[0])
    origins: dict[str, str] = {name: "typed" if name in typed else "checkpoint" for name in SETTINGS}
    if resume is not None:  # where data goes is never the checkpoint's (_resumed_values)
        origins.update({name: "default" for name in ("log_dir", "save_dir", *TRACKING) if name not in typed})
    if resume is None:
        values = _preset_values(values, typed, spaces, notes, origins, (entry, source))
    values["action_masks"] = "on" if report.action_masks else "off"  # recorded: a resume makes the same choice
    if resume is None and "action_masks" not in typed:
        origins["action_masks"] = f"auto: the env gives {'masks' if report.action_masks else 'none'}"
    notes += report.notes
    if report.vector_envs is not None:  # a native vector env: its own batch of envs
        if "num_processes" in typed and typed["num_processes"] != report.vector_envs:
            raise ConfigError(
                f"--num-processes {typed['num_processes']}: {values['env_name']!r} gives a vector env of "
                f"{report.vector_envs} envs; drop --num-processes (it comes from the vector env)."
            )
        values.update(num_processes=report.vector_envs, vec_env="native")
        origins.update(num_processes="vector env", vec_env="vector env")
    if values["norm_obs"] is None or values["norm_reward"] is None:
        auto = is_continuous_control(*spaces)
        values["norm_obs"] = auto if values["norm_obs"] is None else values["norm_obs"]
        values["norm_reward"] = auto if values["norm_reward"] is None else values["norm_reward"]
    if resume is None and values["norm_value"] and values["norm_reward"] and "norm_reward" not in typed:
        # scaled rewards would shrink the advantages that --norm-value keeps in reward units
        values["norm_reward"] = False
        origins["norm_reward"] = "--norm-value"
        notes.append("Rewards unscaled: --norm-value scales the critic's targets instead (--norm-reward for both).")
    if resume is None and not values["norm_value"] and "value_norm_stats" not in typed:
        # an env entry's statistics for --norm-value go with it: a typed --no-norm-value drops both
        values["value_norm_stats"] = SETTINGS["value_norm_stats"].default
        origins["value_norm_stats"] = "--no-norm-value" if origins.get("value_norm_stats") == "env entry" else "default"
    if resume is None:
        drop_unused(values, origins)
    in_place = bool(values["run_dir"])  # a resumed run's own folder (_resumed_values); else a new name
    if not in_place:
        values["run_dir"] = new_run_dir(values["log_dir"], values["env_name"], values["algo"], values["seed"])
    config = RunConfig(**values)
    check_typed_settings_apply(config, typed, spaces)  # before W&B or a worker starts
    validate(config, origins)
    recurrent = check_policy_fits(config, *spaces)
    if config.policy_base and not recurrent and "recurrent_chunk_length" in typed:
        raise ConfigError(f"--recurrent-chunk-length only applies to a recurrent policy, and --policy-base "
                          f"{config.policy_base!r} is not one (its is_recurrent is False): drop it.")  # fmt: skip
    check_chunk_length(config, notes, recurrent)
    gail = None
    if config.gail:  # the expert file is read and checked before anything starts
        from a2c_ppo.builders import make_gail

        gail = make_gail(config, spaces, None, "cpu", 0, new_run=checkpoint is None, time_limit=report.time_limit)
    if checkpoint is not None:
        from a2c_ppo.restore_check import check_restorable

        named = config.policy_base if {"policy_base", "policy_kwargs"} & set(typed) else None  # blamed where unfit
        check_restorable(checkpoint, config, spaces, f"--resume {resume!r}", gail, named)
        done = checkpoint["counters"]["env_steps"]
        if done > config.num_env_steps:  # the run would train nothing, yet report itself done
            raise ConfigError(
                f"--resume {resume!r} has trained {done:,} env steps, more than --num-env-steps "
                f"{config.num_env_steps:,}, the budget of the whole run it continues. Give --num-env-steps above "
                f"{done}, or start a new run without --resume."
            )
    for flag, folder in (("--log-dir", config.log_dir), ("--save-dir", config.save_dir)):
        if not folder:  # e.g. an unset shell variable: the run would write into the current folder
            raise ConfigError(f"{flag} is empty: give a folder ('.' for the current one).")
    # under torchrun rank 0 alone writes, and proves it can (without races); the other ranks
    # read what they can, so that a bad folder stops them at once, not after --dist-timeout
    probe = os.environ.get("RANK", "0") == "0"
    check_writable_dir(config.run_dir, "--log-dir", probe)
    check_writable_dir(config.save_dir, "--save-dir", probe)
    return LaunchRequest(
        config=config,
        resume=resume,
        typed=set(typed),
        notes=notes,
        checkpoint=checkpoint,
        origins=origins,
        best_model=best_model,
        in_place=in_place,
    )


def _check_typed(typed: dict[str, Any]) -> None:
    """Each typed value against its declaration; unknown names are refused."""
    for name, value in typed.items():
        if name not in SETTINGS or SETTINGS[name].spec.flag is None:
            raise unknown_setting(name)
        check_value(name, value)


def _resumed_values(saved: RunConfig, typed: dict[str, Any], resume: str) -> dict[str, Any]:
    """The checkpoint's settings with the typed flags on top, where a resume allows it.

    Where the run writes never comes from the file: the folders are the typed (or default)
    ones, and the run goes on in the checkpoint's own folder when that is a run folder
    (``RUN_DIR/checkpoint.pt``) and no other ``--log-dir`` was typed, else in a new run folder."""
    if "algo" in typed and typed["algo"] != saved.algo:
        raise ConfigError(
            f"--resume: the checkpoint was trained with --algo {saved.algo}, and its optimizer state cannot "
            f"continue as --algo {typed['algo']}; drop --algo, or start a new run without --resume."
        )
    for name in SHAPE_FLAGS:
        auto_width = name == "hidden_size" and saved.hidden_size is None  # checked once the spaces are known
        if name in typed and typed[name] != getattr(saved, name) and not auto_width:
            _refuse_shape(name, getattr(saved, name), typed[name])
    for name, (on, off) in NORMALISATION_UNITS.items():
        was = getattr(saved, name)
        if name in typed and was is not None and typed[name] != was:
            flag = flag_name(name) if typed[name] else "--no-" + flag_name(name)[2:]
            raise ConfigError(
                f"--resume: the checkpoint's {on if was else off}, and with {flag} it would read them in the other "
                f"units; drop {flag}, or start a new run without --resume."
            )
    stats = typed.get("value_norm_stats", saved.value_norm_stats)
    if saved.norm_value and stats != saved.value_norm_stats:  # the critic's units: the std of one of them
        raise ConfigError(
            f"--resume: the checkpoint's critic learned the returns over the running std of the "
            f"{saved.value_norm_stats} (--value-norm-stats {saved.value_norm_stats}), and with --value-norm-stats "
            f"{stats} that std would go on over another quantity; drop --value-norm-stats, or start a new run "
            "without --resume."
        )
    changed = [name for name in RECIPE_SETTINGS if name in typed and _differs(name, typed[name], saved)]
    if changed:
        shown = ", ".join(f"{flag_name(name)} {show(getattr(saved, name))}" for name in changed)
        raise ConfigError(
            f"--resume: the checkpoint's envs were built with {shown}, and an exact resume restores their state "
            f"(and the network, their observations); drop {', '.join(map(flag_name, changed))}, or start a new run "
            "without --resume."
        )
    if "preset" in typed:
        raise ConfigError(
            "--preset chooses the settings of a new run; a resumed run keeps its checkpoint's settings. Drop "
            "--preset and type the flags you want to change."
        )
    values = {name: value for name, value in saved.to_dict().items() if name != "config_version"}
    # where data goes is the user's to say, never a file's: the folders, and W&B uploads
    folders = {name: typed.get(name, SETTINGS[name].default) for name in ("log_dir", "save_dir", *TRACKING)}
    run_dir = os.path.dirname(resume) or "."
    log_dir_of_run = os.path.dirname(os.path.abspath(run_dir))
    own_folder = os.path.basename(resume) == RUN_CHECKPOINT and (
        "log_dir" not in typed or os.path.abspath(typed["log_dir"]) == log_dir_of_run
    )
    if not own_folder:
        run_dir = ""  # a new run folder under --log-dir
    return {**values, **typed, **folders, "run_dir": run_dir}


def _restart_beta_where_typed(
    checkpoint: dict[str, Any], saved: RunConfig, typed: dict[str, Any], notes: list[str]
) -> None:
    """Drop the checkpoint's KL-penalty beta where the resumed run starts it from ``--kl-coef``:
    the checkpoint's run had no KL penalty (a clipped run's checkpoint of an older version holds
    an unused 1.0), or another initial beta than its own was typed. The same value typed again
    keeps the adapted beta going, so that a command repeated with --resume stays exact."""
    agent = (checkpoint.get("algorithm") or {}).get("agent")
    if not isinstance(agent, dict) or type(agent.get("kl_coef")) is not float:
        return  # no beta; one that is no number is left for the restore check to refuse
    if saved.ppo_variant == "kl-penalty" and typed.get("kl_coef", saved.kl_coef) == saved.kl_coef:
        return
    beta = agent.pop("kl_coef")
    if saved.ppo_variant == "kl-penalty":
        notes.append(f"The KL penalty's beta starts again at --kl-coef {typed['kl_coef']:g} (the checkpoint's: "
                     f"{beta:g}).")  # fmt: skip


def _refuse_shape(name: str, saved: Any, typed: Any) -> None:
    raise ConfigError(
        f"--resume: the checkpoint's {SHAPE_FLAGS[name]} has {flag_name(name)} {show(saved)}, and its weights do "
        f"not fit {flag_name(name)} {show(typed)}; drop {flag_name(name)}, or start a new run without --resume."
    )


def _check_auto_width(saved: RunConfig, typed: dict[str, Any], obs_space: Any) -> None:
    """A typed --hidden-size against a checkpoint that left it to the observation space."""
    from a2c_ppo.model import default_hidden_size

    if saved.hidden_size is None and "hidden_size" in typed and saved.policy_base is None:
        built = default_hidden_size(obs_space)
        if typed["hidden_size"] != built:
            _refuse_shape("hidden_size", f"{built} (the default for its observations)", typed["hidden_size"])


def _differs(name: str, value: Any, saved: RunConfig) -> bool:
    """Whether the typed ``value`` of a recipe setting differs from the checkpoint's."""
    if name == "env_kwargs":
        return json_object(value, "--env-kwargs") != saved.env_arguments
    return value != getattr(saved, name)


def _preset_values(
    values: dict[str, Any],
    typed: dict[str, Any],
    spaces: tuple[Any, Any],
    notes: list[str],
    origins: dict[str, str],
    entry_and_source: tuple[dict[str, Any], str | None],
) -> dict[str, Any]:
    """``values`` with the env entry's (its values and source, ``presets.env_entry``) and the
    preset's settings where nothing was typed; notes which entry and preset, and why;
    ``origins`` gets where each value came from."""
    from a2c_ppo.envs.atari import is_atari_id

    preset, algo = values["preset"], values["algo"]
    if preset == "auto":
        preset = auto_preset(*spaces, is_atari=is_atari_id(values["env_name"]))
        why = f"auto: {preset} for {values['env_name']}"
    else:
        why = "typed"
    entry, source = entry_and_source
    family = preset_values(preset, algo)
    overridden = sorted(flag_name(name) for name in typed if SETTINGS[name].spec.preset or name in entry)
    head = f"Settings of {values['env_name']} ({source})" if source else f"Preset {preset} ({why})"
    if source:
        head += f" over preset {preset}"
    notes.insert(0, head + (f"; overridden by {', '.join(overridden)}." if overridden else "."))
    for name in SETTINGS:
        origins[name] = (
            "typed" if name in typed else "env entry" if name in entry else
            "preset" if name in PRESET_VALUES[preset][algo] else "default"
        )  # fmt: skip
    origins["preset"] = "typed" if "preset" in typed else "auto"
    return {**family, **entry, **typed, "preset": preset}
