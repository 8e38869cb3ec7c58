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
            noise_seed: int = 0, batch: int = 32, **env_overrides) -> tuple[pd.DataFrame, Recording | None]:
    """Run ``episodes`` seeded episodes (random start phases); returns per-episode metrics and, with
    ``record``, one Recording of all episodes one after another (variable ``episode`` over time).

    ``start_noise``: std of Gaussian noise added to each start state's qpos and qvel (their own units: m,
    rad, m/s, rad/s), seeded by ``(noise_seed, episode seed)``; a tiny value (1e-9) shows how far the
    numbers move when another CPU rounds differently. 0 leaves the start states exact.

    Up to ``batch`` episodes run at once (:func:`run_episodes`); each gives exactly what it gives alone in a
    :class:`~kinesis_neuro.envs.imitation.MyoLegsImitationEnv`.
    """
    from kinesis_neuro.envs import ImitationConfig

    config = ImitationConfig(**{**policy.env_config, "ablate": tuple(ablate), "weaken": dict(weaken or {}),
                                **env_overrides})
    recorders: dict[int, EpisodeRecorder] = {}

    def on_reset(k, view):
        recorders[k] = EpisodeRecorder()
        recorders[k].reset(view)

    def on_step(k, view):
        recorders[k].append(view)

    def on_end(k, view):
        attrs = {"motion": ", ".join(config.clips) if config.clips else config.motion,
                 "controller": f"policy {policy.source}", "seed": seed + k}
        recordings[k] = recorders.pop(k).to_recording(view, attrs)

    recordings: dict[int, Recording] = {}
    results = run_episodes(policy, config, [seed + k for k in range(episodes)], batch=batch,
                           deterministic=deterministic, generator=torch.Generator().manual_seed(seed),
                           options=lambda k: {"start_noise": start_noise, "noise_seed": [noise_seed, seed + k]},
                           on_reset=on_reset if record else None, on_step=on_step if record else None,
                           on_end=on_end if record else None, progress=progress)
    rows = []
    for k, result in enumerate(results):
        rec = recordings.get(k)
        strikes = int((rec.events().query("event == 'heel_strike' and side == 'right'")).shape[0]) if rec else -1
        errors = result["tracking_error"]
        rows.append({"episode": k, "seed": seed + k, "duration_s": len(errors) / config.control_rate,
                     "terminated_early": result["terminated"], "tracking_error_m": float(np.mean(errors)),
                     "right_heel_strikes": strikes})
    metrics = pd.DataFrame(rows).set_index("episode")
    return metrics, (_concatenate([recordings[k] for k in range(episodes)]) if recordings else None)


def run_episodes(policy: Policy, config, seeds: list[int], *, batch: int = 32, deterministic: bool = True,
                 generator: torch.Generator | None = None, options=None, on_reset=None, on_step=None, on_end=None,
                 env=None, progress: bool = False) -> list[dict]:
    """Episodes ``k`` seeded ``seeds[k]`` under ``policy``, up to ``batch`` at once in a
    :class:`~kinesis_neuro.envs.vector.MyoLegsVectorEnv` (``env``, or one made from the ``ImitationConfig``
    ``config``); a finished episode's slot takes the next one. Each episode is exactly what it is alone in a
    :class:`~kinesis_neuro.envs.imitation.MyoLegsImitationEnv` reset with ``seed=seeds[k]`` and
    ``options(k)``: the policy acts on each observation alone, as there. Stochastic actions
    (``deterministic=False``) come from ``generator`` in episode order, so those episodes run one after another.

    ``on_reset(k, view)``, ``on_step(k, view)`` (after every step) and ``on_end(k, view)`` see episode ``k``'s
    environment as a single one (:meth:`~kinesis_neuro.envs.vector.MyoLegsVectorEnv.view`: ``data``,
    ``model``, ...). Returns per episode ``{"seed", "terminated", "tracking_error": [per step]}``."""
    from tqdm.auto import tqdm

    from kinesis_neuro.envs.vector import MyoLegsVectorEnv

    if len(seeds) < 1:
        raise KinesisNeuroError(f"episodes must be at least 1, got {len(seeds)}")
    if batch < 1:
        raise KinesisNeuroError(f"batch must be at least 1, got {batch}")
    slots = min(len(seeds), batch) if deterministic else 1
    if env is None:
        env = MyoLegsVectorEnv(slots, config, autoreset=False)
    elif env.num_envs < slots:
        raise KinesisNeuroError(f"the environment batch has {env.num_envs} environments, {slots} needed")
    results: list[dict | None] = [None] * len(seeds)
    episode_of, errors, obs = [None] * slots, [[] for _ in range(slots)], [None] * slots
    upcoming = iter(range(len(seeds)))

    def start(j: int) -> None:
        """Slot ``j`` takes the next episode, if any."""
        k = episode_of[j] = next(upcoming, None)
        if k is not None:
            obs[j] = env.reset_env(j, seed=seeds[k], options=options(k) if options else None)
            errors[j] = []
            if on_reset:
                on_reset(k, env.view(j))

    for j in range(slots):
        start(j)
    with tqdm(total=len(seeds), desc="episodes", disable=not progress) as bar:
        while True:
            active = [j for j in range(slots) if episode_of[j] is not None]
            if not active:
                break
            actions = np.stack([policy.act(obs[j], deterministic, generator) for j in active])
            new_obs, _, terminated, truncated = env.step_envs(active, actions)
            for row, j in enumerate(active):
                k = episode_of[j]
                obs[j] = new_obs[row]
                errors[j].append(float(env.last_tracking_error[j]))
                if on_step:
                    on_step(k, env.view(j))
                if terminated[row] or truncated[row]:
                    results[k] = {"seed": seeds[k], "terminated": bool(terminated[row]), "tracking_error": errors[j]}
                    if on_end:
                        on_end(k, env.view(j))
                    bar.update()
                    start(j)
    return results


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
