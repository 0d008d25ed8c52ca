"""GAIL (Ho & Ermon 2016): a discriminator between expert and policy (observation, action)
pairs whose logit becomes the policy's reward.

Shapes: B policy rows, M expert rows, m minibatch rows, D observation width, A stored action
width, F the pair width (``gail_pairs``). A pair is ``x = [obs, encode_actions(action)]``
(F,), with absorbing states ``[obs, 0, encode_actions(action)]`` and the absorbing state's
``[0, 1, 0]``; the discriminator's logit is ``f(x)`` and ``D(x) = sigmoid(f(x))`` the
probability that ``x`` came from the expert.

Loss, per minibatch of m expert pairs x_E and m policy pairs x_P (expert label 1, policy 0)::

    bce     = mean(-log D(x_E)) + mean(-log(1 - D(x_P)))       (two BCE-with-logits means)
    x_hat   = alpha * x_E + (1 - alpha) * x_P,  alpha ~ U[0, 1) per row (m, 1)
    penalty = lambda * mean_rows((||d f(x_hat) / d x_hat||_2 - 1)^2)        (WGAN-GP)
    loss    = bce + penalty

Accuracies: the fraction of expert logits > 0 and of policy logits < 0.

Reward for step t of env n, with m_t = 0 where obs_t starts an episode (``rollouts.masks[:-1]``)::

    r_t = log D(x_t) - log(1 - D(x_t)) = f(x_t)     (exactly: log(s / (1 - s)) = f for s = sigmoid(f))
          or, with reward_form "positive", r_t = -log(1 - D(x_t)) = softplus(f(x_t)) > 0
    G_t = gamma * m_t * G_{t-1} + r_t               (running discounted return, carried across calls)
    after step t the running (mean, var) absorbs the N values G_t (Chan's parallel formula,
    starting from mean 0, var 1, count 1e-4 like baselines' RunningMeanStd), then
    reward_t = r_t / sqrt(var + 1e-8)

With absorbing states (``absorbing=True``; DAC, Kostrikov et al. 2019), a step that ends its
episode by termination (not by a time limit) also earns the absorbing state's reward for ever
after: ``r_t += gamma / (1 - gamma) * r_abs`` with ``r_abs`` the reward form of ``f([0, 1, 0])``.
The discriminator learns that pair from one absorbing row per terminated episode on each side
(every terminated step of the rollout, every expert episode recorded as terminated, as DAC adds
one per episode): an expert that never terminates makes terminating cost, one that ends its
episodes (reaching a goal) makes it pay. A rollout holds only the current policy's
terminations (DAC's replay buffer keeps every past episode's): once the learner stops
terminating and the expert never does, no row holds the absorbing pair and its logit moves
only with the other pairs' training (``absorbing_logit`` shows it; docs/BENCHMARKS.md
measures what it costs). Expert steps subsampled every n (``expert_subsample``)
leave each episode 1/n of its steps but its whole absorbing row, so, as in DAC's code, the
expert's absorbing rows weigh 1/n in the bce (``mean(w * bce_row)`` over the expert rows; the
accuracies and the penalty are unweighted).

The logit (the reference's form) can be negative: in an env whose episodes end on failure a
policy the discriminator sees through earns most by ending episodes at once (Hopper falls on
its first steps, return 8; docs/BENCHMARKS.md). ``-log(1 - D)`` (the GAIL paper's form, also
OpenAI baselines') is positive: a bonus for every step, right for such envs and wrong for envs
whose goal ends the episode (Kostrikov et al. 2019, "Discriminator-Actor-Critic", sec. 4.2, on
both biases); absorbing states remove both.

The reference computes ``log(sigmoid(f)) - log(1 - sigmoid(f))``, which is f in exact
arithmetic but +inf in float32 once sigmoid rounds to 1 (f above about 17); returning f itself
is the same reward without that overflow. The reference also starts G at the first step's
reward (counting it twice); here G starts at 0.

Defaults, from ikostrikov/pytorch-a2c-ppo-acktr-gail: hidden size 100 and tanh layers
(``main.py``: ``gail.Discriminator(obs_dim + action_dim, 100, device)``; ``algo/gail.py``),
Adam at torch's default lr 1e-3 (``algo/gail.py``: ``torch.optim.Adam(self.trunk.parameters())``),
lambda 10 (``algo/gail.py``: ``compute_grad_pen(..., lambda_=10)``), minibatches of 128 and 5
epochs per update (``arguments.py``: ``--gail-batch-size 128``, ``--gail-epoch 5``), 100 epochs
in each of the first 10 updates (``main.py``'s warm-up), 4 expert episodes subsampled every 20
steps (``main.py``: ``ExpertDataset(file_name, num_trajectories=4, subsample_frequency=20)``;
see ``a2c_ppo.trajectories.select_episodes`` / ``subsample``).

Data-parallel training: with a ``reducer`` the gradients are averaged over ranks before every
Adam step (one flat all-reduce), the update's metrics are averaged, and the return statistics
absorb every rank's envs (one all-reduce per ``reward`` call), so all ranks keep identical
discriminators and statistics when built from the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from a2c_ppo.algo.common import Reducer, average_gradients
from a2c_ppo.algo.discriminator import (
    DEFAULT_GRAD_PENALTY,
    DEFAULT_HIDDEN_SIZE,
    Discriminator,
    discriminator_loss,
    gradient_penalty,
)
from a2c_ppo.algo.gail_pairs import PairLayout, as_stored_actions, encode_actions
from a2c_ppo.algo.optimizers import make_adam
from a2c_ppo.config import GAIL_REWARDS
from a2c_ppo.envs.running_stats import merge_moments
from a2c_ppo.errors import ConfigError
from a2c_ppo.trajectories import Trajectories

DEFAULT_LR = 1e-3
DEFAULT_BATCH_SIZE = 128
DEFAULT_EPOCHS = 5
WARMUP_UPDATES = 10
WARMUP_EPOCHS = 100
RETURN_EPSILON = 1e-8
METRIC_NAMES: tuple[str, ...] = ("loss", "grad_penalty", "expert_accuracy", "policy_accuracy")


def discriminator_epochs(update: int, epochs: int = DEFAULT_EPOCHS, warmup_updates: int = WARMUP_UPDATES) -> int:
    """Discriminator epochs for the 0-based ``update``: the reference's warm-up trains 100
    epochs in each of the first 10 updates, so the first rewards already tell expert from policy."""
    return WARMUP_EPOCHS if update < warmup_updates else epochs


class GAIL:
    """The discriminator, its Adam, the expert pairs and the reward's return statistics.

    ``expert``: the (selected, subsampled) expert trajectories; vector observations only.
    ``absorbing``: DAC's absorbing states (module docstring); the expert file must say which
    of its episodes terminated (``Trajectories.terminated``). ``expert_subsample``: the step
    ``expert`` was subsampled with (its absorbing rows weigh 1/that).
    ``seed`` seeds the minibatch order and the penalty's interpolation (a CPU generator); in a
    data-parallel run, give each rank its own (e.g. seed + rank) so that ranks draw different
    expert minibatches, but build the discriminator under the same torch seed on every rank.
    """

    def __init__(
        self,
        expert: Trajectories,
        *,
        hidden_size: int = DEFAULT_HIDDEN_SIZE,
        lr: float = DEFAULT_LR,
        grad_penalty_coef: float = DEFAULT_GRAD_PENALTY,
        reducer: Reducer | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        reward_form: str = "logit",
        absorbing: bool = False,
        expert_subsample: int = 1,
    ) -> None:
        if reward_form not in GAIL_REWARDS:  # r_t from the logit f: f itself, or softplus(f) = -log(1 - D)
            raise ValueError(f"reward_form must be one of {GAIL_REWARDS}, not {reward_form!r}")
        obs_shape = expert.spaces["observation"]["shape"]
        if len(obs_shape) != 1:
            raise ConfigError(
                f"GAIL needs vector observations, but {expert.env_id} has observations of shape {tuple(obs_shape)}; "
                "use an env with 1-D observations."
            )
        self.device = torch.device(device)
        self.reward_form = reward_form
        self.action_space_desc = expert.spaces["action"]
        self.grad_penalty_coef = grad_penalty_coef
        self.reducer = reducer
        self.layout = PairLayout(obs_shape[0], self.action_space_desc, absorbing)
        self.discriminator = Discriminator(self.layout.width, hidden_size)
        self.discriminator.to(self.device)
        self.optimizer = make_adam(self.discriminator.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        expert_obs = expert.obs.to(self.device, torch.float32)
        expert_actions = encode_actions(expert.actions, self.action_space_desc).to(self.device)
        # (M + K, 1): 1 for the K absorbing rows (one per terminated episode) after the M steps
        self.expert_absorbing: torch.Tensor | None = None
        self.expert_weights: torch.Tensor | None = None  # (M + K, 1) the bce's row weights; None: all 1
        if absorbing:
            if expert.terminated is None:
                raise ConfigError(
                    f"Absorbing states need to know which expert episodes terminated, and this expert data for "
                    f"{expert.env_id} does not say: record it again (enjoy.py --record-trajectories)."
                )
            ended = int(expert.terminated.sum())
            expert_obs = torch.cat([expert_obs, expert_obs.new_zeros(ended, expert_obs.shape[1])])
            expert_actions = torch.cat([expert_actions, expert_actions.new_zeros(ended, expert_actions.shape[1])])
            self.expert_absorbing = (torch.arange(len(expert_obs), device=self.device) >= len(expert.obs)).float()
            self.expert_absorbing = self.expert_absorbing.unsqueeze(1)
            if expert_subsample > 1:
                self.expert_weights = 1.0 - self.expert_absorbing * (1.0 - 1.0 / expert_subsample)
        self.expert_obs, self.expert_actions = expert_obs, expert_actions
        endings = "" if expert.terminated is None else f", {int(expert.terminated.sum())} of them terminated"
        self.expert_summary = f"{len(expert.obs)} expert steps of {len(expert.lengths)} episodes{endings}"
        self.ret_mean, self.ret_var, self.ret_count = 0.0, 1.0, 1e-4
        self.running_return: torch.Tensor | None = None  # (N,) float64, G of the last step seen

    def pairs(self, obs: torch.Tensor, actions: torch.Tensor, absorbing_rows: int = 0) -> torch.Tensor:
        """obs (B, D) and the policy's actions (B, A) -> float32 pairs (B + absorbing_rows, F) on
        the device: the steps' pairs, then ``absorbing_rows`` copies of the absorbing state's."""
        obs = obs.to(self.device, torch.float32)
        stored = as_stored_actions(actions.to(self.device), self.action_space_desc)
        steps = self.layout.join(obs, encode_actions(stored, self.action_space_desc))
        if not absorbing_rows:
            return steps
        return torch.cat([steps, self.layout.absorbing_pairs(absorbing_rows, self.device)])

    def update(
        self,
        policy_obs: torch.Tensor,
        policy_actions: torch.Tensor,
        epochs: int = DEFAULT_EPOCHS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        obs_normalizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
        policy_absorbing: int = 0,
    ) -> dict[str, float]:
        """Train on the rollout's pairs, policy_obs (B, D) as the policy saw them and actions (B, A),
        and ``policy_absorbing`` absorbing rows (the rollout's terminated steps; absorbing states only).

        Each epoch pairs random disjoint minibatches of min(batch_size, B, M) policy and expert
        rows (absorbing rows counted in), min(B, M) // that many (the reference zips its two
        loaders the same way); expert observations pass through ``obs_normalizer`` ((m, D) ->
        (m, D), the policy's observation normalisation without updating it; None: none).
        Returns ``METRIC_NAMES`` averaged over the Adam steps (and ranks): ``loss`` is bce +
        penalty, as the reference; with absorbing states also ``absorbing_rows`` (the policy
        side's) and ``absorbing_logit``, f of the absorbing pair after the update.
        """
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"GAIL.update needs epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
        if policy_absorbing and not self.layout.with_absorbing:
            raise ValueError("GAIL.update got absorbing rows, but this discriminator has no absorbing state")
        policy = self.pairs(policy_obs.reshape(len(policy_obs), -1), policy_actions, policy_absorbing)
        size, batches = self._minibatches(batch_size, len(policy))
        totals = torch.zeros(len(METRIC_NAMES), device=self.device)
        for _ in range(epochs):
            orders = [self._draw_rows(rows, batches * size) for rows in (len(policy), len(self.expert_obs))]
            policy_order, expert_order = (order.view(batches, size).to(self.device) for order in orders)
            for policy_rows, expert_rows in zip(policy_order, expert_order):
                expert_obs = self.expert_obs[expert_rows]
                if obs_normalizer is not None:
                    expert_obs = obs_normalizer(expert_obs)
                mask = None if self.expert_absorbing is None else self.expert_absorbing[expert_rows]
                weights = None if self.expert_weights is None else self.expert_weights[expert_rows]
                expert = self.layout.join(expert_obs, self.expert_actions[expert_rows], mask)
                totals += self._step(expert, policy[policy_rows], weights)
        metrics, names = totals / (epochs * batches), METRIC_NAMES
        if self.layout.with_absorbing:  # and how many absorbing rows the policy side held (mean over ranks)
            metrics = torch.cat([metrics, metrics.new_tensor([float(policy_absorbing)])])
            names = (*names, "absorbing_rows")
        if self.reducer is not None:
            metrics = self.reducer.all_reduce_sum(metrics) / self.reducer.world_size
        logged = dict(zip(names, metrics.tolist()))
        if self.layout.with_absorbing:  # the same discriminator on every rank
            with torch.no_grad():
                logged["absorbing_logit"] = float(self.discriminator(self.layout.absorbing_pairs(1, self.device)))
        return logged

    def describe(self) -> str:
        """A console line: the expert data and the reward."""
        absorbing = ", with absorbing states" if self.layout.with_absorbing else ""
        return f"GAIL: {self.expert_summary}; reward {self.reward_form}{absorbing}."

    def _minibatches(self, batch_size: int, policy_rows: int) -> tuple[int, int]:
        """(rows per minibatch, minibatches per epoch): min(batch_size, B, M) and min(B, M) // that.

        Under a reducer every rank must take as many Adam steps (each all-reduces), and B can
        differ between ranks (absorbing rows, a native env's reset rows): the ranks take the
        mean of their counts, and a rank short of rows draws some twice (``_draw_rows``)."""
        size = min(batch_size, policy_rows, len(self.expert_obs))
        batches = min(policy_rows, len(self.expert_obs)) // size
        if self.reducer is None:
            return size, batches
        counts = torch.tensor([float(size), float(batches)], device=self.device)
        size, batches = (int(value) for value in self.reducer.all_reduce_sum(counts).tolist())
        world = self.reducer.world_size
        return max(size // world, 1), max(batches // world, 1)

    def _draw_rows(self, rows: int, count: int) -> torch.Tensor:
        """``count`` row indices (count,) of ``rows``, each at most once while count <= rows (whole
        random permutations after another beyond). Drawn on the CPU generator whatever the
        device, so a seed gives the same order everywhere."""
        drawn = [torch.randperm(rows, generator=self.generator) for _ in range(-(-count // rows))]
        return torch.cat(drawn)[:count]

    def _step(self, expert: torch.Tensor, policy: torch.Tensor, expert_weights: torch.Tensor | None) -> torch.Tensor:
        """One Adam step on a minibatch of pairs (m, F) of each side (the expert rows' bce
        weighted by ``expert_weights`` (m, 1), None: 1); the metrics (4,), detached."""
        # One forward pass over both halves: the MLP treats rows independently.
        expert_logits, policy_logits = self.discriminator(torch.cat([expert, policy])).split(len(expert))
        bce, expert_accuracy, policy_accuracy = discriminator_loss(expert_logits, policy_logits, expert_weights)
        penalty = gradient_penalty(self.discriminator, expert, policy, self.grad_penalty_coef, self.generator)
        loss = bce + penalty
        self.optimizer.zero_grad()
        loss.backward()
        if self.reducer is not None:
            average_gradients(list(self.discriminator.parameters()), self.reducer)
        self.optimizer.step()
        return torch.stack([loss, penalty, expert_accuracy, policy_accuracy]).detach()

    @torch.no_grad()
    def reward(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        masks: torch.Tensor,
        gamma: float,
        valid: torch.Tensor | None = None,
        terminated: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normalised rewards (T, N, 1) float32 for obs (T, N, D) and actions (T, N, A).

        ``masks`` (T, N, 1): 0 where obs[t] starts an episode, else 1 (``rollouts.masks[:-1]``;
        from ``dones`` (T, N, 1) of the steps' ends: ``masks[t] = 1 - dones[t - 1]``, with the
        previous rollout's last done for t = 0). Updates the return statistics (module docstring)
        with the ``valid`` (T, N, 1) rows only, where given: a next-step vector env's reset rows
        are no transitions (``rollouts.valid``). With absorbing states, ``terminated`` (T, N, 1)
        bool marks the steps that ended their episode by termination (required; gamma < 1)."""
        T, N = masks.shape[:2]
        with_absorbing = self.layout.with_absorbing
        if with_absorbing and (terminated is None or gamma >= 1.0):
            raise ValueError("GAIL.reward with absorbing states needs the steps' terminations and gamma < 1")
        pairs = self.pairs(obs.reshape(T * N, -1), actions.reshape(T * N, -1), int(with_absorbing))
        logits = self.discriminator(pairs).view(-1)
        # -log(1 - sigmoid(f)) = softplus(f), computed without overflow
        rewards = torch.nn.functional.softplus(logits) if self.reward_form == "positive" else logits
        raw = rewards[: T * N].view(T, N)
        if with_absorbing:  # the absorbing state's reward at every later step: sum_k>=1 gamma^k r_abs
            assert terminated is not None
            ended = terminated.reshape(T, N).to(self.device, torch.float32)
            raw = raw + ended * (gamma / (1.0 - gamma)) * rewards[-1]
        if self.running_return is None or len(self.running_return) != N:
            # none yet, or a resume's with another number of envs: those start new episodes (masks 0)
            self.running_return = torch.zeros(N, dtype=torch.float64, device=self.device)
        keep = gamma * masks.reshape(T, N).to(self.device, torch.float64)
        returns = torch.empty(T, N, dtype=torch.float64, device=self.device)
        running = self.running_return
        for t in range(T):
            running = keep[t] * running + raw[t].double()
            returns[t] = running
        self.running_return = running
        weights = None if valid is None else valid.reshape(T, N).to(self.device, torch.float64)
        variances = torch.tensor(self._merge_returns(returns, weights), dtype=torch.float64, device=self.device)
        scale = (variances + RETURN_EPSILON).rsqrt().float()
        return (raw * scale[:, None]).unsqueeze(-1)

    def _merge_returns(self, returns: torch.Tensor, weights: torch.Tensor | None = None) -> list[float]:
        """Merge each step's returns (T, N) of all ranks into the statistics (the rows whose
        ``weights`` (T, N) are 1, where given); the variance after each step."""
        # Sums of deviations from the current mean (the same on every rank) keep the
        # per-step variance accurate when it is recovered from summed moments.
        deviations = returns - self.ret_mean
        weights = torch.ones_like(deviations) if weights is None else weights
        moments = torch.stack([weights.sum(1), (deviations * weights).sum(1), (deviations.pow(2) * weights).sum(1)], 1)
        if self.reducer is not None:
            self.reducer.all_reduce_sum(moments)
        shift, variances = self.ret_mean, []
        for count, sum1, sum2 in moments.tolist():
            if count == 0:  # every row of this step a reset row: nothing to merge
                variances.append(self.ret_var)
                continue
            batch_m2 = max(sum2 - sum1 * sum1 / count, 0.0)
            total, self.ret_mean, m2 = merge_moments(
                self.ret_count, self.ret_mean, self.ret_var * self.ret_count, count, shift + sum1 / count, batch_m2
            )
            self.ret_count, self.ret_var = total, m2 / total
            variances.append(self.ret_var)
        return variances

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain data (``torch.load(weights_only=True)`` reads it): everything an
        exact resume needs except the expert data, which comes from its file."""
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "return_stats": {"mean": self.ret_mean, "var": self.ret_var, "count": self.ret_count},
            "running_return": self.running_return,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], keep_generator: bool = False) -> None:
        """``keep_generator``: keep this GAIL's own minibatch generator (a rank > 0 of a resumed
        data-parallel run: the checkpoint holds rank 0's, and ranks draw different minibatches)."""
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        stats = state["return_stats"]
        self.ret_mean, self.ret_var, self.ret_count = float(stats["mean"]), float(stats["var"]), float(stats["count"])
        running = state["running_return"]
        self.running_return = None if running is None else running.to(self.device, torch.float64)
        if not keep_generator:  # on the CPU even when the state was loaded with map_location="cuda"
            self.generator.set_state(state["generator"].cpu())
