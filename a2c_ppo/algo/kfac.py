"""K-FAC: a Kronecker-factored natural-gradient optimizer for Linear, Conv2d and log-std layers.

For a layer with output ``s = W a`` (the input ``a`` gets a homogeneous 1 appended when the
layer has a bias, so the bias is the last column of ``[W, b]``), the Fisher block of
``vec([W, b])`` is approximated by the Kronecker product ``G (x) A`` of

* ``A = E[a a^T]`` — second moment of the (homogeneous) layer inputs, and
* ``G = E[g g^T]`` — second moment of the per-sample gradients of a *sampled Fisher loss*
  with respect to the layer outputs ``s``.

Both are running averages (``stat_decay``) updated every ``stats_interval`` steps.
For Conv2d the inputs are the unfolded patches; ``A`` averages over samples and spatial
locations and ``G`` sums over locations and averages over samples (the spatially
uncorrelated approximation, so ``G (x) A`` estimates the whole block).

Damping: the preconditioner is the exact inverse of the *damped Kronecker product*,
``(G (x) A + damping * I)^-1``. With the eigendecompositions ``A = QA diag(dA) QA^T`` and
``G = QG diag(dG) QG^T`` (``torch.linalg.eigh``, recomputed every ``inverse_interval``
steps, eigenvalues clamped at 0) the natural gradient of a layer's gradient matrix ``M``
(out x in[+1]) is::

    V   = QG^T M QA
    nat = QG (V / (dG dA^T + damping)) QA^T        # = (G (x) A + damping I)^-1 vec(M)

Step: ``buf = momentum * buf + nat`` per layer; the quadratic KL estimate of the update
``delta = -lr * buf`` under the same damped Fisher the step was preconditioned with is
``kl = 0.5 * lr^2 * sum_layers buf^T (G (x) A + damping I) buf``. When it exceeds
``kl_clip`` every buffer is scaled by ``nu = sqrt(kl_clip / kl)`` (so the applied update's
estimate equals ``kl_clip`` exactly), then ``p -= lr * buf``. The momentum buffers keep
the scaled (applied) values.

A Gaussian head's state-independent log-std (``distributions.LogStd``, a vector broadcast
over the batch) is factored as a bias-only layer, as the original ACKTR treats it: its
input is the homogeneous 1 alone, so ``A = [1]`` and the block is the full ``G`` of its
per-sample output gradients. It is preconditioned, enters the KL estimate and is scaled by
``nu`` like every other layer.

Parameters outside supported layers (layers this module does not factor: grouped
convolutions, string paddings) get plain SGD with momentum at the same ``lr``, their step
scaled by the same ``nu``; they are not part of the KL estimate.

Use: enable recording for the forward pass (``with opt.recording(opt.wants_stats()):``),
call ``opt.accumulate_stats(fisher_loss)`` (it takes gradients with ``retain_graph=True``
and leaves ``.grad`` alone), then ``loss.backward()`` and ``opt.step()``. Each supported
module may run once per recorded forward pass.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from a2c_ppo.algo.optimizers import skip_dynamo_wrappers
from a2c_ppo.distributions import LogStd


@dataclass(frozen=True)
class KFACConfig:
    """K-FAC's hyper-parameters besides ``lr``, and their defaults: declared here only.

    They travel in the optimizer's param group, so a loaded ``state_dict`` brings them back.
    """

    momentum: float = 0.9
    damping: float = 1e-2
    kl_clip: float = 1e-3
    stat_decay: float = 0.99
    stats_interval: int = 1  # steps between Kronecker-factor updates
    inverse_interval: int = 10  # steps between eigendecompositions

    def __post_init__(self) -> None:
        if not self.damping > 0 or not self.kl_clip > 0:
            raise ValueError("damping and kl_clip must be > 0")
        if not 0.0 <= self.momentum < 1.0 or not 0.0 <= self.stat_decay < 1.0:
            raise ValueError("momentum and stat_decay must be in [0, 1)")
        if self.stats_interval < 1 or self.inverse_interval < 1:
            raise ValueError("stats_interval and inverse_interval must be >= 1")


def is_supported(module: nn.Module) -> bool:
    """Whether K-FAC keeps Kronecker factors for ``module``."""
    if type(module) is nn.Linear or type(module) is LogStd:
        return True
    if type(module) is nn.Conv2d:
        return module.groups == 1 and module.padding_mode == "zeros" and isinstance(module.padding, tuple)
    return False


def layer_params(module: nn.Module) -> list[nn.Parameter]:
    """A factored layer's parameters, weight first; the first one keys its optimizer state."""
    return [p for p in (getattr(module, "weight", None), module.bias) if isinstance(p, nn.Parameter)]


def layer_inputs(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rows ``a`` (samples x locations, in[+1]) of homogeneous inputs, and the batch size."""
    batch = x.shape[0]
    if isinstance(module, LogStd):  # no input columns: only the homogeneous 1
        a = x.new_empty(batch, 0)
    elif isinstance(module, nn.Conv2d):
        assert isinstance(module.padding, tuple)  # is_supported refuses string paddings
        patches = F.unfold(
            x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride
        )
        a = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    else:
        a = x.reshape(-1, x.shape[-1])
    if module.bias is not None:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    return a, batch


def output_grads(module: nn.Module, grad: torch.Tensor) -> torch.Tensor:
    """Rows (samples x locations, out) of gradients with respect to the layer output."""
    if isinstance(module, nn.Conv2d):
        return grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1])
    return grad.reshape(-1, grad.shape[-1])


def kronecker_factors(module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This batch's ``(A, G)`` for ``module`` from its input and ``d loss / d output``.

    The loss is taken to be a *mean* over the batch, so per-sample gradients are
    ``batch * grad_out``: ``G = batch * grad_out^T grad_out``, ``A = a^T a / rows``.
    """
    a, batch = layer_inputs(module, x)
    g = output_grads(module, grad_out)
    A = a.t() @ a / a.shape[0]
    G = (g.t() @ g) * batch
    return A, G


class KFACOptimizer(torch.optim.Optimizer):
    """K-FAC for every Linear, Conv2d and LogStd of ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module, lr: float = 0.25, config: KFACConfig = KFACConfig()) -> None:
        if not lr > 0:
            raise ValueError("lr must be > 0")
        self.modules_ = [m for m in model.modules() if is_supported(m) and layer_params(m)[0].requires_grad]
        self.module_names = {m: name for name, m in model.named_modules() if m in set(self.modules_)}
        kfac_ids = {id(p) for m in self.modules_ for p in layer_params(m)}
        params = [p for p in model.parameters() if p.requires_grad]
        self.plain_params = [p for p in params if id(p) not in kfac_ids]
        defaults = dict(lr=lr, **asdict(config), kfac_step=0)
        skip_dynamo_wrappers()
        super().__init__(params, defaults)
        self.last_kl = float("nan")  # quadratic KL estimate of the last applied update
        self.last_nu = float("nan")  # the KL-clip scale of the last update (1: not clipped)
        self._recording = False
        self._captured: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self._hooks = [m.register_forward_hook(self._forward_hook) for m in self.modules_]

    # ----- statistics -------------------------------------------------------------------

    @property
    def steps(self) -> int:
        return int(self.param_groups[0]["kfac_step"])

    @property
    def stats_interval(self) -> int:
        return int(self.param_groups[0]["stats_interval"])

    @property
    def inverse_interval(self) -> int:
        return int(self.param_groups[0]["inverse_interval"])

    def wants_stats(self) -> bool:
        """Whether this step should update the Kronecker factors."""
        return self.steps % self.stats_interval == 0 or any("A" not in self._layer_state(m) for m in self.modules_)

    def _layer_state(self, module: nn.Module) -> dict:
        """The optimizer state holding ``module``'s factors (its first parameter's)."""
        return self.state[layer_params(module)[0]]

    @contextlib.contextmanager
    def recording(self, enabled: bool = True) -> Iterator[None]:
        """Capture supported layers' inputs and outputs during the forward passes inside."""
        self._captured.clear()
        self._recording = enabled
        try:
            yield
        finally:
            self._recording = False

    def has_pending_stats(self) -> bool:
        return bool(self._captured)

    def _forward_hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not self._recording or not torch.is_grad_enabled():
            return
        if module in self._captured:
            raise RuntimeError(
                f"K-FAC: layer {self.module_names[module]!r} ran twice in one recorded forward pass; "
                "each factored layer may be used once per pass (recurrent use is not supported)"
            )
        self._captured[module] = (inputs[0].detach(), output)

    @torch.no_grad()
    def _update_factor(self, state: dict, name: str, value: torch.Tensor, decay: float) -> None:
        if name not in state:
            state[name] = value.clone()
        else:
            state[name].mul_(decay).add_(value, alpha=1.0 - decay)

    def accumulate_stats(self, fisher_loss: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Update A and G from the recorded forward pass and a sampled Fisher loss (a batch mean).

        ``rows``: the samples the loss averages over, where the pass had others (a next-step
        vector env's reset rows, no transitions): the factors are those of these rows alone."""
        if not self._captured:
            raise RuntimeError("K-FAC: no recorded forward pass; run it inside `with optimizer.recording():`")
        modules = list(self._captured)
        grads = torch.autograd.grad(
            fisher_loss, [self._captured[m][1] for m in modules], retain_graph=True, allow_unused=True
        )
        decay = self.param_groups[0]["stat_decay"]
        for module, grad in zip(modules, grads):
            if grad is None:
                continue
            x, grad = self._captured[module][0], grad.detach()
            if rows is not None:  # a feed-forward pass: every layer's first axis is the sample
                x, grad = x[rows], grad[rows]
            A, G = kronecker_factors(module, x, grad)
            state = self._layer_state(module)
            self._update_factor(state, "A", A, decay)
            self._update_factor(state, "G", G, decay)
        self._captured.clear()

    @staticmethod
    def _eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues (clamped at 0) and eigenvectors of a symmetric PSD factor."""
        try:
            d, Q = torch.linalg.eigh(matrix)
            converged = bool(torch.isfinite(d).all() and torch.isfinite(Q).all())
        except torch.linalg.LinAlgError:
            converged = False
        if not converged:  # float32 can fail on a rank-deficient factor (dead ReLUs), raising or giving NaNs
            d, Q = torch.linalg.eigh(matrix.double())
            d, Q = d.to(matrix.dtype), Q.to(matrix.dtype)
        return d.clamp_(min=0.0), Q

    @torch.no_grad()
    def update_inverses(self) -> None:
        """Eigendecompose every layer's current A and G."""
        for module in self.modules_:
            state = self._layer_state(module)
            if "A" not in state:
                continue
            state["dA"], state["QA"] = self._eigh(state["A"])
            state["dG"], state["QG"] = self._eigh(state["G"])

    # ----- the step ---------------------------------------------------------------------

    @staticmethod
    def grad_matrix(module: nn.Module) -> torch.Tensor | None:
        """The layer's gradient as one (out, in[+1]) matrix, bias last; None without grads."""
        params = layer_params(module)
        if params[0].grad is None:
            return None
        columns = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(p.shape[0], -1) for p in params]
        return torch.cat(columns, dim=1)

    def _eigen(self, module: nn.Module) -> dict:
        state = self._layer_state(module)
        if "QA" not in state:
            raise RuntimeError(
                f"K-FAC: layer {self.module_names[module]!r} has a gradient but no Kronecker factors; "
                "call accumulate_stats(fisher_loss) on a recorded forward pass before the first step"
            )
        return state

    def precondition(self, module: nn.Module, matrix: torch.Tensor) -> torch.Tensor:
        """``(G (x) A + damping I)^-1`` applied to ``matrix`` (out, in[+1]) for ``module``."""
        s = self._eigen(module)
        v = s["QG"].t() @ matrix @ s["QA"]
        v = v / (s["dG"].unsqueeze(1) * s["dA"].unsqueeze(0) + self.param_groups[0]["damping"])
        return s["QG"] @ v @ s["QA"].t()

    def fisher_quadratic(self, module: nn.Module, matrix: torch.Tensor) -> torch.Tensor:
        """``vec(matrix)^T (G (x) A + damping I) vec(matrix)`` for ``module``."""
        s = self._eigen(module)
        v = s["QG"].t() @ matrix @ s["QA"]
        return (v.pow(2) * (s["dG"].unsqueeze(1) * s["dA"].unsqueeze(0) + self.param_groups[0]["damping"])).sum()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        lr, momentum, kl_clip = group["lr"], group["momentum"], group["kl_clip"]
        if self.steps % self.inverse_interval == 0 or any(
            "A" in self._layer_state(m) and "QA" not in self._layer_state(m) for m in self.modules_
        ):
            self.update_inverses()

        buffers: list[tuple[nn.Module, torch.Tensor]] = []
        quad = None
        for module in self.modules_:
            grad = self.grad_matrix(module)
            if grad is None:
                continue
            nat = self.precondition(module, grad)
            state = self._layer_state(module)
            if "momentum_buffer" in state:
                buf = state["momentum_buffer"].mul_(momentum).add_(nat)
            else:
                buf = state["momentum_buffer"] = nat
            q = self.fisher_quadratic(module, buf)
            quad = q if quad is None else quad + q
            buffers.append((module, buf))

        kl = 0.5 * lr * lr * quad.item() if quad is not None else 0.0
        nu = min(1.0, math.sqrt(kl_clip / kl)) if kl > 0 else 1.0
        self.last_nu, self.last_kl = nu, kl * nu * nu

        for module, buf in buffers:
            buf.mul_(nu)
            column = 0
            for p in layer_params(module):  # weight columns, then the bias column
                width = p[0].numel()
                p.add_(buf[:, column : column + width].reshape(p.shape), alpha=-lr)
                column += width
        for p in self.plain_params:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" in state:
                buf = state["momentum_buffer"].mul_(momentum).add_(p.grad)
            else:
                buf = state["momentum_buffer"] = p.grad.clone()
            buf.mul_(nu)
            p.add_(buf, alpha=-lr)
        group["kfac_step"] = self.steps + 1
        return loss
