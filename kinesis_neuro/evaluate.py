"""How well a policy imitates each clip of the motion library: episodes without termination and tracking error.

One row per clip: its split (``train``, ``held_out``, ``text_to_motion`` of
:data:`kinesis_neuro.motion_library.SPLITS`), kind, the episodes run, the fraction that reached their end (10 s,
or the clip's end for shorter clips) without early termination, their mean duration (s) and the mean tracked-body
distance to the reference (m) over every step. Episodes start at seeded random phases of the clip with
deterministic actions; each clip runs alone in its own environment (``ImitationConfig.clips = (clip,)``), in the
policy's environment settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kinesis_neuro import motion_library
from kinesis_neuro.envs import ImitationConfig
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.policies import Policy
from kinesis_neuro.rollout import run_episodes

# the issue's targets: share of episodes without termination per split, and the training clips' mean error (m)
TARGETS = {"train": 0.9, "held_out": 0.7}
TRAIN_ERROR_TARGET_M = 0.05


def evaluate(policy: Policy, *, splits: Sequence[str] = ("train", "held_out", "text_to_motion"),
             clips: Sequence[str] | None = None, episodes: int = 5, seed: int = 0, batch: int = 32,
             progress: bool = True, **env_overrides) -> pd.DataFrame:
    """Per-clip evaluation of ``policy`` on the clips of ``splits`` (or on ``clips``, whatever their split):
    ``episodes`` episodes per clip seeded ``seed, seed + 1, ...``. ``env_overrides`` change the policy's
    environment settings (e.g. ``episode_seconds``, ``data_dir``)."""
    from tqdm.auto import tqdm

    if episodes < 1:
        raise KinesisNeuroError(f"episodes must be at least 1, got {episodes}")
    split_of = {name: split for split, names in motion_library.SPLITS.items() for name in names}
    unknown = [s for s in splits if s not in motion_library.SPLITS]
    if unknown:
        raise KinesisNeuroError(f"unknown splits {unknown}; known: {', '.join(motion_library.SPLITS)}")
    names = list(clips) if clips else [name for split in splits for name in motion_library.SPLITS[split]]
    missing = [name for name in names if name not in motion_library.CLIPS]
    if missing:
        raise KinesisNeuroError(f"unknown clips {missing}; known: {', '.join(motion_library.CLIPS)}")
    rows = []
    for name in tqdm(names, desc="clips", disable=not progress):
        config = ImitationConfig(**{**policy.env_config, **env_overrides, "clips": (name,)})
        results = run_episodes(policy, config, [seed + k for k in range(episodes)], batch=batch)
        durations = np.array([len(r["tracking_error"]) for r in results]) / config.control_rate
        errors = np.concatenate([r["tracking_error"] for r in results])
        rows.append({"clip": name, "split": split_of.get(name, "-"), "kind": motion_library.CLIPS[name].kind,
                     "episodes": episodes, "completed": float(np.mean([not r["terminated"] for r in results])),
                     "mean_duration_s": float(durations.mean()), "tracking_error_m": float(errors.mean())})
    table = pd.DataFrame(rows).set_index("clip")
    table.attrs.update(seed=seed, episodes_per_clip=episodes, policy=policy.source)
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per split: clips, share of episodes completed, mean tracking error (m) and the targets they are held to."""
    grouped = table.groupby("split", sort=False)
    out = pd.DataFrame({"clips": grouped.size(), "completed": grouped.completed.mean(),
                        "tracking_error_m": grouped.tracking_error_m.mean()})
    out["completed_target"] = [TARGETS.get(split, np.nan) for split in out.index]
    out["error_target_m"] = [TRAIN_ERROR_TARGET_M if split == "train" else np.nan for split in out.index]
    return out
