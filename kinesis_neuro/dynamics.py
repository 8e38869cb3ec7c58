"""Inverse dynamics of MyoLegs with measured ground reaction forces.

Each foot's measured force is applied to its calcaneus at the centre of pressure (plus the free
moment), MuJoCo's ``mj_inverse`` computes the generalised forces with constraints disabled, and
the coupled knee/patella dofs are projected onto the independent joints (``G.T @ qfrc``).
"""

from __future__ import annotations

import json
import os
import re

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
                     threshold: float = 20.0, feet: dict[str, str] | None = None, lab_to_ground=None) -> xr.Dataset:
    """Ground reaction forces of both feet from an OpenSim GRF file (``.mot``, or a ``.mat`` struct of one)
    expressed in the MuJoCo world frame: ``force`` (N), ``point`` (m) and ``torque`` (N m), dims
    ``(time, side, axis)``. Columns and ``feet`` as in :func:`kinesis_neuro.gait.grf_columns`
    (``ground_force_r_vy``, ``R_ground_force_vy``, numbered plates). Below ``threshold`` N of vertical
    force a foot's loads are set to zero. Forces beyond ±1e5 N, moments beyond ±1e5 N m and a loaded
    foot's centre of pressure beyond ±100 m are refused (:data:`kinesis_neuro.io.common.LIMITS`).
    ``lab_to_ground`` (3 x 3, rows: ground axes in the file's frame; e.g. ``attrs["lab_to_ground"]`` of the
    marker IK of the same trial, which turns the lab about the vertical onto the walking direction) is
    applied first; by default the file's frame is OpenSim's ground."""
    from kinesis_neuro import emg, gait

    grf = emg.read(source, data_dir=data_dir)
    columns = gait.grf_columns(grf, feet)
    to_world = OPENSIM_TO_MUJOCO @ (np.eye(3) if lab_to_ground is None else _rotation(lab_to_ground, source))
    loads = {}
    for key, quantity in (("force", "force"), ("point", "centre of pressure"), ("torque", "moment")):
        per_side = []
        for side in ("right", "left"):
            names = columns[side][key]
            foot_loaded = (grf.sel(channel=columns[side]["force"][1]).values[:, None] > threshold  # OpenSim y up
                           if key == "point" else None)
            check_values(grf.sel(channel=names), quantity, where=foot_loaded)
            per_side.append(grf.sel(channel=names).values @ to_world.T)
        loads[key] = np.stack(per_side, axis=1)
    return _grf_dataset(grf.time.values, loads, threshold, source=grf.attrs["source"],
                        columns=json.dumps(columns))


def _rotation(matrix, source) -> np.ndarray:
    """A 3 x 3 rotation matrix from ``matrix`` (nested lists, e.g. a motion's provenance), or a one-line error."""
    rotation = np.asarray(matrix, dtype=float)
    if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
        raise DataFormatError(f"{source}: lab_to_ground must be a 3 x 3 rotation matrix, got {matrix!r}")
    return rotation


def load_grf(source: str | os.PathLike, *, data_dir=None, lab_to_ground=None, threshold: float = 20.0) -> xr.Dataset:
    """Ground reaction forces of both feet from an OpenSim GRF file (``.mot``/``.sto``, a ``.mat`` struct of
    one: :func:`grf_from_opensim`) or a C3D file's force plates (:func:`grf_from_c3d`), in the MuJoCo world.
    ``lab_to_ground``: the lab-to-ground rotation the motion's marker IK used (its provenance), so the loads
    and the motion share one frame; ``None``: the file's own frame (OpenSim files) or the plates' and
    markers' directions (C3D)."""
    from kinesis_neuro.emg.read import source_path

    if source_path(source, data_dir).suffix.lower() == ".c3d":
        return grf_from_c3d(source, data_dir=data_dir, threshold=threshold,
                            lab_to_ground=None if lab_to_ground is None else _rotation(lab_to_ground, source))
    return grf_from_opensim(source, data_dir=data_dir, threshold=threshold, lab_to_ground=lab_to_ground)


def _grf_dataset(time: np.ndarray, loads: dict[str, np.ndarray], threshold: float, **attrs) -> xr.Dataset:
    """``force``/``point``/``torque`` arrays (time, side, axis; MuJoCo world frame) as the GRF Dataset: loads
    below ``threshold`` N vertical zeroed, the centre of pressure of an unloaded foot held at its nearest
    loaded value (interpolating in time near a heel strike or toe-off never mixes in a far-away point)."""
    ds = xr.Dataset({k: (("time", "side", "axis"), v) for k, v in loads.items()},
                    coords={"time": time, "side": ["right", "left"], "axis": list(AXES)})
    loaded = (ds.force.sel(axis="z") > threshold)
    ds["force"] = ds.force.where(loaded, 0.0)
    ds["torque"] = ds.torque.where(loaded, 0.0)
    point = ds.point.where(loaded).transpose("time", "side", "axis")
    held = pd.DataFrame(point.values.reshape(len(ds.time), -1)).ffill().bfill().fillna(0.0).to_numpy()
    ds["point"] = point.copy(data=held.reshape(point.shape))
    for name, units in (("force", "N"), ("point", "m"), ("torque", "N m")):
        ds[name].attrs["units"] = units
    ds.attrs.update(attrs, frame="MuJoCo world: z up, walking along -y", threshold_n=threshold)
    return ds


# markers on a foot: side letter, optional "." or "_", then heel, calcaneus, malleolus, ankle, toe or metatarsal
FOOT_MARKER = re.compile(r"^(?P<side>[RL])[._]?(HEE|HEEL|CAL|LMAL|MMAL|ANK|TOE|MT[1-5]|P[1-5]MT|MT[1-5]H)$",
                         re.IGNORECASE)
CONTACT_TOLERANCE = 0.1  # s: without foot markers, a heel strike this close to a contact's start names its foot
MIN_CONTACT_S = 0.05  # s: loads or gaps shorter than this on a plate are noise, not a contact or a lift


def grf_from_c3d(source: str | os.PathLike, *, data_dir=None, threshold: float = 20.0,
                 lab_to_ground=None) -> xr.Dataset:
    """Ground reaction forces of both feet from a C3D file's force plates, in the layout and frame of
    :func:`grf_from_opensim` (``force`` N, ``point`` m, ``torque`` N m; ``(time, side, axis)``, MuJoCo world).

    Each contact (a run of vertical force above ``threshold`` N on one plate) goes to the foot whose
    markers (:data:`FOOT_MARKER`: heel, ankle, toes...) lie nearest its centre of pressure, or, in a file
    without foot markers, to the side of the C3D heel strike within :data:`CONTACT_TOLERANCE` s of its start.
    A foot on two plates at once gets their summed force at the combined centre of pressure. The lab frame
    becomes OpenSim's ground frame by ``lab_to_ground`` (3 x 3, rows: ground x, y, z in lab coordinates,
    e.g. ``attrs["lab_to_ground"]`` of the marker IK of the same trial); by default ground y is the lab axis
    the plates' forces push along and x the markers' horizontal direction of travel. The rotation used
    (JSON) and each contact's plate, times and foot are in ``attrs``.
    """
    from kinesis_neuro.emg.read import source_path
    from kinesis_neuro.io.c3d import read_c3d_events, read_c3d_markers, read_c3d_plates

    path = source_path(source, data_dir)
    plates = read_c3d_plates(path, threshold)
    markers = read_c3d_markers(path)
    rotation = (_c3d_lab_to_ground(path, plates, markers) if lab_to_ground is None
                else np.asarray(lab_to_ground, dtype=float))
    to_world = OPENSIM_TO_MUJOCO @ rotation
    force, point, torque = (plates[k].transpose("time", "plate", "axis").values @ to_world.T
                            for k in ("force", "point", "torque"))
    contacts = _plate_contacts(path, plates.time.values, force[..., 2], point, markers, to_world, threshold)
    unassigned = [c for c in contacts if c["side"] is None]
    if unassigned:
        strikes = read_c3d_events(path)
        strikes = strikes[strikes.event == "heel_strike"]
        for contact in unassigned:
            near = strikes[np.abs(strikes.time - contact["start_s"]) <= CONTACT_TOLERANCE]
            if len(near) != 1 or near.side.iloc[0] not in ("right", "left"):
                raise DataFormatError(f"{path}: cannot tell which foot stood on plate {contact['plate']} at "
                                      f"{contact['start_s']:.3f} s: no foot marker seen then, and {len(near)} heel "
                                      f"strike(s) with a side within {CONTACT_TOLERANCE:g} s")
            contact["side"], contact["by"] = str(near.side.iloc[0]), "heel-strike event"
    loads = {k: np.zeros((len(plates.time), 2, 3)) for k in ("force", "point", "torque")}
    for k, side in enumerate(("right", "left")):
        on = np.zeros(force.shape[:2], bool)
        for c in (c for c in contacts if c["side"] == side):
            on[c["first"]:c["last"] + 1, c["plate"] - 1] = True
        loads["force"][:, k], loads["point"][:, k], loads["torque"][:, k] = _combined(force, point, torque, on)
    return _grf_dataset(plates.time.values, loads, threshold, source=str(path),
                        lab_to_ground=json.dumps(rotation.tolist()),
                        contacts=json.dumps([{k: v for k, v in c.items() if k not in ("first", "last")}
                                             for c in contacts]))


def _c3d_lab_to_ground(path, plates: xr.Dataset, markers: xr.DataArray) -> np.ndarray:
    """Rows: OpenSim ground x (horizontal direction of travel), y (up: along the plates' mean force), z."""
    total = plates.force.sum("plate").transpose("time", "axis").values
    mean = total[np.linalg.norm(total, axis=1) > 0].mean(axis=0) if total.any() else np.zeros(3)
    axis = int(np.argmax(np.abs(mean)))
    up = np.eye(3)[axis] * np.sign(mean[axis] or 1.0)
    steps = np.diff(markers.transpose("time", "marker", "axis").values, axis=0)
    moved = np.isfinite(steps).all(axis=2)  # markers seen in both frames: no jump when others appear or vanish
    travel = np.where(moved[..., None], steps, 0.0).sum(axis=(0, 1)) / max(1, int(moved.any(axis=0).sum()))
    travel -= up * (travel @ up)
    if np.linalg.norm(travel) < 0.1:
        raise DataFormatError(f"{path}: the markers travel {np.linalg.norm(travel):.3f} m horizontally; cannot find "
                              "the direction of walking: pass lab_to_ground")
    x = travel / np.linalg.norm(travel)
    return np.array([x, up, np.cross(x, up)])


def _plate_contacts(path, time, vertical, point, markers, to_world, threshold) -> list[dict]:
    """Runs of ``vertical`` (time, plate) above ``threshold`` (runs and gaps under :data:`MIN_CONTACT_S`
    ignored), each with the side whose foot markers lie nearest (horizontally) its mean centre of
    pressure (``side`` None when no foot marker is seen during it)."""
    from kinesis_neuro import gait

    feet = {}
    for side in ("right", "left"):
        names = [str(m) for m in markers.marker.values if (match := FOOT_MARKER.match(str(m)))
                 and match["side"].upper() == side[0].upper()]
        if names:
            feet[side] = markers.sel(marker=names).mean("marker").transpose("time", "axis")
    contacts = []
    for plate in range(vertical.shape[1]):
        on = gait._debounce(vertical[:, plate] > threshold, time, MIN_CONTACT_S)
        loaded = np.r_[False, on, False].astype(int)
        for first, stop in zip(np.flatnonzero(np.diff(loaded) == 1), np.flatnonzero(np.diff(loaded) == -1)):
            cop = point[first:stop, plate].mean(axis=0)
            window = slice(time[first], time[stop - 1])
            distance = {}
            for side, foot in feet.items():
                seen = foot.sel(time=window).values
                seen = seen[np.isfinite(seen).all(axis=1)]
                if len(seen):
                    distance[side] = float(np.linalg.norm((seen.mean(axis=0) @ to_world.T - cop)[:2]))
            contacts.append({"plate": plate + 1, "start_s": float(time[first]), "end_s": float(time[stop - 1]),
                             "side": min(distance, key=distance.get) if distance else None,
                             "by": "nearest foot markers" if distance else "", "first": int(first),
                             "last": int(stop - 1)})
    if not contacts:
        raise DataFormatError(f"{path}: no force plate carries more than {threshold:g} N")
    return contacts


def _combined(force, point, torque, on) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One foot's load from the plates (time, plate, 3; MuJoCo world, z up) where ``on`` (time, plate):
    summed force, centre of pressure and free moment of the summed moment about the origin."""
    f = np.where(on[..., None], force, 0.0)
    moment = (np.cross(point, f) + np.where(on[..., None], torque, 0.0)).sum(axis=1)
    total = f.sum(axis=1)
    fz = total[:, 2]
    ok = fz > 0
    height = np.divide((f[..., 2] * point[..., 2]).sum(axis=1), fz, out=np.zeros_like(fz), where=ok)
    cop = np.zeros_like(total)
    cop[ok, 0] = (height[ok] * total[ok, 0] - moment[ok, 1]) / fz[ok]
    cop[ok, 1] = (moment[ok, 0] + height[ok] * total[ok, 1]) / fz[ok]
    cop[ok, 2] = height[ok]
    free = np.where(ok[:, None], moment - np.cross(cop, total), 0.0)
    return total, cop, free


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
