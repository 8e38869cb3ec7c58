"""Joint-position retargeting onto MyoLegs: HumanML3D joint positions (MDM outputs) and AMP/poselib skeleton
motions -> a :class:`~kinesis_neuro.motion.Motion` of the pelvis and leg coordinates.

Steps (:func:`retarget`):

1. **Joint centres** of the source (:class:`JointCentres`): pelvis-fixed ``spine`` point, hips, knees, ankles
   and a point near the metatarsal heads (``toe``) per side, turned into OpenSim's ground frame (y up): MDM's
   HumanML3D frame is y up with the person facing +z (x to their left); AMP clips are z up (x forward, y to
   the left). AMP positions come from forward kinematics of the local rotations and offsets (scipy
   ``Rotation``); its ``toe`` is a point of the foot body, where MyoLegs' metatarsal heads sit for a flat foot
   (the AMP foot's rest orientation is flat).
2. **Facing direction**: the motion is turned about the vertical so that the heading of its first
   :data:`HEADING_WINDOW_S` s (up x right-hip-minus-left-hip, i.e. where the pelvis faces) is +x, levelled
   when the capture's floor was tilted (:func:`floor_normal`: a plane through the stance ankles; CMU 07_01
   climbs 1 deg), and moved so the hip midpoint starts above the origin.
3. **Scale**: positions are scaled by MyoLegs' hip-knee-ankle length over the source's (median over frames,
   both legs), about the origin, so the floor stays at height 0 and the root path shrinks or grows alike.
4. **Segment frames**: MyoLegs points: the hip centres and the ``spine`` point on the pelvis, the knee (tibia
   origin), ankle (talus origin) and ``toe`` (on the calcaneus). Where the source does not define its pelvis or
   foot frames (MDM positions), the frames are calibrated on the motion: the pelvis is taken as untilted in the
   upright frames (hips above their median height; its ``spine`` point placed where the source's median puts
   it), and the foot as flat where the source's ankle and toe both rest on the floor (their median geometry
   there places the ``toe`` point, so MyoLegs' ankle angle is 0 for the source's flat foot).
5. **Foot locking**: the source's ankles and toes are held in place while planted (:func:`lock_feet`: within
   :data:`motion_check.CONTACT_HEIGHT` of their lowest level, slow; horizontal position replaced by the
   planted run's median, faded in and out), which removes most of a generated motion's foot skating.
6. **Inverse kinematics** on those points (:func:`kinesis_neuro.ik.fit_points`: the marker-IK solver,
   subtalar and mtp held at 0), low-passed at ``filter_hz``; leg joints clipped into MyoLegs' ranges.
7. **Feet on the floor** (:func:`place_on_floor`): the motion is moved vertically so the lower foot's lowest
   collision point is at the floor at the first quartile of the frames; where a foot still sinks in, its
   toes are extended at the mtp joint first (the rigid toes of a heel-raised foot), then the root is raised
   smoothly so no point lies below the floor.
8. **Stance-foot skating** left after locking: when it exceeds :data:`RETARGET_SKATING` (stricter than
   ``motion check``'s :data:`motion_check.SKATING_THRESHOLD`), a root correction (:func:`reduce_skating`,
   kept only when it lowers the skating): in frames where a foot is in kinematic contact
   (:func:`motion_check.kinematic_contact`) the root's horizontal velocity is corrected by minus the contact
   point's horizontal velocity (averaged over the feet in contact), which holds a single stance foot in place;
   the root path then follows the legs rather than the source.
9. **Read-back**: the commands low-pass every coordinates file they read at :data:`READ_FILTER_HZ`;
   :func:`stabilise` repeats the range and floor corrections on the motion as it will be read, so the
   floor penetration stays within :data:`motion_check.FLOOR_TOLERANCE` and the ranges within
   :data:`motion_check.RANGE_TOLERANCE` there too.

Every step's settings and measurements (scale, calibrated frames, residual per joint centre, floor shift,
skating before and after, root path error: RMS horizontal distance between MyoLegs' and the scaled source's
hip midpoints) are in the motion's attrs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import mujoco
import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d, maximum_filter1d
from scipy.spatial.transform import Rotation

from kinesis_neuro import ik, motion_check
from kinesis_neuro import markers as mk
from kinesis_neuro import model as mdl
from kinesis_neuro.errors import DataFormatError, ProcessingError
from kinesis_neuro.motion import OPENSIM_TO_MUJOCO, Motion

SIDES = {"r": "right", "l": "left"}
POINTS = ("spine", "hip_r", "hip_l", "knee_r", "knee_l", "ankle_r", "ankle_l", "toe_r", "toe_l")
# source frames -> OpenSim ground (x forward, y up, z right); rows: ground axes in source coordinates
HUMANML3D_TO_GROUND = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # y up, faces +z, x left
Z_UP_TO_GROUND = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # z up, faces +x, y left
HEADING_WINDOW_S = 0.5
UPRIGHT_QUANTILE = 0.5  # pelvis calibration frames: hip midpoint above this quantile of its height
FLAT_FOOT_HEIGHT = 0.03  # m above its lowest level: an ankle or toe joint resting on the floor
FLAT_FOOT_SPEED = 0.2  # m/s: ... and this slow
SPINE_HEIGHT = 0.1  # m above the hip midpoint in the AMP pelvis frame: its pelvis-fixed "up" point
AMP_LEGS = {"r": ("right_thigh", "right_shin", "right_foot"), "l": ("left_thigh", "left_shin", "left_foot")}
MDM_JOINTS = {"spine": "spine1", **{f"{p}_{s}": f"{SIDES[s]}_{j}" for s in SIDES
                                    for p, j in (("hip", "hip"), ("knee", "knee"), ("ankle", "ankle"), ("toe", "foot"))}}
STANCE_QUANTILE = 0.3  # the slowest 30 % of an ankle's frames are taken as stance for the floor fit
FLOOR_FIT_SPAN = 1.0  # m: a floor slope is fitted along directions in which the stance ankles spread this far
FLOOR_FIT_OUTLIER = 0.03  # m
MIN_FLOOR_TILT_DEG = 0.2  # a floor tilted less than this is left as it is
LOCK_MIN_S = 0.1  # s: planted runs shorter than this are not locked
LOCK_BLEND_S = 0.1  # s: a lock fades in and out over this time
SMOOTH_LIFT_S = 0.1  # s: width of the smoothing of the root lift that takes feet out of the floor
CONTACT_SMOOTH_S = 0.03  # s: sd of the smoothing of the contacts weighting the root correction
RETARGET_SKATING = 0.1  # m/s: retargeting corrects the root when the skating exceeds this (stricter than the check)
READ_FILTER_HZ = 6.0  # Hz: the low-pass from_opensim applies to every coordinates file it reads (its default)
STABLE_DEPTH = 0.001  # m: stabilise lifts the root until the read motion's feet sink in less than this
RANGE_MARGIN = 1e-6  # rad: clipped coordinates stay this far inside MyoLegs' ranges


@dataclass
class JointCentres:
    """Joint centres of a source skeleton over ``time`` (s): ``points`` ``{name: (T, 3)}`` (:data:`POINTS`) in
    OpenSim's ground frame (m, y up, source scale). ``pelvis_frame``/``foot_frame``: (forward, up) offsets (m,
    source scale) of the ``spine`` point from the hip midpoint in an untilted pelvis and of the ``toe`` point
    from the ankle in a flat foot, where the source defines them; ``None``: calibrated on the motion."""

    time: np.ndarray
    points: dict[str, np.ndarray]
    attrs: dict = field(default_factory=dict)
    pelvis_frame: tuple[float, float] | None = None
    foot_frame: tuple[float, float] | None = None


def _dataset_path(source, data_dir) -> str:
    from kinesis_neuro import datasets
    from kinesis_neuro.emg.read import source_path

    return str(source_path(source, data_dir)) if datasets.is_dataset_spec(source) else str(source)


def from_mdm(source: str | os.PathLike, sample: int = 0, *, data_dir=None) -> JointCentres:
    """Joint centres of sample ``sample`` of an MDM ``results.npy`` (HumanML3D 22 joints, y up, 20 fps)."""
    from kinesis_neuro.io.pickles import read_mdm

    mdm = read_mdm(_dataset_path(source, data_dir))
    n = mdm["positions"].shape[0]
    if not 0 <= sample < n:
        raise ProcessingError(f"{mdm['source']}: --sample {sample} does not exist; the file holds {n} sample(s) "
                              f"(0-{n - 1})")
    frames = int(mdm["lengths"][sample])
    positions = mdm["positions"][sample, :frames] @ HUMANML3D_TO_GROUND.T
    points = {name: positions[:, mdm["joints"].index(joint)] for name, joint in MDM_JOINTS.items()}
    return JointCentres(np.arange(frames) / mdm["fps"], points,
                        {"source": mdm["source"], "source_format": "MDM results.npy (HumanML3D 22 joint positions)",
                         "sample": sample, "text": mdm["text"][sample], "sampling_rate": mdm["fps"],
                         "source_frame": "y up, facing +z"})


def forward_kinematics(skeleton: dict) -> tuple[np.ndarray, np.ndarray]:
    """World positions (T, B, 3) and orientations (T, B; ``Rotation``, stacked as (T, B, 4) xyzw quaternions)
    of a poselib skeleton motion (:func:`kinesis_neuro.io.pickles.read_skeleton_motion`): each body at its
    parent's position plus the parent's orientation applied to its offset, turned by its local rotation."""
    if not skeleton.get("is_local", True):
        raise DataFormatError(f"{skeleton['source']}: rotations are global (is_local false); expected local ones")
    local = skeleton["rotation"]
    n_frames, n_bodies = local.shape[:2]
    position = np.zeros((n_frames, n_bodies, 3))
    orientation = np.zeros((n_frames, n_bodies, 4))
    for b, parent in enumerate(skeleton["parents"]):
        if parent >= b and parent != -1:
            raise DataFormatError(f"{skeleton['source']}: body {b} comes before its parent {parent}")
        rotation = Rotation.from_quat(local[:, b])
        if parent < 0:
            position[:, b] = skeleton["root_translation"]
            orientation[:, b] = rotation.as_quat()
        else:
            parent_rotation = Rotation.from_quat(orientation[:, parent])
            position[:, b] = position[:, parent] + parent_rotation.apply(skeleton["offsets"][b])
            orientation[:, b] = (parent_rotation * rotation).as_quat()
    return position, orientation


def from_skeleton_motion(source: str | os.PathLike, *, data_dir=None) -> JointCentres:
    """Joint centres of an AMP/poselib ``SkeletonMotion`` (15-body humanoid, z up): hips, knees, ankles at the
    thigh, shin and foot origins, the ``spine`` point :data:`SPINE_HEIGHT` above the pelvis origin in the
    pelvis frame, the ``toe`` point where MyoLegs' metatarsal heads sit from the ankle of a flat foot
    (scaled to this skeleton's legs)."""
    from kinesis_neuro.io.pickles import read_skeleton_motion

    skeleton = read_skeleton_motion(_dataset_path(source, data_dir))
    bodies = skeleton["bodies"]
    missing = [b for b in ("pelvis", *AMP_LEGS["r"], *AMP_LEGS["l"]) if b not in bodies]
    if missing:
        raise DataFormatError(f"{skeleton['source']}: the skeleton lacks bodies {missing} (has {bodies}); expected "
                              "the AMP humanoid's pelvis, thighs, shins and feet")
    position, orientation = forward_kinematics(skeleton)
    index = {b: i for i, b in enumerate(bodies)}
    offsets = skeleton["offsets"]
    legs = np.mean([np.linalg.norm(offsets[index[shin]]) + np.linalg.norm(offsets[index[foot]])
                    for _, shin, foot in AMP_LEGS.values()])
    forward, down, lateral = _myolegs_toe_offset()
    ratio = legs / _myolegs_leg_length()
    pelvis = Rotation.from_quat(orientation[:, index["pelvis"]])
    points = {"spine": position[:, index["pelvis"]] + pelvis.apply([0.0, 0.0, SPINE_HEIGHT])}
    for s, (thigh, shin, foot) in AMP_LEGS.items():
        points[f"hip_{s}"] = position[:, index[thigh]]
        points[f"knee_{s}"] = position[:, index[shin]]
        points[f"ankle_{s}"] = position[:, index[foot]]
        toe = ratio * np.array([forward, -lateral if s == "r" else lateral, -down])  # foot frame: x fwd, y left, z up
        points[f"toe_{s}"] = position[:, index[foot]] + Rotation.from_quat(orientation[:, index[foot]]).apply(toe)
    points = {k: v @ Z_UP_TO_GROUND.T for k, v in points.items()}
    fps = skeleton["fps"]
    return JointCentres(np.arange(position.shape[0]) / fps, points,
                        {"source": skeleton["source"], "source_format": "poselib SkeletonMotion (AMP humanoid, 15 bodies)",
                         "sampling_rate": fps, "source_frame": "z up, facing +x"},
                        pelvis_frame=(0.0, SPINE_HEIGHT), foot_frame=(ratio * forward, ratio * down))


def _neutral(model: mujoco.MjModel) -> mujoco.MjData:
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0
    mujoco.mj_kinematics(model, data)
    return data


def _myolegs_leg_length(model: mujoco.MjModel | None = None) -> float:
    """Hip-knee plus knee-ankle length of MyoLegs (m; mean of both legs at the neutral pose)."""
    model = model or _model()
    data = _neutral(model)
    return float(np.mean([np.linalg.norm(data.body(f"femur_{s}").xpos - data.body(f"tibia_{s}").xpos)
                          + np.linalg.norm(data.body(f"tibia_{s}").xpos - data.body(f"talus_{s}").xpos)
                          for s in SIDES]))


def _myolegs_toe_offset(model: mujoco.MjModel | None = None) -> tuple[float, float, float]:
    """(forward, down, lateral) of MyoLegs' right mtp joint from its ankle at the neutral pose (m)."""
    model = model or _model()
    data = _neutral(model)
    d = (data.body("toes_r").xpos - data.body("talus_r").xpos) @ OPENSIM_TO_MUJOCO  # OpenSim axes
    return float(d[0]), float(-d[1]), float(d[2])


_MODEL = None


def _model() -> mujoco.MjModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = mdl.load_model()
    return _MODEL


def _heading(points: dict[str, np.ndarray]) -> np.ndarray:
    """Unit horizontal facing direction (T, 2: ground x, z) from the hips: up x (right hip - left hip)."""
    right = points["hip_r"] - points["hip_l"]
    facing = np.cross([0.0, 1.0, 0.0], right)[:, [0, 2]]
    return facing / np.maximum(np.linalg.norm(facing, axis=1, keepdims=True), 1e-12)


def align(centres: JointCentres) -> tuple[JointCentres, dict]:
    """The joint centres turned about the vertical so that the mean heading of the first
    :data:`HEADING_WINDOW_S` s is +x, and moved horizontally so the first hip midpoint lies above the origin."""
    first = centres.time <= centres.time[0] + HEADING_WINDOW_S
    heading = _heading(centres.points)[first].mean(axis=0)
    if np.linalg.norm(heading) < 1e-6:
        raise DataFormatError(f"{centres.attrs.get('source')}: the hips give no facing direction")
    yaw = float(np.arctan2(heading[1], heading[0]))  # rotation about ground y taking the heading (x, z) onto +x
    turn = Rotation.from_rotvec([0.0, yaw, 0.0]).as_matrix()
    turned = {k: v @ turn.T for k, v in centres.points.items()}
    normal, stance = floor_normal(turned, centres.time)
    tilt = float(np.rad2deg(np.arccos(np.clip(normal[1], -1.0, 1.0))))
    if tilt > MIN_FLOOR_TILT_DEG:  # rotate the floor's normal onto +y about a horizontal axis
        axis = np.cross(normal, [0.0, 1.0, 0.0])
        level = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.deg2rad(tilt)).as_matrix()
        turned = {k: v @ level.T for k, v in turned.items()}
    start = 0.5 * (turned["hip_r"][0] + turned["hip_l"][0]) * [1.0, 0.0, 1.0]
    moved = {k: v - start for k, v in turned.items()}
    return (JointCentres(centres.time, moved, dict(centres.attrs), centres.pelvis_frame, centres.foot_frame),
            {"heading_turned_deg": float(np.rad2deg(yaw)),
             "floor_tilt_deg": tilt if tilt > MIN_FLOOR_TILT_DEG else 0.0, "floor_tilt_found_deg": tilt,
             "floor_fit_stance_frames": stance})


def floor_normal(points: dict[str, np.ndarray], time: np.ndarray) -> tuple[np.ndarray, int]:
    """Unit normal (ground frame) of the floor the source walks on, and the number of stance samples used.

    Stance: per ankle, the :data:`STANCE_QUANTILE` slowest frames (horizontal speed). Their heights are
    fitted by least squares with one intercept per foot (legs of unequal length do not tilt the floor) and a
    slope along each principal horizontal direction in which the stance ankles spread over more than
    :data:`FLOOR_FIT_SPAN` m (a walk in a straight line only shows the slope along its path); then fitted again
    without the ankles more than :data:`FLOOR_FIT_OUTLIER` m off. A capture whose floor was not level (a stance
    foot climbing or sinking from step to step) gets a tilted normal."""
    rows, side = [], []
    for k, s in enumerate(SIDES):
        ankle = points[f"ankle_{s}"]
        speed = np.linalg.norm(np.gradient(ankle, time, axis=0)[:, [0, 2]], axis=1)
        slow = speed <= np.quantile(speed, STANCE_QUANTILE)
        rows.append(ankle[slow])
        side.append(np.full(slow.sum(), k))
    rows, side = np.concatenate(rows), np.concatenate(side)
    flat = rows[:, [0, 2]] - rows[:, [0, 2]].mean(axis=0)
    _, _, axes = np.linalg.svd(flat, full_matrices=False)
    spread = [a for a in axes if np.ptp(flat @ a) > FLOOR_FIT_SPAN]
    if not spread or len(rows) < 20:
        return np.array([0.0, 1.0, 0.0]), len(rows)
    design = np.column_stack([side == 0, side == 1, *(flat @ a for a in spread)]).astype(float)
    keep = np.ones(len(rows), dtype=bool)
    for _ in range(2):
        coef = np.linalg.lstsq(design[keep], rows[keep, 1], rcond=None)[0]
        inliers = np.abs(rows[:, 1] - design @ coef) < FLOOR_FIT_OUTLIER
        if inliers.sum() < 20:
            break
        keep = inliers
    gradient = sum(c * a for c, a in zip(coef[2:], spread))  # d height / d (x, z)
    normal = np.array([-gradient[0], 1.0, -gradient[1]])
    return normal / np.linalg.norm(normal), int(keep.sum())


def leg_length(points: dict[str, np.ndarray]) -> float:
    """Median over frames of the hip-knee plus knee-ankle length, mean of both legs (m)."""
    lengths = [np.linalg.norm(points[f"hip_{s}"] - points[f"knee_{s}"], axis=1)
               + np.linalg.norm(points[f"knee_{s}"] - points[f"ankle_{s}"], axis=1) for s in SIDES]
    return float(np.median(np.mean(lengths, axis=0)))


def _horizontal_frame(points: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the pelvis heading (T, 3) and ground up (3,) as an untilted pelvis frame's forward and up."""
    h = _heading(points)
    return np.column_stack([h[:, 0], np.zeros(len(h)), h[:, 1]]), np.array([0.0, 1.0, 0.0])


def _calibrate_pelvis(points: dict[str, np.ndarray]) -> tuple[float, float]:
    """(forward, up) of the ``spine`` point from the hip midpoint, median over the upright frames."""
    middle = 0.5 * (points["hip_r"] + points["hip_l"])
    upright = middle[:, 1] >= np.quantile(middle[:, 1], UPRIGHT_QUANTILE)
    forward, up = _horizontal_frame(points)
    d = points["spine"] - middle
    return float(np.median(np.sum(d * forward, axis=1)[upright])), float(np.median((d @ up)[upright]))


def _calibrate_foot(points: dict[str, np.ndarray], time: np.ndarray) -> tuple[tuple[float, float], int]:
    """(forward, down) of the ``toe`` point from the ankle in a flat foot: the median over frames where a
    foot's ankle and toe both lie within :data:`FLAT_FOOT_HEIGHT` of their lowest level and move slower than
    :data:`FLAT_FOOT_SPEED`; and the number of such frames (0: MyoLegs' own flat foot is used)."""
    forward, _ = _horizontal_frame(points)
    rows = []
    for s in SIDES:
        ankle, toe = points[f"ankle_{s}"], points[f"toe_{s}"]
        still = np.ones(len(time), dtype=bool)
        for p in (ankle, toe):
            speed = np.linalg.norm(np.gradient(p, time, axis=0), axis=1)
            still &= (p[:, 1] < np.quantile(p[:, 1], 0.02) + FLAT_FOOT_HEIGHT) & (speed < FLAT_FOOT_SPEED)
        d = (toe - ankle)[still]
        rows += list(zip(np.sum(d * forward[still], axis=1), -d[:, 1]))
    if not rows:
        f, down, _ = _myolegs_toe_offset()
        return (f, down), 0
    rows = np.array(rows)
    return (float(np.median(rows[:, 0])), float(np.median(rows[:, 1]))), len(rows)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) frame of each run of True."""
    edges = np.diff(np.r_[0, mask.astype(int), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def lock_feet(points: dict[str, np.ndarray], time: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """Source ankles and toes held in place while planted (foot-skate clean-up on the IK targets).

    A point is planted while it lies within :data:`motion_check.CONTACT_HEIGHT` of its lowest level (2nd
    percentile) and moves slower than :data:`motion_check.CONTACT_VERTICAL_SPEED` up or down and
    :data:`motion_check.CONTACT_SPEED` horizontally (the contact rule of ``motion check``), for at least
    :data:`LOCK_MIN_S` s. Over each planted run its horizontal position is replaced by the run's median
    (the height is kept); the change fades in and out over :data:`LOCK_BLEND_S` s on either side. Returns
    the points and, per point, the share of frames planted and the largest horizontal change (m)."""
    from kinesis_neuro import gait

    out, info = dict(points), {}
    for name in (f"{j}_{s}" for j in ("ankle", "toe") for s in SIDES):
        p = points[name]
        velocity = np.gradient(p, time, axis=0)
        planted = ((p[:, 1] < np.percentile(p[:, 1], motion_check.CONTACT_LEVEL_PERCENTILE)
                    + motion_check.CONTACT_HEIGHT) & (np.abs(velocity[:, 1]) < motion_check.CONTACT_VERTICAL_SPEED)
                   & (np.linalg.norm(velocity[:, [0, 2]], axis=1) < motion_check.CONTACT_SPEED))
        planted = gait._debounce(planted, time, LOCK_MIN_S)
        offset = np.zeros((len(time), 2))
        weight = np.zeros(len(time))
        for first, last in _runs(planted):
            if time[last] - time[first] < LOCK_MIN_S:
                continue
            anchor = np.median(p[first:last + 1][:, [0, 2]], axis=0)
            change = anchor - p[:, [0, 2]]
            w = np.zeros(len(time))
            w[first:last + 1] = 1.0
            before, after = time < time[first], time > time[last]
            w[before] = np.clip(1 - (time[first] - time[before]) / LOCK_BLEND_S, 0, 1)
            w[after] = np.clip(1 - (time[after] - time[last]) / LOCK_BLEND_S, 0, 1)
            w = 0.5 - 0.5 * np.cos(np.pi * w)  # smooth fade
            edge = np.where(before, first, np.where(after, last, np.arange(len(time))))
            better = w > weight
            offset[better] = (w[:, None] * change[edge])[better]
            weight[better] = w[better]
        locked = p.copy()
        locked[:, [0, 2]] += offset
        out[name] = locked
        info[name] = {"planted_fraction": float(planted.mean()),
                      "max_shift_m": float(np.linalg.norm(offset, axis=1).max())}
    return out, info


def myolegs_points(pelvis_frame: tuple[float, float], foot_frame: tuple[float, float],
                   model: mujoco.MjModel | None = None) -> list[mk.Marker]:
    """The MyoLegs points matching :data:`POINTS`: the hip centres and the ``spine`` point (``pelvis_frame``:
    forward, up from the hip midpoint, m) on the pelvis, knee (tibia origin), ankle (talus origin) and the
    ``toe`` point on the calcaneus (``foot_frame``: forward, down from the ankle of a flat foot at the neutral
    pose; lateral as MyoLegs' mtp joint)."""
    model = model or _model()
    data = _neutral(model)
    pelvis = data.body("pelvis")
    to_pelvis = pelvis.xmat.reshape(3, 3).T

    def local(body: str, world: np.ndarray) -> tuple[float, float, float]:
        b = data.body(body)
        return tuple(float(v) for v in b.xmat.reshape(3, 3).T @ (world - b.xpos))

    hips = {s: data.body(f"femur_{s}").xpos for s in SIDES}
    middle = 0.5 * (hips["r"] + hips["l"])
    forward, up = OPENSIM_TO_MUJOCO @ [1.0, 0.0, 0.0], OPENSIM_TO_MUJOCO @ [0.0, 1.0, 0.0]
    spine = middle + pelvis_frame[0] * forward + pelvis_frame[1] * up
    out = [mk.Marker("spine", "pelvis", tuple(to_pelvis @ (spine - pelvis.xpos)), True)]
    out += [mk.Marker(f"hip_{s}", "pelvis", tuple(to_pelvis @ (hips[s] - pelvis.xpos)), True) for s in SIDES]
    out += [mk.Marker(f"knee_{s}", f"tibia_{s}", (0.0, 0.0, 0.0), True) for s in SIDES]
    out += [mk.Marker(f"ankle_{s}", f"talus_{s}", (0.0, 0.0, 0.0), True) for s in SIDES]
    for s in SIDES:
        ankle, mtp = data.body(f"talus_{s}").xpos, data.body(f"toes_{s}").xpos
        lateral = (mtp - ankle) @ (OPENSIM_TO_MUJOCO @ [0.0, 0.0, 1.0])
        toe = (ankle + foot_frame[0] * forward - foot_frame[1] * up
               + lateral * (OPENSIM_TO_MUJOCO @ [0.0, 0.0, 1.0]))
        out.append(mk.Marker(f"toe_{s}", f"calcn_{s}", local(f"calcn_{s}", toe), True))
    return out


def _hip_midpoint_path(model: mujoco.MjModel, motion: Motion) -> np.ndarray:
    """MyoLegs' hip midpoint (T, 3) in OpenSim's ground frame."""
    data = mujoco.MjData(model)
    out = np.zeros((motion.time.size, 3))
    for i, q in enumerate(motion.qpos(model)):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        out[i] = 0.5 * (data.body("femur_r").xpos + data.body("femur_l").xpos)
    return out @ OPENSIM_TO_MUJOCO


def root_path_error(model: mujoco.MjModel, motion: Motion, centres: JointCentres) -> dict:
    """RMS and largest horizontal distance (m) between MyoLegs' hip midpoint and the (scaled, aligned)
    source's, and the two paths' lengths (m)."""
    ours = _hip_midpoint_path(model, motion)[:, [0, 2]]
    source = 0.5 * (centres.points["hip_r"] + centres.points["hip_l"])
    theirs = np.column_stack([np.interp(motion.time, centres.time, source[:, k]) for k in (0, 2)])
    distance = np.linalg.norm(ours - theirs, axis=1)
    return {"root_path_error_rms_m": float(np.sqrt(np.mean(distance**2))),
            "root_path_error_max_m": float(distance.max()),
            "root_path_length_m": float(np.linalg.norm(np.diff(ours, axis=0), axis=1).sum()),
            "source_root_path_length_m": float(np.linalg.norm(np.diff(theirs, axis=0), axis=1).sum())}


def complete_coordinates(motion: Motion) -> Motion:
    """The motion with every coordinate MyoLegs has (:data:`kinesis_neuro.motion.MOTION_COORDINATES`, in that
    order; those a file lacks, such as subtalar and mtp angles, at 0)."""
    from kinesis_neuro.motion import MOTION_COORDINATES

    have = [str(c) for c in motion.coordinates.coordinate.values]
    if have == list(MOTION_COORDINATES):
        return motion
    coords = motion.coordinates.transpose("time", "coordinate")
    values = np.column_stack([coords.sel(coordinate=c).values if c in have else np.zeros(coords.sizes["time"])
                              for c in MOTION_COORDINATES])
    out = xr.DataArray(values, dims=("time", "coordinate"),
                       coords={"time": coords.time.values, "coordinate": list(MOTION_COORDINATES)}, attrs=coords.attrs)
    added = [c for c in MOTION_COORDINATES if c not in have]
    return Motion(out, {**motion.attrs, **({"added_at_zero": added} if added else {})})


def _with(motion: Motion, values: dict[str, np.ndarray], **attrs) -> Motion:
    coords = motion.coordinates.copy()
    for name, v in values.items():
        coords.loc[{"coordinate": name}] = v
    return Motion(coords, {**motion.attrs, **attrs})


def _toe_clearance(model: mujoco.MjModel, motion: Motion, offset: float) -> tuple[Motion, dict]:
    """Extend the toes (mtp joint, within its range) in frames where, moved up by ``offset`` m, a foot's toes
    would sink below the floor while its heel does not: the smallest mtp angle keeping them at the floor."""
    joints = mdl.joint_table(model)
    values = {}
    changed = {}
    qpos = motion.qpos(model)
    data = mujoco.MjData(model)
    for s, side in SIDES.items():
        name = f"mtp_angle_{s}"
        index = int(joints.loc[name, "qpos_index"])
        low, high = joints.loc[name, ["range_min", "range_max"]].astype(float)
        toes = motion_check._foot_geoms(model, side, (f"toes_{s}",))
        rest = motion_check._foot_geoms(model, side, (f"calcn_{s}",))
        angle = motion.coordinates.sel(coordinate=name).values.copy()

        def lowest(q, geoms):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            return min(motion_check._lowest_point(model, data, g) for g in geoms) + offset - mdl.FLOOR_HEIGHT

        for i, q in enumerate(qpos):
            if lowest(q, toes) >= 0 or lowest(q, rest) < 0:
                continue
            best = None
            for bound in (low, high):  # the direction that lifts the toes, smallest angle that clears the floor
                q2 = q.copy()
                q2[index] = bound
                if lowest(q2, toes) < lowest(q, toes):
                    continue
                a, b = angle[i], bound
                for _ in range(30):
                    q2[index] = 0.5 * (a + b)
                    a, b = (a, q2[index]) if lowest(q2, toes) >= 0 else (q2[index], b)
                best = b
            if best is not None:
                angle[i] = best
        if not np.array_equal(angle, motion.coordinates.sel(coordinate=name).values):
            values[name] = angle
            changed[name] = float(np.rad2deg(np.abs(angle - motion.coordinates.sel(coordinate=name).values).max()))
    return (_with(motion, values) if values else motion), changed


def place_on_floor(motion: Motion, model: mujoco.MjModel | None = None, *, toes: bool = True) -> tuple[Motion, dict]:
    """The motion moved vertically so its feet stand on the floor without sinking in.

    The lower foot's lowest collision point, per frame, is put at the floor at the first quartile of the
    frames (a constant shift: the lower quarter of the frames touch or sink in). Where a foot's toes still
    sink in while its heel does not (a heel-raised foot with MyoLegs' rigid toes), the toes are extended at
    the mtp joint (``toes``). Where a point still lies below the floor, the root is raised by the depth,
    spread smoothly over :data:`SMOOTH_LIFT_S` s (never less than the depth). Returns the motion and what was
    done (``floor_shift_m``, ``lift_max_m``, ``mtp_extended_deg``, ``floor_penetration_m`` after)."""
    model = model or _model()
    motion = complete_coordinates(motion)
    heights = motion_check.foot_heights(model, motion).min("side").values
    shift = -float(np.percentile(heights, 25))
    info = {"floor_shift_m": shift}
    if toes:
        motion, info["mtp_extended_deg"] = _toe_clearance(model, motion, shift)
        heights = motion_check.foot_heights(model, motion).min("side").values
    depth = np.clip(-(heights + shift), 0.0, None)
    lift = depth
    if depth.any():
        rate = 1.0 / float(np.median(np.diff(motion.time)))
        width = max(1, round(SMOOTH_LIFT_S * rate))
        lift = np.maximum(gaussian_filter1d(maximum_filter1d(depth, 2 * width + 1), width / 2, mode="nearest"), depth)
    y = motion.coordinates.sel(coordinate="pelvis_ty").values + shift + lift
    placed = _with(motion, {"pelvis_ty": y})
    info.update(lift_max_m=float(lift.max()),
                floor_penetration_m=float(max(0.0, -motion_check.foot_heights(model, placed).min().item())))
    placed.attrs["floor"] = info
    return placed, info


def as_read(motion: Motion, filter_hz: float | None = READ_FILTER_HZ) -> Motion:
    """The motion as the commands will see it once written: :func:`kinesis_neuro.motion.from_opensim` low-passes
    every coordinates file at :data:`READ_FILTER_HZ` (zero phase) when it reads it."""
    if not filter_hz:
        return motion
    from kinesis_neuro import emg

    coords = motion.coordinates.transpose("time", "coordinate").copy()
    coords.attrs["sampling_rate"] = 1.0 / float(np.median(np.diff(motion.time)))
    return Motion(emg.lowpass(coords, filter_hz), dict(motion.attrs))


def stabilise(motion: Motion, model: mujoco.MjModel | None = None, *, floor: bool = True,
              filter_hz: float | None = READ_FILTER_HZ, rounds: int = 6) -> tuple[Motion, dict]:
    """Corrections that survive the low-pass the commands apply when they read the motion (:func:`as_read`):
    leg joints pushed back by what the filtered motion exceeds MyoLegs' ranges, then (``floor``) the root
    raised by what the filtered motion's feet sink into the floor (smoothly, as in :func:`place_on_floor`),
    each repeated up to ``rounds`` times. Returns the motion and the largest corrections (deg, m)."""
    model = model or _model()
    table = mdl.joint_table(model).loc[list(mdl.LEG_JOINTS)]
    low, high = table.range_min.to_numpy(), table.range_max.to_numpy()
    joints = list(mdl.LEG_JOINTS)
    pushed = np.zeros(len(joints))
    for _ in range(rounds):
        seen = as_read(motion, filter_hz).coordinates.sel(coordinate=joints).transpose("time", "coordinate").values
        over = seen - np.clip(seen, low + RANGE_MARGIN, high - RANGE_MARGIN)
        if np.abs(over).max() <= RANGE_MARGIN:
            break
        values = motion.coordinates.sel(coordinate=joints).transpose("time", "coordinate").values - 1.5 * over
        pushed = np.maximum(pushed, np.abs(over).max(axis=0))
        motion = _with(motion, dict(zip(joints, values.T)))
    lifted = np.zeros(motion.time.size)
    if floor:
        rate = 1.0 / float(np.median(np.diff(motion.time)))
        width = max(1, round(SMOOTH_LIFT_S * rate))
        for _ in range(rounds):
            depth = np.clip(-motion_check.foot_heights(model, as_read(motion, filter_hz)).min("side").values, 0.0, None)
            if depth.max() <= STABLE_DEPTH:
                break
            lift = 1.5 * gaussian_filter1d(maximum_filter1d(depth, 2 * width + 1), width / 2, mode="nearest")
            lifted += lift
            motion = _with(motion, {"pelvis_ty": motion.coordinates.sel(coordinate="pelvis_ty").values + lift})
    return motion, {"range_pushed_back_deg": {j: float(np.rad2deg(v)) for j, v in zip(joints, pushed) if v > 0},
                    "extra_lift_max_m": float(lifted.max()), "read_filter_hz": filter_hz or 0.0}


def skating(model: mujoco.MjModel, motion: Motion) -> tuple[float, xr.Dataset]:
    """Stance-foot skating (m/s) as ``motion check`` measures it (the larger of the feet's means, on the
    motion as it will be read: :func:`as_read`), and the foot kinematics."""
    feet = motion_check.foot_kinematics(model, as_read(motion))
    speeds = motion_check.skating_speed(feet)
    means = [float(np.nanmean(v)) if np.isfinite(v).any() else 0.0 for v in speeds.transpose("side", "time").values]
    return max(means), feet


def reduce_skating(motion: Motion, model: mujoco.MjModel | None = None) -> tuple[Motion, dict]:
    """Root correction against stance-foot skating: in frames with a foot in kinematic contact, the root's
    horizontal velocity is changed by minus the mean horizontal velocity of the contact points of the feet
    in contact (contacts smoothed over :data:`CONTACT_SMOOTH_S` s; integrated over time, trapezoidal), so a
    single stance foot stays in place."""
    model = model or _model()
    before, feet = skating(model, motion)
    contact = motion_check.kinematic_contact(feet).values  # (T, 2)
    time = motion.time
    qpos, qvel, _ = motion.states(model, time)
    data = mujoco.MjData(model)
    jac = np.zeros((3, model.nv))
    velocity = np.zeros((time.size, 2, 3))
    for i in range(time.size):
        if not contact[i].any():
            continue
        data.qpos[:] = qpos[i]
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        for k, side in enumerate(motion_check.FOOT_SEGMENTS):
            if contact[i, k]:
                geoms = motion_check._foot_geoms(model, side)
                lowest = min(geoms, key=lambda g: motion_check._lowest_point(model, data, g))
                point = motion_check._lowest_point_position(model, data, lowest)
                mujoco.mj_jac(model, data, jac, None, point, int(model.geom_bodyid[lowest]))
                velocity[i, k] = jac @ qvel[i]
    rate = 1.0 / float(np.median(np.diff(time)))
    weight = gaussian_filter1d(contact.astype(float), CONTACT_SMOOTH_S * rate, axis=0, mode="nearest")
    n = weight.sum(axis=1, keepdims=True)
    correction = -np.where(n > 1e-3, (velocity * weight[..., None]).sum(axis=1) / np.maximum(n, 1e-3), 0.0)
    correction *= np.clip(n, 0.0, 1.0)  # faded in and out with the contacts
    correction[:, 2] = 0.0  # horizontal only
    dt = np.diff(time)[:, None]
    shift = np.vstack([np.zeros(3), np.cumsum(0.5 * (correction[1:] + correction[:-1]) * dt, axis=0)])
    ground = shift @ OPENSIM_TO_MUJOCO  # world -> OpenSim ground
    coords = motion.coordinates
    corrected = _with(motion, {"pelvis_tx": coords.sel(coordinate="pelvis_tx").values + ground[:, 0],
                               "pelvis_tz": coords.sel(coordinate="pelvis_tz").values + ground[:, 2]})
    after, _ = skating(model, corrected)
    return corrected, {"skating_before_m_s": before, "skating_after_m_s": after,
                       "root_correction_max_m": float(np.linalg.norm(shift, axis=1).max())}


def clip_to_ranges(motion: Motion, model: mujoco.MjModel | None = None) -> tuple[Motion, dict]:
    """Leg coordinates clipped into MyoLegs' joint ranges; returns the largest change per joint (deg)."""
    model = model or _model()
    table = mdl.joint_table(model).loc[list(mdl.LEG_JOINTS)]
    have = [str(c) for c in motion.coordinates.coordinate.values]
    values, clipped = {}, {}
    for joint, row in table.iterrows():
        if joint not in have:
            continue
        v = motion.coordinates.sel(coordinate=joint).values
        c = np.clip(v, row.range_min + RANGE_MARGIN, row.range_max - RANGE_MARGIN)
        if np.abs(c - v).max() > RANGE_MARGIN:
            values[joint] = c
            clipped[joint] = float(np.rad2deg(np.abs(c - v).max()))
    return (_with(motion, values) if values else motion), clipped


def retarget(centres: JointCentres, *, model: mujoco.MjModel | None = None, filter_hz: float | None = 6.0,
             lock: bool = True, skate_correction: bool | None = None) -> tuple[Motion, xr.Dataset]:
    """MyoLegs coordinates of a source skeleton's joint centres (module docstring: alignment, scaling, segment
    frames, IK, floor placement, skating correction — ``None``: when the mean skating exceeds
    :data:`motion_check.SKATING_THRESHOLD`). Returns the Motion (attrs: what each step did and measured) and
    the joint-centre residuals (``residual (time, marker)`` m, as :func:`kinesis_neuro.ik.fit_points`)."""
    model = model or _model()
    source = centres.attrs.get("source", "joint positions")
    missing = [p for p in POINTS if p not in centres.points]
    if missing:
        raise DataFormatError(f"{source}: joint centres {missing} missing")
    if len(centres.time) < 4:
        raise DataFormatError(f"{source}: {len(centres.time)} frames; at least 4 are needed")
    aligned, alignment = align(centres)
    scale = _myolegs_leg_length(model) / leg_length(aligned.points)
    points = {k: v * scale for k, v in aligned.points.items()}
    scaled = JointCentres(aligned.time, points, aligned.attrs, aligned.pelvis_frame, aligned.foot_frame)
    knee_forward = float(np.mean([np.sum((points[f"knee_{s}"] - 0.5 * (points[f"hip_{s}"] + points[f"ankle_{s}"]))
                                         [:, [0, 2]] * _heading(points), axis=1).mean() for s in SIDES]))
    if centres.pelvis_frame is not None:
        pelvis_frame, pelvis_how = tuple(scale * v for v in centres.pelvis_frame), "the source's pelvis frame"
    else:
        pelvis_frame, pelvis_how = _calibrate_pelvis(points), "untilted in the upright frames"
    if centres.foot_frame is not None:
        foot_frame, flat_frames = tuple(scale * v for v in centres.foot_frame), -1
    else:
        foot_frame, flat_frames = _calibrate_foot(points, scaled.time)
    locked, lock_info = lock_feet(points, scaled.time) if lock else (points, {})
    targets = np.stack([locked[p] for p in POINTS], axis=1)
    fitted, residuals = ik.fit_points(targets, myolegs_points(pelvis_frame, foot_frame, model), scaled.time,
                                      filter_hz=filter_hz, model=model, source=source)
    fitted, clipped = clip_to_ranges(fitted, model)
    placed, floor = place_on_floor(fitted, model)
    root_before = root_path_error(model, placed, scaled)
    skate_before, _ = skating(model, placed)
    correction = {"skating_before_m_s": skate_before, "skating_after_m_s": skate_before, "applied": False}
    if skate_correction or (skate_correction is None and skate_before > RETARGET_SKATING):
        corrected, correction = reduce_skating(placed, model)
        correction["applied"] = bool(skate_correction or correction["skating_after_m_s"] < skate_before)
        if correction["applied"]:
            placed = corrected
        else:
            correction["note"] = "the root correction did not lower the skating: not applied"
    placed, stable = stabilise(placed, model)
    attrs = {
        **{k: v for k, v in centres.attrs.items() if k != "sampling_rate"},
        "method": "joint-centre retargeting (kinesis_neuro.retarget: IK on hips, knees, ankles, toes, pelvis)",
        "source": source, "sampling_rate": float(centres.attrs.get("sampling_rate", fitted.attrs["sampling_rate"])),
        "filter_hz": filter_hz or 0.0, "frame": "OpenSim ground: x forward, y up, z right",
        "scale": scale, "source_leg_length_m": leg_length(aligned.points), **alignment,
        "pelvis_frame": {"forward_m": pelvis_frame[0], "up_m": pelvis_frame[1], "how": pelvis_how},
        "foot_frame": {"forward_m": foot_frame[0], "down_m": foot_frame[1],
                       "how": "the source's foot frame" if flat_frames < 0 else
                       f"calibrated on {flat_frames} flat-foot frames" if flat_frames else "MyoLegs' flat foot"},
        "knee_forward_m": knee_forward, "residual_rms_m": residuals.attrs["rms_m"],
        "residual_max_m": residuals.attrs["max_m"],
        "residual_rms_per_point_m": {str(m): float(v) for m, v in zip(residuals.marker.values, residuals.rms.values)},
        "foot_lock": lock_info, "clipped_to_range_deg": clipped, "floor": floor, "stabilised": stable,
        "skating_correction": correction,
        "root_path_before_skating_correction": root_before, **root_path_error(model, placed, scaled),
        "locked": fitted.attrs["locked"],
    }
    if knee_forward < 0:
        import warnings

        warnings.warn(f"{source}: the knees lie behind the hip-ankle line on average ({knee_forward:.3f} m): "
                      "left and right may be swapped in the source", stacklevel=2)
    return Motion(placed.coordinates, attrs), residuals
