"""A mixture of frozen expert policies under a trained gate (KINESIS, Simos et al. 2025).

KINESIS trains one expert on the whole motion library, then each next expert on the clips the previous ones
fail (:mod:`kinesis_neuro.clip_sampling`), freezes them and trains a gating network on top. Here the experts
are frozen actors of :class:`~kinesis_neuro.train.ActorCritic` policies (each with its own observation
normaliser); the gate is an MLP on the mixture's normalised observation giving a softmax over the ``K``
experts; a log-std and a critic complete the interface the trainer and :mod:`kinesis_neuro.policies` use
(``norm``, ``distribution``, ``value``).

Combination: the action distribution is a Normal whose mean is the gate-weighted sum of the experts' means,
``mean = sum_k g_k(obs) mu_k(obs)``. KINESIS instead *selects* one expert per step: its gate is a Categorical
distribution whose sampled index picks the expert whose mean is the action, and PPO trains the index's
log-probability. The weighted sum is the mean of that selection policy; it keeps the Gaussian policy, so
PPO, the rollout workers (:class:`NumpyMixture`, called as :class:`~kinesis_neuro.train.NumpyActor`) and
evaluation stay unchanged, and a confident gate (``g_k`` near 1) acts as a selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.train import ActorCritic, NumpyActor, RunningNorm, actor_weights, mlp, valid_hidden


def hidden_sizes(network: nn.Sequential) -> list[int]:
    """The hidden-layer sizes of an MLP made by :func:`~kinesis_neuro.train.mlp`."""
    return [m.out_features for m in network if isinstance(m, nn.Linear)][:-1]


class FrozenActor(nn.Module):
    """The acting part of an :class:`ActorCritic` (normaliser, mean MLP, log-std), without gradients."""

    def __init__(self, n_obs: int, n_act: int, hidden: Sequence[int]):
        super().__init__()
        self.norm = RunningNorm(n_obs)
        self.actor = mlp([n_obs, *hidden, n_act], out_gain=0.01)
        self.log_std = nn.Parameter(torch.zeros(n_act), requires_grad=False)
        self.requires_grad_(False)

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.norm(obs))


class MixtureOfExperts(nn.Module):
    """``K`` frozen experts (hidden sizes ``expert_hidden[k]``), a trainable gate (MLP ``gate_hidden`` on the
    normalised observation, softmax over the experts), a log-std and a critic (``critic_hidden``). Built
    untrained here (shapes only); :meth:`from_experts` fills it from trained policies."""

    def __init__(self, n_obs: int, n_act: int, expert_hidden: Sequence[Sequence[int]],
                 gate_hidden: Sequence[int] = (64, 64), critic_hidden: Sequence[int] = (512, 256),
                 init_log_std: float = -1.0):
        super().__init__()
        if not isinstance(expert_hidden, (list, tuple)) or not expert_hidden or not all(
                valid_hidden(h) for h in expert_hidden):
            raise KinesisNeuroError(f"expert_hidden must be one list of layer sizes per expert (at least one), "
                                    f"got {expert_hidden!r}")
        for name, hidden in (("gate_hidden", gate_hidden), ("critic_hidden", critic_hidden)):
            if not valid_hidden(hidden):
                raise KinesisNeuroError(f"{name} must be a non-empty list of layer sizes (integers >= 1), "
                                        f"got {hidden!r}")
        self.norm = RunningNorm(n_obs)
        self.experts = nn.ModuleList([FrozenActor(n_obs, n_act, h) for h in expert_hidden])
        self.gate = mlp([n_obs, *gate_hidden, len(expert_hidden)], out_gain=0.01)  # starts near uniform
        self.critic = mlp([n_obs, *critic_hidden, 1], out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((n_act,), float(init_log_std)))

    @classmethod
    def from_experts(cls, experts: Sequence, gate_hidden: Sequence[int] = (64, 64),
                     critic_hidden: Sequence[int] = (512, 256)) -> MixtureOfExperts:
        """A mixture of trained policies ``experts`` (policy folders, loaded policies, :class:`ActorCritic`
        agents or the experts of another mixture, to add one to them), frozen.
        As in KINESIS, the gate's normaliser starts from the first expert's; the log-std starts at the
        experts' mean log-std."""
        from kinesis_neuro import policies

        agents = [policies.load(e).agent if isinstance(e, (str, Path)) else
                  e.agent if isinstance(e, policies.Policy) else e for e in experts]
        if not agents:
            raise KinesisNeuroError("a mixture needs at least one expert")
        for k, agent in enumerate(agents):
            if not isinstance(agent, (ActorCritic, FrozenActor)):
                raise KinesisNeuroError(f"expert {k} is a {type(agent).__name__}; experts are single policies "
                                        "(policy folders or ActorCritic agents), not mixtures")
        sizes = {(a.norm.mean.shape[0], a.log_std.shape[0]) for a in agents}
        if len(sizes) > 1:
            raise KinesisNeuroError(f"the experts differ in (observation, action) sizes: {sorted(sizes)}")
        (n_obs, n_act), = sizes
        hidden = [hidden_sizes(a.actor) for a in agents]
        log_std = torch.stack([a.log_std.detach() for a in agents]).mean(0)
        mixture = cls(n_obs, n_act, hidden, gate_hidden, critic_hidden)
        with torch.no_grad():
            for expert, agent in zip(mixture.experts, agents):
                expert.norm.load_state_dict(agent.norm.state_dict())
                expert.actor.load_state_dict(agent.actor.state_dict())
                expert.log_std.copy_(agent.log_std)
            mixture.norm.load_state_dict(agents[0].norm.state_dict())
            mixture.log_std.copy_(log_std)
        return mixture

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def gate_weights(self, obs: torch.Tensor) -> torch.Tensor:
        """Weight of each expert, ``(..., K)``, summing to 1."""
        return torch.softmax(self.gate(self.norm(obs)), dim=-1)

    def expert_means(self, obs: torch.Tensor) -> torch.Tensor:
        """Every expert's action mean, ``(..., K, n_act)``."""
        return torch.stack([e.mean(obs) for e in self.experts], dim=-2)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = (self.gate_weights(obs).unsqueeze(-1) * self.expert_means(obs)).sum(-2)
        return torch.distributions.Normal(mean, self.log_std.exp())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.norm(obs)).squeeze(-1)


def mixture_weights(mixture: MixtureOfExperts) -> dict:
    """What a rollout worker needs of a mixture, as numpy arrays: the gate in the layout
    :func:`~kinesis_neuro.train.actor_weights` gives an actor (the mixture's normaliser, the gate's layers,
    the mixture's log-std) and ``experts``, each expert's :func:`~kinesis_neuro.train.actor_weights`."""
    norm = mixture.norm
    return {"norm_mean": norm.mean.numpy().copy(), "norm_var": norm.var.numpy().copy(), "clip": float(norm.clip),
            "layers": [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in mixture.gate
                       if isinstance(m, nn.Linear)],
            "log_std": mixture.log_std.detach().numpy().astype(np.float64),
            "experts": [actor_weights(e) for e in mixture.experts]}


class NumpyMixture(NumpyActor):
    """A :class:`MixtureOfExperts` evaluated with numpy, called as :class:`NumpyActor`: action means of a batch
    of observations, Gaussian log-probabilities with the mixture's log-std. Built from :func:`mixture_weights`."""

    def __init__(self, weights: dict):
        super().__init__(weights=weights)
        self.experts = [NumpyActor(weights=w) for w in weights["experts"]]

    def gate_weights(self, obs: np.ndarray) -> np.ndarray:
        logits = super().__call__(obs).astype(np.float32)
        z = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The action means of observations ``(n, n_obs)`` (or of one, ``(n_obs,)``)."""
        weights = self.gate_weights(obs)
        means = np.stack([e(obs).astype(np.float32) for e in self.experts], axis=-2)
        return (weights[..., None] * means).sum(-2).astype(np.float64)


def policy_weights(agent) -> dict:
    """What a rollout worker needs of ``agent``: :func:`mixture_weights` of a :class:`MixtureOfExperts`,
    :func:`~kinesis_neuro.train.actor_weights` of an :class:`ActorCritic`."""
    return mixture_weights(agent) if isinstance(agent, MixtureOfExperts) else actor_weights(agent)


def numpy_policy(source) -> NumpyActor:
    """The numpy evaluator of a policy: ``source`` is an agent (:class:`ActorCritic` or
    :class:`MixtureOfExperts`, e.g. ``Policy.agent``) or the weights a worker receives (:func:`policy_weights`)."""
    weights = source if isinstance(source, dict) else policy_weights(source)
    return NumpyMixture(weights) if "experts" in weights else NumpyActor(weights=weights)


def plateaued(history: Sequence[float], window: int = 10, min_gain: float = 0.01) -> bool:
    """Whether a training curve stopped improving: the mean of its last ``window`` values exceeds the mean of
    the ``window`` before by less than ``min_gain`` (in the curve's units, e.g. success rate or return per
    update). NaN values (updates without a finished episode) are left out; False until ``2 * window`` values."""
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
        raise KinesisNeuroError(f"window must be an integer >= 1, got {window!r}")
    if not np.isfinite(min_gain) or min_gain < 0:
        raise KinesisNeuroError(f"min_gain must be a finite number >= 0, got {min_gain!r}")
    values = np.asarray(history, dtype=float).ravel()
    if np.isinf(values).any():
        raise KinesisNeuroError("the training curve holds infinite values")
    values = values[~np.isnan(values)]
    if len(values) < 2 * window:
        return False
    return bool(values[-window:].mean() - values[-2 * window:-window].mean() < min_gain)
