"""ONNX export of a trained policy, which ``python -m a2c_ppo.export CHECKPOINT OUT.onnx`` runs (``[onnx]``).

The graph is the deterministic policy as ``enjoy.py`` plays it, so a deployment needs nothing
but an ONNX runtime:

* inputs: ``obs`` (batch, *shape), in the dtype the env gives it, after the run's frame
  processing (``--frame-*`` / ``--grayscale`` or the Atari pipeline, named in the metadata),
  images channels-first; a Dict or Tuple observation gives one input per part, named as
  ``onnx_graph`` says (``action_mask`` included, where the policy uses masks).
  Recurrent policies also take ``rnn_hxs`` (batch, H), their state, zeros at the start, and
  ``masks`` (batch, 1), 0.0 at an episode's first step, else 1.0;
* the checkpoint's frozen observation normalisation, as ``VecNormalize`` computes it:
  ``(obs - mean) / sqrt(var + eps)`` in float64, clipped to ``[-clip, clip]`` in float32;
* outputs: ``action`` (batch, A), as ``Policy.act(..., deterministic=True)`` returns it (the
  most likely class, counted from 0, of a Discrete / MultiDiscrete; the mean of a Gaussian,
  not clipped to the action bounds), in the action space's dtype, as ``Agent.act`` gives it;
  recurrent policies also ``rnn_hxs_out``.

The checkpoint is loaded as ``enjoy.py`` loads it (``enjoy.load_replay``: data only, code it
names refused unless trusted). After writing, the exported model is run with onnxruntime on
observations of the env and must give the policy's actions, else nothing is written.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import gymnasium as gym
import numpy as np
import torch

from a2c_ppo import __version__, console
from a2c_ppo.arguments import POLICY_BASE_HELP, TRUST_HELP, ArgumentParser
from a2c_ppo.console import fail
from a2c_ppo.enjoy import Replay, check_not_empty, load_replay
from a2c_ppo.envs.frames import frame_processing, frame_settings
from a2c_ppo.envs.normalize import VecNormalize
from a2c_ppo.envs.subproc.protocol import EnvWorkerError
from a2c_ppo.errors import EXIT_ENV_FAILED, EXIT_WRITE_FAILED, ConfigError, WriteFailedError
from a2c_ppo.files import write_atomically
from a2c_ppo.onnx_graph import DeterministicPolicy, input_names
from a2c_ppo.paths import check_writable_file
from a2c_ppo.signals import StopSignals, command_stops
from a2c_ppo.spaces import ACTION_MASK, sample_mask

INSTALL_HINT = 'pip install -e ".[onnx]"'
OPSET = 17
CHECK_STEPS = 64  # env steps whose observations the exported model is checked on


#: The lowest opset torch's exporter writes (``torch.onnx.export``'s ``opset_version``: 7 and above).
MIN_OPSET = 7


def imported_holding_ctrl_c(*names: str) -> list[Any]:
    """The modules ``names``, imported with a Ctrl-C held until they are, then raised
    (KeyboardInterrupt): one that lands in a pybind11 extension as it initialises (onnxruntime's,
    ale_py's) fails it (``ImportError: initialization failed``, read as "not installed") or
    crashes the process at exit. ImportError where one is not installed."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return [importlib.import_module(name) for name in names]
    with StopSignals() as signals, signals.deferred():
        return [importlib.import_module(name) for name in names]


def onnx_modules() -> tuple[Any, Any]:
    """``onnx`` and ``onnxruntime`` (``imported_holding_ctrl_c``); ConfigError where they are not
    installed."""
    try:
        onnx, onnxruntime = imported_holding_ctrl_c("onnx", "onnxruntime")
    except ImportError:
        raise ConfigError(f"ONNX export needs onnx and onnxruntime: {INSTALL_HINT}.") from None
    return onnx, onnxruntime


def check_opset(opset: int) -> None:
    """ConfigError unless torch's exporter writes ``opset`` and the installed onnx knows it."""
    onnx, _ = onnx_modules()
    newest = onnx.defs.onnx_opset_version()
    try:  # torch states its exporter's newest opset in a private module only
        from torch.onnx._constants import ONNX_MAX_OPSET

        newest = min(newest, ONNX_MAX_OPSET)
    except ImportError:
        pass
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"--opset {opset}: give an ONNX opset from {MIN_OPSET} to {newest}, or leave it at {OPSET}.")


def collect_observations(envs: gym.vector.VectorEnv, steps: int, seed: int) -> list[Any]:
    """Raw observations of ``steps`` random steps of ``envs``' inner env (the actions its mask
    allows, where it gives one): its first env's, as batches of one, which the graph is traced
    on (the recurrent state it starts from is one row) and a graph of a fixed batch size takes.
    A vector env of one's own steps several envs, whose other rows are left out."""
    inner = envs.env if isinstance(envs, VecNormalize) else envs
    inner.action_space.seed(seed)
    inner.single_action_space.seed(seed)
    obs, _ = inner.reset(seed=seed)
    seen = [first_row(obs)]
    for _ in range(steps - 1):
        obs = inner.step(random_actions(inner, obs))[0]
        seen.append(first_row(obs))
    return seen


def random_actions(envs: gym.vector.VectorEnv, obs: Any) -> Any:
    """A random action for each env, among those its row of ``obs``'s action mask allows, if it has one."""
    if not (isinstance(obs, dict) and ACTION_MASK in obs):
        return envs.action_space.sample()
    space = envs.single_action_space
    return np.stack([space.sample(mask=sample_mask(row, space)) for row in np.asarray(obs[ACTION_MASK], np.int8)])


def first_row(obs: Any) -> Any:
    """A copy (the vector env may return views of a buffer it reuses) of the first row of a raw
    observation batch, as a batch of one."""
    return {key: np.array(part[:1]) for key, part in obs.items()} if isinstance(obs, dict) else np.array(obs[:1])


def as_inputs(obs: Any, module: DeterministicPolicy) -> list[np.ndarray]:
    """A raw observation batch as the exported model's observation inputs (the env's dtypes)."""
    return [np.ascontiguousarray(obs if key is None else obs[key]) for key in module.keys]


def export(replay: Replay, out: str, opset: int = OPSET) -> tuple[list[str], bool]:
    """Write ``replay``'s deterministic policy to ``out`` as ONNX, checked with onnxruntime; the
    model's input names, and whether it takes any batch size (else one observation at a time).
    ConfigError where the policy cannot be exported."""
    onnx, onnxruntime = onnx_modules()
    envs = replay.envs.envs
    module = DeterministicPolicy(
        replay.policy, envs.single_observation_space, envs if isinstance(envs, VecNormalize) else None
    ).eval()
    names = input_names(module)
    observations = collect_observations(envs, CHECK_STEPS, replay.config.seed)
    # Some encoders read the batch size as a Python int, which tracing freezes: such a graph
    # fails the batched check and is exported again for one observation at a time.
    for any_batch in (True, False):
        model = onnx.load_from_string(traced(module, names, as_inputs(observations[0], module), opset, any_batch))
        for key, value in metadata(replay).items():
            model.metadata_props.add(key=key, value=value)
        data = model.SerializeToString()
        try:
            session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # e.g. an operator at an opset onnxruntime has no kernel for
            raise ConfigError(
                f"onnxruntime cannot run the model exported at opset {opset} ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0]}), so nothing was written; export at another opset "
                f"(--opset, default {OPSET})."
            ) from None
        if agrees(module, session, names, observations, batched=any_batch):
            write_atomically(out, functools.partial(write_bytes, data))
            return names, any_batch
    raise ConfigError(
        "the exported ONNX model does not give the policy's actions (onnxruntime and torch disagree), so nothing "
        "was written; report this with the checkpoint."
    )


def write_bytes(data: bytes, f: BinaryIO) -> None:
    f.write(data)


@contextlib.contextmanager
def torch_log_discarded() -> Iterator[None]:
    """Standard output (file descriptor 1, where torch's C++ log writes) sent to /dev/null for the
    block. torch's TorchScript exporter turns that log on whatever ``verbose`` says
    (``setup_onnx_logging`` tests the function ``_jit_is_onnx_log_enabled`` instead of calling
    it), and where an operation has no export at the opset it prints the whole traced graph, some
    50 lines ahead of our one paragraph."""
    if sys.stdout is None:  # started with standard output closed: descriptor 1 may be another file's now
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def traced(module: DeterministicPolicy, names: list[str], obs: list[np.ndarray], opset: int, any_batch: bool) -> bytes:
    """``module`` as an ONNX model (bytes), traced on the observation inputs ``obs``, a batch of
    one, as the recurrent state it starts from."""
    example = [torch.from_numpy(x) for x in obs]
    outputs = ["action"]
    if module.policy.is_recurrent:
        example += [torch.zeros(1, module.policy.recurrent_hidden_state_size), torch.zeros(1, 1)]
        outputs.append("rnn_hxs_out")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "policy.onnx")
        try:
            with warnings.catch_warnings(), torch_log_discarded():
                # The TorchScript exporter (deprecated in favour of torch.export, which needs onnxscript)
                # and its tracer warnings: the checks run the exported graph on other inputs.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    tuple(example),
                    path,
                    input_names=names,
                    output_names=outputs,
                    dynamic_axes={name: {0: "batch"} for name in [*names, *outputs]} if any_batch else None,
                    opset_version=opset,
                    dynamo=False,
                )
        except Exception as exc:
            raise ConfigError(
                f"this policy cannot be exported to ONNX ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}); "
                f"its network uses an operation the exporter does not support at opset {opset}"
                + ("." if opset == OPSET else f" (the default, {OPSET}, may have it).")
            ) from None
        with open(path, "rb") as f:
            return f.read()


def agrees(module: DeterministicPolicy, session: Any, names: list[str], observations: list[Any], batched: bool) -> bool:
    """Whether onnxruntime gives ``module``'s outputs on ``observations``: one at a time (for a
    recurrent policy as a sequence, carrying its state), and with ``batched`` all at once."""
    size = module.policy.recurrent_hidden_state_size
    recurrent = module.policy.is_recurrent
    runs = [[as_inputs(obs, module) for obs in observations]]  # one sequence of batches of one
    if batched:
        runs.append([[np.concatenate(parts) for parts in zip(*runs[0])]])  # one batch of all
    for steps in runs:
        state = np.zeros((len(steps[0][0]), size), np.float32)
        for i, inputs in enumerate(steps):
            extra = [state, np.full((len(state), 1), float(i > 0), np.float32)] if recurrent else []
            with torch.no_grad():
                expected = module(*(torch.from_numpy(x) for x in [*inputs, *extra]))
            want = [t.numpy() for t in expected] if isinstance(expected, tuple) else [expected.numpy()]
            try:
                got = session.run(None, dict(zip(names, [*inputs, *extra])))
            except Exception:  # e.g. a batch size the graph froze
                return False
            if any(a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got, want)):
                return False
            state = got[1] if recurrent else state
    return True


def metadata(replay: Replay) -> dict[str, str]:
    """What the ONNX file says about itself (``metadata_props``)."""
    config, envs = replay.config, replay.envs
    return {
        "producer": f"a2c_ppo {__version__}",
        "env_name": config.env_name,
        "env_kwargs": config.env_kwargs,
        # the observations are the processed frames: make_env(env_name, recipe=recipe_of(config)),
        # or for an Atari id its pipeline's, which no --frame-* setting names
        **{name: str(value) for name, value in frame_settings(config).items()},
        "frame_processing": frame_processing(config) or "none",
        "algo": config.algo,
        "observation_space": str(envs.observation_space),
        "action_space": str(envs.action_space),
        "action": "deterministic: the most likely class (from 0), the likelier value of each binary entry or the "
        "Gaussian mean (not clipped), in the action space's dtype",
    }


def quiet_ale() -> None:
    """Keep ALE's banner (its version, "[Powered by Stella]"), which each Atari env built in this
    process prints, out of the export's output, where ale_py is installed."""
    try:
        (ale_py,) = imported_holding_ctrl_c("ale_py")
    except ImportError:
        return
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m a2c_ppo.export",
        description="Export a checkpoint's deterministic policy (with its observation normalisation) to ONNX.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint file (RUN_DIR/checkpoint.pt, best.pt, ...)")
    p.add_argument("out", metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--env-name", help="env to build for the spaces and the check (default: the checkpoint's)")
    p.add_argument(
        "--env-kwargs", metavar="JSON", help="keyword arguments of that env, a JSON object (default: the checkpoint's)"
    )
    p.add_argument("--policy-base", metavar="MODULE:CLASS", help=POLICY_BASE_HELP)
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset version (default: {OPSET})")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "python -m a2c_ppo.export"
    try:
        with command_stops():
            check_not_empty(args, ("env_name", "env_kwargs", "policy_base"))
            check_opset(args.opset)
            check_writable_file(args.out, "OUT", reading=args.checkpoint)
            folder = os.path.dirname(os.path.abspath(args.out))
            if not os.path.isdir(folder):
                raise ConfigError(
                    f"OUT {args.out!r}: the folder {folder!r} does not exist; create it or pick another path."
                )
            torch.set_num_threads(1)
            quiet_ale()
            replay = load_replay(
                args.checkpoint,
                "CHECKPOINT",
                env_name=args.env_name,
                env_kwargs=args.env_kwargs,
                policy_base=args.policy_base,
                trust=args.trust_checkpoint,
            )
            try:
                names, any_batch = export(replay, args.out, args.opset)
            finally:
                replay.envs.close()
    except ConfigError as exc:
        fail(str(exc), prog=prog)
    except WriteFailedError as exc:
        fail(f"{exc}; free space or give another path.", prog=prog, code=EXIT_WRITE_FAILED)
    except EnvWorkerError as exc:
        fail(f"an environment failed, the export stopped: {exc}", prog=prog, code=EXIT_ENV_FAILED)
    except KeyboardInterrupt as exc:  # OUT is written whole or not at all (write_atomically)
        return console.say_stopped(exc)
    batch = "any batch size" if any_batch else "one observation at a time (its encoders fix the batch size)"
    console.out.line(
        f"Exported {args.checkpoint} to {args.out}: inputs {', '.join(names)}, {batch}; checked against the policy "
        f"on {CHECK_STEPS} observations with onnxruntime."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
