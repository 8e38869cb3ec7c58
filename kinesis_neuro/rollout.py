"""Running a trained policy: evaluation metrics and recordings of what it does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr

from kinesis_neuro.envs.recorder import EpisodeRecorder
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.policies import Policy
from kinesis_neuro.record import Recording


def rollout(policy: Policy, *, episodes: int = 10, seed: int = 0, deterministic: bool = True, ablate=(),
            weaken: dict | None = None, record: bool = True, progress: bool = True, start_noise: float = 0.0,
            noise_seed: int = 0, **env_overrides) -> tuple[pd.DataFrame, Recording | None]:
    """Run ``episodes`` seeded episodes (random start phases); returns per-episode metrics and, with
    ``record``, one Recording of all episodes one after another (variable ``episode`` over time).

    ``start_noise``: std of Gaussian noise added to each start state's qpos and qvel (their own units: m,
    rad, m/s, rad/s), seeded by ``(noise_seed, episode seed)``; a tiny value (1e-9) shows how far the
    numbers move when another CPU rounds differently. 0 leaves the start states exact.
    """
    from tqdm.auto import tqdm

    if episodes < 1:
        raise KinesisNeuroError(f"episodes must be at least 1, got {episodes}")
    env = policy.make_env(ablate=tuple(ablate), weaken=dict(weaken or {}), **env_overrides)
    generator = torch.Generator().manual_seed(seed)
    rows, recordings = [], []
    for k in tqdm(range(episodes), desc="episodes", disable=not progress):
        env.recorder = EpisodeRecorder() if record else None
        noise = {"start_noise": start_noise, "noise_seed": [noise_seed, seed + k]}
        obs, _ = env.reset(seed=seed + k, options=noise)
        errors, done, terminated = [], False, False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs, deterministic, generator))
            errors.append(info["tracking_error"])
            done = terminated or truncated
        rec = env.recorder.to_recording(env, {"motion": env.config.motion, "controller": f"policy {policy.source}",
                                              "seed": seed + k}) if record else None
        strikes = int((rec.events().query("event == 'heel_strike' and side == 'right'")).shape[0]) if rec else -1
        rows.append({"episode": k, "seed": seed + k, "duration_s": len(errors) / env.config.control_rate,
                     "terminated_early": bool(terminated), "tracking_error_m": float(np.mean(errors)),
                     "right_heel_strikes": strikes})
        if rec is not None:
            recordings.append(rec)
    metrics = pd.DataFrame(rows).set_index("episode")
    return metrics, (_concatenate(recordings) if recordings else None)


def _concatenate(recordings: list[Recording]) -> Recording:
    """Episodes one after another in time (each shifted to start one sample after the previous ends)."""
    parts, offset = [], 0.0
    dt = 1.0 / recordings[0].data.attrs["sampling_rate"]
    for k, rec in enumerate(recordings):
        ds = rec.data.drop_dims(["heel_strike", "toe_off"], errors="ignore")
        ds = ds.assign_coords(time=ds.time + offset)
        ds["episode"] = ("time", np.full(ds.sizes["time"], k, dtype=np.int32), {"units": "1"})
        parts.append(ds)
        offset = float(ds.time[-1]) + dt
    data = xr.concat(parts, dim="time", data_vars="minimal", coords="minimal", compat="override",
                     combine_attrs="override")
    events = pd.concat([rec.events().assign(time=lambda e, o=float(p.time[0]): e.time + o)
                        for rec, p in zip(recordings, parts)])
    first = recordings[0].data
    for kind in ("heel_strike", "toe_off"):
        sel = events[events.event == kind]
        data[f"{kind}_time"] = ((kind,), sel.time.to_numpy(), first[f"{kind}_time"].attrs)
        data = data.assign_coords({f"{kind}_side": ((kind,), sel.side.to_numpy())})
    data.attrs["episodes"] = len(recordings)
    return Recording(data)
