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

The recipe with the trainer (:class:`~kinesis_neuro.train.Trainer`): train an expert on the library; once its
success rate stops improving (:func:`should_start_next_expert`), train the next one from its weights on the
clips it fails (:func:`next_expert_clips`; :func:`next_expert` gives both and the commands); then train a gate
over the frozen experts (``PPOConfig.experts``, ``kinesis-neuro train --experts A,B``). Unlike KINESIS, the new
gate first learns to choose on each clip the expert trained on it (:func:`warm_start_gate`), so PPO starts
from a working mixture rather than the experts' average.
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kinesis_neuro.clip_sampling import ClipSampler
from kinesis_neuro.envs.imitation import ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError
from kinesis_neuro.train import (
    CHECKPOINT,
    LOG,
    ActorCritic,
    NumpyActor,
    RunningNorm,
    _one_line,
    _to_numpy,
    actor_weights,
    checkpoint_config,
    load_checkpoint,
    mlp,
    valid_hidden,
)


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


# -- experts of a gate run ---------------------------------------------------------------------------------
@dataclass
class Expert:
    """A frozen expert: its policy, the folder it came from and, when that folder holds one, the checkpoint of
    its training run (whose critic can start a gate's)."""

    agent: ActorCritic
    source: str
    checkpoint: dict | None = None
    clips: tuple[str, ...] = ()  # the motion clips it was trained on (its environment's clips, or its one motion)


def load_expert(source: str | Path) -> Expert:
    """The single policy of ``source``, read as ``init_from`` is (:func:`~kinesis_neuro.train.warm_start_state`):
    a policy folder (``policy.safetensors`` and ``policy.json``, with the ``checkpoint.pt`` of its run when the
    folder holds one) or a training run folder (its ``checkpoint.pt``). A ``KinesisNeuroError`` names the
    folder when it is missing, of neither kind, or a mixture."""
    from kinesis_neuro import policies

    path = Path(source)
    checkpoint = path / CHECKPOINT
    if not path.is_dir():
        raise KinesisNeuroError(f"expert {path}: {'not a folder' if path.exists() else 'no such folder'}; an "
                                "expert is a training run folder or a policy folder")
    if (path / policies.WEIGHTS).exists() or (path / policies.CONFIG).exists():
        policy = policies.load(path)
        agent, env = policy.agent, policy.env_config
        ckpt = load_checkpoint(checkpoint) if checkpoint.is_file() else None
    elif checkpoint.exists():
        ckpt = load_checkpoint(checkpoint)
        config, state = checkpoint_config(ckpt, checkpoint), ckpt["agent"]
        env = config.env
        if config.experts:
            agent = None  # a gate run: refused below
        elif "norm.mean" not in state or "log_std" not in state:
            raise DataFormatError(f"{checkpoint}: its agent lacks norm.mean or log_std")
        else:
            agent = ActorCritic(state["norm.mean"].shape[0], state["log_std"].shape[0], config.hidden)
            try:
                agent.load_state_dict(state)
            except RuntimeError as err:
                raise DataFormatError(f"{checkpoint}: its networks do not fit its config (hidden "
                                      f"{list(config.hidden)}): {_one_line(err)}") from err
    else:
        raise KinesisNeuroError(f"expert {path}: neither a training run folder ({CHECKPOINT}) nor a policy "
                                f"folder ({policies.WEIGHTS} and {policies.CONFIG})")
    if not isinstance(agent, ActorCritic):
        raise KinesisNeuroError(f"expert {path}: a mixture of experts; experts are single policies (give the "
                                "folders of its experts)")
    return Expert(agent.eval(), str(path), ckpt, trained_clips(env))


def trained_clips(env: dict) -> tuple[str, ...]:
    """The motion clips of the environment settings ``env``: its library clips, or its one motion."""
    return tuple(env.get("clips", ())) or (env.get("motion", ImitationConfig.motion),)


def gate_over(experts: Sequence[Expert], n_obs: int, n_act: int, gate_hidden: Sequence[int] = (64, 64),
              critic_hidden: Sequence[int] = (512, 256)) -> MixtureOfExperts:
    """A mixture of the frozen ``experts`` (:func:`load_expert`) for an environment of ``n_obs`` observations
    and ``n_act`` actions (:meth:`MixtureOfExperts.from_experts`); a ``KinesisNeuroError`` names an expert
    whose sizes differ from the environment's."""
    for expert in experts:
        obs, act = expert.agent.norm.mean.shape[0], expert.agent.log_std.shape[0]
        if act != n_act:
            raise KinesisNeuroError(f"expert {expert.source}: {act} actions, this run's environment has {n_act} "
                                    "(one per muscle)")
        if obs != n_obs:
            raise KinesisNeuroError(f"expert {expert.source}: observations of {obs} entries, this run's "
                                    f"environment gives {n_obs}; experts are trained with the run's observation "
                                    "settings (e.g. toe_contact, muscle_observations)")
    return MixtureOfExperts.from_experts([e.agent for e in experts], gate_hidden, critic_hidden)


def warm_start_critic(expert: Expert, mixture: MixtureOfExperts, value_norm: RunningNorm) -> bool:
    """Start ``mixture``'s critic and the trainer's return normaliser ``value_norm`` from those of ``expert``'s
    training checkpoint (its critic saw the observation normaliser a mixture starts with, its first expert's);
    whether they were. Nothing changes without a checkpoint; a critic of other layer sizes is warned about."""
    if expert.checkpoint is None:
        return False
    state = {k.removeprefix("critic."): v for k, v in expert.checkpoint["agent"].items() if k.startswith("critic.")}
    target = mixture.critic.state_dict()
    if state.keys() != target.keys() or any(state[k].shape != target[k].shape for k in target):
        warnings.warn(f"expert {expert.source}: its critic does not fit the mixture's (layer sizes "
                      f"{hidden_sizes(mixture.critic)}, PPO setting hidden); the critic starts untrained")
        return False
    mixture.critic.load_state_dict(state)
    if "value_norm" in expert.checkpoint:  # none: a critic of unnormalised returns, the identity normaliser fits
        try:
            value_norm.load_state_dict(expert.checkpoint["value_norm"])
        except (RuntimeError, TypeError, AttributeError, KeyError) as err:
            raise DataFormatError(f"{Path(expert.source) / CHECKPOINT}: value_norm does not fit "
                                  f"({_one_line(err)})") from err
    return True


def clip_experts(experts: Sequence[Expert], clips: Sequence[str]) -> dict[str, int]:
    """For each of ``clips`` the index of the expert trained on it, the latest one when several were (each
    next expert trains on what the earlier ones fail); clips no expert was trained on are left out."""
    return {clip: max(k for k, e in enumerate(experts) if clip in e.clips)
            for clip in clips if any(clip in e.clips for e in experts)}


def gate_examples(mixture: MixtureOfExperts, assignment: dict[str, int], env: dict, *, episodes: int = 4,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Observations of each clip of ``assignment`` imitated by its expert (deterministic actions, ``episodes``
    episodes from seeded random phases, each until it ends) in the environment ``env`` (ImitationConfig
    settings), and that expert's index for each: ``(observations (n, n_obs), experts (n,))``."""
    simulation = MyoLegsImitationEnv(ImitationConfig(**env))
    observations, labels = [], []
    for i, (clip, k) in enumerate(assignment.items()):
        expert = mixture.experts[k]
        for episode in range(episodes):
            obs, _ = simulation.reset(seed=seed + episodes * i + episode, options={"clip": clip})
            done = False
            while not done:
                observations.append(obs)
                with torch.no_grad():
                    action = expert.mean(torch.as_tensor(obs, dtype=torch.float32)[None])[0].clamp(-1, 1)
                obs, _, terminated, truncated, _ = simulation.step(action.numpy())
                done = terminated or truncated
            labels += [k] * (len(observations) - len(labels))
    return np.array(observations, dtype=np.float32), np.array(labels, dtype=np.int64)


def fit_gate(mixture: MixtureOfExperts, observations: np.ndarray, labels: np.ndarray, *, updates: int = 300,
             lr: float = 1e-3) -> float:
    """Train the gate to choose expert ``labels[i]`` at ``observations[i]`` (cross-entropy with classes weighted
    by their inverse frequency, full batch, Adam); returns the share of observations where it then does."""
    x = mixture.norm(torch.as_tensor(observations)).detach()
    y = torch.as_tensor(labels)
    counts = torch.bincount(y, minlength=mixture.num_experts).float()
    weight = torch.where(counts > 0, counts.sum() / counts.clamp(min=1), torch.zeros_like(counts))
    optimiser = torch.optim.Adam(mixture.gate.parameters(), lr=lr)
    for _ in range(updates):
        loss = nn.functional.cross_entropy(mixture.gate(x), y, weight=weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return float((mixture.gate(x).argmax(-1) == y).float().mean())


def warm_start_gate(mixture: MixtureOfExperts, experts: Sequence[Expert], env: dict, seed: int = 0) -> dict:
    """Start the gate choosing, on each clip of ``env``'s motion library, the expert trained on it
    (:func:`clip_experts`, :func:`gate_examples`, :func:`fit_gate`), so PPO refines a working mixture instead
    of the experts' average. Returns ``clips`` (clip -> expert index), ``samples`` and ``accuracy``; no clip
    any expert was trained on: nothing changes (``samples`` 0)."""
    assignment = clip_experts(experts, trained_clips(env))
    if not assignment:
        return {"clips": {}, "samples": 0, "accuracy": float("nan")}
    observations, labels = gate_examples(mixture, assignment, env, seed=seed)
    return {"clips": assignment, "samples": len(labels), "accuracy": fit_gate(mixture, observations, labels)}


def checkpoint_expert_hidden(ckpt: dict, path) -> list[list[int]]:
    """The layer sizes of every expert that a gate run's checkpoint (read from ``path``) records."""
    hidden = ckpt.get("expert_hidden")
    if not isinstance(hidden, list) or not hidden or not all(valid_hidden(h) for h in hidden):
        raise DataFormatError(f"{path}: a mixture run's checkpoint must record expert_hidden (the layer sizes of "
                              f"each expert), got {hidden!r}")
    return [[int(v) for v in h] for h in hidden]


def checkpoint_mixture(ckpt: dict, path) -> MixtureOfExperts:
    """The mixture of experts of a gate run's checkpoint ``ckpt`` (read from ``path``), weights loaded."""
    config, state = checkpoint_config(ckpt, path), ckpt["agent"]
    if "norm.mean" not in state or "log_std" not in state:
        raise DataFormatError(f"{path}: its agent lacks norm.mean or log_std")
    mixture = MixtureOfExperts(state["norm.mean"].shape[0], state["log_std"].shape[0],
                               checkpoint_expert_hidden(ckpt, path), config.gate_hidden, config.hidden)
    try:
        mixture.load_state_dict(state)
    except RuntimeError as err:
        raise DataFormatError(f"{path}: its networks do not fit its config ({_one_line(err)})") from err
    return mixture


# -- when to start the next expert, and on which clips -------------------------------------------------------
def success_curve(run_dir: str | Path) -> np.ndarray:
    """A library run's success rate per update: the mean over its motion clips of 1 - failure rate (the
    ``failure_rate:<clip>`` columns of ``training_log.csv``; NaN in rows logged before there were any).

    Why this curve: each clip's failure rate is a moving average over that clip's own episodes, so the mean
    weighs every clip alike whatever hard-negative mining draws; the mean episode length or return shift
    when mining draws the hard clips more often, and fall while the policy improves."""
    import pandas as pd

    log = Path(run_dir) / LOG
    if not log.is_file():
        raise KinesisNeuroError(f"{log}: {'not a regular file' if log.exists() else 'no such file'}; give a "
                                "training run folder")
    try:
        rates = pd.read_csv(log, usecols=lambda column: column.startswith("failure_rate:"))
    except (ValueError, pd.errors.ParserError) as err:
        raise DataFormatError(f"{log}: not a readable training log ({_one_line(err)})") from err
    if rates.shape[1] == 0:
        raise KinesisNeuroError(f"{log}: no per-clip failure rates; a run on a motion library (--clips) with "
                                "hard-negative mining logs them")
    return 1.0 - rates.mean(axis=1).to_numpy(dtype=float)


def should_start_next_expert(run_dir: str | Path, window: int = 100, min_gain: float = 0.01) -> bool:
    """Whether a library run has plateaued (:func:`plateaued`): its :func:`success_curve` gained less than
    ``min_gain`` (a fraction of the clips) from the ``window`` updates before to the last ``window``."""
    return plateaued(success_curve(run_dir), window, min_gain)


def next_expert_clips(run_dir: str | Path, clip_names: Sequence[str] | None = None,
                      threshold: float = 0.5) -> tuple[str, ...]:
    """The clips the next expert trains on (KINESIS' negative mining): those of the run's motion library whose
    failure rate in the clip sampler of its checkpoint is at least ``threshold``
    (:meth:`~kinesis_neuro.clip_sampling.ClipSampler.failed_clips`; a clip never tried counts as failed), in the
    order of the run's clips; ``clip_names``: only among these. The rates are moving averages of the training
    episodes (stochastic actions) of about the last five episodes of each clip."""
    path = Path(run_dir) / CHECKPOINT
    ckpt = load_checkpoint(path)
    clips = tuple(checkpoint_config(ckpt, path).env.get("clips", ()))
    if not clips or ckpt.get("clip_sampler") is None:
        raise KinesisNeuroError(f"{path}: no clip failure rates; a run on a motion library (--clips) with "
                                "hard-negative mining records them (else see kinesis-neuro evaluate)")
    sampler = ClipSampler(len(clips))
    try:
        sampler.load_state_dict(_to_numpy(ckpt["clip_sampler"]))
    except DataFormatError as err:
        raise DataFormatError(f"{path}: {err}") from err
    failed = [clips[i] for i in sampler.failed_clips(threshold)]
    if clip_names is not None:
        unknown = [name for name in clip_names if name not in clips]
        if unknown:
            raise KinesisNeuroError(f"clips {unknown} are not clips of the run in {run_dir} ({', '.join(clips)})")
        failed = [name for name in failed if name in clip_names]
    return tuple(failed)


def _train_options(env: dict) -> tuple[list[str], dict]:
    """``kinesis-neuro train`` options (before the subcommand, after it) giving the environment ``env`` but its
    clips, and the settings of ``env`` no option gives."""
    from kinesis_neuro.envs.imitation import KINESIS_SETTINGS

    kinesis = {k: v for k, v in KINESIS_SETTINGS.items() if k != "termination"}
    given = {"clips", "motion"}
    before, after = [], []
    if "data_dir" in env:
        before += ["--data-dir", str(env["data_dir"])]
        given.add("data_dir")
    if all(env.get(k) == v for k, v in kinesis.items()):
        after.append("--kinesis")
        given |= set(kinesis)
    for key in ("termination", "control_mode"):
        if key in env:
            after += [f"--{key.replace('_', '-')}", str(env[key])]
            given.add(key)
    return [*before, "train", *after], {k: v for k, v in env.items() if k not in given}


def next_expert(run_dir: str | Path, window: int = 100, min_gain: float = 0.01, threshold: float = 0.5) -> dict:
    """What to do after the run in ``run_dir`` (of one expert, or a gate over experts): ``plateaued``
    (:func:`should_start_next_expert`), ``success_rate`` (the last of :func:`success_curve`), ``clips``
    (:func:`next_expert_clips`), ``command`` (the ``kinesis-neuro train`` line of the next expert: those clips,
    from the weights of the run, or of the gate's last expert, into ``<run>-expert<K+1>``), ``gate_command``
    (then a gate over every expert on all the run's clips); both None when no clip fails; ``other_env`` (the
    run's environment settings no option of the commands gives; set them in ``PPOConfig.env``)."""
    run = Path(run_dir)
    path = run / CHECKPOINT
    config = checkpoint_config(load_checkpoint(path), path)
    clips = next_expert_clips(run, threshold=threshold)
    curve = success_curve(run)
    plateau = plateaued(curve, window, min_gain)
    finite = curve[~np.isnan(curve)]
    experts = config.experts or (str(run),)
    out = f"{run}-expert{len(experts) + 1}"
    train, other = _train_options(config.env)
    expert = ["kinesis-neuro", *train, "--clips", ",".join(clips), "--init-from", experts[-1], "--out", out]
    gate = ["kinesis-neuro", *train, "--clips", ",".join(config.env["clips"]), "--experts",
            ",".join([*experts, out]), "--out", f"{run}-gate{len(experts) + 1}"]
    return {"plateaued": plateau, "success_rate": float(finite[-1]) if len(finite) else float("nan"),
            "clips": clips, "command": shlex.join(expert) if clips else None,
            "gate_command": shlex.join(gate) if clips else None, "other_env": other}
