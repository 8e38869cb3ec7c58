"""Quality checks of a reference motion on the model: foot slip, floor penetration, heel strikes, joint ranges.

With measured ground reaction forces (:func:`check_motion`) a foot is in stance while it carries load and its
slip is the speed of its material point at the centre of pressure. Without them (:func:`check_kinematics`,
motions imported from joint positions or marker trials without force plates) a foot is in contact while its
lowest collision point lies within :data:`CONTACT_HEIGHT` of that foot's own floor level in the motion, and
its skating is the horizontal speed of the foot's material point at that lowest point (zero for a foot that
rolls without slipping). The acceptance thresholds used by ``kinesis-neuro motion check`` and
``motion import`` are :data:`FLOOR_TOLERANCE`, :data:`SKATING_THRESHOLD` and :data:`RANGE_TOLERANCE`.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import gait
from kinesis_neuro import model as mdl
from kinesis_neuro.dynamics import FOOT_BODIES
from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.motion import Motion

FOOT_SEGMENTS = {"right": ("calcn_r", "toes_r"), "left": ("calcn_l", "toes_l")}
CONTACT_HEIGHT = 0.03  # m: a foot within this of its floor level ...
CONTACT_VERTICAL_SPEED = 0.2  # m/s: ... whose lowest point moves up or down slower than this ...
CONTACT_SPEED = 0.5  # m/s: ... and horizontally slower than this (relative to a treadmill belt) is in contact
BELT_MIN_SPEED = 0.5  # m/s: feet near the floor moving this fast together (median) stand on a treadmill belt
CONTACT_LEVEL_PERCENTILE = 2.0  # a foot's floor level: this percentile of its lowest point's height
FLOOR_TOLERANCE = 0.005  # m: accepted floor penetration of the lowest foot point
# m/s: accepted mean skating of a foot. Marker and OpenSim IK of real walking and running, where no foot slides,
# measure 0.11-0.25 m/s on MyoLegs (its rigid foot rolls differently from the subject's): the floor of the measure
SKATING_THRESHOLD = 0.3
RANGE_TOLERANCE = 2.0  # deg: accepted excursion of a leg joint beyond MyoLegs' range


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


def _lowest_point_position(model: mujoco.MjModel, data: mujoco.MjData, geom: int) -> np.ndarray:
    """World position (3,) of the lowest point of a geom (the point :func:`_lowest_point` gives the height of)."""
    centre, size = data.geom_xpos[geom].copy(), model.geom_size[geom]
    rotation = data.geom_xmat[geom].reshape(3, 3)
    kind = model.geom_type[geom]
    down = np.array([0.0, 0.0, -1.0])
    if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        return centre + size[0] * down
    if kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
        axis = rotation[:, 2]
        return centre - np.sign(axis[2] or 1.0) * size[1] * axis + size[0] * down
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        return centre - rotation @ (np.sign(rotation[2] + (rotation[2] == 0)) * size[:3])
    if kind == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
        u = size[:3] * rotation[2]  # diag(s) R^T e_z
        return centre - rotation @ (size[:3] * u) / max(np.linalg.norm(u), 1e-12)
    return centre + model.geom_rbound[geom] * down


def foot_kinematics(model: mujoco.MjModel, motion: Motion, time=None) -> xr.Dataset:
    """Per frame and foot: ``height`` (m above the floor) of the foot's lowest collision point, ``speed`` (m/s)
    horizontal speed of the foot's material point there (``qvel`` from the motion's spline) and ``point``
    (m, MuJoCo world); dims ``(time, side)`` (``point``: ``(time, side, axis)``)."""
    time = motion.time if time is None else np.asarray(time, dtype=float)
    qpos, qvel, _ = motion.states(model, time)
    data = mujoco.MjData(model)
    geoms = {side: _foot_geoms(model, side) for side in FOOT_SEGMENTS}
    jac = np.zeros((3, model.nv))
    height = np.zeros((time.size, 2))
    speed = np.zeros((time.size, 2))
    vertical = np.zeros((time.size, 2))
    horizontal = np.zeros((time.size, 2, 2))
    point = np.zeros((time.size, 2, 3))
    for i in range(time.size):
        data.qpos[:] = qpos[i]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        for k, side in enumerate(FOOT_SEGMENTS):
            lowest = min(geoms[side], key=lambda g: _lowest_point(model, data, g))
            p = _lowest_point_position(model, data, lowest)
            mujoco.mj_jac(model, data, jac, None, p, int(model.geom_bodyid[lowest]))
            velocity = jac @ qvel[i]
            height[i, k] = p[2] - mdl.FLOOR_HEIGHT
            speed[i, k] = np.linalg.norm(velocity[:2])
            horizontal[i, k] = velocity[:2]
            vertical[i, k] = velocity[2]
            point[i, k] = p
    coords = {"time": time, "side": list(FOOT_SEGMENTS)}
    return xr.Dataset({"height": (("time", "side"), height, {"units": "m"}),
                       "speed": (("time", "side"), speed, {"units": "m/s"}),
                       "vertical_speed": (("time", "side"), vertical, {"units": "m/s"}),
                       "velocity": (("time", "side", "horizontal"), horizontal, {"units": "m/s"}),
                       "point": (("time", "side", "axis"), point, {"units": "m"})},
                      coords={**coords, "axis": ["x", "y", "z"], "horizontal": ["x", "y"]})


def belt_velocity(feet: xr.Dataset, contact_height: float = CONTACT_HEIGHT) -> np.ndarray:
    """Horizontal velocity (2,; MuJoCo world, m/s) of a treadmill belt under the feet: the median velocity of
    the feet's lowest points near the floor (within ``contact_height`` of their level, moving up or down
    slower than :data:`CONTACT_VERTICAL_SPEED`) when it exceeds :data:`BELT_MIN_SPEED` (stance feet carried
    backwards together while the root stays in place); zero overground."""
    level = feet.height.reduce(np.percentile, dim="time", q=CONTACT_LEVEL_PERCENTILE)
    near = ((feet.height < level + contact_height) & (np.abs(feet.vertical_speed) < CONTACT_VERTICAL_SPEED)).values
    if not near.any():
        return np.zeros(2)
    belt = np.median(feet.velocity.values[near], axis=0)
    return belt if np.linalg.norm(belt) > BELT_MIN_SPEED else np.zeros(2)


def kinematic_contact(feet: xr.Dataset, contact_height: float = CONTACT_HEIGHT) -> xr.DataArray:
    """Feet in contact ``(time, side)`` from :func:`foot_kinematics`: the lowest point within ``contact_height``
    m of the foot's floor level (:data:`CONTACT_LEVEL_PERCENTILE` of its height over the motion, so a motion
    whose feet hover above the floor or sink into it still shows its stance phases), moving up or down slower
    than :data:`CONTACT_VERTICAL_SPEED` (not a foot coming down to strike or lifting off) and horizontally
    slower than :data:`CONTACT_SPEED` relative to the :func:`belt_velocity` (not a foot swung low). A foot
    sliding along the floor more slowly stays in contact: its skating is measured, not hidden."""
    level = feet.height.reduce(np.percentile, dim="time", q=CONTACT_LEVEL_PERCENTILE)
    relative = np.linalg.norm(feet.velocity.values - belt_velocity(feet, contact_height), axis=-1)
    return ((feet.height < level + contact_height) & (np.abs(feet.vertical_speed) < CONTACT_VERTICAL_SPEED)
            & (relative < CONTACT_SPEED))


def skating_speed(feet: xr.Dataset, contact_height: float = CONTACT_HEIGHT) -> xr.DataArray:
    """Horizontal speed (m/s) of each foot's lowest point relative to the treadmill belt (if any) in
    :func:`kinematic_contact`, NaN out of contact, ``(time, side)``."""
    relative = np.linalg.norm(feet.velocity.values - belt_velocity(feet, contact_height), axis=-1)
    return feet.speed.copy(data=relative).where(kinematic_contact(feet, contact_height))


def kinematic_events(model: mujoco.MjModel, motion: Motion, contact_height: float = CONTACT_HEIGHT) -> pd.DataFrame:
    """Heel strikes and toe-offs (``time``, ``event``, ``side``) of both feet from :func:`kinematic_contact`
    (contacts or gaps under 0.1 s ignored): gait events of a motion without force plates."""
    contact = kinematic_contact(foot_kinematics(model, motion), contact_height)
    return pd.concat([gait.events_from_contact(contact.sel(side=side).values, motion.time, side)
                      for side in FOOT_SEGMENTS]).sort_values("time").reset_index(drop=True)


def joint_ranges(model: mujoco.MjModel, motion: Motion) -> pd.DataFrame:
    """Per leg joint: the motion's ``min_deg``/``max_deg``, MyoLegs' ``range_min_deg``/``range_max_deg``,
    the largest excursion beyond the range (``beyond_deg``, 0 inside) and the share of frames beyond it."""
    table = mdl.joint_table(model).loc[list(mdl.LEG_JOINTS)]
    have = [str(c) for c in motion.coordinates.coordinate.values]
    coords = motion.coordinates.transpose("time", "coordinate").values
    values = np.column_stack([coords[:, have.index(j)] if j in have else np.zeros(coords.shape[0])
                              for j in mdl.LEG_JOINTS])  # subtalar and mtp absent from a file: held at 0
    low, high = table.range_min.to_numpy(), table.range_max.to_numpy()
    beyond = np.maximum(low - values, values - high).clip(min=0.0)
    return pd.DataFrame({"min_deg": np.rad2deg(values.min(0)), "max_deg": np.rad2deg(values.max(0)),
                         "range_min_deg": np.rad2deg(low), "range_max_deg": np.rad2deg(high),
                         "beyond_deg": np.rad2deg(beyond.max(0)), "frames_beyond": (beyond > 0).mean(0)},
                        index=pd.Index(list(mdl.LEG_JOINTS), name="joint"))


def check_kinematics(model: mujoco.MjModel, motion: Motion, contact_height: float = CONTACT_HEIGHT) -> dict:
    """Checks that need no force plates: per foot, skating (horizontal speed of the contact point while in
    :func:`kinematic_contact`; mean and 95th percentile, m/s), the share of frames in contact, heights of
    the lowest point (5th/50th percentile in contact, minimum over the motion; m) and the floor penetration
    (m), kinematic heel strikes (s); the joint ranges (:func:`joint_ranges`); and ``passed`` with the
    thresholds used (:data:`FLOOR_TOLERANCE`, :data:`SKATING_THRESHOLD`, :data:`RANGE_TOLERANCE`)."""
    feet = foot_kinematics(model, motion)
    contact = kinematic_contact(feet, contact_height)
    skate = skating_speed(feet, contact_height)
    report = {}
    for side in FOOT_SEGMENTS:
        on = contact.sel(side=side).values
        h = feet.height.sel(side=side).values
        s = skate.sel(side=side).values[on]
        events = gait.events_from_contact(on, motion.time, side)
        report[side] = {
            "skating_mean_m_s": float(np.mean(s)) if s.size else float("nan"),
            "skating_p95_m_s": float(np.percentile(s, 95)) if s.size else float("nan"),
            "contact_fraction": float(on.mean()),
            "contact_height_p5_m": float(np.percentile(h[on], 5)) if on.any() else float("nan"),
            "contact_height_p50_m": float(np.percentile(h[on], 50)) if on.any() else float("nan"),
            "lowest_height_m": float(h.min()),
            "penetration_max_m": float(max(0.0, -h.min())),
            "heel_strikes_kinematic_s": events[events.event == "heel_strike"].time.round(4).tolist(),
        }
    ranges = joint_ranges(model, motion)
    worst = {side: report[side] for side in FOOT_SEGMENTS}
    checks = {
        "penetration_max_m": max(r["penetration_max_m"] for r in worst.values()),
        "skating_mean_m_s": max(np.nan_to_num(r["skating_mean_m_s"]) for r in worst.values()),
        "range_beyond_deg": float(ranges.beyond_deg.max()),
    }
    report["joint_ranges"] = {j: {k: float(v) for k, v in row.items()} for j, row in ranges.iterrows()}
    report["summary"] = {
        **checks,
        "treadmill_belt_speed_m_s": float(np.linalg.norm(belt_velocity(feet, contact_height))),
        "joints_beyond_range": [j for j, row in ranges.iterrows() if row.beyond_deg > RANGE_TOLERANCE],
        "thresholds": {"penetration_max_m": FLOOR_TOLERANCE, "skating_mean_m_s": SKATING_THRESHOLD,
                       "range_beyond_deg": RANGE_TOLERANCE, "contact_height_m": contact_height},
        "passed": bool(checks["penetration_max_m"] <= FLOOR_TOLERANCE and checks["skating_mean_m_s"] <= SKATING_THRESHOLD
                       and checks["range_beyond_deg"] <= RANGE_TOLERANCE),
    }
    return report


STICK_SEGMENTS = {  # body chains drawn by render_strip; "tip_*" is the toes' farthest collision point
    "right": ("femur_r", "tibia_r", "talus_r", "calcn_r", "toes_r", "tip_r"),
    "left": ("femur_l", "tibia_l", "talus_l", "calcn_l", "toes_l", "tip_l"),
    "trunk": ("femur_r", "pelvis", "femur_l", "pelvis", "lumbar1", "head"),
}
STRIP_COLOURS = {"right": "tab:red", "left": "tab:blue", "trunk": "0.3"}


def _stick_points(model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, np.ndarray]:
    out = {model.body(b).name: data.xpos[b].copy() for b in range(1, model.nbody)}
    for s in ("r", "l"):
        pelvis = data.body("pelvis").xpos
        geoms = _foot_geoms(model, {"r": "right", "l": "left"}[s], (f"toes_{s}",))
        out[f"tip_{s}"] = max((data.geom_xpos[g] for g in geoms), key=lambda p: np.linalg.norm((p - pelvis)[:2])).copy()
    return out


def _offscreen_rendering() -> bool:
    """Whether MuJoCo can render offscreen here: ``MUJOCO_GL`` names a headless back end (egl, osmesa) and a
    GL context can be made (tried in a child process, so a broken driver cannot take this one down)."""
    import os
    import subprocess
    import sys

    if os.environ.get("MUJOCO_GL", "").lower() not in ("egl", "osmesa"):
        return False
    probe = "import mujoco; c = mujoco.GLContext(64, 64); c.make_current(); c.free()"
    try:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _mujoco_strip(model: mujoco.MjModel, qpos: np.ndarray, headings: np.ndarray, size=(320, 400)) -> list[np.ndarray]:
    """MuJoCo offscreen images (side view, camera following the pelvis) of each ``qpos``."""
    renderer = mujoco.Renderer(model, size[1], size[0])
    data = mujoco.MjData(model)
    camera = mujoco.MjvCamera()
    images = []
    try:
        for q, heading in zip(qpos, headings):
            data.qpos[:] = q
            mujoco.mj_forward(model, data)
            camera.lookat[:] = [*data.body("pelvis").xpos[:2], 0.8]
            camera.distance, camera.elevation = 3.0, -5.0
            camera.azimuth = float(np.rad2deg(np.arctan2(heading[1], heading[0]))) - 90.0  # look from the right side
            renderer.update_scene(data, camera)
            images.append(renderer.render().copy())
    finally:
        renderer.close()
    return images


def render_strip(model: mujoco.MjModel, motion: Motion, path, *, frames: int = 6, renderer: str = "auto",
                 title: str | None = None):
    """An image strip of ``frames`` evenly spaced frames of the motion seen from its right side (the camera
    turned with the pelvis heading, so each panel is a sagittal view), saved to ``path`` (PNG/PDF/SVG).

    ``renderer``: ``mujoco`` (offscreen rendering: needs ``MUJOCO_GL=egl`` or ``osmesa`` and a working GL),
    ``matplotlib`` (a stick figure of MyoLegs' joint centres: right leg red, left leg blue, pelvis and
    trunk grey, floor line, arrow = the direction the pelvis faces) or ``auto`` (MuJoCo when it works here, else the stick
    figure). Returns ``(path, renderer used)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kinesis_neuro import storage

    if renderer not in ("auto", "mujoco", "matplotlib"):
        raise ProcessingError(f"renderer must be auto, mujoco or matplotlib, got {renderer!r}")
    times = np.linspace(motion.time[0], motion.time[-1], frames)
    qpos = motion.qpos(model, times)
    data = mujoco.MjData(model)
    sticks, headings = [], []
    for q in qpos:
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        points = _stick_points(model, data)
        right = points["femur_r"] - points["femur_l"]
        facing = np.array([-right[1], right[0]])  # z x right: the direction the pelvis faces (world xy)
        headings.append(facing / max(np.linalg.norm(facing), 1e-12))
        sticks.append(points)
    used = "matplotlib"
    images = None
    if renderer == "mujoco" or (renderer == "auto" and _offscreen_rendering()):
        try:
            images = _mujoco_strip(model, qpos, headings)
            used = "mujoco"
        except Exception as err:  # no GL context here: the stick figure still shows the motion
            if renderer == "mujoco":
                raise ProcessingError(f"MuJoCo offscreen rendering failed ({type(err).__name__}: {err}); set "
                                      "MUJOCO_GL=egl or osmesa, or use the matplotlib renderer") from err
    fig, axes = plt.subplots(1, frames, figsize=(2.0 * frames, 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, t, points, heading, k in zip(axes, times, sticks, headings, range(frames)):
        if images is not None:
            ax.imshow(images[k])
            ax.set_axis_off()
        else:
            centre = points["pelvis"][:2]
            for name, chain in STICK_SEGMENTS.items():
                xy = np.array([[(points[b][:2] - centre) @ heading, points[b][2]] for b in chain])
                ax.plot(xy[:, 0], xy[:, 1], "-o", color=STRIP_COLOURS[name], lw=2, ms=3)
            ax.axhline(mdl.FLOOR_HEIGHT, color="0.5", lw=1)
            ax.annotate("", xy=(0.5, 1.75), xytext=(0.1, 1.75), arrowprops={"arrowstyle": "->", "color": "k"})
            ax.set_xlim(-0.8, 0.8)
            ax.set_ylim(-0.05, 1.85)
            ax.set_aspect("equal")
            ax.set_xlabel("forward (m)")
        ax.set_title(f"{t:.2f} s", fontsize=9)
    if images is None:
        axes[0].set_ylabel("height (m)")
    fig.suptitle(title or f"{motion.attrs.get('source', 'motion')} ({used})", fontsize=9)
    fig.tight_layout()
    try:
        storage.savefig(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return path, used
