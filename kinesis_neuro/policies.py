"""Trained policies: export from a training checkpoint, load (weights only, no code), act and roll out.

A policy folder holds ``policy.safetensors`` (actor weights, log-std, observation normaliser) and
``policy.json`` (network sizes and the environment configuration it was trained in).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kinesis_neuro.envs import ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.errors import KinesisNeuroError

WEIGHTS = "policy.safetensors"
CONFIG = "policy.json"


@dataclass
class Policy:
    """A Gaussian MLP policy with its observation normaliser; ``act`` returns actions in [-1, 1]."""

    agent: torch.nn.Module
    env_config: dict
    source: str

    def act(self, obs: np.ndarray, deterministic: bool = True, generator: torch.Generator | None = None) -> np.ndarray:
        with torch.no_grad():
            dist = self.agent.distribution(torch.as_tensor(obs, dtype=torch.float32)[None])
            action = dist.mean if deterministic else dist.sample() if generator is None else \
                dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=generator)
        return action[0].clamp(-1, 1).numpy()

    def make_env(self, **overrides) -> MyoLegsImitationEnv:
        return MyoLegsImitationEnv(ImitationConfig(**{**self.env_config, **overrides}))


def export(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``policy.safetensors`` and ``policy.json`` from a run's training checkpoint."""
    from safetensors.torch import save_file

    from kinesis_neuro.train import CHECKPOINT, load_checkpoint

    run_dir = Path(run_dir)
    out = Path(out or run_dir)
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    state = {k: v.contiguous() for k, v in ckpt["agent"].items() if not k.startswith("critic.")}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, out / WEIGHTS)
    config = ckpt["config"]
    (out / CONFIG).write_text(json.dumps({
        "hidden": list(config["hidden"]), "env": config["env"], "global_step": int(ckpt["global_step"]),
        "update": int(ckpt["update"]), "seed": config["seed"]}, indent=2))
    return out


def load(path: str | Path) -> Policy:
    """Load a policy folder; the weights come from safetensors, so loading never runs code."""
    from safetensors.torch import load_file

    from kinesis_neuro.train import ActorCritic

    path = Path(path)
    if not (path / WEIGHTS).exists() or not (path / CONFIG).exists():
        raise KinesisNeuroError(f"{path}: not a policy folder (expected {WEIGHTS} and {CONFIG}); "
                                "export one from a training run with `kinesis-neuro export-policy`")
    config = json.loads((path / CONFIG).read_text())
    state = load_file(path / WEIGHTS)
    n_obs, n_act = state["norm.mean"].shape[0], state["log_std"].shape[0]
    agent = ActorCritic(n_obs, n_act, tuple(config["hidden"]))
    missing = agent.load_state_dict(state, strict=False)
    if missing.unexpected_keys or [k for k in missing.missing_keys if not k.startswith("critic.")]:
        raise KinesisNeuroError(f"{path / WEIGHTS}: weights do not fit the network in {CONFIG} ({missing})")
    agent.eval()
    return Policy(agent, config["env"], str(path))
