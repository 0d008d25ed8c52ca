"""Rough edges: messages that name the project's extras, suggestions that can be built, a quiet
enjoy.py --video-dir, one default per flag in --help, singular counts, plots that land beside
the runs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import gymnasium as gym
import pytest

import a2c_ppo.envs.check as check
from a2c_ppo.arguments import resolve
from a2c_ppo.enjoy import build_parser
from a2c_ppo.errors import ConfigError
from a2c_ppo.session import run
from tests.helpers import ROOT, local_run_flags

GYMNASIUM_BOX2D_HINT = (
    'Box2D is not installed, you can install it by run `pip install swig` followed by `pip install "gymnasium[box2d]"`'
)


@pytest.mark.parametrize(
    "env_id, extra, hint",
    [
        ("LunarLander-v3", "box2d", GYMNASIUM_BOX2D_HINT),
        (
            "HalfCheetah-v5",
            "mujoco",
            "Could not import mujoco. (HINT: you need to install mujoco, run `pip install gymnasium[mujoco]`.)",
        ),
    ],
)
def test_a_missing_simulator_names_the_projects_extra(monkeypatch, env_id, extra, hint):
    def not_installed(*args, **kwargs):
        raise gym.error.DependencyNotInstalled(hint)

    monkeypatch.setattr(check, "make_env", not_installed)
    with pytest.raises(ConfigError) as error:
        check.inspect_env(env_id)
    message = str(error.value)
    assert f'pip install -e ".[{extra}]"' in message
    assert "swig" not in message and "gymnasium[" not in message and "Fix the env" not in message


def test_other_build_failures_keep_their_own_words(monkeypatch):
    def broken(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("pygame is not installed")

    monkeypatch.setattr(check, "make_env", broken)
    with pytest.raises(ConfigError, match="DependencyNotInstalled: pygame is not installed. Fix the env or its id"):
        check.inspect_env("CartPole-v1")


def test_suggestions_skip_ids_that_need_an_absent_package(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_jax(name, *args):
        return None if name == "jax" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_jax)
    close = check.suggestions("CartPol-v1")
    assert close[0] == "CartPole-v1" and not any(c.startswith(("phys2d/", "tabular/")) for c in close)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object())  # as if jax were installed
    assert check.suggestions("CartPol-v1")[0] == "phys2d/CartPole-v1"


def test_enjoy_help_shows_one_default_per_flag():
    text = build_parser().format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    env_help = text[text.index("\n  --env-name") : text.index("\n  --algo")]  # the option's entry
    assert env_help.count("default") == 1
    assert "(default: 10)" in text  # real defaults are still shown


@pytest.mark.skipif(
    importlib.util.find_spec("moviepy") is None or importlib.util.find_spec("pygame") is None, reason="[video]"
)
def test_enjoy_video_dir_is_quiet_and_counts_in_the_singular(tmp_path):
    request = resolve(
        ["--num-processes", "2", "--num-steps", "16", "--num-env-steps", "32", *local_run_flags(tmp_path)]
    )
    checkpoint = run(request.config).checkpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDL_", "DISPLAY", "WAYLAND", "XDG_RUNTIME"))}
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "enjoy.py"), "--checkpoint", checkpoint, "--num-episodes", "1",
         "--video-dir", str(tmp_path / "videos")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Playing 1 episode of CartPole-v1" in proc.stdout and "over 1 episode:" in proc.stdout
    for noise in ("Overwriting existing videos", "XDG_RUNTIME_DIR", "ALSA"):
        assert noise not in proc.stderr, proc.stderr
    assert os.listdir(tmp_path / "videos") == ["rl-video-episode-0.mp4"]


def write_run(folder) -> None:
    run_dir = folder / "CartPole-v1__ppo__seed1__20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "progress.csv").write_text("update,env_steps,time,charts/episodic_return\n1,100,0,5\n2,200,1,9\n")


def test_plot_says_1_run_and_writes_beside_the_runs_by_default(tmp_path):
    pytest.importorskip("matplotlib")
    from a2c_ppo import plot

    write_run(tmp_path / "runs")
    assert plot.main([str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    fig = plot.draw(plot.load_curves([str(tmp_path / "runs")], plot.DEFAULT_METRIC), plot.DEFAULT_METRIC)
    (legend,) = [ax.get_legend() for ax in fig.axes]
    assert [t.get_text() for t in legend.get_texts()] == ["ppo (1 run)"]


@pytest.mark.skipif(shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")), reason="git")
def test_curves_plotted_into_the_repository_root_are_ignored_but_docs_images_are_not():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored("curve.png") and ignored("runs/curve.png")
    assert not ignored("docs/mujoco.png")
