"""Weights & Biases tracking (--track): offline, the run folder's W&B files hold the same scalars
at the same steps as progress.csv, the videos and the checkpoints; without wandb, --track is
refused before anything starts."""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import struct
import sys
from collections import defaultdict

import pytest

from a2c_ppo.arguments import resolve
from a2c_ppo.cli import train_main
from a2c_ppo.errors import ConfigError
from a2c_ppo.session import launch, run
from a2c_ppo.tracking import Tracker, artifact_name
from tests.helpers import local_run_flags

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log: 32 KiB blocks of records
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: str) -> list:
    """The protobuf records of an offline run's ``.wandb`` file (W&B's own schema,
    ``wandb.proto.wandb_internal_pb2``; newer wandb has no Python reader of the file)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    records, pending, pos = [], b"", 7  # the header: ident, magic, version
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a record header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
        elif kind not in (FIRST, MIDDLE):  # zero padding
            pending = b""
    return records


def flatten(key: str, value, into: dict) -> None:
    """``{"a": {"b": 1}}`` as ``{"a/b": 1}`` (W&B versions write a video's fields either way)."""
    if isinstance(value, dict):
        for sub, inner in value.items():
            flatten(f"{key}/{sub}", inner, into)
    else:
        into[key] = value


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))
    yield
    wandb.teardown()  # W&B's service process ends with the test


def test_an_offline_run_holds_the_scalars_videos_and_checkpoints(tmp_path, offline_wandb):
    pytest.importorskip("imageio_ffmpeg")
    flags = ["--num-processes", "2", "--num-steps", "16", "--num-env-steps", "128", "--log-interval", "1",
             "--eval-interval", "2", "--eval-episodes", "1", "--track", "--wandb-project", "proj",
             "--wandb-group", "seeds", "--wandb-tags", "a, b", "--capture-video", "--video-interval", "4",
             *local_run_flags(tmp_path)]  # fmt: skip
    request = resolve(flags)
    run(request.config, notes=request.notes)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    (log,) = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
    records = wandb_records(log)
    (header,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert header.display_name == os.path.basename(run_dir) and header.project == "proj"
    assert header.run_group == "seeds" and list(header.tags) == ["a", "b"]
    config = {item.key: json.loads(item.value_json) for item in header.config.update}
    assert config["env_name"] == "CartPole-v1" and config["run_dir"] == run_dir

    history: dict[int, dict] = defaultdict(dict)
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:  # a key with "/" may come as its parts (nested_key)
                flatten(
                    item.key or "/".join(item.nested_key), json.loads(item.value_json), history[record.history.step.num]
                )
    with open(os.path.join(run_dir, "progress.csv")) as f:
        for row in csv.DictReader(f):  # every scalar of every row, at its env step
            logged = history[int(row["env_steps"])]
            for key, value in row.items():
                if value and key not in ("update", "env_steps", "time"):
                    assert logged[key] == pytest.approx(float(value)), key
    assert history[4 * 32]["videos/episode/_type"] == "video-file"  # the video's fields, flattened
    assert glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "files", "media", "videos", "**", "*.mp4"),
                     recursive=True)  # fmt: skip

    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.type == "model" and artifact.name == artifact_name(os.path.basename(run_dir))
    assert sorted(entry.path for entry in artifact.manifest.contents) == ["best.pt", "checkpoint.pt"]
    (end,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert end.exit_code == 0


def test_track_without_wandb_is_refused_before_anything_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ConfigError, match=r'--track needs wandb.*pip install -e "\.\[wandb\]"'):
        resolve(["--track", *local_run_flags(tmp_path)])
    with pytest.raises(SystemExit) as stop:  # main.py's bad-input exit
        train_main(["--track", *local_run_flags(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert ".[wandb]" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "runs")


def test_a_wandb_that_cannot_start_is_refused_before_anything_starts(tmp_path, monkeypatch, capsys):
    wandb = pytest.importorskip("wandb")

    def not_logged_in(**kwargs):
        raise wandb.errors.UsageError("No API key configured.")

    monkeypatch.setattr(wandb, "init", not_logged_in)
    monkeypatch.setattr("a2c_ppo.trainer.Trainer.__init__", lambda *a, **k: pytest.fail("the Trainer started"))
    with pytest.raises(SystemExit) as stop:
        train_main(["--track", *local_run_flags(tmp_path)])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert "No API key configured" in err and "wandb login" in err and "Traceback" not in err
    assert "Training" not in out  # not even the first line: nothing ran
    assert not os.path.exists(tmp_path / "runs")  # the run folder, claimed, is removed again, and --log-dir


def test_a_run_that_fails_after_wandb_started_leaves_no_run_folder(tmp_path, offline_wandb, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the envs could not start")

    monkeypatch.setattr("a2c_ppo.trainer.Trainer.__init__", fail)
    request = resolve(["--track", *local_run_flags(tmp_path)])
    with pytest.raises(RuntimeError, match="could not start"):
        run(request.config, notes=request.notes)
    assert not os.path.exists(tmp_path / "runs")  # W&B's folder went with it, and --log-dir


class FakeRun:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log(self, values, step):
        self.calls.append(("log", values, step))

    def finish(self, exit_code=None):
        self.calls.append(("finish", exit_code))


def test_a_run_that_does_not_finish_is_marked_failed():
    fake = FakeRun()
    tracker = Tracker(fake)
    tracker.scalars(64, {"charts/SPS": 1.0})
    tracker.close()
    tracker.close()
    assert fake.calls == [("log", {"charts/SPS": 1.0}, 64), ("finish", 1)]


def test_a_resume_continues_the_wandb_run_its_id_names(tmp_path, offline_wandb, capsys):
    """The console names the tracked run's id; a resume typing it writes into that W&B run (the
    offline folder and the run record carry the id) where one without it starts a new run."""
    flags = ["--num-processes", "2", "--num-steps", "16", "--log-interval", "1", "--track", *local_run_flags(tmp_path)]
    first = run(resolve([*flags, "--num-env-steps", "64"]).config)
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("W&B run ")]
    run_id = line.split()[2]
    assert line.endswith(f"a resume continues it with --track --wandb-id {run_id}.")
    pattern = os.path.join(os.path.dirname(first.checkpoint), "wandb", "offline-run-*")
    before = set(glob.glob(pattern))
    request = resolve([*flags, "--num-env-steps", "128", "--resume", first.checkpoint, "--wandb-id", run_id])
    launch(request)
    (resumed,) = set(glob.glob(pattern)) - before
    # W&B names an offline leg by its time and the run id (and "-1" for a second leg in the same second)
    assert re.search(f"-{run_id}(-1)?$", resumed) and re.search(f"-{run_id}$", before.pop())
    (log,) = glob.glob(os.path.join(resumed, "run-*.wandb"))
    (header,) = [r.run for r in wandb_records(log) if r.WhichOneof("record_type") == "run"]
    assert header.run_id == run_id
    steps = {r.history.step.num for r in wandb_records(log) if r.WhichOneof("record_type") == "history"}
    assert min(steps) > 64  # the resumed leg's scalars only, after the first leg's


def test_a_wandb_id_that_is_no_id_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--wandb-id 'a/b' is not a W&B run id: give 1 to 64 letters"):
        resolve(["--track", "--wandb-id", "a/b", *local_run_flags(tmp_path)])
