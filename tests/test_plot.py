"""The plot command: finding runs, reading progress.csv / event files, mean and spread over seeds."""

from __future__ import annotations

import csv
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from a2c_ppo import plot, run_curves  # noqa: E402
from a2c_ppo.errors import ConfigError  # noqa: E402

RETURN = "charts/episodic_return"
COLUMNS = ["update", "env_steps", "time", "charts/SPS", RETURN, "eval/mean_return"]


def write_run(folder, name: str, rows: list[dict], columns: list[str] = COLUMNS) -> str:
    """A run folder holding a progress.csv with ``rows`` (missing cells stay empty, as the logger writes)."""
    run_dir = os.path.join(folder, name)
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "progress.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return run_dir


def returns(steps: list[int], values: list[float]) -> list[dict]:
    return [{"update": i + 1, "env_steps": s, "time": i, RETURN: v} for i, (s, v) in enumerate(zip(steps, values))]


# Two seeds on different step grids. Hand computation on the common grid {100, 200, 250, 300}:
# seed 1 interpolated: 0, 10, 15, 20; seed 2 (10 at 100 and at 250): 10, 10, 10, 40
# mean: 5, 10, 12.5, 30; population std: 5, 0, 2.5, 10.
SEED1 = ([100, 200, 300], [0.0, 10.0, 20.0])
SEED2 = ([100, 250, 300], [10.0, 10.0, 40.0])


@pytest.fixture
def two_seeds(tmp_path):
    write_run(tmp_path, "CartPole-v1__ppo__seed1__20260101-000000", returns(*SEED1))
    write_run(tmp_path, "CartPole-v1__ppo__seed2__20260101-000100", returns(*SEED2))
    return tmp_path


def test_mean_and_std_over_two_seeds_by_hand(two_seeds):
    curves = plot.load_curves([str(two_seeds)], RETURN)
    assert [(c.env, c.label, c.seed) for c in curves] == [("CartPole-v1", "ppo", "1"), ("CartPole-v1", "ppo", "2")]
    band = plot.aggregate(curves)
    np.testing.assert_allclose(band.steps, [100, 200, 250, 300])
    np.testing.assert_allclose(band.mean, [5, 10, 12.5, 30])
    np.testing.assert_allclose(band.high - band.mean, [5, 0, 2.5, 10])
    np.testing.assert_allclose(band.mean - band.low, [5, 0, 2.5, 10])
    assert band.num_runs == 2


def test_bootstrap_interval_of_two_seeds_spans_them(two_seeds):
    # Resampled means of two runs are a, (a + b) / 2 or b: the 95% interval is [min, max].
    band = plot.aggregate(plot.load_curves([str(two_seeds)], RETURN), ci=True)
    np.testing.assert_allclose(band.low, [0, 10, 10, 20])
    np.testing.assert_allclose(band.high, [10, 10, 15, 40])


def test_smoothing_is_a_trailing_mean():
    np.testing.assert_allclose(plot.smooth(np.array([0.0, 10.0, 20.0, 50.0]), 2), [0, 5, 15, 35])
    np.testing.assert_allclose(plot.smooth(np.array([0.0, 10.0, 20.0]), 3), [0, 5, 10])


def test_figure_has_one_panel_per_env_and_one_line_per_label(two_seeds, tmp_path):
    write_run(tmp_path, "HalfCheetah-v5__ppo__seed1__20260101-000000", returns([2048, 4096], [-5.0, 3.0]))
    write_run(tmp_path, "HalfCheetah-v5__a2c__seed1__20260101-000000", returns([2048, 4096], [-9.0, -1.0]))
    out = tmp_path / "curves.png"
    fig = plot.plot([str(tmp_path)], str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_title() for ax in fig.axes] == ["CartPole-v1", "HalfCheetah-v5"]
    cartpole, cheetah = fig.axes
    assert len(cartpole.lines) == 1 and len(cartpole.collections) == 1  # mean line + shaded band
    assert len(cheetah.lines) == 2 and len(cheetah.collections) == 2
    assert [t.get_text() for t in cheetah.get_legend().get_texts()] == ["a2c (1 run)", "ppo (1 run)"]
    np.testing.assert_allclose(cartpole.lines[0].get_ydata(), [5, 10, 12.5, 30])
    band_y = cartpole.collections[0].get_paths()[0].vertices[:, 1]
    assert band_y.min() == pytest.approx(0.0) and band_y.max() == pytest.approx(40.0)


def test_runs_from_several_folders_are_labelled_by_folder(tmp_path):
    for folder, value in (("baseline", 1.0), ("lr1e-3", 2.0)):
        write_run(tmp_path / folder, "CartPole-v1__ppo__seed1__20260101-000000", returns([10, 20], [value, value]))
    curves = plot.load_curves([str(tmp_path / "baseline"), str(tmp_path / "lr1e-3")], RETURN)
    assert sorted(c.label for c in curves) == ["baseline/ppo", "lr1e-3/ppo"]
    fig = plot.draw(curves, RETURN)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2


def test_seed_folders_are_grouped_under_the_folder_above_them(tmp_path):
    for folder, seed in (("4traj", 1), ("4traj", 2), ("16traj", 1)):
        name = f"Hopper-v5__ppo__seed{seed}__20260101-000000"
        write_run(tmp_path / folder / f"seed{seed}", name, returns([10, 20], [seed, seed]))
    curves = plot.load_curves([str(tmp_path)], RETURN)
    assert sorted((c.label, c.seed) for c in curves) == [("16traj/ppo", "1"), ("4traj/ppo", "1"), ("4traj/ppo", "2")]
    fig = plot.draw(curves, RETURN)
    assert len(fig.axes[0].lines) == 2, "one line per setting, the seeds pooled"


def test_csv_columns_are_read_by_header_and_resumed_steps_keep_the_last_value(tmp_path):
    columns = ["update", "env_steps", "time", "losses/kl_estimate", RETURN]  # a new metric in the middle
    rows = [
        {"update": 1, "env_steps": 100, RETURN: 1.0, "losses/kl_estimate": 0.5},
        {"update": 2, "env_steps": 200, RETURN: 2.0},
        {"update": 2, "env_steps": 200, RETURN: 3.0},  # redone after a resume
        {"update": 2, "env_steps": 200},  # an evaluation row: no return
    ]
    run_dir = write_run(tmp_path, "CartPole-v1__ppo__seed1__20260101-000000", rows, columns)
    steps, values = run_curves.read_metric(run_dir, RETURN)
    np.testing.assert_allclose(steps, [100, 200])
    np.testing.assert_allclose(values, [1.0, 3.0])
    steps, values = run_curves.read_metric(run_dir, "losses/kl_estimate")
    np.testing.assert_allclose(values, [0.5])


def test_event_files_are_read_when_there_is_no_csv(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run_dir = tmp_path / "Pendulum-v1__a2c__seed3__20260101-000000"
    writer = SummaryWriter(str(run_dir))
    for step, value in ((64, -1500.0), (128, -1200.0)):
        writer.add_scalar(RETURN, value, step)
    writer.close()
    (curve,) = plot.load_curves([str(tmp_path)], RETURN)
    assert (curve.env, curve.label, curve.seed) == ("Pendulum-v1", "a2c", "3")
    np.testing.assert_allclose(curve.steps, [64, 128])
    np.testing.assert_allclose(curve.values, [-1500, -1200])


def test_eval_flag_draws_the_evaluation_metric(tmp_path):
    rows = returns([100, 200], [1.0, 2.0]) + [{"update": 2, "env_steps": 200, "eval/mean_return": 7.0}]
    write_run(tmp_path, "CartPole-v1__ppo__seed1__20260101-000000", rows)
    out = tmp_path / "eval.png"
    assert plot.main([str(tmp_path), "--out", str(out), "--eval"]) == 0
    assert out.exists()


def test_bad_inputs_raise_config_errors(two_seeds, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no runs found"):
        plot.load_curves([str(tmp_path / "empty")], RETURN)
    with pytest.raises(ConfigError, match="not a folder"):
        plot.load_curves([str(tmp_path / "missing")], RETURN)
    with pytest.raises(ConfigError, match="logged the metric 'losses/nope'"):
        plot.load_curves([str(two_seeds)], "losses/nope")
    with pytest.raises(ConfigError, match="--out"):
        plot.plot([str(two_seeds)], str(tmp_path / "no" / "such" / "dir.png"))
    with pytest.raises(ConfigError, match=r"ending in \.png, \.svg, \.pdf"):
        plot.plot([str(two_seeds)], str(tmp_path / "curve.txt"))
    with pytest.raises(ConfigError, match="is a folder"):
        plot.plot([str(two_seeds)], str(tmp_path) + os.sep)
    write_run(tmp_path / "cut", "CartPole-v1__ppo__seed1__20260101-000000", returns([100, 200], [1.0, 2.0]))
    (csv_file,) = glob.glob(str(tmp_path / "cut" / "*" / "progress.csv"))
    with open(csv_file, "a") as f:
        f.write("3,abc,5.0,100,9.0,\n")
    with pytest.raises(ConfigError, match="progress.csv line 4 cannot be read as numbers"):
        plot.load_curves([str(tmp_path / "cut")], RETURN)


def test_missing_matplotlib_says_how_to_install_it(two_seeds, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[plot\]'"):
        plot.plot([str(two_seeds)], str(two_seeds / "x.png"))


def test_command_line_errors_exit_2_without_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "a2c_ppo.plot", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "no runs found" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one paragraph, not the usage block
    with pytest.raises(SystemExit) as stop:
        plot.main([str(tmp_path), "--eval", "--metric", "charts/SPS"])
    assert stop.value.code == 2


def test_a_mean_cut_short_by_a_shorter_run_is_said(tmp_path, capsys):
    write_run(tmp_path, "CartPole-v1__ppo__seed1__20260101-000000", returns([100, 200, 300], [0.0, 1.0, 2.0]))
    write_run(tmp_path, "CartPole-v1__ppo__seed2__20260101-000100", returns([100, 200], [0.0, 1.0]))
    plot.plot([str(tmp_path)], str(tmp_path / "curve.png"))
    assert "CartPole-v1 / ppo: the mean of 2 runs ends at 200 env steps, where the shortest ends (the longest " \
           "goes on to 300); plot a run" in capsys.readouterr().out  # fmt: skip
    assert plot.cut_notes(plot.load_curves([str(tmp_path / "CartPole-v1__ppo__seed1__20260101-000000")], RETURN)) == []
    write_run(tmp_path, "CartPole-v1__ppo__seed3__20260101-000200", returns([200, 300], [1.0, 2.0]))  # starts late
    (note,) = plot.cut_notes(plot.load_curves([str(tmp_path)], RETURN))
    assert note.startswith("CartPole-v1 / ppo: the mean of 3 runs starts at 200 env steps, where the latest starts "
                           "(the earliest at 100) and ends at 200 env steps")  # fmt: skip
    # a first episode that ends a little later (a few updates of a long run) is no cut
    steps = list(range(100, 10_001, 100))
    write_run(tmp_path / "long", "CartPole-v1__ppo__seed1__20260101-000000", returns(steps, [1.0] * len(steps)))
    write_run(tmp_path / "long", "CartPole-v1__ppo__seed2__20260101-000100", returns(steps[3:], [1.0] * 97))
    assert plot.cut_notes(plot.load_curves([str(tmp_path / "long")], RETURN)) == []


def test_a_run_resumed_into_a_new_folder_is_joined_to_the_run_it_continues(two_seeds, capsys):
    """Seed 1 resumed from its update 2 (step 200) into a new folder: its log starts at update 3
    and replaces the original's points from there; the mean is still over two seeds."""
    resumed = [
        {"update": 3 + i, "env_steps": s, "time": i, RETURN: v} for i, (s, v) in enumerate([(300, 50.0), (400, 60.0)])
    ]
    write_run(two_seeds, "CartPole-v1__ppo__seed1__20260101-000200", resumed)
    curves = plot.load_curves([str(two_seeds)], RETURN)
    assert [c.seed for c in curves] == ["1", "2"]
    np.testing.assert_allclose(curves[0].steps, [100, 200, 300, 400])
    np.testing.assert_allclose(curves[0].values, [0.0, 10.0, 50.0, 60.0])  # the original's 20 at 300 left out
    assert "seed 1: a resumed run (logged from update 3) joined to the run it continues, as one seed (1 later" in (
        capsys.readouterr().err
    )
    alone = plot.load_curves([os.path.join(two_seeds, "CartPole-v1__ppo__seed1__20260101-000200")], RETURN)
    np.testing.assert_allclose(alone[0].steps, [300, 400])  # without the run it continues: as it is


def test_new_runs_of_one_seed_logged_every_ten_updates_are_not_joined_as_resumed(tmp_path, capsys):
    """The default --log-interval 10: a new run's log starts at update 10 too. Its config text,
    which every run writes to TensorBoard at the env steps it starts from, says it is new (step 0)
    where a resumed run's says where it resumed; two new runs of seed 1 stay two runs."""
    from torch.utils.tensorboard import SummaryWriter

    legs = {"000000": (0, [1000, 2000]), "000100": (0, [1000, 2000, 3000]), "000200": (2000, [3000, 4000])}
    for time, (start, steps) in legs.items():
        rows = [{"update": 10 * (i + 1), "env_steps": s, "time": i, RETURN: float(s)} for i, s in enumerate(steps)]
        run_dir = write_run(tmp_path, f"CartPole-v1__ppo__seed1__20260101-{time}", rows)
        with SummaryWriter(run_dir) as writer:
            writer.add_text("hyperparameters", "|flag|value|", global_step=start)
    curves = plot.load_curves([str(tmp_path)], RETURN)
    assert [list(c.steps) for c in curves] == [[1000, 2000], [1000, 2000, 3000, 4000]]
    assert capsys.readouterr().err.count("joined to the run it continues") == 1


@pytest.mark.parametrize(("stop", "code", "said"), [("ctrl-c", 130, "Ctrl-C"), ("sigterm", 143, "SIGTERM")])
def test_a_stop_while_the_picture_is_written_keeps_the_one_there_was(two_seeds, monkeypatch, capsys, stop, code, said):
    """Ctrl-C or a scheduler's SIGTERM: one line and exit 130 / 143, not a traceback (SIGTERM
    killed the plot without a word before); the picture is written whole or not at all."""
    import signal

    from matplotlib.figure import Figure

    from tests.helpers import sigterm_caught_by_the_test

    out = two_seeds / "curve.png"
    out.write_bytes(b"the picture of an earlier plot")

    def half_written(self, target, **kwargs):
        (target.write if hasattr(target, "write") else open(target, "wb").write)(b"\x89PNG half")
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Figure, "savefig", half_written)
    with sigterm_caught_by_the_test():
        assert plot.main([str(two_seeds), "--out", str(out)]) == code
    assert capsys.readouterr().err == f"Stopped by {said}.\n"
    assert out.read_bytes() == b"the picture of an earlier plot"
    assert sorted(os.listdir(two_seeds)) == sorted(["curve.png", *(p.name for p in two_seeds.glob("CartPole*"))])
