"""Inverse dynamics of MyoLegs with measured ground reaction forces.

Each foot's measured force is applied to its calcaneus at the centre of pressure (plus the free
moment), MuJoCo's ``mj_inverse`` computes the generalised forces with constraints disabled, and
the coupled knee/patella dofs are projected onto the independent joints (``G.T @ qfrc``).
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import model as mdl
from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import check_values
from kinesis_neuro.motion import OPENSIM_TO_MUJOCO, Motion

FOOT_BODIES = {"right": "calcn_r", "left": "calcn_l"}
AXES = ("x", "y", "z")
TIME_TOLERANCE = 1e-6  # s: GRF ending this close to the motion's last frame still cover it


def grf_from_opensim(source: str | os.PathLike = "moco-walk/grf_walk.mot", *, data_dir=None,
                     threshold: float = 20.0) -> xr.Dataset:
    """Ground reaction forces of both feet (OpenSim ``ground_force_{r,l}_v*/p*``, ``ground_torque_*``)
    expressed in the MuJoCo world frame: ``force`` (N), ``point`` (m) and ``torque`` (N m), dims
    ``(time, side, axis)``. Below ``threshold`` N of vertical force a foot's loads are set to zero.
    Forces beyond ±1e5 N, moments beyond ±1e5 N m and a loaded foot's centre of pressure beyond
    ±100 m are refused (:data:`kinesis_neuro.io.common.LIMITS`)."""
    from kinesis_neuro import emg

    grf = emg.read(source, data_dir=data_dir)
    out = {}
    for key, prefix, quantity in (("force", "ground_force_{s}_v", "force"),
                                  ("point", "ground_force_{s}_p", "centre of pressure"),
                                  ("torque", "ground_torque_{s}_", "moment")):
        per_side = []
        for s in ("r", "l"):
            names = [prefix.format(s=s) + a for a in AXES]
            missing = [n for n in names if n not in grf.channel.values]
            if missing:
                raise DataFormatError(f"{grf.attrs['source']}: GRF columns {missing} missing (OpenSim naming expected)")
            foot_loaded = (grf.sel(channel=f"ground_force_{s}_vy").values[:, None] > threshold  # OpenSim y up
                           if key == "point" else None)
            check_values(grf.sel(channel=names), quantity, where=foot_loaded)
            per_side.append(grf.sel(channel=names).values @ OPENSIM_TO_MUJOCO.T)
        out[key] = (("time", "side", "axis"), np.stack(per_side, axis=1))
    ds = xr.Dataset(out, coords={"time": grf.time.values, "side": ["right", "left"], "axis": list(AXES)})
    loaded = (ds.force.sel(axis="z") > threshold)
    ds["force"] = ds.force.where(loaded, 0.0)
    ds["torque"] = ds.torque.where(loaded, 0.0)
    # unloaded CoP values are meaningless: hold the nearest loaded one, so interpolating in time
    # near a heel strike or toe-off never mixes in a far-away point
    point = ds.point.where(loaded).transpose("time", "side", "axis")
    held = pd.DataFrame(point.values.reshape(len(ds.time), -1)).ffill().bfill().fillna(0.0).to_numpy()
    ds["point"] = point.copy(data=held.reshape(point.shape))
    for name, units in (("force", "N"), ("point", "m"), ("torque", "N m")):
        ds[name].attrs["units"] = units
    ds.attrs.update(source=grf.attrs["source"], frame="MuJoCo world: z up, walking along -y", threshold_n=threshold)
    return ds


def check_coverage(grf: xr.Dataset, time, needed_by: str) -> None:
    """Refuse GRF that do not span ``time`` (s, within :data:`TIME_TOLERANCE`): loads beyond the
    recording's ends would be invented. ``needed_by`` names what needs them in the message."""
    time = np.asarray(time, dtype=float)
    start, stop = float(grf.time[0]), float(grf.time[-1])
    if time.min() < start - TIME_TOLERANCE or time.max() > stop + TIME_TOLERANCE:
        raise DataFormatError(f"{grf.attrs.get('source', 'GRF')}: the GRF covers {start:g}-{stop:g} s but "
                              f"{needed_by} needs {time.min():g}-{time.max():g} s")


def inverse_dynamics(model: mujoco.MjModel, motion: Motion, grf: xr.Dataset | None = None, *, time=None,
                     mass_ratio: float = 1.0) -> xr.Dataset:
    """Joint torques (N m) on the 14 independent leg joints and root residuals over ``time`` (s).

    ``grf`` (from :func:`grf_from_opensim`) is interpolated to ``time`` and scaled by
    ``mass_ratio`` (model mass / subject mass). Returns ``torque`` (time, joint), root
    ``residual_force`` (N, world frame) and ``residual_moment`` (N m, root body frame).
    """
    time = motion.time if time is None else np.asarray(time, dtype=float)
    qpos, qvel, qacc = motion.states(model, time)
    data = mujoco.MjData(model)
    saved_flags = model.opt.disableflags
    model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONSTRAINT
    couplings = mdl.Couplings(model)
    if grf is not None:
        check_coverage(grf, time, f"the motion {motion.attrs.get('source', '')}".rstrip())
        loads = grf.interp(time=np.clip(time, grf.time.values[0], grf.time.values[-1]))
        loads = loads.transpose("time", "side", "axis")
        force, moment, point = (loads[k].values * w for k, w in (("force", mass_ratio), ("torque", mass_ratio),
                                                                  ("point", 1.0)))
        bodies = [model.body(FOOT_BODIES[str(s)]).id for s in loads.side.values]
    torque = np.zeros((time.size, 6 + len(mdl.LEG_JOINTS)))
    external = np.zeros(model.nv)
    try:
        for i in range(time.size):
            data.qpos[:], data.qvel[:], data.qacc[:] = qpos[i], qvel[i], qacc[i]
            mujoco.mj_inverse(model, data)
            qfrc = data.qfrc_inverse.copy()
            if grf is not None:
                external[:] = 0.0
                for k, body in enumerate(bodies):
                    if force[i, k].any():
                        mujoco.mj_applyFT(model, data, force[i, k], moment[i, k], point[i, k], body, external)
                qfrc -= external
            torque[i] = couplings.jacobian(qpos[i]).T @ qfrc
    finally:
        model.opt.disableflags = saved_flags
    ds = xr.Dataset(
        {
            "torque": (("time", "joint"), torque[:, 6:], {"units": "N m", "long_name": "joint moment"}),
            "residual_force": (("time", "axis"), torque[:, :3], {"units": "N", "frame": "world"}),
            "residual_moment": (("time", "axis"), torque[:, 3:6], {"units": "N m", "frame": "root body"}),
        },
        coords={"time": ("time", time, {"units": "s"}), "joint": list(mdl.LEG_JOINTS), "axis": list(AXES)},
        attrs={"method": "mujoco mj_inverse, constraints disabled, measured GRF at the centre of pressure",
               "mass_ratio": mass_ratio, "motion": motion.attrs.get("source", ""),
               "grf": grf.attrs.get("source", "") if grf is not None else "none"},
    )
    return ds


def periodic_grf(grf: xr.Dataset, trial: Motion, half_cycle: tuple[float, float], walk: Motion) -> xr.Dataset:
    """Ground reaction forces for a periodic walk made by :func:`kinesis_neuro.motion.mirrored_stride`
    and :func:`~kinesis_neuro.motion.periodic` from ``trial``: the measured loads of the half cycle,
    then the same loads mirrored (feet swapped, lateral components reflected about the line of
    progression), with the centre of pressure carried forward stride by stride. Sampled at ``walk``'s times."""
    start, stop = half_cycle
    half = stop - start
    c = trial.coordinate_values([start, stop])
    pelvis = c.sel(coordinate=["pelvis_tx", "pelvis_ty", "pelvis_tz"]).values @ OPENSIM_TO_MUJOCO.T  # (2, 3)
    advance = pelvis[1] - pelvis[0]  # over one half cycle, MuJoCo frame (m)
    mirror_line = pelvis[0, 0] + pelvis[1, 0]  # x -> mirror_line - x maps the half's lateral path onto itself
    t = walk.time - walk.time[0]
    k, tau = np.divmod(t, 2 * half)
    second = tau >= half
    source = start + np.where(second, tau - half, tau)
    loads = grf.interp(time=np.clip(source, grf.time.values[0], grf.time.values[-1]))
    force, point, torque = (loads[v].transpose("time", "side", "axis").values.copy() for v in ("force", "point", "torque"))
    flip = second[:, None, None]
    force = np.where(flip, force[:, ::-1] * [-1, 1, 1], force)
    torque = np.where(flip, torque[:, ::-1] * [1, -1, -1], torque)  # an axial vector under x -> -x
    mirrored_point = point[:, ::-1] * [-1, 1, 1] + [mirror_line, 0, 0] + advance * [0, 1, 0]
    point = np.where(flip, mirrored_point, point) + (2 * k)[:, None, None] * (advance * [0, 1, 0])
    ds = xr.Dataset({"force": (("time", "side", "axis"), force, {"units": "N"}),
                     "point": (("time", "side", "axis"), point, {"units": "m"}),
                     "torque": (("time", "side", "axis"), torque, {"units": "N m"})},
                    coords={"time": walk.time, "side": ["right", "left"], "axis": list(AXES)})
    ds.attrs.update(grf.attrs, construction=f"half cycle {start:g}-{stop:g} s + its mirror image, repeated")
    return ds
