"""Trained policies: export from a training checkpoint, load (weights only, no code), act and roll out.

A policy folder holds ``policy.safetensors`` (actor weights, log-std, observation normaliser) and
``policy.json`` (network sizes and the environment configuration it was trained in). A mixture of experts
(:mod:`kinesis_neuro.experts`) is one such folder too: ``policy.json`` says ``"kind": "mixture"`` and gives
the number of experts, each expert's hidden sizes and the gate's; ``policy.safetensors`` holds every expert's
normaliser, actor and log-std (``experts.<k>.``), the gate, the mixture's normaliser and log-std.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kinesis_neuro import storage
from kinesis_neuro.envs import ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError

WEIGHTS = "policy.safetensors"
CONFIG = "policy.json"
MIXTURE = "mixture"  # policy.json "kind" of a mixture of experts (a single policy has no "kind")


@dataclass
class Policy:
    """A Gaussian policy (an MLP, or a mixture of experts) with its observation normaliser; ``act`` returns
    actions in [-1, 1]. ``agent.distribution(obs)`` gives the action distribution of a batch of observations."""

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
    """Write ``policy.safetensors`` and ``policy.json`` from a run's training checkpoint into the folder ``out``
    (default: the run folder); both appear complete or not at all, and never in place of the checkpoint. A run
    of a gate over experts (``PPOConfig.experts``) gives a mixture folder (:func:`export_mixture`) that also
    names the expert folders it was built from (``expert_sources``)."""
    from kinesis_neuro.train import CHECKPOINT, checkpoint_config, load_checkpoint

    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise KinesisNeuroError(f"{run_dir}: is a file; give the training run folder that holds {CHECKPOINT}")
    out = Path(out or run_dir)
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    config = checkpoint_config(ckpt, run_dir / CHECKPOINT)
    extra = {"global_step": ckpt["global_step"], "update": ckpt["update"], "seed": config.seed}
    if config.experts:
        from kinesis_neuro.experts import checkpoint_mixture

        state, contents = _mixture_contents(checkpoint_mixture(ckpt, run_dir / CHECKPOINT), config.env,
                                            {**extra, "expert_sources": list(config.experts)})
    else:
        state = {k: v.contiguous() for k, v in ckpt["agent"].items() if not k.startswith("critic.")}
        contents = {"hidden": list(config.hidden), "env": config.env, **extra}
    return _write(out, state, contents, protect=[run_dir / CHECKPOINT])


def export_mixture(mixture, out: str | Path, env_config: dict, extra: dict | None = None) -> Path:
    """Write the :class:`~kinesis_neuro.experts.MixtureOfExperts` ``mixture`` (experts, gate, normaliser,
    log-std; not the critic) as the policy folder ``out``, for the environment settings ``env_config``;
    ``extra`` (plain data, e.g. ``update``, ``global_step``, ``seed`` of the gate's training) joins
    ``policy.json``. Both files appear complete or not at all."""
    return _write(out, *_mixture_contents(mixture, env_config, extra))


def _mixture_contents(mixture, env_config: dict, extra: dict | None) -> tuple[dict, dict]:
    """The tensors and the ``policy.json`` of a mixture folder (see :func:`export_mixture`)."""
    from kinesis_neuro.experts import MixtureOfExperts, hidden_sizes
    from kinesis_neuro.train import check_env

    if not isinstance(mixture, MixtureOfExperts):
        raise KinesisNeuroError(f"export_mixture takes a MixtureOfExperts, got a {type(mixture).__name__}")
    check_env(env_config, "env_config")
    config = {"kind": MIXTURE, "experts": mixture.num_experts,
              "hidden": [hidden_sizes(e.actor) for e in mixture.experts], "gate_hidden": hidden_sizes(mixture.gate),
              "env": dict(env_config)}
    clash = sorted(set(config) & set(extra or {}))
    if clash:
        raise KinesisNeuroError(f"extra must not replace {', '.join(clash)} of {CONFIG}")
    state = {k: v.detach().contiguous() for k, v in mixture.state_dict().items() if not k.startswith("critic.")}
    return state, {**config, **(extra or {})}


def _write(out: str | Path, state: dict, config: dict, protect=()) -> Path:
    """The policy folder ``out``: ``state`` as ``policy.safetensors``, ``config`` as ``policy.json`` (written
    last); both appear complete or not at all, and never in place of a file of ``protect``."""
    from safetensors.torch import save_file

    out = Path(out)
    with storage.output_folder(out, protect=protect, last=(CONFIG,)) as staging:
        save_file(state, staging / WEIGHTS)
        storage.write_json(config, staging / CONFIG)
    return out


def _read_config(file: Path) -> dict:
    """``policy.json``, checked: an object with ``hidden`` (layer sizes) and ``env`` (ImitationConfig settings);
    for a mixture (``"kind": "mixture"``) ``hidden`` holds the layer sizes of each of ``experts`` experts and
    ``gate_hidden`` those of the gate."""
    from kinesis_neuro.train import check_env, valid_hidden

    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFormatError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise DataFormatError(f"{file}: expected a JSON object with hidden and env, got a {type(config).__name__}")
    mixture = "kind" in config
    if mixture and config["kind"] != MIXTURE:
        raise DataFormatError(f"{file}: kind must be {MIXTURE!r} (a mixture of experts) or absent (a single "
                              f"policy), got {config['kind']!r}")
    missing = [k for k in ("hidden", "env", *(("experts", "gate_hidden") if mixture else ())) if k not in config]
    if missing:
        raise DataFormatError(f"{file}: lacks {' and '.join(missing)}")
    if mixture:
        k, hidden = config["experts"], config["hidden"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise DataFormatError(f"{file}: experts must be the number of experts (an integer >= 1), got {k!r}")
        if not isinstance(hidden, list) or len(hidden) != k or not all(valid_hidden(h) for h in hidden):
            raise DataFormatError(f"{file}: hidden must hold the layer sizes (integers >= 1) of each of the {k} "
                                  f"experts, got {hidden!r}")
        if not valid_hidden(config["gate_hidden"]):
            raise DataFormatError(f"{file}: gate_hidden must be a non-empty list of layer sizes (integers >= 1), "
                                  f"got {config['gate_hidden']!r}")
    elif not valid_hidden(config["hidden"]):
        raise DataFormatError(f"{file}: hidden must be a non-empty list of layer sizes (integers >= 1), "
                              f"got {config['hidden']!r}")
    check_env(config["env"], f"{file}: env")
    return config


def _read_weights(file: Path, config: dict) -> torch.nn.Module:
    """The acting network of ``policy.safetensors`` (an :class:`~kinesis_neuro.train.ActorCritic`, or a
    :class:`~kinesis_neuro.experts.MixtureOfExperts`), checked against the sizes of ``policy.json``
    (``config``): every tensor but the critic's present with its shape, finite."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from kinesis_neuro.experts import MixtureOfExperts
    from kinesis_neuro.train import ActorCritic, check_finite

    try:
        state = load_file(file)
    except SafetensorError as err:
        raise DataFormatError(f"{file}: not a readable safetensors file ({err})") from err
    for key in ("norm.mean", "log_std"):
        if key not in state or state[key].ndim != 1:
            raise DataFormatError(f"{file}: lacks the 1-D tensor {key}")
    check_finite(state, str(file))
    n_obs, n_act = state["norm.mean"].shape[0], state["log_std"].shape[0]
    if config.get("kind") == MIXTURE:
        agent = MixtureOfExperts(n_obs, n_act, config["hidden"], config["gate_hidden"])
        sizes = f"experts hidden {config['hidden']}, gate_hidden {config['gate_hidden']}"
    else:
        agent = ActorCritic(n_obs, n_act, tuple(config["hidden"]))
        sizes = f"hidden {config['hidden']}"
    shapes = {k: tuple(v.shape) for k, v in agent.state_dict().items()}
    problems = ([f"lacks {k}" for k in shapes if k not in state and not k.startswith("critic.")]
                + [f"unexpected {k}" for k in state if k not in shapes]
                + [f"{k} has shape {tuple(v.shape)}, expected {shapes[k]}" for k, v in state.items()
                   if k in shapes and tuple(v.shape) != shapes[k]])
    if problems:
        raise DataFormatError(f"{file}: weights do not fit the network of {CONFIG} ({sizes}): "
                              + "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else ""))
    agent.load_state_dict(state, strict=False)
    return agent.eval()


def load(path: str | Path) -> Policy:
    """Load a policy folder, checked (a ``DataFormatError`` names the file and problem); the weights come from
    safetensors, so loading never runs code."""
    path = Path(path)
    if not path.is_dir() or not (path / WEIGHTS).exists() and not (path / CONFIG).exists():
        raise KinesisNeuroError(f"{path}: not a policy folder (expected {WEIGHTS} and {CONFIG}); "
                                "export one from a training run with `kinesis-neuro export-policy`")
    for file in (path / CONFIG, path / WEIGHTS):
        if not file.is_file():
            raise DataFormatError(f"{file}: " + ("exists, but is not a regular file" if file.exists() else
                                                 f"missing; a policy folder holds {WEIGHTS} and {CONFIG}"))
    config = _read_config(path / CONFIG)
    return Policy(_read_weights(path / WEIGHTS, config), config["env"], str(path))
