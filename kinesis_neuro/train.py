"""PPO for the MyoLegs imitation environment, in one readable file (in the style of CleanRL).

Rollout workers (processes; one thread each) each step a batch of ``num_envs`` environments together
(:class:`~kinesis_neuro.envs.vector.MyoLegsVectorEnv`: one matrix product per layer evaluates the policy
for the whole batch) and return whole rollouts. The learner keeps a running observation normaliser, a
Gaussian policy with a state-independent log-std and a separate value network.

The update, tuned for 80 muscles: the actor and the critic have their own Adam optimiser and gradient-norm
clip. The actor's learning rate follows the KL divergence of the whole batch between the policy after the
update and before it (divided by 1.5 above twice ``target_kl``, multiplied by 1.5 below half of it, within
``[lr_min, lr_max]``); ``kl_stop`` ends the actor's epochs only as a safety net. The critic predicts
normalised returns (running mean and std; its last layer is rescaled when they change, so its predictions
stay put, as in PopArt, van Hasselt et al. 2016) and trains for every epoch. A penalty keeps the action
means within [-1, 1], where the environment clips the actions. ``lr_schedule`` anneals both learning rates.

Overlap (``overlap=True``, default): while the learner updates on one batch, the workers already collect
the next one with the policy they have, one update old; every batch records the policy version that
collected it (``policy_version``, and ``policy_lag`` in the log). PPO's ratio is taken against the
behaviour log-probabilities the workers recorded; a one-update-stale batch is corrected explicitly as in
decoupled PPO (Hilton et al. 2021, "Batch size-invariance for policy optimization"): the clip is centred on
the policy at the start of the update (the *proximal* policy, as in on-policy PPO) and each sample's
advantage is weighted by pi_proximal / pi_behaviour. A fresh batch (lag 0) gives exactly PPO's objective.

Workers run as local processes (pipes) or, with ``scheduler``, as Dask actors on a dask.distributed cluster
(:mod:`kinesis_neuro.workers`). Checkpoints are written atomically and hold everything needed to continue
exactly: networks, optimisers, normalisers, the adapted learning rate, every RNG, the state of every
environment and a collected batch not yet learned from. ``init_from`` starts a new run from the weights of
another run or of a policy folder (warm start), also when the observation has gained entries at its end.
With ``experts`` the policy is a mixture of frozen experts whose gate PPO trains (:mod:`kinesis_neuro.experts`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import pickle
import random
import signal
import time
import warnings
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kinesis_neuro import storage
from kinesis_neuro.clip_sampling import ClipSampler
from kinesis_neuro.envs import ImitationConfig
from kinesis_neuro.envs.vector import MyoLegsVectorEnv
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError

CHECKPOINT = "checkpoint.pt"
LOG = "training_log.csv"
CONFIG = "config.json"
RUN_FILES = (CONFIG, CHECKPOINT, LOG)  # a folder holding any of these holds a training run


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def valid_hidden(value) -> bool:
    """Whether ``value`` is a non-empty list of hidden-layer sizes (integers >= 1)."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_int(v) and v >= 1 for v in value)


def check_env(env, where: str) -> None:
    """Raise ``KinesisNeuroError`` unless ``env`` is a dict of :class:`ImitationConfig` settings."""
    if not isinstance(env, dict):
        raise KinesisNeuroError(f"{where} must be a mapping of environment settings, got {type(env).__name__}")
    known = {f.name for f in fields(ImitationConfig)}
    unknown = sorted(str(k) for k in env if k not in known)
    if unknown:
        raise KinesisNeuroError(f"{where}: unknown environment settings {unknown} (known: {', '.join(sorted(known))})")


def _one_line(err: BaseException, limit: int = 240) -> str:
    """'Type: message' of an exception on one line, shortened to ``limit`` characters (library messages run long)."""
    text = " ".join(f"{type(err).__name__}: {err}".split()).removesuffix(":")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_finite(tensors: dict, where: str) -> None:
    """Raise ``DataFormatError`` naming the first tensor of ``tensors`` holding NaN or infinite values."""
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise DataFormatError(f"{where}: {key} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise DataFormatError(f"{where}: {key} holds NaN or infinite values")


LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class PPOConfig:
    """PPO hyper-parameters (steps are control steps summed over workers; KL in nats per sample, summed over
    the action dimensions)."""

    total_steps: int = 1_000_000
    workers: int = 2
    num_envs: int = 16  # environments stepped together in each worker
    rollout_steps: int = 2048  # per worker and update (summed over its num_envs environments)
    overlap: bool = True  # workers collect the next batch (with the policy one update old) while the learner updates
    epochs: int = 5
    minibatches: int = 4
    learning_rate: float = 1e-4  # the actor's at the start; then adapted to target_kl within [lr_min, lr_max]
    lr_min: float = 1e-6
    lr_max: float = 1e-3
    critic_learning_rate: float = 3e-4
    lr_schedule: str = "constant"  # "linear" or "cosine": both learning rates annealed towards 0 at total_steps
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    entropy_coef: float = 0.0
    bound_coef: float = 10.0  # weight of mean(relu(|action mean| - 1)^2): actions beyond [-1, 1] are clipped
    max_grad_norm: float = 10.0  # the actor's gradient-norm clip (its norms are ~3-12 with 80 muscles)
    critic_max_grad_norm: float = 1.0  # (its norms on normalised returns are ~0.1-0.8)
    target_kl: float | None = 0.01  # KL per update the actor's learning rate is adapted to (None: not adapted)
    kl_stop: float | None = 0.04  # the actor's epochs end once the KL exceeds this (None: never); a safety net
    mirror_coef: float = 0.0  # weight of the left-right symmetry loss on the action mean (Yu et al. 2018)
    init_log_std: float | tuple[float, ...] = -1.6  # one value, or one per action (muscle)
    hidden: tuple[int, ...] = (512, 256)
    seed: int = 0
    checkpoint_every: int = 10  # updates
    env: dict = field(default_factory=dict)  # ImitationConfig overrides
    init_from: str | None = None  # warm start: a training run folder or a policy folder (see warm_start_state)
    hard_negative_mining: bool = True  # with env clips: start episodes more often from the clips that fail
    experts: tuple[str, ...] = ()  # train a gate over these frozen experts (run or policy folders); see Trainer
    gate_hidden: tuple[int, ...] = (64, 64)  # the gate's layer sizes (with experts; hidden is then the critic's)
    gate_warm_start: bool = True  # with experts: the gate starts choosing each clip's own expert (see Trainer)

    def __post_init__(self) -> None:
        """Refuse impossible settings with a ``KinesisNeuroError`` naming the setting."""
        def require(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise KinesisNeuroError(f"PPO setting {name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("total_steps", "workers", "num_envs", "rollout_steps", "epochs", "minibatches",
                     "checkpoint_every"):
            require(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "an integer >= 1")
        require(self.rollout_steps % self.num_envs == 0, "rollout_steps",
                f"a multiple of num_envs = {self.num_envs} (steps per worker, shared by its environments)")
        require(isinstance(self.overlap, (bool, np.bool_)), "overlap", "true or false")
        self.overlap = bool(self.overlap)
        require(self.rollout_steps * self.workers >= 2 * self.minibatches, "minibatches",
                f"at most rollout_steps x workers / 2 = {self.rollout_steps * self.workers // 2} (2 samples each)")
        require(_is_int(self.seed) and 0 <= self.seed <= 2**32 - self.workers * self.num_envs, "seed",
                "an integer in [0, 2**32 - workers x num_envs]")
        require(valid_hidden(self.hidden), "hidden", "a non-empty list of layer sizes (integers >= 1)")
        self.hidden = tuple(int(v) for v in self.hidden)
        for name, low, high, expected in (("learning_rate", 0, None, "> 0"), ("lr_min", 0, None, "> 0"),
                                          ("lr_max", 0, None, "> 0"), ("critic_learning_rate", 0, None, "> 0"),
                                          ("gamma", 0, 1, "in (0, 1]"), ("clip", 0, None, "> 0"),
                                          ("max_grad_norm", 0, None, "> 0"), ("critic_max_grad_norm", 0, None, "> 0")):
            value = getattr(self, name)
            require(_is_number(value) and value > low and (high is None or value <= high), name, f"a number {expected}")
        require(self.lr_min <= self.learning_rate <= self.lr_max, "learning_rate",
                f"within [lr_min, lr_max] = [{self.lr_min:g}, {self.lr_max:g}]")
        require(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {', '.join(LR_SCHEDULES)}")
        for name in ("entropy_coef", "mirror_coef", "bound_coef"):
            require(_is_number(getattr(self, name)) and getattr(self, name) >= 0, name, "a number >= 0")
        require(_is_number(self.gae_lambda) and 0 <= self.gae_lambda <= 1, "gae_lambda", "a number in [0, 1]")
        if isinstance(self.init_log_std, (list, tuple)):
            require(len(self.init_log_std) > 0 and all(_is_number(v) for v in self.init_log_std), "init_log_std",
                    "a finite number or a list of them (one per action)")
            self.init_log_std = tuple(float(v) for v in self.init_log_std)
        require(isinstance(self.init_log_std, tuple) or _is_number(self.init_log_std), "init_log_std",
                "a finite number or a list of them (one per action)")
        for name in ("target_kl", "kl_stop"):
            value = getattr(self, name)
            require(value is None or _is_number(value) and value > 0, name, "None or a number > 0")
        require(self.init_from is None or isinstance(self.init_from, (str, os.PathLike)) and str(self.init_from) != "",
                "init_from", "None or the path of a training run folder or a policy folder")
        self.init_from = None if self.init_from is None else os.fspath(self.init_from)
        require(isinstance(self.hard_negative_mining, (bool, np.bool_)), "hard_negative_mining", "true or false")
        self.hard_negative_mining = bool(self.hard_negative_mining)
        require(isinstance(self.experts, (list, tuple)) and all(
            isinstance(e, (str, os.PathLike)) and os.fspath(e) != "" for e in self.experts), "experts",
            "a list of training run folders or policy folders (empty: no mixture)")
        self.experts = tuple(os.fspath(e) for e in self.experts)
        require(not (self.experts and self.init_from is not None), "init_from",
                "None when experts are given (a gate over frozen experts starts from them)")
        require(valid_hidden(self.gate_hidden), "gate_hidden", "a non-empty list of layer sizes (integers >= 1)")
        require(isinstance(self.gate_warm_start, (bool, np.bool_)), "gate_warm_start", "true or false")
        self.gate_warm_start = bool(self.gate_warm_start)
        self.gate_hidden = tuple(int(v) for v in self.gate_hidden)
        check_env(self.env, "PPO setting env")


class RunningNorm(nn.Module):
    """Running mean/variance of observations (parallel Welford), applied as (x - mean) / std, clipped."""

    def __init__(self, size: int, clip: float = 10.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("var", torch.ones(size, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip = clip

    def update(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(torch.float64) - self.mean) / torch.sqrt(self.var + 1e-8)
        return z.clamp(-self.clip, self.clip).to(torch.float32)


def mlp(sizes: list[int], out_gain: float) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, out_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear] if last else [linear, nn.Tanh()]
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Gaussian policy (mean from an MLP, state-independent log-std) and value MLP on normalised obs.
    ``init_log_std``: one value for every action or one per action."""

    def __init__(self, n_obs: int, n_act: int, hidden=(512, 256), init_log_std: float | tuple = -1.0):
        super().__init__()
        self.norm = RunningNorm(n_obs)
        self.actor = mlp([n_obs, *hidden, n_act], out_gain=0.01)
        self.critic = mlp([n_obs, *hidden, 1], out_gain=1.0)
        log_std = torch.as_tensor(init_log_std, dtype=torch.float32).expand(n_act) if np.ndim(init_log_std) == 0 \
            else torch.as_tensor(init_log_std, dtype=torch.float32)
        if log_std.shape != (n_act,):
            raise KinesisNeuroError(f"init_log_std has {len(log_std)} values for {n_act} actions (muscles)")
        self.log_std = nn.Parameter(log_std.clone())

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(self.norm(obs)), self.log_std.exp())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's output: the value in units of the trainer's return normaliser (``Trainer.value``)."""
        return self.critic(self.norm(obs)).squeeze(-1)


def actor_weights(agent: ActorCritic) -> dict:
    """What a rollout worker needs of the policy, as numpy arrays: normaliser, actor layers, log-std
    (the value network stays with the learner)."""
    norm = agent.norm
    return {"norm_mean": norm.mean.numpy().copy(), "norm_var": norm.var.numpy().copy(), "clip": float(norm.clip),
            "layers": [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in agent.actor
                       if isinstance(m, nn.Linear)],
            "log_std": agent.log_std.detach().numpy().astype(np.float64)}


class NumpyActor:
    """The policy mean of an :class:`ActorCritic` evaluated with numpy on a batch of observations (torch's
    per-call overhead would cost a quarter of a rollout step). Built from the networks or from
    :func:`actor_weights`."""

    def __init__(self, agent: ActorCritic | None = None, weights: dict | None = None):
        weights = actor_weights(agent) if agent is not None else weights
        self.mean, self.std, self.clip = weights["norm_mean"], np.sqrt(weights["norm_var"] + 1e-8), weights["clip"]
        self.layers = [(np.asarray(w), np.asarray(b)) for w, b in weights["layers"]]
        self.log_std = np.asarray(weights["log_std"], dtype=np.float64)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The action means of observations ``(n, n_obs)`` (or of one, ``(n_obs,)``)."""
        x = np.clip((obs - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)
        for w, b in self.layers[:-1]:
            x = np.tanh(x @ w + b)
        w, b = self.layers[-1]
        return (x @ w + b).astype(np.float64)

    def log_prob(self, action: np.ndarray, mean: np.ndarray):
        """Gaussian log-density of ``action`` summed over its dimensions (one per row)."""
        logp = np.sum(-0.5 * ((action - mean) / np.exp(self.log_std)) ** 2 - self.log_std - 0.5 * np.log(2 * np.pi),
                      axis=-1)
        return float(logp) if np.ndim(logp) == 0 else logp


class RolloutWorker:
    """``num_envs`` environments stepped together (:class:`MyoLegsVectorEnv`, autoreset) with their own
    action-noise RNG; runs whole rollouts (environments and policy on one core) so that workers never
    wait for the learner. Environment ``j`` is seeded ``seed + j``, the noise RNG ``seed``. The same object
    runs in a local worker process or as a Dask actor."""

    def __init__(self, env_config: dict, seed: int, num_envs: int = 1):
        torch.set_num_threads(1)
        _single_threaded_blas()
        self.env = MyoLegsVectorEnv(num_envs, ImitationConfig(**env_config))
        self.obs, _ = self.env.reset(seed=[seed + j for j in range(num_envs)])
        self.generator = torch.Generator().manual_seed(seed)

    def mirror_maps(self):
        return self.env.mirror_maps()

    @property
    def state(self) -> dict:
        return {"envs": self.env.state, "obs": self.obs, "generator": self.generator.get_state()}

    @state.setter
    def state(self, value: dict) -> None:
        if "env" in value:  # one environment per worker (kinesis-neuro before vectorised environments)
            value = {"envs": [{**value["env"], "episode_return": value["episode_return"],
                               "episode_length": value["episode_length"]}],
                     "obs": np.asarray(value["obs"])[None], "generator": value["generator"]}
        obs = np.asarray(value["obs"], dtype=np.float64)
        if obs.shape != self.obs.shape:
            raise KinesisNeuroError(f"observations of shape {obs.shape} for {self.obs.shape}")
        self.env.state = value["envs"]
        self.obs = obs
        self.generator.set_state(torch.as_tensor(np.asarray(value["generator"]), dtype=torch.uint8))

    def get_state(self) -> dict:  # Dask actors expose methods, not properties
        return self.state

    def set_state(self, value: dict) -> None:
        try:
            self.state = value
        except Exception as err:  # the state comes from a checkpoint file
            raise KinesisNeuroError(f"the saved environment state does not fit ({_one_line(err)})") from err

    def rollout(self, weights: dict, steps: int, version: int = 0, clip_weights: np.ndarray | None = None) -> dict:
        """``steps`` control steps (``steps / num_envs`` per environment) with the policy ``weights``
        (:func:`~kinesis_neuro.experts.policy_weights` of an actor or a mixture of experts) of update
        ``version``; arrays are (time, environment, ...). Observations after a time-limit truncation (whose
        value the learner bootstraps) come back in ``final_obs`` with their (step, environment) in
        ``final_index``; ``last_obs`` follows the last step; ``finished`` holds the statistics of the
        episodes that ended: return, length, tracking error (m), the motion clip they imitated (``clip``, 0
        for an environment of one motion) and whether they ``terminated`` (fell) rather than reached their
        time limit. ``clip_weights``: probabilities of the motion clips new episodes start from, for
        environments that sample clips (``set_clip_weights``)."""
        from kinesis_neuro.experts import numpy_policy  # experts builds on this module

        if clip_weights is not None and hasattr(self.env, "set_clip_weights"):
            self.env.set_clip_weights(np.asarray(clip_weights, dtype=np.float64))
        policy = numpy_policy(weights)
        std = np.exp(policy.log_std)
        env, n = self.env, self.env.num_envs
        T, n_obs, n_act = steps // n, self.obs.shape[1], env.single_action_space.shape[0]
        out = {"obs": np.zeros((T, n, n_obs), np.float32), "actions": np.zeros((T, n, n_act), np.float32),
               **{k: np.zeros((T, n), np.float32) for k in ("logprobs", "rewards", "dones")}}
        final_obs, final_index = [], []
        finished = {"return": [], "length": [], "tracking_error": [], "clip": [], "terminated": []}
        for t in range(T):
            obs = self.obs.astype(np.float32)
            mean = policy(obs)
            action = (mean + std * torch.randn((n, n_act), generator=self.generator).numpy()).astype(np.float32)
            out["logprobs"][t] = policy.log_prob(action, mean)
            out["obs"][t], out["actions"][t] = obs, action
            self.obs, reward, terminated, truncated, info = env.step(action)
            out["rewards"][t] = reward
            if info:  # an episode ended (infos are empty otherwise)
                done = terminated | truncated
                out["dones"][t] = done
                for i in np.flatnonzero(done):
                    if truncated[i] and not terminated[i]:  # time limit: the future is not zero, bootstrap it
                        final_obs.append(info["final_obs"][i].astype(np.float32))
                        final_index.append((t, i))
                    finished["return"].append(float(info["episode"]["r"][i]))
                    finished["length"].append(int(info["episode"]["l"][i]))
                    finished["tracking_error"].append(float(info["final_info"]["tracking_error"][i]))
                    clip = info["final_info"].get("clip")
                    finished["clip"].append(0 if clip is None else int(clip[i]))
                    finished["terminated"].append(bool(terminated[i]))
        out["final_obs"] = np.array(final_obs, np.float32).reshape(-1, n_obs)
        out["final_index"] = np.array(final_index, np.int64).reshape(-1, 2)
        out["last_obs"] = self.obs.astype(np.float32)
        out["finished"] = finished
        out["version"] = int(version)
        return out


def _single_threaded_blas() -> None:
    """One BLAS thread in this process (a rollout worker has one core)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def _worker_main(pipe, env_config: dict, seed: int, num_envs: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's: it saves, then closes the workers
    try:
        worker = RolloutWorker(env_config, seed, num_envs)
        pipe.send(("ok", worker.mirror_maps()))
        while True:
            command, argument = pipe.recv()
            if command == "close":
                break
            if command == "rollout":
                result = worker.rollout(*argument)
            elif command == "get_state":
                result = worker.state
            else:
                worker.set_state(argument)
                result = None
            pipe.send(("ok", result))
    except (KinesisNeuroError, OSError) as err:  # the user's to fix (a bad motion, an unreadable file): one line
        pipe.send(("user-error", str(err)))
    except Exception as err:  # a bug: report it with its traceback to the learner instead of dying silently
        import traceback

        pipe.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))


class WorkerPool:
    """Rollout workers in local processes (one thread each), talked to over pipes. Worker ``i`` seeds its
    environments from ``seed + i * num_envs``. :class:`kinesis_neuro.workers.DaskWorkerPool` has the same
    interface."""

    def __init__(self, n: int, env_config: dict, seed: int, num_envs: int = 1):
        import multiprocessing as mp

        context = mp.get_context("spawn")
        self.pipes, self.processes = [], []
        for i in range(n):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(child, env_config, seed + i * num_envs, num_envs),
                                      daemon=True)
            process.start()
            child.close()  # the worker's end: a worker that dies ends our reads (EOFError) instead of hanging them
            self.pipes.append(parent)
            self.processes.append(process)
        try:  # each worker builds its environments: a bad motion or setting fails here
            self.mirror_maps = self._gather()[0]  # (obs index, obs sign, action index)
        except BaseException:
            self.close()
            raise
        self.n_obs, self.n_act = len(self.mirror_maps[0]), len(self.mirror_maps[2])

    def _gather(self) -> list:
        results = []
        for i, (pipe, process) in enumerate(zip(self.pipes, self.processes)):
            try:
                status, value = pipe.recv()
            except (EOFError, OSError):
                process.join(timeout=5)
                raise KinesisNeuroError(f"rollout worker {i} died (exit code {process.exitcode})") from None
            if status == "user-error":
                raise KinesisNeuroError(value)
            if status == "error":
                raise KinesisNeuroError(f"rollout worker failed: {value}")
            results.append(value)
        return results

    def _broadcast(self, command: str, arguments) -> list:
        for pipe, argument in zip(self.pipes, arguments):
            pipe.send((command, argument))
        return self._gather()

    def start_rollout(self, weights: dict, steps: int, version: int, clip_weights: np.ndarray | None = None) -> None:
        """Every worker starts a rollout of ``steps`` steps (see :meth:`RolloutWorker.rollout`);
        :meth:`finish_rollout` collects them."""
        for pipe in self.pipes:
            pipe.send(("rollout", (weights, steps, version, clip_weights)))

    def finish_rollout(self) -> list[dict]:
        return self._gather()

    def get_states(self) -> list[dict]:
        return self._broadcast("get_state", [None] * len(self.pipes))

    def set_states(self, states: list[dict]) -> None:
        self._broadcast("set_state", states)

    def close(self) -> None:
        for pipe, process in zip(self.pipes, self.processes):
            if process.is_alive():
                try:
                    pipe.send(("close", None))
                except BrokenPipeError:  # a worker that failed is exiting
                    pass
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, bootstrap: np.ndarray, next_value: np.ndarray,
        gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates of (time, environment) arrays: the TD errors vectorised, then one
    backward pass over time (vectorised over environments). ``bootstrap``: the value of the observation after
    a time-limit truncation at that step (0 elsewhere); ``next_value``: the value after the last step."""
    following = np.concatenate([values[1:], next_value[None]])
    not_done = 1 - dones
    delta = rewards + gamma * (bootstrap + not_done * following) - values
    decay = gamma * lam * not_done
    advantages = np.empty_like(values)
    running = np.zeros_like(values[0])
    for t in range(len(values) - 1, -1, -1):
        running = delta[t] + decay[t] * running
        advantages[t] = running
    return advantages


def _to_tensors(obj):
    """Nested numpy arrays -> tensors, so checkpoints load with ``torch.load(weights_only=True)``."""
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_tensors(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    return obj


def _to_numpy(obj):
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_numpy(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    return obj


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically (:func:`storage.write_bytes`): the old checkpoint stays until the new one is complete."""
    buffer = io.BytesIO()
    torch.save(_to_tensors(payload), buffer)
    storage.write_bytes(buffer.getbuffer(), path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, checked for its keys (``config``, ``agent``, ``update``,
    ``global_step``) and finite weights. Only tensors and plain data are unpickled: a file holding anything
    else is refused unloaded, so no code in it runs."""
    path = Path(path)
    if not path.is_file():
        raise KinesisNeuroError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}; "
                                "expected a training checkpoint")
    not_ours = f"{path}: not a kinesis-neuro training checkpoint"
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, weights_only=True)
    except OSError:
        raise
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... for truncated or foreign files
        if isinstance(err, pickle.UnpicklingError):  # torch cannot tell garbage from foreign objects here
            raise DataFormatError(f"{not_ours} (corrupt, or it holds objects other than tensors and plain data, "
                                  "refused unloaded since loading them could run code)") from err
        raise DataFormatError(f"{not_ours} (corrupt, truncated or of another format: {_one_line(err, 120)})") \
            from err
    if not isinstance(ckpt, dict):
        raise DataFormatError(f"{not_ours} (it holds a {type(ckpt).__name__}, not the dict a checkpoint is)")
    missing = [k for k in ("config", "agent", "update", "global_step") if k not in ckpt]
    if missing:
        raise DataFormatError(f"{not_ours} (it lacks {', '.join(missing)})")
    if not (isinstance(ckpt["config"], dict) and isinstance(ckpt["agent"], dict) and _is_int(ckpt["update"])
            and _is_int(ckpt["global_step"]) and ckpt["update"] >= 0 and ckpt["global_step"] >= 0):
        raise DataFormatError(f"{not_ours} (config and agent must be dicts, update and global_step integers >= 0)")
    check_finite(ckpt["agent"], f"{path}: agent")
    return ckpt


def checkpoint_config(ckpt: dict, path: Path, **changes) -> PPOConfig:
    """The :class:`PPOConfig` a checkpoint (from ``path``) was trained with, with ``changes`` applied."""
    settings = dict(ckpt["config"])
    if "num_envs" not in settings:  # written before vectorised environments: it goes on as it was trained
        settings.update(num_envs=1, overlap=False)
    if "kl_stop" not in settings:  # written before the KL-adaptive learning rate: its target_kl stopped the epochs,
        settings["kl_stop"] = settings.pop("target_kl", None)  # and one loss (value_coef) fed one optimiser
        settings.pop("value_coef", None)
    unknown = sorted(set(settings) - {f.name for f in fields(PPOConfig)})
    if unknown:
        raise DataFormatError(f"{path}: unknown PPO settings {unknown} in the checkpoint's config")
    try:
        return PPOConfig(**{**settings, **changes})
    except KinesisNeuroError as err:
        raise DataFormatError(f"{path}: {err}") from err


def warm_start_state(source: str | Path, agent: ActorCritic, value_norm: RunningNorm) -> None:
    """Load into ``agent`` the observation normaliser, actor, log-std and critic of ``source``: a training run
    folder (``checkpoint.pt``) or a policy folder (``policy.safetensors`` and ``policy.json``; the critic comes
    from its ``checkpoint.pt`` when it has one, else ``agent``'s stays), and into ``value_norm`` the return
    normaliser of that checkpoint (if it has none, its critic predicts returns unnormalised, as before
    kinesis-neuro normalised them: ``value_norm`` stays the identity it starts as).

    An observation longer than the source's by entries appended at its end is accepted: the first layers gain
    zero weights for them and the normaliser mean 0, variance 1, so the networks compute what they did. Any
    other difference of shapes is a ``KinesisNeuroError`` naming them."""
    from kinesis_neuro import policies

    source = Path(source)
    checkpoint = source / CHECKPOINT
    if (source / policies.WEIGHTS).exists() or (source / policies.CONFIG).exists():
        policy = policies.load(source)
        if not isinstance(policy.agent, ActorCritic):
            raise KinesisNeuroError(f"init_from {source}: a {type(policy.agent).__name__}; a warm start takes one "
                                    "policy (an MLP actor and its critic)")
        state = {k: v for k, v in policy.agent.state_dict().items() if not k.startswith("critic.")}
        ckpt = load_checkpoint(checkpoint) if checkpoint.is_file() else None
        if ckpt is not None:
            state.update({k: v for k, v in ckpt["agent"].items() if k.startswith("critic.")})
    elif checkpoint.exists():
        ckpt = load_checkpoint(checkpoint)
        state = dict(ckpt["agent"])
    else:
        raise KinesisNeuroError(f"init_from {source}: neither a training run folder ({CHECKPOINT}) nor a policy "
                                f"folder ({policies.WEIGHTS} and {policies.CONFIG})")
    target = agent.state_dict()
    n_obs, old_obs = target["norm.mean"].shape[0], state["norm.mean"].shape[0]
    if old_obs > n_obs:
        raise KinesisNeuroError(f"init_from {source}: observations of {old_obs} entries, this run's have {n_obs} "
                                "(only entries appended at the end can be added)")
    pad = {"norm.mean": 0.0, "norm.var": 1.0, "actor.0.weight": 0.0, "critic.0.weight": 0.0}
    problems = [f"unexpected {k}" for k in state if k not in target]
    for key, value in list(state.items()):
        if key in pad and key in target and old_obs < n_obs and value.shape[:-1] == target[key].shape[:-1]:
            fill = torch.full((*value.shape[:-1], n_obs - old_obs), pad[key], dtype=value.dtype)
            state[key] = value = torch.cat([value, fill], dim=-1)
        if key in target and value.shape != target[key].shape:
            problems.append(f"{key} has shape {tuple(value.shape)}, this run's {tuple(target[key].shape)}")
    problems += [f"lacks {k}" for k in target if k not in state and not k.startswith("critic.")]
    if problems:
        hidden = [m.out_features for m in agent.actor[:-1] if isinstance(m, nn.Linear)]
        raise KinesisNeuroError(f"init_from {source}: its networks do not fit this run's ({n_obs} observations, "
                                f"hidden {hidden}): " + "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else ""))
    agent.load_state_dict(state, strict=False)
    if ckpt is not None and "value_norm" in ckpt:
        try:
            value_norm.load_state_dict(ckpt["value_norm"])
        except (RuntimeError, TypeError, AttributeError, KeyError) as err:
            raise DataFormatError(f"{checkpoint}: value_norm does not fit ({_one_line(err)})") from err


def truncate_log(path: Path, update: int) -> None:
    """Drop the rows of updates after ``update`` from a training log (rewritten atomically): a run killed
    between checkpoints logged updates that its resumption computes again."""
    lines = path.read_text().splitlines(keepends=True)
    try:
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= update]
    except ValueError as err:
        raise DataFormatError(f"{path}: not a training log (a row does not start with an update number: {err})") \
            from err
    if len(kept) < len(lines):
        storage.write_text("".join(kept), path)


def _add_log_columns(path: Path, columns: list[str]) -> list[str]:
    """The header of an existing training log, extended (file rewritten atomically, earlier rows left empty there)
    with the ``columns`` it lacks: a log begun by an older kinesis-neuro that logged fewer statistics."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows, header = list(reader), list(reader.fieldnames or [])
    missing = [c for c in columns if c not in header]
    if missing:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=header + missing)
        writer.writeheader()
        writer.writerows(rows)
        storage.write_text(text.getvalue(), path)
    return header + missing


def training_summary(log_path, update: int | None = None) -> dict:
    """Samples, updates and training time of a training log up to ``update`` (default: its last row).

    ``wall_time_h`` sums the time of every PPO update (samples / samples-per-second), so pauses between
    training sessions do not count.
    """
    import pandas as pd

    log = pd.read_csv(log_path)
    if update is not None:
        log = log[log["update"] <= update]
    if log.empty:
        raise KinesisNeuroError(f"{log_path}: no training log rows up to update {update}")
    samples = log["global_step"].diff().fillna(log["global_step"].iloc[0])
    return {"samples": int(log["global_step"].iloc[-1]), "updates": int(log["update"].iloc[-1]),
            "wall_time_h": float((samples / log["samples_per_s"]).sum() / 3600),
            "median_samples_per_s": float(log["samples_per_s"].median())}


def describe_run(out: Path) -> str:
    """Progress of the training run in ``out`` for messages: 'update N, M samples' (checkpoint, else log)."""
    if (out / CHECKPOINT).is_file():
        try:
            ckpt = load_checkpoint(out / CHECKPOINT)
        except KinesisNeuroError:
            return "an unreadable checkpoint"
        return f"update {ckpt['update']}, {ckpt['global_step']} samples"
    if (out / LOG).is_file():
        try:
            summary = training_summary(out / LOG)
        except (KinesisNeuroError, ValueError, KeyError, OSError):  # pandas' parser errors are ValueErrors
            return "an unreadable training log, no checkpoint"
        return f"update {summary['updates']}, {summary['samples']} samples logged, no checkpoint"
    return "no checkpoint yet"


class Trainer:
    """One PPO run writing into ``out`` (``config.json``, checkpoint, CSV log).

    A folder already holding a run is refused unless ``resume`` (continue from its checkpoint) or ``overwrite``
    (replace it) is given. Everything (settings, checkpoint, environment and motion, which the workers build)
    is checked before the folder is touched: then ``config.json`` is written (atomically) and, for a new run,
    an earlier run's checkpoint and log are removed; other files in the folder (an exported policy) stay. A new
    run whose config names ``init_from`` starts from those weights (:func:`warm_start_state`).

    ``clip_weights`` (None, or probabilities, one per motion clip of the environments): sent with every rollout
    for environments that sample motion clips; ``collect`` reports each ended episode's ``clip``.

    ``config.experts`` (training run or policy folders of single policies): the agent is a
    :class:`~kinesis_neuro.experts.MixtureOfExperts` of these experts, frozen, under a gate that PPO trains
    with the log-std and the critic (KINESIS' last stage; :func:`~kinesis_neuro.experts.gate_over`). The
    critic (layer sizes ``hidden``) and the return normaliser start from those of the first expert's training
    checkpoint when its folder holds one that fits (:func:`~kinesis_neuro.experts.warm_start_critic`); the
    log-std starts at the experts' mean (``init_log_std`` does not apply). With ``gate_warm_start`` the gate
    first learns to choose, on each clip, the expert trained on it (:func:`~kinesis_neuro.experts.warm_start_gate`;
    ``gate_start`` reports it) — KINESIS' gate starts untrained, and so near the experts' average, from which PPO
    must first recover. The checkpoint holds the experts' weights: a resumed run, and the policy exported from
    it, do not read the expert folders again.

    ``scheduler``: run the rollout workers as Dask actors on the dask.distributed cluster at this address
    (``tcp://host:8786``) or of this ``distributed.Client`` (see :mod:`kinesis_neuro.workers`); default: local
    worker processes. The environments and their action noise do not depend on where workers run, so a
    checkpoint written by one resumes on the other; the learner's arithmetic follows its thread count
    (:func:`learner_threads`), so runs repeat bit for bit with the same seed, workers and machine.
    """

    def __init__(self, config: PPOConfig, out: str | Path, resume: bool = False, overwrite: bool = False,
                 scheduler=None):
        self.out = Path(out)
        if resume and overwrite:
            raise KinesisNeuroError("--resume continues a run and --overwrite replaces it: give one of them")
        if resume and config.init_from is not None:
            raise KinesisNeuroError("--resume continues a run from its checkpoint and --init-from starts a new one "
                                    "from other weights: give one of them")
        if self.out.exists() and not self.out.is_dir():
            raise KinesisNeuroError(f"{self.out}: exists and is not a folder; give a run folder")
        checkpoint = None
        if resume:
            if not (self.out / CHECKPOINT).exists():
                raise KinesisNeuroError(f"--resume: no {CHECKPOINT} in {self.out}")
            checkpoint = load_checkpoint(self.out / CHECKPOINT)
            if "workers" not in checkpoint:
                raise KinesisNeuroError(f"{self.out / CHECKPOINT}: written by an older kinesis-neuro whose environment "
                                        "differs (action mapping, reference height); start a new run")
            # total_steps is the only setting a resumed run may change
            config = checkpoint_config(checkpoint, self.out / CHECKPOINT, total_steps=config.total_steps)
        elif not overwrite and any((self.out / name).exists() for name in RUN_FILES):
            raise KinesisNeuroError(f"{self.out} already holds a training run ({describe_run(self.out)}); "
                                    "continue it with --resume or replace it with --overwrite")
        self.config = config
        experts = None
        self.gate_start: dict | None = None  # how a new gate run's gate was warm-started (warm_start_gate)
        if config.experts and checkpoint is None:  # read before the workers start: a bad folder fails at once
            from kinesis_neuro.experts import load_expert

            experts = [load_expert(source) for source in config.experts]
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the workers: one thread each
        self._seed(config.seed)
        if scheduler is None:
            self.workers = WorkerPool(config.workers, config.env, config.seed, config.num_envs)
            local_workers = config.workers
        else:
            from kinesis_neuro.workers import DaskWorkerPool

            self.workers = DaskWorkerPool(scheduler, config.workers, config.env, config.seed, config.num_envs)
            local_workers = self.workers.local_workers
        torch.set_num_threads(learner_threads(config, local_workers))
        self._ready: list[dict] | None = None  # a collected batch not learned from yet (workers' results)
        self._in_flight = False  # the workers are collecting a batch
        self.clip_weights: np.ndarray | None = None  # motion-clip probabilities sent with each rollout
        clips = tuple(config.env.get("clips", ()))
        self.clip_names = clips
        self.sampler = ClipSampler(len(clips)) if clips and config.hard_negative_mining else None
        if self.sampler is not None:
            self.clip_weights = self.sampler.probabilities()
        try:
            self._build_learner(self.workers.n_obs, self.workers.n_act, self._mixture(checkpoint, experts))
            obs_index, obs_sign, action_index = self.workers.mirror_maps
            self._mirror = (torch.as_tensor(obs_index), torch.as_tensor(obs_sign, dtype=torch.float32),
                            torch.as_tensor(action_index))
            self.update, self.global_step = 0, 0
            if checkpoint is not None:
                self._restore(checkpoint)
            elif config.init_from is not None:
                warm_start_state(config.init_from, self.agent, self.value_norm)
            elif experts:
                from kinesis_neuro.experts import warm_start_critic, warm_start_gate

                warm_start_critic(experts[0], self.agent, self.value_norm)
                if config.gate_warm_start:
                    self.gate_start = warm_start_gate(self.agent, experts, config.env, config.seed)
            storage.write_json(asdict(config), self.out / CONFIG)
            if checkpoint is None:  # a new run: an overwritten run's checkpoint and log go now
                for name in (CHECKPOINT, LOG):
                    (self.out / name).unlink(missing_ok=True)
        except BaseException:
            self.workers.close()
            raise
        self.stop_requested = False

    def _build_learner(self, n_obs: int, n_act: int, mixture=None) -> None:
        """The networks, their optimisers, the return normaliser and the actor's learning rate of a new run:
        an :class:`ActorCritic`, or the :class:`~kinesis_neuro.experts.MixtureOfExperts` ``mixture`` whose
        gate and log-std are the actor (its experts stay frozen)."""
        c = self.config
        self.agent = ActorCritic(n_obs, n_act, c.hidden, c.init_log_std) if mixture is None else mixture
        acting = self.agent.actor if mixture is None else self.agent.gate
        self.actor_optimizer = torch.optim.Adam([*acting.parameters(), self.agent.log_std],
                                                lr=c.learning_rate, eps=1e-5)
        self.critic_optimizer = torch.optim.Adam(self.agent.critic.parameters(), lr=c.critic_learning_rate, eps=1e-5)
        self.value_norm = RunningNorm(1)  # of the returns; the critic predicts them normalised
        self.actor_lr = c.learning_rate  # adapted to target_kl after every update (before annealing)

    def _mixture(self, checkpoint: dict | None, experts: list | None):
        """The mixture of experts of a run over ``config.experts`` (None for a run of one policy): over the
        loaded ``experts`` for a new run; for a resumed one, of the sizes its checkpoint records (its weights,
        experts included, are restored from it)."""
        from kinesis_neuro.experts import (
            MixtureOfExperts,
            checkpoint_expert_hidden,
            gate_over,
        )

        c, n_obs, n_act = self.config, self.workers.n_obs, self.workers.n_act
        if not c.experts:
            return None
        if checkpoint is None:
            return gate_over(experts, n_obs, n_act, c.gate_hidden, c.hidden)
        return MixtureOfExperts(n_obs, n_act, checkpoint_expert_hidden(checkpoint, self.out / CHECKPOINT),
                                c.gate_hidden, c.hidden)

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    @property
    def batch_size(self) -> int:
        return self.config.rollout_steps * self.config.workers

    # -- checkpoints ------------------------------------------------------------------------------
    def _payload(self, worker_states: list[dict]) -> dict:
        from kinesis_neuro.experts import MixtureOfExperts, hidden_sizes

        mixture = isinstance(self.agent, MixtureOfExperts)
        return {
            "config": asdict(self.config), "update": self.update, "global_step": self.global_step,
            "agent": self.agent.state_dict(), "optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(), "value_norm": self.value_norm.state_dict(),
            "actor_lr": self.actor_lr,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1],
                    "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])},
            "workers": worker_states, "pending": self._ready,
            "clip_sampler": None if self.sampler is None else self.sampler.state_dict(),
            **({"expert_hidden": [hidden_sizes(e.actor) for e in self.agent.experts]} if mixture else {}),
        }

    def save(self, final: bool = False) -> Path:
        """Write the checkpoint. A batch the workers are collecting is waited for and saved with it (its
        environments' states are those after it); unless ``final``, the workers then start the next batch
        while the file is written, as the training loop would next."""
        if self._in_flight:
            self._ready, self._in_flight = self.workers.finish_rollout(), False
        payload = self._payload(self.workers.get_states())
        if not final and self._ready is not None and self._overlap_next():
            self._launch()
        path = self.out / CHECKPOINT
        save_checkpoint(path, payload)
        return path

    def _restore(self, ckpt: dict) -> None:
        """Networks, optimisers, normalisers, RNGs, environments and a pending batch from a checkpoint of
        ``self.out``; a ``DataFormatError`` when its contents do not fit the run its config describes. A checkpoint
        of the one-optimiser PPO (no ``critic_optimizer``) goes on with fresh Adam moments and a critic that
        predicts unnormalised returns (the return normaliser starts as the identity)."""
        try:
            if len(ckpt["workers"]) != self.config.workers:
                raise ValueError(f"{len(ckpt['workers'])} worker states for {self.config.workers} workers")
            self.agent.load_state_dict(ckpt["agent"])
            if "critic_optimizer" in ckpt:
                self.actor_optimizer.load_state_dict(ckpt["optimizer"])
                self.critic_optimizer.load_state_dict(ckpt["critic_optimizer"])
                self.value_norm.load_state_dict(ckpt["value_norm"])
                self.actor_lr = float(ckpt["actor_lr"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            np.random.set_state(("MT19937", ckpt["rng"]["numpy"].numpy(), ckpt["rng"]["numpy_pos"], 0, 0.0))
            random.setstate((3, tuple(int(v) for v in ckpt["rng"]["python"]), None))
            self.workers.set_states(_to_numpy(ckpt["workers"]))
            pending = ckpt.get("pending")
            if pending is not None:
                pending = _to_numpy(pending)
                if len(pending) != self.config.workers or any(p["obs"].shape[:2] != pending[0]["obs"].shape[:2]
                                                              for p in pending):
                    raise ValueError("the pending batch does not fit the workers")
            self._ready = pending
            if self.sampler is not None and ckpt.get("clip_sampler") is not None:
                self.sampler.load_state_dict(_to_numpy(ckpt["clip_sampler"]))
                self.clip_weights = self.sampler.probabilities()
        except (KinesisNeuroError, KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
            raise DataFormatError(f"{self.out / CHECKPOINT}: does not fit the run its config describes "
                                  f"({err if isinstance(err, KinesisNeuroError) else _one_line(err)})") from err
        self.update, self.global_step = int(ckpt["update"]), int(ckpt["global_step"])

    # -- one PPO iteration --------------------------------------------------------------------------
    def _launch(self) -> None:
        """The workers start collecting a batch with the current policy (version: the number of updates)."""
        from kinesis_neuro.experts import policy_weights

        self.workers.start_rollout(policy_weights(self.agent), self.config.rollout_steps, self.update,
                                   self.clip_weights)
        self._in_flight = True

    def _overlap_next(self) -> bool:
        """Whether the workers should collect the batch after the one at hand while the learner updates."""
        return (self.config.overlap and not self._in_flight and not self.stop_requested
                and self.global_step + self.batch_size < self.config.total_steps)

    def collect(self) -> tuple[dict, dict]:
        """The batch of the next update (collected by the workers, in flight, or pending from a checkpoint)
        with its advantages; with ``overlap`` the workers start on the batch after it before this returns."""
        if self._ready is not None:
            parts, self._ready = self._ready, None
        else:
            if not self._in_flight:
                self._launch()
            parts, self._in_flight = self.workers.finish_rollout(), False
        if self._overlap_next():
            self._launch()
        return self._batch(parts)

    def _batch(self, parts: list[dict]) -> tuple[dict, dict]:
        """Stack the workers' rollouts (environments side by side) and compute GAE."""
        c = self.config
        stacked = {k: np.concatenate([p[k] for p in parts], axis=1)
                   for k in ("obs", "actions", "logprobs", "rewards", "dones")}
        T, M = stacked["rewards"].shape
        per_worker = M // len(parts)
        finished = {k: [v for p in parts  # a batch pending in an older checkpoint lacks clip and terminated
                        for v in p["finished"].get(k, [0] * len(p["finished"]["length"]))]
                    for k in ("return", "length", "tracking_error", "clip", "terminated")}
        self.global_step += T * M
        with torch.no_grad():
            values = self.value(torch.as_tensor(stacked["obs"].reshape(T * M, -1))).reshape(T, M).numpy()
            next_value = self.value(torch.as_tensor(np.concatenate([p["last_obs"] for p in parts]))).numpy()
            bootstrap = np.zeros((T, M), np.float32)
            final_obs = np.concatenate([p["final_obs"] for p in parts])
            if len(final_obs):
                index = np.concatenate([p["final_index"] + [0, w * per_worker] for w, p in enumerate(parts)])
                bootstrap[index[:, 0], index[:, 1]] = self.value(torch.as_tensor(final_obs)).numpy()
        advantages = gae(stacked["rewards"], values, stacked["dones"], bootstrap, next_value, c.gamma, c.gae_lambda)

        def flat(a: np.ndarray) -> torch.Tensor:  # (time, environment, ...) -> (sample, ...), time-major
            return torch.as_tensor(a.reshape(T * M, *a.shape[2:]))

        batch = {"obs": flat(stacked["obs"]), "actions": flat(stacked["actions"]),
                 "logprobs": flat(stacked["logprobs"]), "advantages": flat(advantages),
                 "returns": flat(advantages + values), "values": flat(values),
                 "dones": flat(stacked["dones"]),
                 "policy_version": torch.full((T * M,), parts[0]["version"], dtype=torch.int64)}
        return batch, finished

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's values of observations in the units of the returns (float32)."""
        norm = self.value_norm
        return (self.agent.value(obs).double() * torch.sqrt(norm.var + 1e-8) + norm.mean).float()

    def _normalise_returns(self, returns: torch.Tensor) -> torch.Tensor:
        """Add ``returns`` to the return normaliser and rescale the critic's last layer so that its values
        (:meth:`value`) stay what they were (PopArt); the critic's targets: ``returns`` normalised."""
        norm, last = self.value_norm, self.agent.critic[-1]
        mean, std = norm.mean.clone(), torch.sqrt(norm.var + 1e-8)
        norm.update(returns[:, None])
        new_std = torch.sqrt(norm.var + 1e-8)
        with torch.no_grad():
            last.weight.copy_(last.weight.double() * std / new_std)
            last.bias.copy_((last.bias.double() * std + mean - norm.mean) / new_std)
        return norm(returns[:, None])[:, 0]

    def _anneal(self, samples_before: int) -> float:
        """The factor ``lr_schedule`` gives both learning rates after ``samples_before`` of ``total_steps``."""
        c = self.config
        progress = min(samples_before / c.total_steps, 1.0)
        return {"constant": 1.0, "linear": 1.0 - progress, "cosine": 0.5 * (1.0 + math.cos(math.pi * progress))}[
            c.lr_schedule]

    def _policy_mean(self, obs: torch.Tensor, normalised: torch.Tensor):
        """The action means of a batch's samples under the current weights, as a function of their indices
        (default: all): the actor on the normalised observations ``normalised``; for a mixture of experts, the
        gate's weights (of ``normalised``) of the frozen experts' means of ``obs``, computed once here."""
        agent = self.agent
        if isinstance(agent, ActorCritic):
            return lambda idx=None: agent.actor(normalised if idx is None else normalised[idx])
        with torch.no_grad():
            experts = agent.expert_means(obs)

        def mean(idx=None):
            x, means = (normalised, experts) if idx is None else (normalised[idx], experts[idx])
            return (torch.softmax(agent.gate(x), dim=-1).unsqueeze(-1) * means).sum(-2)

        return mean

    def _policy_change(self, policy_mean, actions: torch.Tensor, proximal_mean: torch.Tensor,
                       proximal_log_std: torch.Tensor, proximal: torch.Tensor) -> tuple[float, float]:
        """Over the whole batch: the mean KL divergence (nats, exact for these Gaussians) from the proximal
        policy to the current one, and the fraction of samples whose probability ratio is beyond the clip.
        ``policy_mean``: :meth:`_policy_mean` of the batch."""
        with torch.no_grad():
            mean, log_std = policy_mean(), self.agent.log_std
            log_ratio = proximal_log_std - log_std  # log(sigma_proximal / sigma)
            kl = (0.5 * (torch.exp(2 * log_ratio) + ((mean - proximal_mean) / log_std.exp()) ** 2 - 1)
                  - log_ratio).sum(-1).mean()
            logprob = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
            clipped = ((logprob - proximal).exp() - 1).abs() > self.config.clip
        return float(kl), float(clipped.float().mean())

    def learn(self, batch: dict) -> dict:
        """PPO epochs over shuffled minibatches: the actor until the last epoch or ``kl_stop``, the critic (on
        normalised returns) for every epoch; then the actor's learning rate adapts to ``target_kl``. Returns
        the statistics of the update: losses (the value loss in normalised units) and gradient norms (before
        clipping) of the last epoch, the whole batch's KL and clip fraction after the actor's last epoch. A batch
        collected by an older policy (``policy_version`` below the number of updates) is corrected as in
        decoupled PPO: ratio and clip against the policy at the start of this update, advantages weighted by its
        probability over the behaviour policy's (see the module docstring). The actor of a mixture of experts
        is its gate with the log-std; its frozen experts' means are computed once per update."""
        c, agent = self.config, self.agent
        size = batch["obs"].shape[0]
        mb = size // c.minibatches
        actions, behaviour = batch["actions"], batch["logprobs"]
        anneal = self._anneal(self.global_step - size)
        actor_lr = self.actor_lr * anneal
        for group in self.actor_optimizer.param_groups:
            group["lr"] = actor_lr
        for group in self.critic_optimizer.param_groups:
            group["lr"] = c.critic_learning_rate * anneal
        targets = self._normalise_returns(batch["returns"])
        with torch.no_grad():  # the normaliser stays fixed during the epochs: normalise the batch once
            normalised = agent.norm(batch["obs"])
            policy_mean = self._policy_mean(batch["obs"], normalised)
            proximal_mean, proximal_log_std = policy_mean(), agent.log_std.clone()
        if bool((batch["policy_version"] != self.update).any()):
            with torch.no_grad():
                proximal = torch.distributions.Normal(proximal_mean, proximal_log_std.exp()).log_prob(actions).sum(-1)
            weights = (proximal - behaviour).exp()
        else:
            proximal, weights = behaviour, None
        actor_parameters = self.actor_optimizer.param_groups[0]["params"]
        actor_on, epochs_run, stats = True, 0, {}
        for epoch in range(c.epochs):
            order = torch.randperm(size)
            losses = {k: [] for k in ("policy_loss", "entropy", "bound_loss", "symmetry_loss", "actor_grad_norm",
                                      "value_loss", "critic_grad_norm")}
            for start in range(0, size - mb + 1, mb):
                idx = order[start:start + mb]
                if actor_on:
                    mean = policy_mean(idx)
                    dist = torch.distributions.Normal(mean, agent.log_std.exp())
                    ratio = (dist.log_prob(actions[idx]).sum(-1) - proximal[idx]).exp()
                    adv = batch["advantages"][idx]
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                    if weights is not None:
                        adv = adv * weights[idx]
                    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip, 1 + c.clip)).mean()
                    entropy = dist.entropy().sum(-1).mean()
                    bound_loss = ((mean.abs() - 1).clamp(min=0) ** 2).mean()
                    loss = policy_loss - c.entropy_coef * entropy + c.bound_coef * bound_loss
                    if c.mirror_coef > 0:
                        symmetry_loss = self.symmetry_loss(batch["obs"][idx], mean)
                        loss = loss + c.mirror_coef * symmetry_loss
                        losses["symmetry_loss"].append(symmetry_loss.item())
                    self.actor_optimizer.zero_grad()
                    loss.backward()
                    norm = nn.utils.clip_grad_norm_(actor_parameters, c.max_grad_norm)
                    self.actor_optimizer.step()
                    for key, value in (("policy_loss", policy_loss), ("entropy", entropy), ("bound_loss", bound_loss),
                                       ("actor_grad_norm", norm)):
                        losses[key].append(value.item())
                value_loss = 0.5 * ((agent.critic(normalised[idx]).squeeze(-1) - targets[idx]) ** 2).mean()
                self.critic_optimizer.zero_grad()
                value_loss.backward()
                losses["critic_grad_norm"].append(
                    nn.utils.clip_grad_norm_(agent.critic.parameters(), c.critic_max_grad_norm).item())
                self.critic_optimizer.step()
                losses["value_loss"].append(value_loss.item())
            stats.update({k: float(np.mean(v)) if v else np.nan for k, v in losses.items()
                          if actor_on or k in ("value_loss", "critic_grad_norm")})
            if actor_on:
                epochs_run += 1
                if c.kl_stop is not None or epoch == c.epochs - 1:  # the KL of the whole batch, one forward pass
                    kl, clip_fraction = self._policy_change(policy_mean, actions, proximal_mean, proximal_log_std,
                                                            proximal)
                    actor_on = c.kl_stop is None or kl <= c.kl_stop
        if c.target_kl is not None:
            if kl > 2 * c.target_kl:
                self.actor_lr = max(self.actor_lr / 1.5, c.lr_min)
            elif kl < c.target_kl / 2:
                self.actor_lr = min(self.actor_lr * 1.5, c.lr_max)
        self.agent.norm.update(batch["obs"])  # after the epochs: the ratios above use the rollout's normalisation
        residual = batch["returns"] - batch["values"]
        stats.update(kl=kl, clip_fraction=clip_fraction, epochs=epochs_run, actor_lr=actor_lr,
                     outside_fraction=float((proximal_mean.abs() > 1).float().mean()),
                     explained_variance=float(1 - residual.var() / (batch["returns"].var() + 1e-8)),
                     action_std=float(self.agent.log_std.detach().exp().mean()),
                     importance_weight=1.0 if weights is None else float(weights.mean()))
        return stats

    def symmetry_loss(self, obs: torch.Tensor, action_mean: torch.Tensor) -> torch.Tensor:
        """Mean squared difference between the action mean of each state and the mirror image of the action
        mean of its mirrored state (zero for a left-right symmetric policy)."""
        obs_index, obs_sign, action_index = self._mirror
        agent, mirrored_obs = self.agent, obs[:, obs_index] * obs_sign
        mirrored = (agent.actor(agent.norm(mirrored_obs)) if isinstance(agent, ActorCritic)
                    else agent.distribution(mirrored_obs).mean)[:, action_index]
        return ((action_mean - mirrored) ** 2).mean()

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self, progress: bool = True) -> list[dict]:
        """Train until ``total_steps``; checkpoints every ``checkpoint_every`` updates and on SIGINT/SIGTERM."""
        from tqdm.auto import tqdm

        c = self.config
        handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        log_path = self.out / LOG
        new_log = not log_path.exists() or self.update == 0
        if not new_log:
            truncate_log(log_path, self.update)
        history = []
        bar = tqdm(total=c.total_steps, initial=min(self.global_step, c.total_steps), unit="step",
                   disable=not progress, dynamic_ncols=True)
        try:
            with ExitStack() as files:  # the log opens at the first row, once an older log has its columns
                writer = None
                while self.global_step < c.total_steps and not self.stop_requested:
                    started = time.time()
                    batch, finished = self.collect()
                    version = int(batch["policy_version"][0])
                    stats = self.learn(batch)
                    self.update += 1
                    stats.update(self._mine(finished))
                    elapsed = time.time() - started
                    row = {"update": self.update, "global_step": self.global_step,
                           "samples_per_s": self.batch_size / elapsed,
                           "episodes": len(finished["length"]),
                           "episode_length": float(np.mean(finished["length"])) if finished["length"] else np.nan,
                           "episode_return": float(np.mean(finished["return"])) if finished["return"] else np.nan,
                           "tracking_error_m": float(np.mean(finished["tracking_error"]))
                           if finished["tracking_error"] else np.nan,
                           **stats, "wall_time_s": time.time(),
                           "policy_version": version, "policy_lag": self.update - 1 - version}
                    history.append(row)
                    if writer is None:
                        columns = list(row) if new_log else _add_log_columns(log_path, list(row))
                        fh = files.enter_context(open(log_path, "w" if new_log else "a", newline=""))
                        writer = csv.DictWriter(fh, fieldnames=columns)
                        if new_log:
                            writer.writeheader()
                    writer.writerow(row)
                    fh.flush()
                    bar.update(self.batch_size)
                    bar.set_postfix(sps=f"{row['samples_per_s']:.0f}", ep_len=f"{row['episode_length']:.0f}",
                                    ret=f"{row['episode_return']:.1f}", err=f"{row['tracking_error_m']:.3f}")
                    if self.update % c.checkpoint_every == 0:
                        self.save()
            self.save(final=True)
        finally:
            bar.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        return history

    def _mine(self, finished: dict) -> dict:
        """Hard-negative mining: the episodes that ended update the clips' failure rates, which set the clip
        probabilities of the next rollouts (the batch in flight already has its own); logged per clip."""
        if self.sampler is None:
            return {}
        self.sampler.update(np.asarray(finished["clip"], dtype=np.int64), np.asarray(finished["terminated"], bool),
                            np.asarray(finished["tracking_error"], dtype=float))
        self.clip_weights = self.sampler.probabilities()
        return {**{f"failure_rate:{name}": float(rate) for name, rate in zip(self.clip_names, self.sampler.rates)},
                **{f"clip_weight:{name}": float(w) for name, w in zip(self.clip_names, self.clip_weights)}}

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def close(self) -> None:
        self.workers.close()


def learner_threads(config: PPOConfig, local_workers: int) -> int:
    """Torch threads of the learner: every core, less one per rollout worker on this machine when the workers
    collect while the learner updates (``overlap``; oversubscribed cores stall torch's threads), at least one.
    A function of the machine, the settings and where workers run, so a run repeats exactly on one machine."""
    cores = os.cpu_count() or 1
    return max(1, cores - (local_workers if config.overlap else 0))
