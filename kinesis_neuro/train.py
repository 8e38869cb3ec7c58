"""PPO for the MyoLegs imitation environment, in one readable file (in the style of CleanRL).

Rollouts run in parallel worker processes (one environment, MuJoCo model and policy copy each,
one thread each), which run whole rollouts and return them; the learner keeps a running
observation normaliser, a Gaussian policy with a state-independent log-std and a separate value
network. Checkpoints are written atomically and
hold everything needed to continue exactly: networks, optimizer, normaliser, every RNG and the
state of every environment.
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
from kinesis_neuro.envs import ImitationConfig, MyoLegsImitationEnv
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


@dataclass
class PPOConfig:
    """PPO hyper-parameters (steps are control steps summed over workers)."""

    total_steps: int = 1_000_000
    workers: int = 2
    rollout_steps: int = 2048  # per worker and update
    epochs: int = 5
    minibatches: int = 4
    learning_rate: float = 1e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.05  # stop the epochs of an update once the mean KL exceeds this
    mirror_coef: float = 0.0  # weight of the left-right symmetry loss on the action mean (Yu et al. 2018)
    init_log_std: float = -1.0
    hidden: tuple[int, ...] = (512, 256)
    seed: int = 0
    checkpoint_every: int = 10  # updates
    env: dict = field(default_factory=dict)  # ImitationConfig overrides

    def __post_init__(self) -> None:
        """Refuse impossible settings with a ``KinesisNeuroError`` naming the setting."""
        def require(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise KinesisNeuroError(f"PPO setting {name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("total_steps", "workers", "rollout_steps", "epochs", "minibatches", "checkpoint_every"):
            require(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "an integer >= 1")
        require(self.rollout_steps * self.workers >= 2 * self.minibatches, "minibatches",
                f"at most rollout_steps x workers / 2 = {self.rollout_steps * self.workers // 2} (2 samples each)")
        require(_is_int(self.seed) and 0 <= self.seed <= 2**32 - self.workers, "seed",
                "an integer in [0, 2**32 - workers]")
        require(valid_hidden(self.hidden), "hidden", "a non-empty list of layer sizes (integers >= 1)")
        self.hidden = tuple(int(v) for v in self.hidden)
        for name, low, high, expected in (("learning_rate", 0, None, "> 0"), ("gamma", 0, 1, "in (0, 1]"),
                                          ("clip", 0, None, "> 0"), ("max_grad_norm", 0, None, "> 0")):
            value = getattr(self, name)
            require(_is_number(value) and value > low and (high is None or value <= high), name, f"a number {expected}")
        for name in ("value_coef", "entropy_coef", "mirror_coef"):
            require(_is_number(getattr(self, name)) and getattr(self, name) >= 0, name, "a number >= 0")
        require(_is_number(self.gae_lambda) and 0 <= self.gae_lambda <= 1, "gae_lambda", "a number in [0, 1]")
        require(_is_number(self.init_log_std), "init_log_std", "a finite number")
        require(self.target_kl is None or _is_number(self.target_kl) and self.target_kl > 0, "target_kl",
                "None or a number > 0")
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
    """Gaussian policy (mean from an MLP, state-independent log-std) and value MLP on normalised obs."""

    def __init__(self, n_obs: int, n_act: int, hidden=(512, 256), init_log_std: float = -1.0):
        super().__init__()
        self.norm = RunningNorm(n_obs)
        self.actor = mlp([n_obs, *hidden, n_act], out_gain=0.01)
        self.critic = mlp([n_obs, *hidden, 1], out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((n_act,), float(init_log_std)))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(self.norm(obs)), self.log_std.exp())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.norm(obs)).squeeze(-1)


class NumpyActor:
    """The policy mean of an :class:`ActorCritic` evaluated with numpy on one observation (a rollout step;
    torch's per-call overhead would cost a quarter of the step). The value network stays with the
    learner, which evaluates it on the whole batch: one network's weights stay in cache."""

    def __init__(self, agent: ActorCritic):
        norm = agent.norm
        self.mean, self.std, self.clip = norm.mean.numpy(), np.sqrt(norm.var.numpy() + 1e-8), norm.clip
        self.layers = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy()) for m in agent.actor
                       if isinstance(m, nn.Linear)]
        self.log_std = agent.log_std.detach().numpy().astype(np.float64)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The action mean for one observation."""
        x = np.clip((obs - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)
        for w, b in self.layers[:-1]:
            x = np.tanh(x @ w + b)
        w, b = self.layers[-1]
        return (x @ w + b).astype(np.float64)

    def log_prob(self, action: np.ndarray, mean: np.ndarray) -> float:
        """Gaussian log-density of ``action`` summed over its dimensions."""
        return float(np.sum(-0.5 * ((action - mean) / np.exp(self.log_std)) ** 2 - self.log_std
                            - 0.5 * np.log(2 * np.pi)))


class RolloutWorker:
    """One environment with its own copy of the policy and its own action-noise RNG; runs whole
    rollouts (environment and policy on one core) so that workers never wait for the learner."""

    def __init__(self, env_config: dict, seed: int, hidden, init_log_std: float):
        self.env = MyoLegsImitationEnv(ImitationConfig(**env_config))
        self.obs, _ = self.env.reset(seed=seed)
        self.agent = ActorCritic(self.env.observation_space.shape[0], self.env.action_space.shape[0], hidden,
                                 init_log_std)
        self.generator = torch.Generator().manual_seed(seed)
        self.episode_return, self.episode_length = 0.0, 0

    @property
    def state(self) -> dict:
        return {"env": self.env.state, "obs": self.obs, "generator": self.generator.get_state(),
                "episode_return": self.episode_return, "episode_length": self.episode_length}

    @state.setter
    def state(self, value: dict) -> None:
        self.env.state = value["env"]
        self.obs = np.asarray(value["obs"])
        self.generator.set_state(torch.as_tensor(np.asarray(value["generator"]), dtype=torch.uint8))
        self.episode_return, self.episode_length = float(value["episode_return"]), int(value["episode_length"])

    def rollout(self, weights: dict, steps: int) -> dict:
        """``steps`` control steps with the given policy weights; the episode statistics of finished episodes.
        Observations after a time-limit truncation (whose value the learner bootstraps) come back in
        ``final_obs`` with their step index in ``final_index``; ``last_obs`` follows the last step."""
        self.agent.load_state_dict(weights)
        policy = NumpyActor(self.agent)
        std = np.exp(policy.log_std)
        n_obs, n_act = self.obs.shape[0], self.env.action_space.shape[0]
        out = {"obs": np.zeros((steps, n_obs), np.float32), "actions": np.zeros((steps, n_act), np.float32),
               **{k: np.zeros(steps, np.float32) for k in ("logprobs", "rewards", "dones")}}
        final_obs, final_index = [], []
        finished = {"return": [], "length": [], "tracking_error": []}
        for t in range(steps):
            obs = self.obs.astype(np.float32)
            mean = policy(obs)
            action = (mean + std * torch.randn(n_act, generator=self.generator).numpy()).astype(np.float32)
            out["logprobs"][t] = policy.log_prob(action, mean)
            out["obs"][t], out["actions"][t] = obs, action
            self.obs, reward, terminated, truncated, info = self.env.step(action)
            out["rewards"][t] = reward
            self.episode_return += reward
            self.episode_length += 1
            if terminated or truncated:
                out["dones"][t] = 1.0
                if truncated and not terminated:  # time limit: the future is not zero, bootstrap it
                    final_obs.append(self.obs.astype(np.float32))
                    final_index.append(t)
                finished["return"].append(self.episode_return)
                finished["length"].append(self.episode_length)
                finished["tracking_error"].append(info["tracking_error"])
                self.episode_return, self.episode_length = 0.0, 0
                self.obs, _ = self.env.reset()
        out["final_obs"] = np.array(final_obs, np.float32).reshape(-1, n_obs)
        out["final_index"] = np.array(final_index, np.int64)
        out["last_obs"] = self.obs.astype(np.float32)
        out["finished"] = finished
        return out


def _worker_main(pipe, env_config: dict, seed: int, hidden, init_log_std: float) -> None:
    torch.set_num_threads(1)
    try:
        worker = RolloutWorker(env_config, seed, hidden, init_log_std)
        pipe.send(("ok", worker.env.mirror_maps()))
        while True:
            command, argument = pipe.recv()
            if command == "close":
                break
            if command == "rollout":
                result = worker.rollout(*argument)
            elif command == "get_state":
                result = worker.state
            else:
                try:
                    worker.state = argument
                except Exception as err:  # the state comes from a checkpoint file
                    raise KinesisNeuroError(f"the saved environment state does not fit ({_one_line(err)})") from err
                result = None
            pipe.send(("ok", result))
    except (KinesisNeuroError, OSError) as err:  # the user's to fix (a bad motion, an unreadable file): one line
        pipe.send(("user-error", str(err)))
    except Exception as err:  # a bug: report it with its traceback to the learner instead of dying silently
        import traceback

        pipe.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))


class WorkerPool:
    """Rollout workers in separate processes (one MuJoCo model each, one thread each)."""

    def __init__(self, n: int, env_config: dict, seed: int, hidden, init_log_std: float):
        import multiprocessing as mp

        context = mp.get_context("spawn")
        self.pipes, self.processes = [], []
        for i in range(n):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(child, env_config, seed + i, hidden, init_log_std),
                                      daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        try:  # each worker builds its environment: a bad motion or setting fails here
            self.mirror_maps = self._gather()[0]  # (obs index, obs sign, action index)
        except BaseException:
            self.close()
            raise
        self.n_obs, self.n_act = len(self.mirror_maps[0]), len(self.mirror_maps[2])

    def _gather(self) -> list:
        results = []
        for pipe in self.pipes:
            status, value = pipe.recv()
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

    def rollout(self, weights: dict, steps: int) -> list[dict]:
        return self._broadcast("rollout", [(weights, steps)] * len(self.pipes))

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
    unknown = sorted(set(ckpt["config"]) - {f.name for f in fields(PPOConfig)})
    if unknown:
        raise DataFormatError(f"{path}: unknown PPO settings {unknown} in the checkpoint's config")
    try:
        return PPOConfig(**{**ckpt["config"], **changes})
    except KinesisNeuroError as err:
        raise DataFormatError(f"{path}: {err}") from err


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
    an earlier run's checkpoint and log are removed; other files in the folder (an exported policy) stay.
    """

    def __init__(self, config: PPOConfig, out: str | Path, resume: bool = False, overwrite: bool = False):
        self.out = Path(out)
        if resume and overwrite:
            raise KinesisNeuroError("--resume continues a run and --overwrite replaces it: give one of them")
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
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the workers: one thread each
        torch.set_num_threads(os.cpu_count() or 1)  # the learner runs while the workers wait
        self._seed(config.seed)
        self.workers = WorkerPool(config.workers, config.env, config.seed, config.hidden, config.init_log_std)
        try:
            self.agent = ActorCritic(self.workers.n_obs, self.workers.n_act, config.hidden, config.init_log_std)
            self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=config.learning_rate, eps=1e-5)
            obs_index, obs_sign, action_index = self.workers.mirror_maps
            self._mirror = (torch.as_tensor(obs_index), torch.as_tensor(obs_sign, dtype=torch.float32),
                            torch.as_tensor(action_index))
            self.update, self.global_step = 0, 0
            if checkpoint is not None:
                self._restore(checkpoint)
            storage.write_json(asdict(config), self.out / CONFIG)
            if checkpoint is None:  # a new run: an overwritten run's checkpoint and log go now
                for name in (CHECKPOINT, LOG):
                    (self.out / name).unlink(missing_ok=True)
        except BaseException:
            self.workers.close()
            raise
        self.stop_requested = False

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    # -- checkpoints ------------------------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "config": asdict(self.config), "update": self.update, "global_step": self.global_step,
            "agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1],
                    "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])},
            "workers": self.workers.get_states(),
        }

    def save(self) -> Path:
        path = self.out / CHECKPOINT
        save_checkpoint(path, self._payload())
        return path

    def _restore(self, ckpt: dict) -> None:
        """Networks, optimizer, RNGs and environments from a checkpoint of ``self.out``; a ``DataFormatError``
        when its contents do not fit the run its config describes."""
        try:
            if len(ckpt["workers"]) != self.config.workers:
                raise ValueError(f"{len(ckpt['workers'])} worker states for {self.config.workers} workers")
            self.agent.load_state_dict(ckpt["agent"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            np.random.set_state(("MT19937", ckpt["rng"]["numpy"].numpy(), ckpt["rng"]["numpy_pos"], 0, 0.0))
            random.setstate((3, tuple(int(v) for v in ckpt["rng"]["python"]), None))
            self.workers.set_states(_to_numpy(ckpt["workers"]))
        except (KinesisNeuroError, KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
            raise DataFormatError(f"{self.out / CHECKPOINT}: does not fit the run its config describes "
                                  f"({err if isinstance(err, KinesisNeuroError) else _one_line(err)})") from err
        self.update, self.global_step = int(ckpt["update"]), int(ckpt["global_step"])

    # -- one PPO iteration --------------------------------------------------------------------------
    def collect(self) -> tuple[dict, dict]:
        """Every worker rolls out ``rollout_steps`` with the current policy; GAE on the result."""
        c, T, N = self.config, self.config.rollout_steps, self.config.workers
        parts = self.workers.rollout(self.agent.state_dict(), T)
        stacked = {k: torch.as_tensor(np.stack([p[k] for p in parts], axis=1))
                   for k in ("obs", "actions", "logprobs", "rewards", "dones")}
        finished = {k: [v for p in parts for v in p["finished"][k]] for k in ("return", "length", "tracking_error")}
        self.global_step += T * N
        with torch.no_grad():
            values = self.agent.value(stacked["obs"].reshape(T * N, -1)).reshape(T, N)
            next_value = self.agent.value(torch.as_tensor(np.stack([p["last_obs"] for p in parts])))
            bootstrap = torch.zeros((T, N))
            for n, p in enumerate(parts):
                if len(p["final_index"]):
                    bootstrap[torch.as_tensor(p["final_index"]), n] = self.agent.value(torch.as_tensor(p["final_obs"]))
        rewards, dones = stacked["rewards"], stacked["dones"]
        advantages = torch.zeros((T, N))
        gae = torch.zeros(N)
        for t in reversed(range(T)):
            following = next_value if t == T - 1 else values[t + 1]
            target = rewards[t] + c.gamma * (bootstrap[t] + (1 - dones[t]) * following)
            delta = target - values[t]
            gae = delta + c.gamma * c.gae_lambda * (1 - dones[t]) * gae
            advantages[t] = gae
        batch = {"obs": stacked["obs"].reshape(T * N, -1), "actions": stacked["actions"].reshape(T * N, -1),
                 "logprobs": stacked["logprobs"].reshape(-1), "advantages": advantages.reshape(-1),
                 "returns": (advantages + values).reshape(-1), "values": values.reshape(-1)}
        return batch, finished

    def learn(self, batch: dict) -> dict:
        """PPO epochs over shuffled minibatches; returns the mean losses of the last epoch."""
        c = self.config
        size = batch["obs"].shape[0]
        mb = size // c.minibatches
        stats = {}
        for _ in range(c.epochs):
            order = torch.randperm(size)
            epoch = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [], "clipfrac": [],
                     "symmetry_loss": []}
            for start in range(0, size - mb + 1, mb):
                idx = order[start:start + mb]
                dist = self.agent.distribution(batch["obs"][idx])
                logprob = dist.log_prob(batch["actions"][idx]).sum(-1)
                ratio = (logprob - batch["logprobs"][idx]).exp()
                adv = batch["advantages"][idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip, 1 + c.clip)).mean()
                value_loss = 0.5 * ((self.agent.value(batch["obs"][idx]) - batch["returns"][idx]) ** 2).mean()
                entropy = dist.entropy().sum(-1).mean()
                symmetry_loss = self.symmetry_loss(batch["obs"][idx], dist.mean)
                loss = (policy_loss + c.value_coef * value_loss - c.entropy_coef * entropy
                        + c.mirror_coef * symmetry_loss)
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.agent.parameters(), c.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    epoch["policy_loss"].append(policy_loss.item())
                    epoch["value_loss"].append(value_loss.item())
                    epoch["entropy"].append(entropy.item())
                    epoch["symmetry_loss"].append(symmetry_loss.item())
                    epoch["approx_kl"].append(((ratio - 1) - (logprob - batch["logprobs"][idx])).mean().item())
                    epoch["clipfrac"].append(((ratio - 1).abs() > c.clip).float().mean().item())
            stats = {k: float(np.mean(v)) for k, v in epoch.items()}
            if c.target_kl is not None and stats["approx_kl"] > c.target_kl:
                break
        self.agent.norm.update(batch["obs"])  # after the epochs: the ratios above use the rollout's normalisation
        residual = batch["returns"] - batch["values"]
        stats["explained_variance"] = float(1 - residual.var() / (batch["returns"].var() + 1e-8))
        stats["action_std"] = float(self.agent.log_std.detach().exp().mean())
        return stats

    def symmetry_loss(self, obs: torch.Tensor, action_mean: torch.Tensor) -> torch.Tensor:
        """Mean squared difference between the action mean of each state and the mirror image of the action
        mean of its mirrored state (zero for a left-right symmetric policy); without gradient when unused."""
        obs_index, obs_sign, action_index = self._mirror
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.mirror_coef > 0):
            mirrored = self.agent.actor(self.agent.norm(obs[:, obs_index] * obs_sign))[:, action_index]
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
                    stats = self.learn(batch)
                    self.update += 1
                    elapsed = time.time() - started
                    row = {"update": self.update, "global_step": self.global_step,
                           "samples_per_s": c.rollout_steps * c.workers / elapsed,
                           "episodes": len(finished["length"]),
                           "episode_length": float(np.mean(finished["length"])) if finished["length"] else np.nan,
                           "episode_return": float(np.mean(finished["return"])) if finished["return"] else np.nan,
                           "tracking_error_m": float(np.mean(finished["tracking_error"]))
                           if finished["tracking_error"] else np.nan,
                           **stats, "wall_time_s": time.time()}
                    history.append(row)
                    if writer is None:
                        columns = list(row) if new_log else _add_log_columns(log_path, list(row))
                        fh = files.enter_context(open(log_path, "w" if new_log else "a", newline=""))
                        writer = csv.DictWriter(fh, fieldnames=columns)
                        if new_log:
                            writer.writeheader()
                    writer.writerow(row)
                    fh.flush()
                    bar.update(c.rollout_steps * c.workers)
                    bar.set_postfix(sps=f"{row['samples_per_s']:.0f}", ep_len=f"{row['episode_length']:.0f}",
                                    ret=f"{row['episode_return']:.1f}", err=f"{row['tracking_error_m']:.3f}")
                    if self.update % c.checkpoint_every == 0:
                        self.save()
            self.save()
        finally:
            bar.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        return history

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def close(self) -> None:
        self.workers.close()
