"""main.py's command line, generated from the settings' declarations (``config.py``).

Parsing only: every flag defaults to ``None`` so that what the user typed is known; the
typed values go to ``resolve.resolve_request``, which fills in the preset and the defaults
and validates. Bad input raises ConfigError, which ``parse_command_line`` turns into one
paragraph on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from a2c_ppo.config import ALGOS, BY_PRESET, SETTINGS, Declared, RunConfig
from a2c_ppo.console import fail, say_once_per_node
from a2c_ppo.declaration import flag_name, needs_met, needs_phrase, needs_state, show
from a2c_ppo.errors import EXIT_BAD_INPUT, ConfigError
from a2c_ppo.presets import presets_table
from a2c_ppo.resolve import LaunchRequest, resolve_request


class ArgumentParser(argparse.ArgumentParser):
    """Errors as one short paragraph (no usage block), exit status 2. ``node_wide``: a program
    torchrun launches, whose ranks of a node all parse the same command line: its first says it."""

    node_wide = False

    def error(self, message: str) -> NoReturn:
        text = f"{self.prog}: error: {message}\nRun '{self.prog} --help' for every flag and its default.\n"
        if self.node_wide:
            say_once_per_node(text)
            self.exit(EXIT_BAD_INPUT)
        self.exit(EXIT_BAD_INPUT, text)


def _help(declared: Declared) -> str:
    """The flag's help, its default and where it applies (the algorithms, the flag it needs)."""
    spec, default = declared.spec, declared.default
    where = []
    if spec.algos != ALGOS:
        where.append(f"--algo {'/'.join(spec.algos)}")
    if spec.needs is not None:
        where.append(f"with {needs_phrase(spec.needs)}")
    if default is BY_PRESET or spec.preset:
        shown = "by preset, see below"
    elif default is False:
        return f"{spec.help} ({'; '.join(where)})" if where else spec.help
    else:
        shown = (spec.auto or "none") if default is None else repr(default) if default == "" else show(default)
    return f"{spec.help} (default: {'; '.join([shown, *where])})"


def _add(group: argparse._ArgumentGroup, declared: Declared) -> None:
    spec, kind = declared.spec, declared.base_type
    flag, help_text = flag_name(declared.name), _help(declared)
    if spec.flag == "on-off":
        group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
    elif spec.flag == "switch":
        group.add_argument(flag, action="store_true", default=None, help=help_text)
    elif spec.choices is not None:
        group.add_argument(flag, choices=spec.choices, help=help_text)
    else:
        group.add_argument(flag, type=kind if kind in (int, float) else str, help=help_text)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="main.py",
        description="Train an on-policy agent (PPO, A2C, ACKTR) on a gymnasium environment.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Values of the settings marked 'by preset' (a typed flag always wins):\n\n" + presets_table(),
    )
    p.node_wide = True
    groups: dict[str, argparse._ArgumentGroup] = {}
    for declared in SETTINGS.values():
        if declared.spec.flag is None:
            continue
        group = groups.get(declared.spec.group) or groups.setdefault(
            declared.spec.group, p.add_argument_group(declared.spec.group)
        )
        _add(group, declared)
    group = groups[SETTINGS["save_dir"].spec.group]
    group.add_argument("--resume", metavar="PATH", help="continue a run from this checkpoint (typed flags win)")
    group.add_argument("--trust-checkpoint", action="store_true", help=f"with --resume: {TRUST_HELP}")
    group.add_argument(
        "--show-settings",
        action="store_true",
        help="print every setting this command line would train with, and where each came from; train nothing",
    )
    return p


#: Launch options of main.py that are not settings of the run.
LAUNCH_OPTIONS = ("resume", "trust_checkpoint", "show_settings")
TRUST_HELP = (
    "import the code the checkpoint names (an env or a --policy-base network given as module:attribute) and "
    "pass the env the text arguments it gives (--env-kwargs); without it such a checkpoint is refused unless you "
    "type that reference or those arguments yourself"
)

POLICY_BASE_HELP = (
    "the network class the checkpoint was trained with (default: the checkpoint's): to find it under another "
    "module name, or to name it yourself instead of --trust-checkpoint"
)


def parse_typed(argv: Sequence[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings the user typed (name -> value) and the launch options (``LAUNCH_OPTIONS``)."""
    values = vars(build_parser().parse_args(argv))
    typed = {name: value for name, value in values.items() if value is not None and name not in LAUNCH_OPTIONS}
    return typed, {name: values[name] for name in LAUNCH_OPTIONS}


def resolve(argv: Sequence[str] | None = None) -> LaunchRequest:
    """Parse and validate ``argv``; raises ConfigError (argparse's own errors exit 2)."""
    typed, options = parse_typed(argv)
    request = resolve_request(typed, options["resume"], options["trust_checkpoint"])
    request.show_settings = options["show_settings"]
    return request


def parse_command_line(argv: Sequence[str] | None = None) -> LaunchRequest:
    """``resolve``, with bad input reported as one paragraph on stderr and exit status 2 (once
    per node under torchrun)."""
    try:
        return resolve(argv)
    except ConfigError as exc:
        fail(str(exc), prog="main.py", node_wide=True)


def parse_args(argv: Sequence[str] | None = None) -> RunConfig:
    """The RunConfig for ``argv`` (exits with status 2 on bad input)."""
    return parse_command_line(argv).config


def _unused_because(name: str, request: LaunchRequest) -> str | None:
    """Why setting ``name`` does nothing in ``request``'s run (its algorithm, a setting it needs
    off, a resumed run's own folder), or None."""
    spec, config = SETTINGS[name].spec, request.config
    if config.algo not in spec.algos:
        return f"--algo {config.algo}"
    if spec.needs is not None and not needs_met(spec.needs, vars(config)):
        return needs_state(spec.needs, vars(config))
    if name == "log_dir" and request.in_place:
        return f"the run goes on in its folder {config.run_dir}"
    return None


def settings_table(request: LaunchRequest) -> str:
    """Every setting of ``request``, its value and where it came from (``--show-settings``)."""
    config, origins = vars(request.config), request.origins
    rows = []
    for name, declared in SETTINGS.items():
        if not declared.spec.flag:
            continue
        origin, auto = origins.get(name, ""), declared.spec.auto if config[name] is None else None
        unused = _unused_because(name, request)
        if unused and "unused" not in origin:
            origin = f"{origin}, unused ({unused})"
        elif auto:  # None where the run decides later (as --help says): "auto", and what decides it
            origin = f"{origin}: {auto}"
        rows.append((flag_name(name), "auto" if auto else show(config[name]), origin))
    width = max(len(row[0]) for row in rows)
    value_width = min(max(len(row[1]) for row in rows), 40)
    lines = [f"{'setting'.ljust(width)}  {'value'.ljust(value_width)}  from"]
    lines += [f"{flag.ljust(width)}  {value.ljust(value_width)}  {origin}" for flag, value, origin in rows]
    return "\n".join([*request.notes, "", *lines])
