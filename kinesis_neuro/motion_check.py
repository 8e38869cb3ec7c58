"""Quality checks of a reference motion on the model: foot slip, floor penetration, heel strikes."""

from __future__ import annotations

import mujoco
import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import gait
from kinesis_neuro import model as mdl
from kinesis_neuro.dynamics import FOOT_BODIES
from kinesis_neuro.motion import Motion

FOOT_SEGMENTS = {"right": ("calcn_r", "toes_r"), "left": ("calcn_l", "toes_l")}


def _foot_geoms(model: mujoco.MjModel, side: str, segments: tuple[str, ...] | None = None) -> list[int]:
    bodies = {model.body(b).id for b in (segments or FOOT_SEGMENTS[side])}
    return [g for g in range(model.ngeom) if model.geom_bodyid[g] in bodies and model.geom_contype[g]]


def _lowest_point(model: mujoco.MjModel, data: mujoco.MjData, geom: int) -> float:
    """Height (m) of the lowest point of a sphere, capsule, ellipsoid or box geom."""
    z, size = data.geom_xpos[geom][2], model.geom_size[geom]
    up = data.geom_xmat[geom].reshape(3, 3)[2]  # world z of the geom's local axes
    kind = model.geom_type[geom]
    if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        return z - size[0]
    if kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
        return z - abs(up[2]) * size[1] - size[0]
    if kind == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
        return z - np.sqrt(np.sum((up * size) ** 2))
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        return z - np.sum(np.abs(up) * size)
    return z - model.geom_rbound[geom]


def foot_heights(model: mujoco.MjModel, motion: Motion, time=None, heel_only: bool = False) -> xr.DataArray:
    """Height above the floor (m) of each foot's (or heel's) lowest collision point, ``(time, side)``."""
    qpos = motion.qpos(model, time)
    data = mujoco.MjData(model)
    geoms = {side: _foot_geoms(model, side, FOOT_SEGMENTS[side][:1] if heel_only else None) for side in FOOT_SEGMENTS}
    heights = np.zeros((len(qpos), 2))
    for i, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        for k, side in enumerate(FOOT_SEGMENTS):
            heights[i, k] = min(_lowest_point(model, data, g) for g in geoms[side]) - mdl.FLOOR_HEIGHT
    return xr.DataArray(heights, dims=("time", "side"),
                        coords={"time": motion.time if time is None else time, "side": list(FOOT_SEGMENTS)},
                        attrs={"units": "m"})


def stance_slip(model: mujoco.MjModel, motion: Motion, grf: xr.Dataset,
                min_load_fraction: float = 0.1) -> xr.DataArray:
    """Horizontal speed (m/s) of the foot's material point at the centre of pressure while the foot
    carries more than ``min_load_fraction`` of body weight (below that the CoP is ill-defined);
    NaN otherwise. A foot rolling without slipping gives ~0."""
    min_load = min_load_fraction * model.body_subtreemass[0] * -model.opt.gravity[2]
    time = motion.time
    qpos, qvel, _ = motion.states(model, time)
    loads = grf.interp(time=time)
    data = mujoco.MjData(model)
    jac = np.zeros((3, model.nv))
    speed = np.full((time.size, 2), np.nan)
    for i in range(time.size):
        data.qpos[:] = qpos[i]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        for k, side in enumerate(FOOT_SEGMENTS):
            if loads.force.sel(side=side).values[i, 2] <= min_load:
                continue
            point = loads.point.sel(side=side).values[i]
            mujoco.mj_jac(model, data, jac, None, point, model.body(FOOT_BODIES[side]).id)
            speed[i, k] = np.linalg.norm((jac @ qvel[i])[:2])
    return xr.DataArray(speed, dims=("time", "side"), coords={"time": time, "side": list(FOOT_SEGMENTS)},
                        attrs={"units": "m/s", "min_load_n": float(min_load)})


def floor_offset(model: mujoco.MjModel, motion: Motion, grf: xr.Dataset) -> float:
    """Median height (m) of the feet's lowest points while loaded: ``motion.raised(-offset)`` puts the
    stance feet on the floor when the model's legs differ in length from the subject's."""
    heights = foot_heights(model, motion)
    loaded = grf.force.sel(axis="z").interp(time=motion.time) > grf.attrs.get("threshold_n", 20.0)
    return float(heights.where(loaded.transpose(*heights.dims)).median())


def check_motion(model: mujoco.MjModel, motion: Motion, grf: xr.Dataset, grf_events: pd.DataFrame,
                 contact_height: float = 0.01) -> dict:
    """Slip (m/s), foot heights in stance (m; negative = penetration) and kinematic vs GRF heel strikes (s).

    A heel strike is found in the kinematics when the heel's lowest point comes down to less than
    ``contact_height`` m above its lowest height in the trial.
    """
    slip = stance_slip(model, motion, grf)
    heights = foot_heights(model, motion)
    heels = foot_heights(model, motion, heel_only=True)
    report = {}
    for side in FOOT_SEGMENTS:
        s = slip.sel(side=side).values
        h = heights.sel(side=side).values[np.isfinite(s)]
        heel = heels.sel(side=side).values
        kinematic = gait.events_from_contact(heel < heel.min() + contact_height, motion.time, side)
        sim = kinematic[kinematic.event == "heel_strike"].time.to_numpy()
        measured = grf_events[(grf_events.side == side) & (grf_events.event == "heel_strike")].time.to_numpy()
        measured = measured[(measured > motion.time[0]) & (measured < motion.time[-1])]
        pairs = [(m, sim[np.argmin(np.abs(sim - m))]) for m in measured] if sim.size else []
        report[side] = {
            "stance_slip_mean_m_s": float(np.nanmean(s)),
            "stance_slip_p95_m_s": float(np.nanpercentile(s, 95)),
            "stance_height_p5_m": float(np.percentile(h, 5)),
            "stance_height_p50_m": float(np.percentile(h, 50)),
            "stance_height_p95_m": float(np.percentile(h, 95)),
            "penetration_max_m": float(max(0.0, -h.min())),
            "heel_strikes_grf_s": [float(m) for m, _ in pairs],
            "heel_strikes_kinematic_s": [float(k) for _, k in pairs],
            "heel_strike_error_s": [float(k - m) for m, k in pairs],
        }
    return report
