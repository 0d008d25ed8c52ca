"""K-FAC: Kronecker factors, the damped preconditioner and the KL-clipped step in closed form."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from a2c_ppo.algo import ACKTR, KFACConfig, KFACOptimizer
from a2c_ppo.algo.kfac import layer_params
from a2c_ppo.distributions import LogStd
from a2c_ppo.model import MLPBase, Policy
from tests.helpers import BOX_OBS, rollout_from_policy

DAMPING = 1e-2


def sampled_fisher_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -log softmax(logits)[label]."""
    return F.cross_entropy(logits, labels)


def record_stats(opt: KFACOptimizer, model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One recorded forward pass + sampled-Fisher backward; returns the outputs."""
    with opt.recording():
        out = model(x)
    opt.accumulate_stats(sampled_fisher_loss(out, labels))
    return out


def kfac(model: nn.Module, lr: float, **config) -> KFACOptimizer:
    return KFACOptimizer(model, lr=lr, config=KFACConfig(**config))


def setup_linear(bias: bool = True, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(3, 2, bias=bias).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    labels = torch.randint(0, 2, (7,))
    opt = kfac(model, 0.1, **{"momentum": 0.0, "damping": DAMPING, "kl_clip": 1e9, **kwargs})
    return model, x, labels, opt


def damped_fisher(A: torch.Tensor, G: torch.Tensor, damping: float = DAMPING) -> torch.Tensor:
    """The damped Kronecker Fisher of vec(M), M (out, in[+1]) flattened row-major."""
    return torch.kron(G, A) + damping * torch.eye(G.shape[0] * A.shape[0], dtype=A.dtype)


def grad_matrix(model: nn.Module) -> torch.Tensor:
    m = model.weight.grad.reshape(model.weight.shape[0], -1)
    return torch.cat([m, model.bias.grad[:, None]], 1) if model.bias is not None else m


def test_linear_factors_are_input_and_output_gradient_second_moments():
    model, x, labels, opt = setup_linear(stat_decay=0.9)
    out = record_stats(opt, model, x, labels)
    a = torch.cat([x, torch.ones(7, 1, dtype=x.dtype)], 1)  # homogeneous coordinate for the bias
    g = torch.softmax(out.detach(), 1) - F.one_hot(labels, 2)  # d(-log p_label)/d logits, per sample
    state = opt.state[model.weight]
    torch.testing.assert_close(state["A"], a.t() @ a / 7)
    torch.testing.assert_close(state["G"], g.t() @ g / 7)
    assert model.weight.grad is None  # statistics do not touch .grad

    x2 = torch.randn(7, 3, dtype=torch.float64)
    out2 = record_stats(opt, model, x2, labels)
    a2 = torch.cat([x2, torch.ones(7, 1, dtype=x.dtype)], 1)
    g2 = torch.softmax(out2.detach(), 1) - F.one_hot(labels, 2)
    torch.testing.assert_close(state["A"], 0.9 * a.t() @ a / 7 + 0.1 * a2.t() @ a2 / 7)
    torch.testing.assert_close(state["G"], 0.9 * g.t() @ g / 7 + 0.1 * g2.t() @ g2 / 7)


def test_factors_of_a_pass_with_rows_that_are_no_transitions_are_those_of_the_others():
    """A next-step vector env's reset rows are in the forward pass but not in the loss: before,
    A averaged them in and G was scaled by all 7 rows where the loss averaged over 5."""
    model, x, labels, opt = setup_linear()
    rows = torch.tensor([0, 1, 3, 5, 6])
    with opt.recording():
        out = model(x)
    opt.accumulate_stats(sampled_fisher_loss(out[rows], labels[rows]), rows)
    twin, _, _, alone = setup_linear()  # the same weights
    record_stats(alone, twin, x[rows], labels[rows])
    for name in ("A", "G"):
        torch.testing.assert_close(opt.state[model.weight][name], alone.state[twin.weight][name])


def test_conv_factors_use_patches_and_sum_output_gradients_over_locations():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, kernel_size=2, stride=1, padding=1).double()
    B = 2
    x = torch.randn(B, 2, 3, 3, dtype=torch.float64)
    opt = kfac(conv, 0.1, momentum=0.0, damping=DAMPING, kl_clip=1e9)
    with opt.recording():
        out = conv(x)
    R = torch.randn_like(out)  # loss_b = <out_b, R_b>: d loss_b / d out_b = R_b
    opt.accumulate_stats((out * R).sum() / B)

    xp = F.pad(x, (1, 1, 1, 1))
    Ho, Wo = out.shape[2:]
    patches = [xp[:, :, i : i + 2, j : j + 2].reshape(B, -1) for i in range(Ho) for j in range(Wo)]
    a = torch.cat([torch.stack(patches, 1).reshape(-1, 8), torch.ones(B * Ho * Wo, 1, dtype=x.dtype)], 1)
    A = a.t() @ a / (B * Ho * Wo)
    G = sum(R[b, :, i, j][:, None] * R[b, :, i, j][None, :] for b in range(B) for i in range(Ho) for j in range(Wo)) / B
    state = opt.state[conv.weight]
    torch.testing.assert_close(state["A"], A)
    torch.testing.assert_close(state["G"], G)


@pytest.mark.parametrize("layer", ["linear", "linear-no-bias", "conv"])
def test_preconditioned_gradient_equals_the_damped_kronecker_closed_form(layer):
    torch.manual_seed(0)
    if layer == "conv":
        model = nn.Sequential(nn.Conv2d(2, 3, 2, stride=2), nn.Flatten()).double()
        x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
        module = model[0]
    else:
        model = nn.Linear(3, 2, bias=layer == "linear").double()
        x = torch.randn(7, 3, dtype=torch.float64)
        module = model
    lr = 0.1
    opt = kfac(model, lr, momentum=0.0, damping=DAMPING, kl_clip=1e9)
    with opt.recording():
        out = model(x)
    labels = torch.randint(0, out.shape[1], (x.shape[0],))
    opt.accumulate_stats(sampled_fisher_loss(out, labels))
    target = torch.randn_like(out)
    ((out - target) ** 2).mean().backward(retain_graph=True)

    M = grad_matrix(module)
    state = opt.state[module.weight]
    closed = torch.linalg.solve(damped_fisher(state["A"], state["G"]), M.reshape(-1)).reshape(M.shape)
    opt.update_inverses()
    torch.testing.assert_close(opt.precondition(module, M), closed)

    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert opt.last_nu == 1.0
    step = torch.cat(
        [(b - p.detach()).reshape(module.weight.shape[0], -1) for b, p in zip(before, model.parameters())], 1
    )
    torch.testing.assert_close(step, lr * closed)
    # unclipped: the KL estimate is 0.5 lr^2 nat . grad
    assert opt.last_kl == pytest.approx(0.5 * lr**2 * (closed * M).sum().item(), rel=1e-9)


def applied_kl(opt: KFACOptimizer, module: nn.Module, before: list[torch.Tensor]) -> float:
    """0.5 delta^T (G (x) A + damping I) delta of the update just applied, from the factors."""
    params = layer_params(module)
    delta = torch.cat([(p.detach() - b).reshape(p.shape[0], -1) for p, b in zip(params, before)], 1)
    state = opt.state[params[0]]
    return 0.5 * (delta.reshape(-1) @ damped_fisher(state["A"], state["G"]) @ delta.reshape(-1)).item()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_step_respects_the_kl_clip(momentum):
    model, x, labels, _ = setup_linear()
    kl_clip = 1e-4
    opt = kfac(model, 0.5, momentum=momentum, damping=DAMPING, kl_clip=kl_clip, inverse_interval=1)
    for _ in range(3):  # later steps carry momentum
        out = record_stats(opt, model, x, labels)
        opt.zero_grad()
        ((out - 1.0) ** 2).mean().backward()
        before = [model.weight.detach().clone(), model.bias.detach().clone()]
        opt.step()
        assert opt.last_nu < 1.0  # clipped ...
        assert applied_kl(opt, model, before) == pytest.approx(kl_clip, rel=1e-6)  # ... to exactly kl_clip
        assert opt.last_kl == pytest.approx(kl_clip, rel=1e-9)

    # a loose clip leaves the step alone, and its estimate stays below the clip
    opt.param_groups[0]["kl_clip"] = 1e3
    out = record_stats(opt, model, x, labels)
    opt.zero_grad()
    ((out - 1.0) ** 2).mean().backward()
    before = [model.weight.detach().clone(), model.bias.detach().clone()]
    opt.step()
    assert opt.last_nu == 1.0
    assert applied_kl(opt, model, before) == pytest.approx(opt.last_kl, rel=1e-6) and opt.last_kl <= 1e3


class LinearWithLogStd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2).double()
        self.log_std = nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def forward(self, x):
        return self.linear(x) * self.log_std.exp()


def test_parameters_outside_linear_and_conv_get_sgd_momentum_scaled_by_the_clip():
    torch.manual_seed(0)
    model = LinearWithLogStd()
    opt = kfac(model, 0.5, momentum=0.9, damping=DAMPING, kl_clip=1e-5)
    assert opt.plain_params == [model.log_std] and opt.modules_ == [model.linear]
    x = torch.randn(7, 3, dtype=torch.float64)
    labels = torch.randint(0, 2, (7,))
    out = record_stats(opt, model, x, labels)
    opt.zero_grad()
    ((out - 1.0) ** 2).mean().backward()
    grad = model.log_std.grad.clone()
    opt.step()
    assert opt.last_nu < 1.0
    torch.testing.assert_close(model.log_std.detach(), -0.5 * opt.last_nu * grad)


def test_state_dict_round_trips_through_weights_only_load():
    model, x, labels, opt = setup_linear(momentum=0.9, kl_clip=1e-3)
    twin = nn.Linear(3, 2).double()

    def train_step(o, m):
        out = record_stats(o, m, x, labels)
        o.zero_grad()
        ((out - 1.0) ** 2).mean().backward()
        o.step()

    train_step(opt, model)
    twin.load_state_dict(model.state_dict())
    twin_opt = kfac(twin, 0.1, inverse_interval=3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    twin_opt.load_state_dict(torch.load(buffer, weights_only=True))
    assert twin_opt.steps == 1 and twin_opt.param_groups[0]["kl_clip"] == 1e-3
    assert twin_opt.inverse_interval == 10  # the saved hyper-parameters win
    train_step(opt, model)
    train_step(twin_opt, twin)
    torch.testing.assert_close(twin.weight, model.weight)
    torch.testing.assert_close(twin.bias, model.bias)


def test_a_layer_used_twice_in_one_recorded_pass_is_refused():
    model, x, _, opt = setup_linear()
    with pytest.raises(RuntimeError, match="ran twice"):
        with opt.recording():
            model(model(x)[:, :1].repeat(1, 3))


def test_step_without_statistics_is_refused():
    model, x, _, opt = setup_linear()
    model(x).sum().backward()
    with pytest.raises(RuntimeError, match="no Kronecker factors"):
        opt.step()


@pytest.mark.parametrize(
    "action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,), np.float32)], ids=["discrete", "gaussian"]
)
def test_acktr_update_on_a_policy_respects_the_kl_clip(action_space):
    torch.manual_seed(0)
    policy = Policy(BOX_OBS, action_space, base=MLPBase(4, hidden_size=6))
    rollouts = rollout_from_policy(policy, BOX_OBS, action_space, T=10, N=4)
    kl_clip = 1e-3
    optimizer = KFACOptimizer(policy, lr=0.25, config=KFACConfig(kl_clip=kl_clip))
    agent = ACKTR(policy, optimizer, value_loss_coef=0.5, entropy_coef=0.01)
    opt = agent.optimizer
    layers = [m for m in policy.modules() if isinstance(m, (nn.Linear, LogStd))]
    assert opt.modules_ == layers and len(layers) == (7 if isinstance(action_space, gym.spaces.Box) else 6)
    assert not opt.plain_params
    before = {m: [p.detach().clone() for p in layer_params(m)] for m in layers}
    metrics = agent.update(rollouts)
    assert {"policy_loss", "value_loss", "entropy", "explained_variance", "kl_estimate", "grad_norm"} <= set(metrics)
    # every layer (the log-std too) got statistics from the sampled Fisher loss, and the
    # first step's quadratic KL estimate (summed over layers, from the factors) is within the clip
    total = sum(applied_kl(opt, m, before[m]) for m in layers)
    assert total == pytest.approx(metrics["kl_estimate"], rel=1e-4)
    assert total <= kl_clip * (1 + 1e-4)
    if opt.last_nu < 1.0:
        assert total == pytest.approx(kl_clip, rel=1e-4)
    assert opt.steps == 1


def test_acktr_update_on_a_cnn_policy_factors_every_conv_and_linear():
    from a2c_ppo.model import CNNBase
    from tests.test_a2c import image_rollout

    torch.manual_seed(0)
    obs_space = gym.spaces.Box(0, 255, (2, 36, 36), np.uint8)
    policy = Policy(obs_space, gym.spaces.Discrete(3), base=CNNBase((2, 36, 36), hidden_size=16))
    rollouts = image_rollout(policy, obs_space, gym.spaces.Discrete(3), T=4, N=2)
    optimizer = KFACOptimizer(policy, lr=0.25, config=KFACConfig(kl_clip=1e-3))
    agent = ACKTR(policy, optimizer, value_loss_coef=0.5, entropy_coef=0.01)
    opt = agent.optimizer
    assert sum(isinstance(m, nn.Conv2d) for m in opt.modules_) == 3 and not opt.plain_params
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    metrics = agent.update(rollouts)
    assert all("QA" in opt.state[m.weight] for m in opt.modules_)
    assert metrics["kl_estimate"] <= 1e-3 * (1 + 1e-6)
    assert all(not torch.equal(before[n], p.detach()) for n, p in policy.named_parameters())


class GaussianModel(nn.Module):
    """A Gaussian policy's head alone: a linear mean and a state-independent log-std."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Linear(3, 2).double()
        self.log_std = LogStd(2).double()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean(x)
        return mean, self.log_std(mean)


def test_log_std_is_a_bias_only_layer_preconditioned_and_under_the_kl_clip():
    torch.manual_seed(0)
    model = GaussianModel()
    with torch.no_grad():
        model.log_std.bias.copy_(torch.tensor([0.2, -0.4]))
    lr, kl_clip = 0.5, 1e-4
    opt = kfac(model, lr, momentum=0.0, damping=DAMPING, kl_clip=kl_clip)
    assert opt.modules_ == [model.mean, model.log_std] and not opt.plain_params
    x = torch.randn(7, 3, dtype=torch.float64)
    with opt.recording():
        mean, log_std = model(x)
    eps = torch.randn(7, 2, dtype=torch.float64)
    actions = (mean + log_std.exp() * eps).detach()
    # sampled Fisher loss: the Gaussian negative log-likelihood of actions drawn from the model
    opt.accumulate_stats((0.5 * ((actions - mean) / log_std.exp()) ** 2 + log_std).sum(-1).mean())
    g = 1.0 - eps**2  # d(-log p) / d log_std, per sample
    state = opt.state[model.log_std.bias]
    torch.testing.assert_close(state["A"], torch.ones(1, 1, dtype=torch.float64))
    torch.testing.assert_close(state["G"], g.t() @ g / 7)

    opt.zero_grad()
    (((mean - 1.0) ** 2).mean() + ((log_std - 1.0) ** 2).mean()).backward()
    grad = model.log_std.bias.grad.clone()
    before = {m: [p.detach().clone() for p in layer_params(m)] for m in opt.modules_}
    opt.step()
    assert opt.last_nu < 1.0
    # the log-std's step is its damped natural gradient, scaled by the same nu as the mean layer's ...
    fisher = state["G"] + DAMPING * torch.eye(2, dtype=torch.float64)
    expected_step = lr * opt.last_nu * torch.linalg.solve(fisher, grad)
    torch.testing.assert_close(before[model.log_std][0] - model.log_std.bias.detach(), expected_step)
    # ... and it is part of the KL estimate the clip holds to kl_clip
    kl_log_std = applied_kl(opt, model.log_std, before[model.log_std])
    kl_mean = applied_kl(opt, model.mean, before[model.mean])
    assert kl_log_std > 0.1 * kl_clip
    assert kl_log_std + kl_mean == pytest.approx(kl_clip, rel=1e-6)


def test_a_float32_eigendecomposition_that_gives_nans_is_redone_in_float64(monkeypatch):
    """float32 ``eigh`` of a rank-deficient factor can return NaNs without raising."""
    matrix = torch.diag(torch.tensor([2.0, 0.0, 0.0]))
    real_eigh = torch.linalg.eigh

    def eigh(m):
        d, q = real_eigh(m)
        return (d.fill_(float("nan")), q) if m.dtype == torch.float32 else (d, q)

    monkeypatch.setattr(torch.linalg, "eigh", eigh)
    d, q = KFACOptimizer._eigh(matrix)
    assert d.dtype == torch.float32 and torch.equal(d, torch.tensor([0.0, 0.0, 2.0]))
    assert torch.allclose(q @ torch.diag(d) @ q.T, matrix)
