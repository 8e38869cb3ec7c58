"""Marker inverse kinematics onto MyoLegs: subject calibration (segment scaling and marker placement)
and a per-frame weighted least-squares fit of the pelvis and leg coordinates.

Frames: MyoLegs keeps the Rajagopal body frames (same origins and axes; checked against Rajagopal2015:
hip, knee at 0 deg, ankle, subtalar and mtp joint centres coincide), so OpenSim marker locations apply
unchanged. The lab frame is turned into OpenSim's ground frame: y up (found from the data), x along the
pelvis's mean heading unless ``align_heading=False``.

Scaling: :func:`calibrate` fits, jointly with the poses of ``frames`` frames of a static trial or of the
trial itself, six scale factors (the pelvis per axis, as OpenSim's Scale tool measures it; thigh, shank and
foot uniformly, both sides alike; a weak prior keeps one person's segments alike) and the locations of
the tracking markers (clusters, wands; weak 10 cm prior around their first guess). Anatomical markers stay
at their marker-set locations, scaled: they define the segment frames (the zero of every angle). The fit
scales a private model copy (child body positions, marker locations); the angles it returns are MyoLegs
coordinates, and the pelvis translation is the subject's pelvis origin in the lab (m), as OpenSim's IK
writes it (``Motion.raised`` or a floor offset moves it for the smaller MyoLegs).

Solver: :func:`scipy.optimize.least_squares` (trust-region reflective, joint limits as bounds) on the
weighted marker errors, with MuJoCo's analytic point Jacobians (``mj_jac``) chained through the
knee/patella coupling Jacobian and the pelvis Euler-angle rates; each frame starts from the linear
extrapolation of the previous two. Subtalar and mtp joints are held at 0 by default (:data:`DEFAULT_LOCKED`).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field

import mujoco
import numpy as np
import xarray as xr
from scipy.interpolate import CubicSpline
from scipy.optimize import least_squares

from kinesis_neuro import markers as mk
from kinesis_neuro import model as mdl
from kinesis_neuro.errors import DataFormatError, ProcessingError
from kinesis_neuro.motion import (
    OPENSIM_TO_MUJOCO,
    PELVIS_ANGLES,
    PELVIS_TRANSLATION,
    Motion,
    pelvis_in_root,
    pelvis_offset_in_root,
)

COORDINATES = (*PELVIS_ANGLES, *PELVIS_TRANSLATION, *mdl.LEG_JOINTS)
SEGMENTS = ("pelvis", "thigh", "shank", "foot")
# the scale factors fitted: the pelvis per axis (its own x, y, z), the other segments uniformly, both sides alike
SCALES = ("pelvis_x", "pelvis_y", "pelvis_z", "thigh", "shank", "foot")
SCALE_MAP = np.zeros((len(SEGMENTS), 3, len(SCALES)))  # (segment, axis) -> scale factor
SCALE_MAP[0, [0, 1, 2], [0, 1, 2]] = 1.0
SCALE_MAP[1:, :, 3:] = np.eye(3)[:, None, :]
SEGMENT_OF_BODY = {"pelvis": "pelvis", **{f"{b}_{s}": seg for s in mdl.SIDES for b, seg in (
    ("femur", "thigh"), ("patella", "thigh"), ("tibia", "shank"), ("talus", "foot"), ("calcn", "foot"),
    ("toes", "foot"))}}
# markers each segment needs: the pelvis's 6 dofs; the hip's 3 with the knee's hinge; the knee's 1; the ankle's 1
# (subtalar and mtp are locked by default)
REQUIRED = {"pelvis": 3, **{f"{seg}_{s}": 1 for s in mdl.SIDES for seg in SEGMENTS[1:]}}
NOISE_SD = 0.01  # m, marker error of an average frame in the calibration objective
PLACEMENT_SD = 0.1  # m, weak prior holding a tracking marker near its first-guess location
SCALE_SD = 0.3  # weak prior: each log scale factor near the subject's mean (one person's segments scale alike)
CALIBRATION_FRAMES = 20
WEAK_SD = np.deg2rad(5.0)  # an angle whose sd for 1 cm marker noise exceeds this is weakly determined
# held at 0 unless asked otherwise: heel, toe and 5th-metatarsal markers pin the subtalar angle down to ~6 deg
# per cm of marker error and nothing sees the toes (the OpenSim models of these trials lock both too)
DEFAULT_LOCKED = tuple(f"{j}_{s}" for s in mdl.SIDES for j in ("subtalar_angle", "mtp_angle"))


@dataclass
class Subject:
    """A calibrated subject: the :data:`SCALES` ``scale_factors`` and the ``markers`` at their locations in
    the scaled MyoLegs body frames (m); ``attrs``: how the calibration went."""

    scale_factors: dict[str, float]
    markers: dict[str, mk.Marker]
    attrs: dict = field(default_factory=dict)


class _Chain:
    """MyoLegs kinematics on a scalable model copy: coordinates ``x`` (``COORDINATES``: pelvis Euler
    angles and translation in OpenSim's convention, 14 leg joints) -> marker positions (MuJoCo world, m)
    and their Jacobian."""

    def __init__(self, model: mujoco.MjModel, markers: list[mk.Marker]):
        self.model = model
        self.data = mujoco.MjData(model)
        self.couplings = mdl.Couplings(model)
        self.q_root = pelvis_in_root(model).as_matrix()
        self.offset = pelvis_offset_in_root(model)
        self.leg_qpos = mdl.joint_table(model).loc[list(mdl.LEG_JOINTS), "qpos_index"].to_numpy()
        self.pos0 = model.body_pos.copy()
        self.markers = markers
        self.body = np.array([model.body(m.body).id for m in markers])
        names = [model.body(b).name for b in range(model.nbody)]
        # body -> scale index of the segment its children's positions belong to
        self.scaled = [(b, SEGMENTS.index(SEGMENT_OF_BODY[names[p]])) for b in range(model.nbody)
                       if names[p := int(model.body_parentid[b])] in SEGMENT_OF_BODY]
        self.segment = np.array([SEGMENTS.index(SEGMENT_OF_BODY[m.body]) for m in markers])
        self.ancestors = [self._ancestors(b) for b in self.body]
        self.set_geometry(np.ones(len(SCALES)), np.array([m.location for m in markers], dtype=float))
        self._x = None

    def _ancestors(self, body: int) -> list[tuple[int, int, int]]:
        """(child body, its parent, segment index) for every scaled body position on the way to ``body``."""
        scaled = dict(self.scaled)
        out = []
        while body > 0:
            if body in scaled:
                out.append((body, int(self.model.body_parentid[body]), scaled[body]))
            body = int(self.model.body_parentid[body])
        return out

    def set_geometry(self, scales: np.ndarray, locations: np.ndarray) -> None:
        """Scale the child body positions per segment (``scales``: :data:`SCALES`); set the marker
        locations (M, 3; scaled body frames, m)."""
        self.scales = np.asarray(scales, dtype=float)
        per_axis = SCALE_MAP @ self.scales
        for body, seg in self.scaled:
            self.model.body_pos[body] = per_axis[seg] * self.pos0[body]
        self.loc = np.asarray(locations, dtype=float)
        self._x = None

    def _update(self, x: np.ndarray) -> None:
        if self._x is not None and np.array_equal(x, self._x):
            return
        a, b, c = x[0:3]
        ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
        pelvis = np.array([[ca * cc - sa * sb * sc, -sa * cb, ca * sc + sa * sb * cc],
                           [sa * cc + ca * sb * sc, ca * cb, sa * sc - ca * sb * cc],
                           [-cb * sc, sb, cb * cc]])  # Rz(tilt) Rx(list) Ry(rotation)
        rates = np.array([[0.0, ca, -sa * cb], [0.0, sa, ca * cb], [1.0, 0.0, sb]])  # angular velocity per Euler rate
        self.root = OPENSIM_TO_MUJOCO @ pelvis @ self.q_root.T
        qpos = self.model.qpos0.copy()
        qpos[0:3] = OPENSIM_TO_MUJOCO @ x[3:6] - self.root @ self.offset
        mujoco.mju_mat2Quat(qpos[3:7], self.root.ravel())
        qpos[self.leg_qpos] = x[6:]
        self.qpos = self.couplings.apply(qpos)
        self.data.qpos[:] = self.qpos
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        self.world_rates = OPENSIM_TO_MUJOCO @ rates
        self.xmat = self.data.xmat[self.body].reshape(-1, 3, 3)
        self.p = self.data.xpos[self.body] + np.einsum("mij,mj->mi", self.xmat, self.loc)
        self._x = x.copy()

    def positions(self, x: np.ndarray) -> np.ndarray:
        """Marker positions (M, 3) in the MuJoCo world frame (m)."""
        self._update(x)
        return self.p

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """d positions / d x (3M x 20)."""
        self._update(x)
        nv = self.model.nv
        jac = np.empty((3 * len(self.markers), nv))
        for i, body in enumerate(self.body):
            mujoco.mj_jac(self.model, self.data, jac[3 * i:3 * i + 3], None, self.p[i], int(body))
        root = np.zeros((6, 6))  # free-joint velocity (world linear, local angular) per pelvis coordinate rate
        ax, ay, az = self.root @ self.offset
        root[0:3, 0:3] = np.array([[0.0, -az, ay], [az, 0.0, -ax], [-ay, ax, 0.0]]) @ self.world_rates
        root[0:3, 3:6] = OPENSIM_TO_MUJOCO
        root[3:6, 0:3] = self.root.T @ self.world_rates
        g = self.couplings.jacobian(self.qpos)
        g[:, :6] = g[:, :6] @ root
        return jac @ g

    def geometry_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d positions / d scale factors (3M x 6) with the marker locations held, and the marker body
        rotations (M, 3, 3) = d position / d location."""
        self._update(x)
        out = np.zeros((len(self.markers), 3, len(SCALES)))
        xmat = self.data.xmat.reshape(-1, 3, 3)
        for i, chain in enumerate(self.ancestors):
            for child, parent, seg in chain:
                out[i] += (xmat[parent] * self.pos0[child]) @ SCALE_MAP[seg]
        return out.reshape(-1, len(SCALES)), self.xmat


def _bounds(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    joints = mdl.joint_table(model).loc[list(mdl.LEG_JOINTS)]
    lower = np.r_[-np.pi / 2, -np.pi / 2, -np.inf, -np.inf, -np.inf, -np.inf, joints.range_min.to_numpy()]
    upper = np.r_[np.pi / 2, np.pi / 2, np.inf, np.inf, np.inf, np.inf, joints.range_max.to_numpy()]
    return lower, upper


def _euler_zxy(rotation: np.ndarray) -> np.ndarray:
    """(tilt, list, rotation) of an OpenSim pelvis orientation matrix (body-fixed Z-X-Y)."""
    return np.array([np.arctan2(-rotation[0, 1], rotation[1, 1]), np.arcsin(np.clip(rotation[2, 1], -1, 1)),
                     np.arctan2(-rotation[2, 0], rotation[2, 2])])


def _kabsch(local: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation taking ``local`` points (N, 3) onto ``measured`` (least squares)."""
    lc, mc = local.mean(0), measured.mean(0)
    u, _, vt = np.linalg.svd((measured - mc).T @ (local - lc))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return rotation, mc - rotation @ lc


def _pelvis_start(frame: np.ndarray, chain: _Chain) -> np.ndarray | None:
    """Coordinates with the pelvis placed on the pelvis markers of one frame (OpenSim ground, m), legs straight."""
    rows = [i for i, m in enumerate(chain.markers) if m.body == "pelvis" and np.all(np.isfinite(frame[i]))]
    if len(rows) < 3:
        return None
    rotation, origin = _kabsch(chain.loc[rows], frame[rows])
    return np.r_[_euler_zxy(rotation), origin, np.zeros(len(mdl.LEG_JOINTS))]


class _Problem:
    """The weighted marker fit of one frame for the free coordinates."""

    def __init__(self, chain: _Chain, weights: np.ndarray, free: np.ndarray, bounds):
        self.chain, self.sqrt_w, self.free, self.x = chain, np.sqrt(weights), free, np.zeros(len(COORDINATES))
        self.lower, self.upper = bounds[0][free], bounds[1][free]

    def _full(self, xf):
        self.x[self.free] = xf
        return self.x

    def residuals(self, xf):
        return ((self.chain.positions(self._full(xf)) - self.target) * self.sqrt_w[:, None])[self.seen].ravel()

    def jacobian(self, xf):
        jac = self.chain.jacobian(self._full(xf))[:, self.free]
        return (jac.reshape(-1, 3, self.free.size) * self.sqrt_w[:, None, None])[self.seen].reshape(-1, self.free.size)

    def solve(self, target: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Coordinates (20) best fitting ``target`` (M, 3; MuJoCo world, NaN = unseen) from ``start``."""
        self.target, self.seen = target, np.all(np.isfinite(target), axis=1) & (self.sqrt_w > 0)
        x0 = np.clip(start[self.free], self.lower, self.upper)
        result = least_squares(self.residuals, x0, jac=self.jacobian, bounds=(self.lower, self.upper),
                               method="trf", xtol=1e-7, ftol=1e-8, gtol=1e-8, max_nfev=100)
        return self._full(result.x).copy()


def _to_ground(values: np.ndarray, defs: list[mk.Marker], align_heading: bool) -> tuple[np.ndarray, np.ndarray]:
    """Marker positions (T, M, 3) in OpenSim's ground frame and the lab-to-ground rotation (rows: ground axes
    in lab coordinates). Up (y) is the lab axis along which the pelvis markers lie farthest above the shank
    and foot markers; x is the lab's x (its y when x is up), turned about y onto the pelvis's mean heading
    when ``align_heading``."""
    pelvis = [i for i, m in enumerate(defs) if m.body == "pelvis"]
    legs = [i for i, m in enumerate(defs) if SEGMENT_OF_BODY[m.body] in ("shank", "foot")]
    up = np.nanmean(values[:, pelvis].reshape(-1, 3), axis=0) - np.nanmean(values[:, legs].reshape(-1, 3), axis=0)
    axis = int(np.argmax(np.abs(up)))
    y = np.eye(3)[axis] * np.sign(up[axis])
    x = np.eye(3)[1 if axis == 0 else 0]
    rotation = np.array([x, y, np.cross(x, y)])
    if align_heading:
        local = np.array([defs[i].location for i in pelvis])
        yaws = []
        for frame in values[:: max(1, len(values) // 50), pelvis] @ rotation.T:
            seen = np.all(np.isfinite(frame), axis=1)
            if seen.sum() >= 3:
                yaws.append(_euler_zxy(_kabsch(local[seen], frame[seen])[0])[2])
        yaw = float(np.arctan2(np.mean(np.sin(yaws)), np.mean(np.cos(yaws)))) if yaws else 0.0
        heading = np.array([[np.cos(yaw), 0.0, -np.sin(yaw)], [0.0, 1.0, 0.0], [np.sin(yaw), 0.0, np.cos(yaw)]])
        rotation = heading @ rotation  # Ry(-yaw): the mean pelvis heading becomes +x
    return values @ rotation.T, rotation


def _group(body: str) -> str:
    """The :data:`REQUIRED` entry of a body: its segment, with the side."""
    return SEGMENT_OF_BODY[body] + ("" if body == "pelvis" else body[-2:])


def _check_available(data: xr.DataArray, defs: dict[str, mk.Marker], marker_set: dict[str, mk.Marker]) -> None:
    """A one-line ``DataFormatError`` naming, per segment, the markers a trial lacks (in every frame) to pin
    the legs down."""
    seen = np.any(np.all(np.isfinite(data.transpose("time", "marker", "axis").values), axis=2), axis=0)
    names = [str(n) for n in data.marker.values]
    have = {group: [n for n, s in zip(names, seen) if s and _group(defs[n].body) == group] for group in REQUIRED}
    short = {group: found for group, found in have.items() if len(found) < REQUIRED[group]}
    if short:
        parts = []
        for group, found in short.items():
            lacks = [n for n, m in marker_set.items() if m.body in mk.LEG_BODIES and _group(m.body) == group
                     and n not in found and "Ground" not in n][:6]
            parts.append(f"{group} has {len(found)} of {REQUIRED[group]} ({', '.join(found) or 'none'}; "
                         f"lacks e.g. {', '.join(lacks)})")
        raise DataFormatError(f"{data.attrs.get('source', 'markers')}: too few markers to solve the MyoLegs pose: "
                              + "; ".join(parts))


@dataclass
class _Trial:
    """A marker trial on marker-set names, in OpenSim's ground frame (``ground``: T, M, 3, m)."""

    time: np.ndarray
    names: list[str]
    ground: np.ndarray
    defs: dict[str, mk.Marker]
    weights: dict[str, float]
    attrs: dict

    @property
    def target(self) -> np.ndarray:
        """Marker positions in the MuJoCo world frame (T, M, 3)."""
        return self.ground @ OPENSIM_TO_MUJOCO.T


def _trial(markers, marker_set, weights, align_heading, data_dir) -> _Trial:
    data = markers if isinstance(markers, xr.DataArray) else mk.read_markers(markers, data_dir=data_dir)
    marker_set = marker_set if marker_set is not None else mk.read_marker_set(data_dir=data_dir)
    data, defs, dropped = mk.resolve(data, marker_set)
    _check_available(data, defs, marker_set)
    names = [str(n) for n in data.marker.values]
    values = data.transpose("time", "marker", "axis").values
    ground, rotation = _to_ground(values, [defs[n] for n in names], align_heading)
    aliases, _ = mk.alias_table()
    given = {aliases.get(k, k): float(v) for k, v in (weights or {}).items()}
    weights = {**mk.default_weights(names, data_dir=data_dir), **{k: v for k, v in given.items() if k in defs}}
    rate = data.attrs.get("sampling_rate") or 1.0 / float(np.median(np.diff(data.time.values)))
    return _Trial(data.time.values, names, ground, defs, weights,
                  {"source": data.attrs.get("source", "markers"), "sampling_rate": float(rate),
                   "dropped_markers": dropped, "lab_to_ground": rotation.round(12).tolist()})


def _solvable(trial: _Trial, weights: np.ndarray) -> np.ndarray:
    """Frames (T,) in which every body of :data:`REQUIRED` shows enough weighted markers."""
    seen = np.all(np.isfinite(trial.ground), axis=2) & (weights > 0)
    groups = np.array([_group(trial.defs[name].body) for name in trial.names])
    return np.all([seen[:, groups == group].sum(1) >= n for group, n in REQUIRED.items()], axis=0)


def _locked(chain: _Chain, locked) -> list[str]:
    """Leg joints that no marker moves (no marker on the joint's body or beyond it), and those asked for."""
    carried = set()
    for body in chain.body:
        while body > 0:
            carried.add(int(body))
            body = int(chain.model.body_parentid[body])
    unseen = {j for j in mdl.LEG_JOINTS if int(chain.model.jnt_bodyid[chain.model.joint(j).id]) not in carried}
    unknown = set(locked) - set(mdl.LEG_JOINTS)
    if unknown:
        raise ProcessingError(f"cannot lock {sorted(unknown)}: only leg joints {list(mdl.LEG_JOINTS)} can be locked")
    return [c for c in COORDINATES if c in unseen | set(locked)]


def _free(lock: list[str]) -> np.ndarray:
    return np.array([i for i, c in enumerate(COORDINATES) if c not in lock])


def _model(model: mujoco.MjModel | None) -> mujoco.MjModel:
    """A private MyoLegs copy to scale."""
    return copy.deepcopy(model) if model is not None else mdl.load_model()


def calibrate(markers, *, marker_set: dict[str, mk.Marker] | None = None, weights: dict[str, float] | None = None,
              frames: int = CALIBRATION_FRAMES, locked=DEFAULT_LOCKED, model: mujoco.MjModel | None = None,
              data_dir=None) -> Subject:
    """Fit the segment scale factors and the unfixed markers' locations to ``frames`` frames of a static
    or moving trial (``.trc``/``.c3d`` path, ``DATASET/FILE`` or DataArray ``(time, marker, axis)`` in m)."""
    trial = markers if isinstance(markers, _Trial) else _trial(markers, marker_set, weights, False, data_dir)
    names, defs = trial.names, trial.defs
    chain = _Chain(_model(model), [defs[n] for n in names])
    w = np.array([trial.weights[n] for n in names])
    count = np.where(_solvable(trial, w), np.all(np.isfinite(trial.ground), axis=2).sum(1), -1)
    if count.max() < 0:
        raise DataFormatError(f"{trial.attrs['source']}: no frame shows the markers needed to fix every body")
    candidates = np.flatnonzero(count >= count.max() - 2)
    picks = candidates[np.unique(np.linspace(0, candidates.size - 1, min(frames, candidates.size)).astype(int))]
    target = trial.target[picks]
    bounds = _bounds(chain.model)
    lock = _locked(chain, locked)
    free = _free(lock)
    placed = np.array([i for i, n in enumerate(names) if not defs[n].fixed], dtype=int)
    guess = np.array([defs[n].location for n in names])
    # start: poses from the anatomical markers alone, tracking markers where those poses see them
    problem = _Problem(chain, np.where([defs[n].fixed for n in names], w, 0.0), free, bounds)
    poses = np.array([problem.solve(y, _pelvis_start(g, chain)) for y, g in zip(target, trial.ground[picks])])
    local = np.zeros((placed.size, 3))  # mean location of each tracking marker in its body frame
    count = np.zeros(placed.size)
    for pose, y in zip(poses, target):
        chain.positions(pose)
        in_body = np.einsum("mji,mj->mi", chain.xmat[placed], y[placed] - chain.data.xpos[chain.body[placed]])
        seen = np.all(np.isfinite(in_body), axis=1)
        local[seen] += in_body[seen]
        count += seen
    start_loc = np.where(count[:, None] > 0, local / np.maximum(count, 1)[:, None], guess[placed])
    k, nf, ns, npl = len(picks), free.size, len(SCALES), placed.size
    data_w = (np.sqrt(w / w.mean() / k) / NOISE_SD).repeat(3)[:, None]
    rows = [np.repeat(np.all(np.isfinite(y), axis=1), 3) for y in target]
    lower = np.r_[np.tile(bounds[0][free], k), np.full(ns, 0.5), np.full(3 * npl, -np.inf)]
    upper = np.r_[np.tile(bounds[1][free], k), np.full(ns, 2.0), np.full(3 * npl, np.inf)]
    # d (scaled set location) / d scale factors, per marker (M, 3, 6)
    d_guess = guess[:, :, None] * SCALE_MAP[chain.segment]

    def unpack(params):
        x = np.zeros((k, len(COORDINATES)))
        x[:, free] = params[: k * nf].reshape(k, nf)
        scales = params[k * nf: k * nf + ns]
        loc = d_guess @ scales
        loc[placed] = params[k * nf + ns:].reshape(-1, 3)
        chain.set_geometry(scales, loc)
        return x, scales, loc

    def residuals(params):
        x, scales, loc = unpack(params)
        out = [((chain.positions(x[i]) - target[i]).reshape(-1, 1) * data_w)[rows[i], 0] for i in range(k)]
        out.append(((loc[placed] - d_guess[placed] @ scales) / PLACEMENT_SD).ravel())
        out.append((np.log(scales) - np.log(scales).mean()) / SCALE_SD)
        return np.concatenate(out)

    def jacobian(params):
        x, scales, _ = unpack(params)
        jac = np.zeros((sum(int(r.sum()) for r in rows) + 3 * npl + ns, params.size))
        start = 0
        for i in range(k):
            n = int(rows[i].sum())
            block = jac[start:start + n]
            block[:, i * nf:(i + 1) * nf] = (chain.jacobian(x[i])[:, free] * data_w)[rows[i]]
            d_scale, rotation = chain.geometry_jacobian(x[i])
            set_part = rotation @ d_guess  # fixed markers move with the scaled set location
            set_part[placed] = 0.0
            block[:, k * nf: k * nf + ns] = ((d_scale + set_part.reshape(-1, ns)) * data_w)[rows[i]]
            d_loc = np.zeros((len(names), 3, npl, 3))
            d_loc[placed, :, np.arange(npl), :] = rotation[placed]
            block[:, k * nf + ns:] = (d_loc.reshape(3 * len(names), -1) * data_w)[rows[i]]
            start += n
        p = np.arange(3 * npl)
        jac[start + p, k * nf + ns + p] = 1.0 / PLACEMENT_SD
        jac[start + p, k * nf: k * nf + ns] = -d_guess[placed].reshape(-1, ns) / PLACEMENT_SD
        jac[start + 3 * npl:, k * nf: k * nf + ns] = (np.eye(ns) - 1.0 / ns) / (SCALE_SD * scales)
        return jac

    start = np.r_[poses[:, free].ravel(), np.ones(ns), start_loc.ravel()]
    result = least_squares(residuals, np.clip(start, lower, upper), jac=jacobian, bounds=(lower, upper),
                           method="trf", x_scale="jac", xtol=1e-8, ftol=1e-8, max_nfev=100)
    x, scales, loc = unpack(result.x)
    return Subject({s: float(v) for s, v in zip(SCALES, scales)},
                   {n: mk.Marker(n, defs[n].body, tuple(loc[i]), True) for i, n in enumerate(names)},
                   {"source": trial.attrs["source"], "calibration_times": trial.time[picks].round(6).tolist(),
                    "calibration_rms_m": _rms(np.array([chain.positions(xi) for xi in x]) - target),
                    "calibration_evaluations": int(result.nfev)})


def _rms(errors: np.ndarray) -> float:
    """RMS marker distance (m) of errors (..., 3), gaps ignored."""
    return float(np.sqrt(np.nanmean(np.sum(errors**2, axis=-1))))


def _coordinate_sd(chain: _Chain, x: np.ndarray, target: np.ndarray, weights: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Median over frames of each free coordinate's standard deviation for 1 cm marker noise (rad or m)."""
    sds = []
    sqrt_w = np.sqrt(weights / weights.mean())
    for xt, yt in zip(x[:: max(1, len(x) // 20)], target[:: max(1, len(x) // 20)]):
        seen = np.repeat(np.all(np.isfinite(yt), axis=1), 3)
        jac = (chain.jacobian(xt)[:, free] * sqrt_w.repeat(3)[:, None])[seen]
        sds.append(NOISE_SD * np.sqrt(np.diag(np.linalg.pinv(jac.T @ jac))))
    return np.median(sds, axis=0)


def inverse_kinematics(markers, *, subject: Subject | str | os.PathLike | xr.DataArray | None = None,
                       marker_set: dict[str, mk.Marker] | None = None, weights: dict[str, float] | None = None,
                       locked=DEFAULT_LOCKED, filter_hz: float | None = 6.0, align_heading: bool = True,
                       model: mujoco.MjModel | None = None, data_dir=None) -> tuple[Motion, xr.Dataset]:
    """MyoLegs coordinates of a marker trial (``.trc``/``.c3d`` path, ``DATASET/FILE`` or DataArray
    ``(time, marker, axis)`` in m, lab frame) and the marker residuals.

    ``subject``: a :class:`Subject`, or a static trial to :func:`calibrate` on; by default the trial
    calibrates itself (tracking markers a static trial lacks keep their first-guess location). ``weights``
    override :func:`kinesis_neuro.markers.default_weights` (by marker-set or file name; 0 drops a marker);
    ``locked`` leg joints stay at 0 (joints no marker moves always do). Frames that show too few
    markers to fix every body (:data:`REQUIRED`) are not solved: the motion runs from the first to the
    last solvable frame, interpolated over inner gaps. The coordinates are low-passed at ``filter_hz``
    (zero phase; ``None``: raw) and the residuals are those of the returned motion.

    Returns a :class:`~kinesis_neuro.motion.Motion` (OpenSim convention: rad, pelvis translation in m in
    OpenSim's ground frame) and a Dataset ``residual (time, marker)`` in m (NaN where a marker is unseen)
    with ``weight (marker)`` and ``rms (marker)``; attrs ``rms_m``, ``max_m``, ``marker_weights`` and
    ``scale_factors`` (JSON).
    """
    trial = _trial(markers, marker_set, weights, align_heading, data_dir)
    if not isinstance(subject, Subject):
        calibration = trial if subject is None else _trial(subject, marker_set, weights, False, data_dir)
        subject = calibrate(calibration, locked=locked, model=model)
    scales = np.array([subject.scale_factors[s] for s in SCALES])
    per_axis = SCALE_MAP @ scales
    defs = [subject.markers.get(n) or mk.Marker(n, trial.defs[n].body, tuple(
        per_axis[SEGMENTS.index(SEGMENT_OF_BODY[trial.defs[n].body])] * np.array(trial.defs[n].location)), True)
        for n in trial.names]
    chain = _Chain(_model(model), defs)
    chain.set_geometry(scales, np.array([m.location for m in defs]))
    w = np.array([trial.weights[n] for n in trial.names])
    lock = _locked(chain, locked)
    free = _free(lock)
    frames = np.flatnonzero(_solvable(trial, w))
    if frames.size < 2:
        raise DataFormatError(f"{trial.attrs['source']}: fewer than 2 frames show the markers needed to fix "
                              f"every body ({REQUIRED})")
    span = np.arange(frames[0], frames[-1] + 1)
    target = trial.target[span]
    solved = frames - frames[0]
    problem = _Problem(chain, w, free, _bounds(chain.model))
    x = np.full((span.size, len(COORDINATES)), np.nan)
    for k, t in enumerate(solved):
        if k == 0:
            start = _pelvis_start(trial.ground[span[t]], chain)
        elif k >= 2 and solved[k - 2] == t - 2 and solved[k - 1] == t - 1:
            start = 2 * x[t - 1] - x[t - 2]  # linear extrapolation of the last two frames
        else:
            start = x[solved[k - 1]]
        x[t] = problem.solve(target[t], start)
    if solved.size < span.size:
        x = CubicSpline(trial.time[frames], x[solved], axis=0)(trial.time[span])
    sd = _coordinate_sd(chain, x[solved], target[solved], w, free)

    coords = xr.DataArray(x, dims=("time", "coordinate"), coords={"time": trial.time[span], "coordinate": list(COORDINATES)},
                          attrs={"sampling_rate": trial.attrs["sampling_rate"], "source": trial.attrs["source"],
                                 "units": "rad (rotations), m (pelvis_tx/ty/tz)"})
    if filter_hz:
        from kinesis_neuro import emg

        coords = emg.lowpass(coords, filter_hz)
    errors = np.array([chain.positions(xt) for xt in coords.values]) - target
    distance = np.linalg.norm(errors, axis=2)
    weak = [COORDINATES[i] for i, s in zip(free, sd) if COORDINATES[i] not in PELVIS_TRANSLATION and s > WEAK_SD]
    attrs = {"source": trial.attrs["source"], "sampling_rate": trial.attrs["sampling_rate"],
             "filter_hz": filter_hz or 0.0, "frame": "OpenSim ground: x forward, y up, z right",
             "method": "marker inverse kinematics (kinesis_neuro.ik)", "scale_factors": subject.scale_factors,
             "locked": lock, "weakly_determined": weak, "residual_rms_m": _rms(errors),
             "coordinate_sd_for_1cm_noise": {COORDINATES[i]: float(s) for i, s in zip(free, sd)},
             "interpolated_frames": int(span.size - solved.size), "dropped_markers": trial.attrs["dropped_markers"],
             "lab_to_ground": trial.attrs["lab_to_ground"], "calibration": subject.attrs}
    residuals = xr.Dataset(
        {"residual": (("time", "marker"), distance, {"units": "m"}),
         "weight": ("marker", w),
         "rms": ("marker", np.sqrt(np.nansum(distance**2, axis=0) / np.maximum(1, np.isfinite(distance).sum(0))),
                 {"units": "m"})},
        coords={"time": trial.time[span], "marker": trial.names},
        attrs={"units": "m", "rms_m": _rms(errors), "max_m": float(np.nanmax(distance)),
               "marker_weights": json.dumps(dict(zip(trial.names, w.tolist()))),
               "scale_factors": json.dumps(subject.scale_factors), "source": trial.attrs["source"]})
    return Motion(coords, attrs), residuals


def fit_points(targets: np.ndarray, points: list[mk.Marker], time, *, weights=None, locked=DEFAULT_LOCKED,
               filter_hz: float | None = 6.0, model: mujoco.MjModel | None = None, source: str = "points",
               attrs: dict | None = None) -> tuple[Motion, xr.Dataset]:
    """MyoLegs coordinates whose model ``points`` best fit ``targets`` frame by frame: the solver of
    :func:`inverse_kinematics` (weighted least squares on MuJoCo Jacobians through the knee couplings, joint
    limits as bounds, each frame started from the extrapolation of the last two), without calibration or
    lab-frame handling. Used to retarget joint centres (:mod:`kinesis_neuro.retarget`).

    ``targets``: (T, M, 3) in OpenSim's ground frame (m; NaN = unseen); ``points``: a
    :class:`~kinesis_neuro.markers.Marker` per target (body and location on the unscaled MyoLegs; at least
    three on the pelvis, which place the first frame); ``weights``: (M,), default 1; ``time``: (T,) s.
    Frames are solved where every point is seen. Returns the Motion and residuals as
    :func:`inverse_kinematics` does (``residual (time, marker)`` in m, ``rms (marker)``, attrs ``rms_m``,
    ``max_m``)."""
    targets = np.asarray(targets, dtype=float)
    time = np.asarray(time, dtype=float)
    names = [p.name for p in points]
    if targets.ndim != 3 or targets.shape[1:] != (len(points), 3) or targets.shape[0] != time.size:
        raise ProcessingError(f"targets {targets.shape} do not fit {len(points)} points and {time.size} times")
    if sum(p.body == "pelvis" for p in points) < 3:
        raise ProcessingError("fit_points needs at least three points on the pelvis to place the first frame")
    chain = _Chain(_model(model), list(points))
    w = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=float)
    lock = _locked(chain, locked)
    free = _free(lock)
    ground = targets
    target = ground @ OPENSIM_TO_MUJOCO.T
    seen = np.all(np.isfinite(target), axis=(1, 2))
    frames = np.flatnonzero(seen)
    if frames.size < 2:
        raise DataFormatError(f"{source}: fewer than 2 frames show every point ({', '.join(names)})")
    problem = _Problem(chain, w, free, _bounds(chain.model))
    x = np.full((time.size, len(COORDINATES)), np.nan)
    previous = []
    for t in frames:
        if not previous:
            start = _pelvis_start(ground[t], chain)
        elif len(previous) >= 2 and previous[-1] == t - 1 and previous[-2] == t - 2:
            start = 2 * x[t - 1] - x[t - 2]
        else:
            start = x[previous[-1]]
        x[t] = problem.solve(target[t], start)
        previous.append(t)
    span = np.arange(frames[0], frames[-1] + 1)
    if frames.size < span.size:
        x[span] = CubicSpline(time[frames], x[frames], axis=0)(time[span])
    x, time, target = x[span], time[span], target[span]
    rate = 1.0 / float(np.median(np.diff(time)))
    coords = xr.DataArray(x, dims=("time", "coordinate"), coords={"time": time, "coordinate": list(COORDINATES)},
                          attrs={"sampling_rate": rate, "source": source,
                                 "units": "rad (rotations), m (pelvis_tx/ty/tz)"})
    if filter_hz:
        from kinesis_neuro import emg

        coords = emg.lowpass(coords, filter_hz)
    errors = np.array([chain.positions(xt) for xt in coords.values]) - target
    distance = np.linalg.norm(errors, axis=2)
    out_attrs = {"source": source, "sampling_rate": rate, "filter_hz": filter_hz or 0.0,
                 "frame": "OpenSim ground: x forward, y up, z right", "locked": lock,
                 "residual_rms_m": _rms(errors), "interpolated_frames": int(span.size - frames.size),
                 **(attrs or {})}
    residuals = xr.Dataset(
        {"residual": (("time", "marker"), distance, {"units": "m"}),
         "weight": ("marker", w),
         "rms": ("marker", np.sqrt(np.nanmean(distance**2, axis=0)), {"units": "m"})},
        coords={"time": time, "marker": names},
        attrs={"units": "m", "rms_m": _rms(errors), "max_m": float(np.nanmax(distance)), "source": source})
    return Motion(coords, out_attrs), residuals
