"""RunConfig: each setting declared once; plain-data round trip; older configs load, unknown
settings and bad values are refused clearly; the package has no import cycles."""

from __future__ import annotations

import ast
import json
import pathlib

import pytest
import torch

from a2c_ppo.arguments import LAUNCH_OPTIONS, build_parser, parse_args, resolve
from a2c_ppo.config import BY_PRESET, CONFIG_VERSION, SETTINGS, RunConfig, check_value
from a2c_ppo.errors import ConfigError
from a2c_ppo.presets import PRESET_KEYS, PRESET_VALUES, preset_values

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "a2c_ppo"


def test_round_trip_through_json():
    config = parse_args(["--env-name", "Pendulum-v1", "--seed", "7"])
    data = json.loads(json.dumps(config.to_dict()))
    assert data["config_version"] == CONFIG_VERSION
    assert RunConfig.from_dict(data) == config


def test_frozen():
    config = parse_args([])
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]
    assert config.replace(lr=1.0).lr == 1.0 and config.lr == 1e-3


@pytest.mark.parametrize(
    "change, phrase",
    [({"config_version": 1}, "version 1"), ({"unknown_flag": 3}, "does not know (unknown_flag)")],
)
def test_other_versions_and_unknown_settings_are_refused_clearly(change, phrase):
    data = {**parse_args([]).to_dict(), **change}
    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        RunConfig.from_dict(data)


def test_a_config_that_predates_a_setting_loads_with_its_default_and_says_so():
    data = parse_args([]).to_dict()
    del data["fast_path"], data["target_kl"]
    notes: list[str] = []
    config = RunConfig.from_dict(data, notes)
    assert config.fast_path == "auto" and config.target_kl is None
    assert "--fast-path auto" in notes[0] and "--target-kl none" in notes[0]


@pytest.mark.parametrize(
    "name, value, phrase",
    [("algo", "../../x", "--algo must be one of"), ("lr", -1.0, "--lr must be in"),
     ("seed", 2**40, "--seed"),
     ("gamma", float("nan"), "finite"), ("num_steps", "32", "must be an integer"), ("norm_adv", 1, "on or off")],
)  # fmt: skip
def test_every_value_read_from_a_checkpoint_is_checked_like_the_flag(name, value, phrase):
    data = {**parse_args([]).to_dict(), name: value}
    with pytest.raises(ConfigError, match=phrase):
        RunConfig.from_dict(data)


def test_each_declared_setting_has_exactly_one_flag_and_its_help():
    parser = build_parser()
    flags = {action.dest: action for action in parser._actions}
    for name, declared in SETTINGS.items():
        if declared.spec.flag is None:
            assert name not in flags
            continue
        assert flags[name].help and declared.spec.help in flags[name].help
        if declared.spec.choices:
            assert tuple(flags[name].choices) == declared.spec.choices
    assert set(flags) - set(SETTINGS) == {"help", *LAUNCH_OPTIONS}


def test_a_setting_typed_without_the_one_it_needs_is_refused_and_with_it_is_kept(capsys):
    needing = {name: d.spec.needs for name, d in SETTINGS.items() if d.spec.needs is not None}
    assert {"recurrent_type", "gail_experts", "sde_sample_freq", "video_interval"} <= set(needing)
    for needs in needing.values():
        for alternative in needs.split("|"):  # "name", or "name=value"; "|" joins alternatives
            needed, _, value = alternative.partition("=")
            assert needed in SETTINGS and SETTINGS[needed].base_type in (bool, int, str)  # a switch, count or name
            assert not value or value in (SETTINGS[needed].spec.choices or ())
    pendulum = ["--env-name", "Pendulum-v1", "--preset", "mujoco"]
    with pytest.raises(SystemExit):
        parse_args(["--sde-sample-freq", "4", *pendulum])
    assert "--sde-sample-freq only applies with --use-sde, and this run has --use-sde off" in capsys.readouterr().err
    assert parse_args(["--sde-sample-freq", "4", "--use-sde", *pendulum]).sde_sample_freq == 4
    assert isinstance(parse_args(["--no-use-gae"]).gae_lambda, float)  # a preset's unused value stays a number
    assert parse_args(["--no-use-sde", *pendulum]).sde_sample_freq == -1  # an entry's unused value: the default
    with pytest.raises(SystemExit):  # the default typed does nothing either: refused as well
        parse_args(["--sde-sample-freq", "-1"])
    assert "--sde-sample-freq only applies with --use-sde" in capsys.readouterr().err


def test_a_setting_that_needs_one_of_two_is_kept_with_either_and_refused_with_neither(capsys):
    kl = ["--ppo-variant", "kl-penalty"]
    assert parse_args([*kl, "--clip-param", "0.3"]).clip_param == 0.3  # the value loss's clip
    assert parse_args(["--no-clip-value-loss", "--clip-param", "0.3"]).clip_param == 0.3  # the ratio's clip
    with pytest.raises(SystemExit):
        parse_args([*kl, "--no-clip-value-loss", "--clip-param", "0.3"])
    assert (
        "--clip-param only applies with --ppo-variant clip or --clip-value-loss, and this run has --ppo-variant "
        "kl-penalty, --clip-value-loss off. Drop --clip-param" in capsys.readouterr().err
    )


def test_every_preset_sets_the_by_preset_settings_and_only_declared_preset_ones():
    for preset, table in PRESET_VALUES.items():
        for algo, column in table.items():
            assert set(column) <= set(PRESET_KEYS), (preset, algo)
            assert BY_PRESET not in preset_values(preset, algo).values(), (preset, algo)


def test_check_value_follows_the_declared_ranges():
    check_value("gamma", 1.0)
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"--gamma must be in \(0, 1\]"):
            check_value("gamma", bad)
    with pytest.raises(ConfigError, match="positive integer"):
        check_value("num_processes", 0)
    # torch starts every CPU thread asked for: --num-threads 100000 was a segmentation fault
    check_value("num_threads", 1024)
    with pytest.raises(ConfigError, match="--num-threads must be between 1 and 1024"):
        check_value("num_threads", 100_000)
    with pytest.raises(ConfigError, match="--frame-stack must be between 1 and 1024"):
        check_value("frame_stack", 10_000_000)  # building the env's stacked bounds alone took minutes


def _imports(path: pathlib.Path, module: str, modules: set[str]) -> set[str]:
    """The package modules ``module`` imports, at module level or inside functions (not under
    ``if TYPE_CHECKING:``, which only type checkers read)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for block in [node for node in ast.walk(tree) if isinstance(node, ast.If)]:
        test = block.test
        if isinstance(test, ast.Name) and test.id.lstrip("_") == "TYPE_CHECKING":
            block.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
    return found & modules


def test_the_package_has_no_import_cycles():
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {module: _imports(path, module, set(paths)) for module, path in paths.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                cycle = trail[trail.index(other) :] + [other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, [*trail, other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_ortho_init_gives_pytorchs_default_initialisation():
    from a2c_ppo.builders import policy_for
    from a2c_ppo.envs import check_env_id

    spaces = check_env_id("Pendulum-v1", "auto", "auto")
    argv = ["--env-name", "Pendulum-v1", "--preset", "mujoco", "--log-std-init", "-2"]  # the preset: no gSDE
    ortho = policy_for(resolve(argv).config, *spaces)
    default = policy_for(resolve([*argv, "--no-ortho-init"]).config, *spaces)
    first = default.base.actor[0]  # PyTorch's Linear init: zero-mean uniform, non-zero bias

    def orthogonal_columns(weight: torch.Tensor) -> bool:  # (64, 3): W^T W = gain^2 I
        gram = weight.T @ weight
        return torch.allclose(gram, gram[0, 0] * torch.eye(len(gram)), atol=1e-5)

    assert orthogonal_columns(ortho.base.actor[0].weight) and not orthogonal_columns(first.weight)
    assert bool(first.bias.abs().sum() > 0) and bool(ortho.base.actor[0].bias.abs().sum() == 0)
    assert float(default.dist.log_std.bias[0]) == -2.0  # the log-std keeps its initial value


def test_train_takes_true_and_false_for_an_auto_on_off_setting_and_names_the_choices_otherwise(monkeypatch):
    """``action_masks=True`` reads as ``--action-masks on`` (a boolean is what a Python caller
    writes for a switch); a value of another type is refused naming auto, on and off."""
    from a2c_ppo import api

    monkeypatch.setattr(api, "launch", lambda request, **_: request)  # the resolved request, nothing trained
    request = api.train("tests.envs_for_spaces:MaskedChoiceEnv", action_masks=True, overlap=False)
    assert request.config.action_masks == "on" and request.config.overlap == "off"
    assert api.train("tests.envs_for_spaces:MaskedChoiceEnv", action_masks=False).config.action_masks == "off"
    with pytest.raises(ConfigError, match="--action-masks on: 'CartPole-v1' gives no action mask"):
        api.train("CartPole-v1", action_masks=True)
    for bad in (1, "yes"):
        with pytest.raises(ConfigError, match=f"--action-masks must be one of auto, on, off, got {bad!r}"):
            api.train("CartPole-v1", action_masks=bad)
    with pytest.raises(ConfigError, match="--algo must be one of ppo, a2c, acktr, got True"):
        api.train("CartPole-v1", algo=True)
