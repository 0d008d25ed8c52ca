"""Per-env entries: each builds a valid config, is named on the console, loses to typed flags and
shows as "env entry" in --show-settings; the zoo translation; README's results table is the code's."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from a2c_ppo.algo.a2c_acktr import a2c_losses
from a2c_ppo.algo.ppo import ppo_losses
from a2c_ppo.arguments import resolve, settings_table
from a2c_ppo.config import SETTINGS
from a2c_ppo.declaration import flag_name, show
from a2c_ppo.env_entries import TIANSHOU_A2C_MUJOCO, ZOO, zoo_a2c, zoo_ppo
from a2c_ppo.errors import ConfigError
from a2c_ppo.presets import ENV_ENTRIES, PRESET_KEYS
from a2c_ppo.storage import Minibatch
from benchmarks import published, results_store, results_table, results_text, runs
from tests.helpers import ROOT

EXTRAS = {"mujoco": ("Ant", "HalfCheetah", "Hopper", "Humanoid", "Inverted", "Pusher", "Reacher", "Swimmer", "Walker"),
          "Box2D": ("LunarLander", "BipedalWalker", "CarRacing")}  # fmt: skip
CASES = [(env_id, algo) for env_id, entry in ENV_ENTRIES.items() for algo in entry.values]


def needs_extra(env_id: str) -> None:
    for module, prefixes in EXTRAS.items():
        if env_id.startswith(prefixes) and importlib.util.find_spec(module) is None:
            pytest.skip(f"{env_id} needs {module}")


@pytest.mark.parametrize("env_id, algo", CASES)
def test_every_entry_builds_a_valid_config_with_its_values(tmp_path, env_id, algo):
    needs_extra(env_id)
    request = resolve(["--env-name", env_id, "--algo", algo, "--log-dir", str(tmp_path)])
    values = ENV_ENTRIES[env_id].values[algo]
    assert {name: getattr(request.config, name) for name in values} == values
    assert request.notes[0].startswith(f"Settings of {env_id} ({ENV_ENTRIES[env_id].sources[algo]}) over preset ")
    assert request.config.batch_size % request.config.num_mini_batch == 0


def test_entries_set_every_preset_setting_of_their_algorithm_and_only_settings_that_apply():
    for env_id, entry in ENV_ENTRIES.items():
        assert set(entry.values) <= {"ppo", "a2c"}, env_id
        for algo, values in entry.values.items():
            for name in values:
                assert algo in SETTINGS[name].spec.algos, (env_id, algo, name)
            # nothing of the published setting is left to the family preset underneath
            assert {name for name in PRESET_KEYS if algo in SETTINGS[name].spec.algos} <= set(values), (env_id, algo)


def test_typed_flags_override_the_entry_and_are_named(tmp_path):
    argv = ["--env-name", "Acrobot-v1", "--lr", "0.002", "--num-env-steps", "8192", "--log-dir", str(tmp_path)]
    request = resolve(argv)
    assert (request.config.lr, request.config.num_env_steps) == (0.002, 8192)
    assert request.config.num_processes == 16  # the entry's, not the classic preset's 8
    assert "overridden by --lr, --num-env-steps." in request.notes[0]
    assert request.notes[0].startswith("Settings of Acrobot-v1 (DLR-RM/rl-baselines3-zoo hyperparams/ppo.yml")


def test_a_typed_preset_skips_the_entry(tmp_path):
    request = resolve(["--env-name", "Acrobot-v1", "--preset", "classic", "--log-dir", str(tmp_path)])
    assert request.config.num_processes == 8 and request.notes[0].startswith("Preset classic (typed)")


def test_show_settings_reports_the_entry_as_the_origin_of_its_values(tmp_path):
    request = resolve(["--env-name", "Pendulum-v1", "--lr", "0.002", "--log-dir", str(tmp_path), "--show-settings"])
    rows = {line.split()[0]: line.split() for line in settings_table(request).splitlines() if line.startswith("--")}
    for name, value in ENV_ENTRIES["Pendulum-v1"].values["ppo"].items():
        if name == "lr":
            assert rows["--lr"][1:] == ["0.002", "typed"]
        else:
            assert rows[flag_name(name)][1:] == [show(value), "env", "entry"], name
    assert rows["--eps"][-1] == "default"


def test_show_settings_marks_the_settings_the_run_does_not_use(tmp_path):
    """Another algorithm's settings, and one whose switch is off, at their defaults too."""
    request = resolve(["--algo", "a2c", "--no-use-linear-lr-decay", "--log-dir", str(tmp_path), "--show-settings"])
    table = settings_table(request)
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith("--")}
    for flag in ("--clip-param", "--num-mini-batch", "--kl-coef"):
        assert rows[flag].endswith("default, unused (--algo a2c)"), rows[flag]
    assert rows["--lr-decay-steps"].endswith("default, unused (--use-linear-lr-decay off)")
    assert rows["--lr"].endswith("preset") and "unused" not in rows["--gamma"]


def test_zoo_keys_translate_to_settings():
    ppo = zoo_ppo(1e5, n_envs=4, n_steps=64, batch_size=32, learning_rate="lin_1e-3", normalize={"norm_obs": False,
                  "norm_reward": True}, use_sde=True, log_std_init=-2, activation_fn="ReLU", net_arch=256)  # fmt: skip
    assert ppo["num_mini_batch"] == 8 and ppo["num_env_steps"] == 100_000 and ppo["ppo_epoch"] == 10
    assert (ppo["lr"], ppo["use_linear_lr_decay"], ppo["norm_obs"], ppo["norm_reward"]) == (1e-3, True, False, True)
    assert (ppo["use_sde"], ppo["sde_sample_freq"], ppo["log_std_init"]) == (True, -1, -2.0)
    assert (ppo["activation"], ppo["hidden_size"], ppo["clip_value_loss"], ppo["norm_adv"]) == (
        "relu",
        256,
        False,
        True,
    )
    a2c = zoo_a2c(1e6, normalize=True, learning_rate=7e-4)  # SB3's A2C defaults fill the rest
    assert (a2c["num_processes"], a2c["num_steps"], a2c["gae_lambda"], a2c["use_linear_lr_decay"]) == (1, 5, 1.0, False)
    assert a2c["norm_obs"] and not a2c["norm_adv"] and "num_mini_batch" not in a2c
    assert zoo_ppo(1e6, n_steps=8, batch_size=256)["num_mini_batch"] == 1  # SB3: the whole rollout
    with pytest.raises(ValueError, match="does not divide"):
        zoo_ppo(1e6, n_steps=100, batch_size=64)
    assert zoo_ppo(1e6, ortho_init=False)["ortho_init"] is False and "ortho_init" not in zoo_ppo(1e6)
    cnn = zoo_ppo(1e6, activation_fn="GELU", net_arch={"pi": [256], "vf": [256]}, frame_stack=2,
                  env_wrapper={"frame_skip": 2, "frame_size": 64, "grayscale": True})  # fmt: skip
    assert (cnn["activation"], cnn["cnn_head_size"], cnn["frame_stack"], cnn["frame_size"]) == ("gelu", 256, 2, 64)
    assert "hidden_size" not in cnn
    with pytest.raises(ValueError, match="without a translation: \\['features_extractor_class'\\]"):
        zoo_ppo(1e6, features_extractor_class="NatureCNN")


def test_entries_cite_their_source_per_algorithm():
    for env_id, entry in ENV_ENTRIES.items():
        assert sorted(entry.sources) == sorted(entry.values), env_id
        for algo, source in entry.sources.items():
            assert ZOO in source or "cleanrl" in source or "tianshou" in source, (env_id, algo)
            # an entry's line names its own algorithm's source, not the other's
            assert ("a2c.yml" in source or "ppo.yml" not in source) if algo == "a2c" else "a2c.yml " not in source
    assert "tianshou" not in ENV_ENTRIES["HalfCheetah-v5"].sources["ppo"]


def test_every_entry_is_in_one_family_of_the_runner_and_published_results_name_entries():
    ids = [env_id for family in results_table.FAMILIES.values() for env_id in family]
    assert sorted(ids) == sorted(ENV_ENTRIES)
    for key in [*published.ZOO, *published.CLEANRL, *published.TIANSHOU]:
        assert key[0] in ENV_ENTRIES and key[1] in ENV_ENTRIES[key[0]].values, key


def test_the_results_runner_evaluates_at_the_end_and_scales_budgets():
    assert results_table.budget("Pendulum-v1", "ppo") == (100_000, 4096)  # 24 updates
    assert results_table.budget("Pendulum-v1", "ppo", 0.1) == (10_000, 4096)
    assert results_table.budget("Pendulum-v1", "ppo", 0.002) == (4096, 4096)  # at least one update
    for updates, evaluations in [(1, 1), (7, 7), (11, 11), (24, 12), (91, 8), (487, 10), (488, 10), (1953, 10)]:
        interval = results_table.eval_interval(updates)  # main.py also evaluates after the last update
        at = sorted({*range(interval, updates + 1, interval), updates})
        assert len(at) == evaluations and (len(at) == 1 or at[-1] - at[-2] >= interval / 2), (updates, at)


def _ours(eval_mean: float, **measures: float) -> dict[str, float]:
    return {"eval_mean": eval_mean, **measures}


def test_the_verdict_says_how_a_result_compares_with_the_zoo():
    zoo = published.Published(100.0, 10.0, 1_000_000, "X-v0")
    assert results_text.verdict(None, zoo) == "not run yet"
    assert results_text.verdict(_ours(100.0), zoo) == "reaches the zoo's mean"
    assert results_text.verdict(_ours(90.0), zoo) == "within the zoo's spread"
    assert results_text.verdict(_ours(89.9), zoo) == "below the zoo's spread"
    assert results_text.verdict(_ours(5.0), None) == "no zoo result"


def test_without_a_zoo_result_the_verdict_takes_another_published_one_at_the_same_budget():
    # Tianshou's InvertedDoublePendulum A2C: 9,257.7 ± 277.4 at 1M steps, the best over training
    # of the seeds' mean test return with sampled actions: set beside our best training return
    idp = ("InvertedDoublePendulum-v5", "a2c", 1_000_000)
    judged = "no zoo result; best training return {} {} Tianshou's {}"
    assert results_text.verdict(_ours(1.0, best_train_mean=9_300.0), None, *idp) == judged.format(
        "9,300", "reaches", "mean"
    )
    assert results_text.verdict(_ours(1.0, best_train_mean=9_000.0), None, *idp) == judged.format(
        "9,000", "within", "spread"
    )
    assert results_text.verdict(_ours(9_300.0, best_train_mean=8_900.0), None, *idp) == judged.format(
        "8,900", "below", "spread"
    )
    # a summary without that measure (SB3's), or NaN there: the final evaluation, named as such
    final = "no zoo result; final evaluation 9,300 reaches Tianshou's mean"
    assert results_text.verdict(_ours(9_300.0), None, *idp) == final
    assert results_text.verdict(_ours(9_300.0, best_train_mean=float("nan")), None, *idp) == final
    # CleanRL's InvertedDoublePendulum PPO is at 8M steps: not a 1M run's yardstick; Tianshou's is
    ppo = ("InvertedDoublePendulum-v5", "ppo")
    assert "Tianshou's mean" in results_text.verdict(_ours(1.0, best_train_mean=9_300.0), None, *ppo, 1_000_000)
    assert results_text.verdict(_ours(9_300.0), None, *ppo, 2_000_000) == "no zoo result"
    # CleanRL publishes its training episodes' return: set beside ours (Pusher PPO: -40.4 ± 7.2)
    pusher = results_text.verdict(_ours(-100.0, train_mean=-39.0), None, "Pusher-v5", "ppo", 1_000_000)
    assert pusher == "no zoo result; training return -39.0 reaches CleanRL's mean"


def test_below_the_zoo_the_verdict_also_takes_another_published_result_at_the_same_budget():
    # HalfCheetah A2C: the zoo's 3,041.2 ± 157.3, Tianshou's 1,829.9 ± 1,068.3, both at 1M steps
    cheetah = ("HalfCheetah-v5", "a2c", 1_000_000)
    zoo = published.ZOO["HalfCheetah-v5", "a2c"]
    assert results_text.verdict(_ours(2_900.0, best_train_mean=100.0), zoo, *cheetah) == "within the zoo's spread"
    below = "below the zoo's spread; best training return {} {} Tianshou's spread"
    assert results_text.verdict(_ours(700.0, best_train_mean=800.0), zoo, *cheetah) == below.format("800.0", "within")
    assert results_text.verdict(_ours(800.0, best_train_mean=700.0), zoo, *cheetah) == below.format("700.0", "below")
    assert results_text.verdict(_ours(700.0), zoo, *cheetah[:2], 2_000_000) == "below the zoo's spread"


def test_the_best_training_return_is_the_peak_of_the_seeds_mean_at_tianshous_test_points(tmp_path):
    """Each seed's last training return logged by each test point (every 100 steps here), the
    mean over seeds, its first peak; not each seed's own best, nor a peak between test points."""
    curves = {  # seed a: 10 at step 100, 50 by 200, a spike of 90 at 250 replaced by 20 by 300
        "a": [(60, 10.0), (140, 50.0), (250, 90.0), (290, 20.0), (300, 20.0)],
        "b": [(100, 30.0), (170, 10.0), (300, 40.0)],
    }  # at the test points 100, 200, 300: a 10, 50, 20; b 30, 10, 40; mean 20, 30, 30 (the last peak: 30 ± 10)
    for name, points in curves.items():
        os.makedirs(tmp_path / name)
        rows = "".join(f"{steps},{value}\n" for steps, value in points)
        (tmp_path / name / "progress.csv").write_text("env_steps,charts/episodic_return\n" + rows)
    mean, std = runs.best_training_return([str(tmp_path / "a"), str(tmp_path / "b")], every=100)
    assert (mean, std) == (30.0, 20.0)
    # every 50 steps: from 100 on, where both seeds have a return (a 90, b 10 at 250: mean 50)
    mean, std = runs.best_training_return([str(tmp_path / "a"), str(tmp_path / "b")], every=50)
    assert (mean, std) == (50.0, 40.0)
    # runs shorter than the interval (smoke tests): read at the end, 300 (a 20, b 40)
    assert runs.best_training_return([str(tmp_path / "a"), str(tmp_path / "b")], every=1000) == (30.0, 10.0)
    # no point where both runs have a return: NaN, not a value from the wrong end of a curve
    os.makedirs(tmp_path / "late")
    (tmp_path / "late" / "progress.csv").write_text("env_steps,charts/episodic_return\n400,70.0\n")
    assert np.isnan(runs.best_training_return([str(tmp_path / "a"), str(tmp_path / "late")], 100)).all()


def test_an_entry_whose_batch_does_not_split_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="--num-mini-batch"):  # Pendulum's 64 minibatches, 4 x 2 samples
        resolve(["--env-name", "Pendulum-v1", "--num-steps", "2", "--log-dir", str(tmp_path)])


def test_the_readme_shows_the_results_table_as_the_code_makes_it():
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = readme.split("<!-- results-table -->")[1].split("<!-- /results-table -->")[0]
    sb3 = results_table.read_json(results_table.DOCS_SB3)
    assert block.strip() == results_table.readme_table(results_table.load_results(), sb3)


@pytest.mark.parametrize("source", ["zoo ppo", "zoo a2c", "tianshou a2c"])
def test_a_published_vf_coef_gives_that_librarys_value_gradient(source):
    """SB3's and Tianshou's value loss is ``vf_coef * mean((V - R)^2)``; ours is ``value_loss_coef
    * 0.5 * mean((V - R)^2)``. The translated entry must give the same loss and gradient, not half."""
    vf_coef = {"zoo ppo": 0.3, "zoo a2c": 0.3, "tianshou a2c": 0.5}[source]
    settings = {"zoo ppo": zoo_ppo(1e6, vf_coef=0.3), "zoo a2c": zoo_a2c(1e6, vf_coef=0.3),
                "tianshou a2c": TIANSHOU_A2C_MUJOCO}[source]  # fmt: skip
    values, returns = torch.tensor([[0.5], [2.0], [-1.0]], requires_grad=True), torch.tensor([[1.0], [1.0], [0.0]])
    zeros = torch.zeros(3, 1)
    batch = Minibatch(obs=zeros, recurrent_hidden_states=zeros, actions=zeros, value_preds=zeros, returns=returns,
                      masks=zeros, old_action_log_probs=zeros, advantages=zeros)  # fmt: skip
    if source == "zoo ppo":
        ours = ppo_losses(batch, values, zeros, clip_param=0.2, clip_value_loss=settings["clip_value_loss"])
    else:
        ours = a2c_losses(batch, values, zeros)
    loss = settings["value_loss_coef"] * ours["value_loss"]
    reference = vf_coef * F.mse_loss(returns, values)  # their value term
    assert loss.item() == pytest.approx(reference.item())
    (gradient,) = torch.autograd.grad(loss, values)
    (expected,) = torch.autograd.grad(reference, values)
    torch.testing.assert_close(gradient, expected)


def test_a_result_measured_with_earlier_settings_is_shown_but_not_judged():
    """An entry changed after its row ran: README shows the old numbers with the settings that
    differ and no verdict; the runner counts such runs as not done (``stale_settings``)."""
    env_id, algo = "Acrobot-v1", "ppo"
    current = results_table.entry_settings(env_id, algo)
    assert results_table.stale_settings(current, env_id, algo) == []
    earlier = {**current, "value_loss_coef": 0.123}
    assert results_table.stale_settings(earlier, env_id, algo) == ["value_loss_coef"]

    def row(settings: dict) -> str:
        result = {"eval_mean": -60.0, "eval_std": 1.0, "seeds": [1, 2, 3], "settings": settings}
        table = results_table.readme_table({env_id: {algo: result}}, {})
        return next(line for line in table.splitlines() if line.startswith(f"| {env_id} | {algo} |"))

    assert "with earlier value_loss_coef 0.123" in row(earlier) and "not rerun" in row(earlier)
    assert "earlier" not in row(current) and "reaches the zoo's mean" in row(current)


def test_sb3_with_the_same_settings_is_summarised_at_the_current_settings_and_shown_beside_a_shortfall():
    """``sb3_entry.summaries`` keeps only full-budget runs at the entry's current settings; the
    README row shows them and says whether SB3 reaches the published result where ours does not."""
    from benchmarks import sb3_entry

    env_id, algo = "MountainCarContinuous-v0", "ppo"  # the zoo: 88.3 ± 2.6 at 20k steps
    current = results_table.entry_settings(env_id, algo)
    steps, _ = results_table.budget(env_id, algo)
    run = {"env": env_id, "algo": algo, "env_steps": steps, "settings": current}
    rows = [{**run, "seed": 2, "eval_mean": 90.0}, {**run, "seed": 1, "eval_mean": -50.0},
            {**run, "seed": 3, "eval_mean": 99.0, "settings": {**current, "gamma": 0.5}},  # earlier settings
            {**run, "seed": 4, "eval_mean": 99.0, "env_steps": steps // 2}]  # a smoke run  # fmt: skip
    summary = sb3_entry.summaries(rows)[env_id][algo]
    assert summary["seeds"] == [1, 2] and summary["per_seed"] == [-50.0, 90.0]
    assert summary["eval_mean"] == 20.0 and summary["eval_std"] == 70.0  # over seeds, as ours (np.std)

    def row(ours_mean: float, sb3: dict) -> str:
        ours = {"eval_mean": ours_mean, "eval_std": 1.0, "seeds": [1, 2, 3], "settings": current}
        table = results_table.readme_table({env_id: {algo: ours}}, {env_id: {algo: sb3}})
        return next(line for line in table.splitlines() if line.startswith(f"| {env_id} | {algo} |"))

    assert "| 20.0 ± 70.0 (2 seeds) | below the zoo's spread; SB3's: below the zoo's spread |" in row(10.0, summary)
    one_seed = {**summary, "seeds": [1], "eval_mean": 95.0}
    assert "| 95.0 (1 seed) | below the zoo's spread; SB3's: reaches the zoo's mean |" in row(10.0, one_seed)
    assert row(90.0, summary).endswith("| reaches the zoo's mean |")  # no shortfall, no SB3 verdict
    stale = {**summary, "settings": {**current, "gamma": 0.5}}
    assert "| - | below the zoo's spread |" in row(10.0, stale)


def test_a_setting_a_saved_run_predates_counts_as_its_default_and_sb3_standardises_per_minibatch():
    """A run saved before ``norm_adv_scope`` existed trained with its declared default
    (``rollout``): ours is stale against an entry that takes ``minibatch``; SB3's is not, as
    SB3's PPO always standardises per minibatch (``SB3_PPO_FIXED``)."""
    from benchmarks import sb3_entry

    env_id, algo = "Acrobot-v1", "ppo"
    current = results_table.entry_settings(env_id, algo)
    assert current["norm_adv_scope"] == "minibatch"
    predating = {key: value for key, value in current.items() if key != "norm_adv_scope"}
    assert results_table.stale_settings(predating, env_id, algo) == ["norm_adv_scope"]
    assert results_table.ran_with(predating, "norm_adv_scope") == "rollout"
    assert results_table.sb3_stale_settings(predating, env_id, algo) == []
    steps, _ = results_table.budget(env_id, algo)
    run = {"env": env_id, "algo": algo, "env_steps": steps, "seed": 1, "eval_mean": -80.0, "settings": predating}
    assert [r["seed"] for r in sb3_entry.current_rows([run], env_id, algo)] == [1]  # not run again


def test_sb3_summaries_merge_into_the_summary_file(tmp_path, monkeypatch, capsys):
    """A results log started afresh (a new clone) replaces only its own env and algorithm in
    docs/sb3_results.json: the others' summaries stay."""
    import json

    from benchmarks import sb3_entry

    env_id, algo = "MountainCarContinuous-v0", "ppo"
    steps, _ = results_table.budget(env_id, algo)
    run = {"env": env_id, "algo": algo, "env_steps": steps, "settings": results_table.entry_settings(env_id, algo)}
    log, summary = tmp_path / "sb3.jsonl", tmp_path / "sb3_results.json"
    log.write_text(json.dumps({**run, "seed": 1, "eval_mean": 93.0}) + "\n")
    kept = {"eval_mean": 16.5, "seeds": [1]}
    summary.write_text(json.dumps({env_id: {"a2c": kept}, "Swimmer-v5": {"a2c": kept}}))
    monkeypatch.setattr("sys.argv", ["sb3_entry.py", "--report-only", "--out", str(log), "--summary", str(summary)])
    sb3_entry.main()
    merged = json.loads(summary.read_text())
    assert merged["Swimmer-v5"] == {"a2c": kept} and merged[env_id]["a2c"] == kept
    assert merged[env_id][algo]["per_seed"] == [93.0] and "93.0" in capsys.readouterr().out


def test_a_stored_row_keeps_its_seeds_only_for_the_same_settings_and_budget():
    settings = results_table.entry_settings("Pendulum-v1", "a2c")
    record = {"seed": 1, "run_dir": "r1", "wall_s": 10.0, "eval": -150.0, "train": -160.0, "tests": [-900.0], "end": -1}
    row = results_store.summary({1: record}, 100_000, settings)
    assert results_store.kept_records(row, settings, 100_000) == {1: record}
    assert results_store.kept_records(row, settings, 200_000) == {}  # another budget
    assert results_store.kept_records(row, {**settings, "lr": 1.0}, 100_000) == {}  # the entry changed since
    assert results_store.kept_records(None, settings, 100_000) == {}
    # a row stored before records were kept: its one seed, without Tianshou's test points
    legacy = {key: row[key] for key in ("seeds", "run_dirs", "wall_s", "eval_mean", "train_mean", "env_steps")}
    kept = results_store.kept_records({**legacy, "settings": settings}, settings, 100_000)
    assert kept == {1: {**record, "tests": None, "end": None}}
    assert results_store.kept_records({**legacy, "seeds": [1, 2], "settings": settings}, settings, 100_000) == {}
    # merged with a fresh seed: means over both, and no best training return without seed 1's tests
    fresh = {**record, "seed": 2, "eval": -250.0, "train": -260.0, "tests": [-800.0], "end": -700.0}
    both = results_store.summary({**kept, 2: fresh}, 100_000, settings)
    assert (both["seeds"], both["eval_mean"], both["eval_std"], both["train_mean"]) == ([1, 2], -200.0, 50.0, -210.0)
    assert np.isnan(both["best_train_mean"])
    assert results_store.summary({1: record, 2: fresh}, 100_000, settings)["best_train_mean"] == -850.0


def test_a_row_with_no_seed_finished_here_is_left_as_stored(tmp_path):
    """``--report-only`` on a machine without the row's run folders rewrites nothing (a stored
    row's best training return would be lost with its test points)."""
    steps, batch = results_table.budget("Pendulum-v1", "a2c")
    settings = results_table.entry_settings("Pendulum-v1", "a2c")
    record = {"seed": 1, "run_dir": "r1", "wall_s": 1.0, "eval": -150.0, "train": -160.0, "tests": None, "end": None}
    stored = results_store.summary({1: record}, steps // batch * batch, settings)
    assert results_table.summarise(str(tmp_path), "Pendulum-v1", "a2c", [1, 2, 3], 1.0, stored) is None


def test_a_row_stored_without_records_is_not_replaced_by_some_of_its_seeds(tmp_path, monkeypatch, capsys):
    """Three seeds stored without per-seed records: a fresh run of one of them cannot be merged
    with the others, so the row stays whole rather than shrink to one seed."""
    steps, batch = results_table.budget("Pendulum-v1", "a2c")
    settings = results_table.entry_settings("Pendulum-v1", "a2c")
    legacy = {"seeds": [1, 2, 3], "run_dirs": ["a", "b", "c"], "wall_s": 1.0, "eval_mean": -150.0,
              "train_mean": -160.0, "env_steps": steps // batch * batch, "settings": settings}  # fmt: skip
    record = {"seed": 1, "run_dir": "r1", "wall_s": 1.0, "eval": -140.0, "train": -150.0, "tests": None, "end": None}
    monkeypatch.setattr(results_table, "find_run", lambda *args: ("r1", True))
    monkeypatch.setattr(results_table, "seed_record", lambda *args: record)
    assert results_table.summarise(str(tmp_path), "Pendulum-v1", "a2c", [1], 1.0, legacy) is None
    assert "seeds [2, 3] keep no records" in capsys.readouterr().out
    changed = {**legacy, "settings": {**settings, "lr": 1.0}}  # the entry changed since: the row is replaced
    assert results_table.summarise(str(tmp_path), "Pendulum-v1", "a2c", [1], 1.0, changed)["seeds"] == [1]
