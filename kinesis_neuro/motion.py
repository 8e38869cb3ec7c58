"""Reference motions: OpenSim joint coordinates -> MyoLegs ``qpos``/``qvel``/``qacc``.

A :class:`Motion` keeps the coordinates in OpenSim's convention (rad; pelvis translation in m,
ground frame x forward, y up, z right) as a smooth cubic spline in time, and maps them onto
the MyoLegs model on demand: root pose from the pelvis (body-fixed Z-X-Y Euler angles
tilt/list/rotation), leg joints by name, coupled knee/patella dofs from their polynomials.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field

import mujoco
import numpy as np
import pandas as pd
import xarray as xr
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

from kinesis_neuro import model as mdl
from kinesis_neuro.errors import DataFormatError, ProcessingError
from kinesis_neuro.io.common import check_values

# MuJoCo world (z up, model facing -y) from OpenSim ground (x forward, y up, z right)
OPENSIM_TO_MUJOCO = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
PELVIS_ANGLES = ("pelvis_tilt", "pelvis_list", "pelvis_rotation")
PELVIS_TRANSLATION = ("pelvis_tx", "pelvis_ty", "pelvis_tz")
OPTIONAL_JOINTS = ("subtalar_angle", "mtp_angle")  # absent from many OpenSim models' IK: 0
DERIVATIVE_STEP = 1e-4  # s, central differences on the spline for qvel and qacc


@dataclass
class Motion:
    """Joint coordinates over time (``coordinates``: DataArray ``(time, coordinate)``, rad and m)."""

    coordinates: xr.DataArray
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        needed = [*PELVIS_ANGLES, *PELVIS_TRANSLATION,
                  *(f"{j}_{s}" for s in mdl.SIDES for j in mdl.LEG_JOINT_NAMES if j not in OPTIONAL_JOINTS)]
        have = [str(c) for c in self.coordinates.coordinate.values]
        missing = [c for c in needed if c not in have]
        if missing:
            raise DataFormatError(f"{self.attrs.get('source', 'motion')}: coordinates {missing} missing; have {have}")
        t = self.coordinates.time.values
        self._spline = CubicSpline(t, self.coordinates.transpose("time", "coordinate").values, axis=0)

    @property
    def time(self) -> np.ndarray:
        return self.coordinates.time.values

    @property
    def duration(self) -> float:
        return float(self.time[-1] - self.time[0])

    def coordinate_values(self, time=None, tolerance: float = 1e-9) -> xr.DataArray:
        """Coordinates interpolated at ``time`` (s; default: the motion's own samples)."""
        time = self.time if time is None else np.atleast_1d(np.asarray(time, dtype=float))
        if time.min() < self.time[0] - tolerance or time.max() > self.time[-1] + tolerance:
            raise ProcessingError(f"times {time.min():g}-{time.max():g} s lie outside the motion "
                                  f"({self.time[0]:g}-{self.time[-1]:g} s)")
        return xr.DataArray(self._spline(time), dims=("time", "coordinate"),
                            coords={"time": time, "coordinate": self.coordinates.coordinate.values})

    def qpos(self, model: mujoco.MjModel, time=None, tolerance: float = 1e-9) -> np.ndarray:
        """MyoLegs ``qpos`` (T, nq) at ``time``."""
        coords = self.coordinate_values(time, tolerance)
        names = [str(c) for c in coords.coordinate.values]
        values = coords.values
        col = {n: values[:, i] for i, n in enumerate(names)}
        qpos = np.tile(model.qpos0, (values.shape[0], 1))
        pelvis = Rotation.from_euler("ZXY", np.stack([col[a] for a in PELVIS_ANGLES], axis=1))
        world_pelvis = Rotation.from_matrix(OPENSIM_TO_MUJOCO) * pelvis
        root_pelvis = pelvis_in_root(model)
        world_root = world_pelvis * root_pelvis.inv()
        pelvis_pos = np.stack([col[a] for a in PELVIS_TRANSLATION], axis=1) @ OPENSIM_TO_MUJOCO.T
        qpos[:, 0:3] = pelvis_pos - world_root.apply(pelvis_offset_in_root(model))
        qpos[:, 3:7] = world_root.as_quat(scalar_first=True)
        joints = mdl.joint_table(model)
        for name in mdl.LEG_JOINTS:
            if name in col:
                qpos[:, joints.loc[name, "qpos_index"]] = col[name]
        return mdl.apply_couplings(model, qpos)

    def states(self, model: mujoco.MjModel, time=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``qpos`` (T, nq), ``qvel`` (T, nv) and ``qacc`` (T, nv) at ``time`` by central differences
        of the spline (step 0.1 ms), with MuJoCo's own quaternion differentiation for the root."""
        time = self.time if time is None else np.atleast_1d(np.asarray(time, dtype=float))
        h = DERIVATIVE_STEP  # the spline's end polynomials are extended by h at the ends
        q_minus, q, q_plus = (self.qpos(model, time + k * h, tolerance=1.5 * h) for k in (-1, 0, 1))
        v_minus, v_plus = np.zeros((time.size, model.nv)), np.zeros((time.size, model.nv))
        for i in range(time.size):
            mujoco.mj_differentiatePos(model, v_minus[i], h, q_minus[i], q[i])
            mujoco.mj_differentiatePos(model, v_plus[i], h, q[i], q_plus[i])
        qvel = 0.5 * (v_minus + v_plus)
        qacc = (v_plus - v_minus) / h
        return q, qvel, qacc

    def resample(self, rate: float) -> "Motion":
        """The same motion sampled at ``rate`` Hz (spline interpolation)."""
        if rate <= 0:
            raise ProcessingError(f"resampling rate must be positive, got {rate:g} Hz")
        time = self.time[0] + np.arange(int(np.floor(self.duration * rate + 1e-9)) + 1) / rate
        return Motion(self.coordinate_values(time), {**self.attrs, "sampling_rate": float(rate)})

    def raised(self, height: float) -> "Motion":
        """The motion moved up by ``height`` m (negative: down), e.g. to put the stance feet on the floor."""
        coords = self.coordinates.copy()
        coords.loc[{"coordinate": "pelvis_ty"}] = coords.sel(coordinate="pelvis_ty") + height
        return Motion(coords, {**self.attrs, "height_offset_m": self.attrs.get("height_offset_m", 0.0) + height})

    def window(self, start: float, stop: float) -> "Motion":
        """The part of the motion between ``start`` and ``stop`` s."""
        return Motion(self.coordinates.sel(time=slice(start, stop)), dict(self.attrs))

    def to_dataset(self, model: mujoco.MjModel) -> xr.Dataset:
        """The motion with MyoLegs states as an xarray Dataset (for saving and inspection)."""
        qpos, qvel, qacc = self.states(model)
        return xr.Dataset(
            {"coordinates": self.coordinates, "qpos": (("time", "qpos_index"), qpos),
             "qvel": (("time", "dof"), qvel), "qacc": (("time", "dof"), qacc)},
            attrs={k: v if isinstance(v, (str, int, float)) else json.dumps(v) for k, v in self.attrs.items()},
        )


def pelvis_in_root(model: mujoco.MjModel) -> Rotation:
    """Orientation of the pelvis body in the free root body, read from the compiled model (not exactly 90 deg)."""
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0
    mujoco.mj_kinematics(model, data)
    root_body = int(model.jnt_bodyid[model.joint(mdl.ROOT_JOINT).id])
    world_root = Rotation.from_matrix(data.xmat[root_body].reshape(3, 3))
    world_pelvis = Rotation.from_matrix(data.body("pelvis").xmat.reshape(3, 3))
    return world_root.inv() * world_pelvis


def pelvis_offset_in_root(model: mujoco.MjModel) -> np.ndarray:
    """Position of the pelvis origin in the root body frame (m)."""
    data = mujoco.MjData(model)
    data.qpos[:] = model.qpos0
    mujoco.mj_kinematics(model, data)
    root_body = int(model.jnt_bodyid[model.joint(mdl.ROOT_JOINT).id])
    offset = data.body("pelvis").xpos - data.xpos[root_body]
    return data.xmat[root_body].reshape(3, 3).T @ offset


def from_opensim(source: str | os.PathLike = "moco-walk", *, filter_hz: float | None = 6.0, data_dir=None,
                 knee_convention: str = "auto") -> Motion:
    """Read OpenSim coordinates (``.sto``/``.mot``, a ``.mat`` struct of one; path or registered dataset)
    as a :class:`Motion`.

    Only the coordinates MyoLegs has are kept (:data:`MOTION_COORDINATES`: pelvis and legs; lumbar, arm,
    ``*_beta`` and marker columns are dropped); full state paths (``/jointset/hip_r/hip_flexion_r/value``)
    are shortened. Rotations given in degrees (``inDegrees=yes``) are converted to rad; see
    :func:`_in_degrees` for headers that do not say or that contradict the values. Knee angles follow
    :func:`_knee_sign` (``knee_convention``: ``auto``, ``rajagopal`` or ``gait2392``). Rotations beyond
    ±4π rad and translations beyond ±1e4 m are refused (:data:`kinesis_neuro.io.common.LIMITS`). Times
    rounded unevenly (steps varying by more than 1 %) are first resampled onto an even grid (a warned
    repair). The coordinates are low-passed at ``filter_hz`` (zero phase, odd padding over three cut-off
    periods, so velocities and accelerations have no edge transients); ``None`` keeps them unfiltered.
    """
    from kinesis_neuro import datasets, emg

    card_units = ""  # what a registered file's card says of its rotations where the file's header does not
    if datasets.is_dataset_spec(source):
        name, _, filename = str(source).partition("/")
        files = datasets.get(name).files
        filename = filename or next(f for f, e in files.items() if e.meta["kind"] == "coordinates")
        source = f"{name}/{filename}"
        card_units = str(files[filename].meta.get("units", "")) if filename in files else ""
    coords = emg.read(source, data_dir=data_dir)
    if coords.attrs.get("in_degrees") is None and card_units.startswith(("deg", "rad")):
        coords.attrs["in_degrees"] = card_units.startswith("deg")
    if "time" not in coords.dims:
        raise DataFormatError(f"{coords.attrs['source']}: holds {coords.dims} tables, not coordinates over time")
    coords = coords.sel(channel=[c for c in coords.channel.values if str(c) in MOTION_COORDINATES])
    translational = [c for c in coords.channel.values if str(c).endswith(("_tx", "_ty", "_tz"))]
    rotational = [c for c in coords.channel.values if c not in translational]
    in_degrees = _in_degrees(coords.sel(channel=rotational))
    if in_degrees:
        coords.loc[:, rotational] = np.deg2rad(coords.sel(channel=rotational))
    check_values(coords.sel(channel=rotational), "angle",
                 hint="" if in_degrees else "; if the angles are in degrees, the header should say inDegrees=yes")
    check_values(coords.sel(channel=translational), "translation")
    coords, knee = _knee_sign(coords, knee_convention)
    coords = _even_times(coords)
    if filter_hz:
        coords = emg.lowpass(coords, filter_hz)
    coords = coords.rename(channel="coordinate")
    coords.attrs["units"] = "rad (rotations), m (pelvis_tx/ty/tz)"
    attrs = {"source": coords.attrs["source"], "sampling_rate": coords.attrs["sampling_rate"],
             "filter_hz": filter_hz or 0.0, "frame": "OpenSim ground: x forward, y up, z right",
             "knee_convention": knee}
    return Motion(coords, attrs)


MOTION_COORDINATES = (*PELVIS_ANGLES, *PELVIS_TRANSLATION, *mdl.LEG_JOINTS)
KNEES = ("knee_angle_r", "knee_angle_l")
EVEN_STEPS = 0.01  # time steps varying by more than this fraction of the median are uneven


def _knee_sign(coords: xr.DataArray, convention: str) -> tuple[xr.DataArray, str]:
    """Knee angles in MyoLegs' (= Rajagopal's) convention, flexion positive (0 to 120 deg). gait2392 models
    (hamner-run, falisse2019) count flexion negative: their knee angles are negated. ``auto`` takes a file
    whose knee angles are negative at the median (a knee mostly flexed the other way) as gait2392.
    Returns the coordinates and the convention found (for the Motion's attrs)."""
    if convention not in ("auto", "rajagopal", "gait2392"):
        raise ProcessingError(f"knee_convention must be 'auto', 'rajagopal' or 'gait2392', got {convention!r}")
    knees = [k for k in KNEES if k in coords.channel.values]
    if convention == "auto":
        convention = "gait2392" if knees and float(np.median(coords.sel(channel=knees).values)) < 0 else "rajagopal"
    if convention == "rajagopal":
        return coords, "rajagopal: knee flexion positive, as MyoLegs"
    coords.loc[:, knees] = -coords.sel(channel=knees)
    return coords, "gait2392: knee flexion negative in the file, negated to MyoLegs' flexion positive"


def _even_times(coords: xr.DataArray) -> xr.DataArray:
    """``coords`` on an even time grid with as many samples (cubic spline), with a warning, when the
    file's steps vary by more than :data:`EVEN_STEPS` (times rounded to 1 ms at 60 Hz: 16/17 ms)."""
    time = coords.time.values
    steps = np.diff(time)
    median = float(np.median(steps))
    if np.max(np.abs(steps - median)) <= EVEN_STEPS * median:
        return coords
    even = np.linspace(time[0], time[-1], time.size)
    warnings.warn(f"{coords.attrs['source']}: time steps vary from {steps.min():g} to {steps.max():g} s; the "
                  f"coordinates are resampled onto {time.size} even steps of {even[1] - even[0]:g} s", stacklevel=3)
    return xr.DataArray(CubicSpline(time, coords.values, axis=0)(even), dims=coords.dims,
                        coords={"time": ("time", even, coords.time.attrs), "channel": coords.channel.values},
                        name=coords.name, attrs={**coords.attrs, "sampling_rate": 1.0 / (even[1] - even[0])})


def _in_degrees(rotations: xr.DataArray) -> bool:
    """Whether the rotations ``(time, channel)`` of an OpenSim file are in degrees.

    As the header's ``inDegrees`` says (attr ``in_degrees``), unless all of them lie within ±2π
    while it says degrees: radians then, an error. Repair: a header that does not say (SIMM and
    OpenSim 2 ``.mot`` files) means degrees when a rotation exceeds 2π, with a warning naming it.
    """
    stated = rotations.attrs.get("in_degrees")
    if rotations.size == 0:
        return bool(stated)
    magnitude = np.abs(rotations.values)
    t, c = np.unravel_index(int(np.argmax(magnitude)), magnitude.shape)
    largest = (f"the largest, {rotations.channel.values[c]}, reaches {rotations.values[t, c]:g} "
               f"at t={rotations.time.values[t]:g} s")
    source = rotations.attrs.get("source", "motion")
    if stated is None and magnitude[t, c] > 2 * np.pi:
        warnings.warn(f"{source}: the header does not say inDegrees; the rotations are read as degrees since "
                      f"{largest}", stacklevel=3)
        return True
    if stated and magnitude[t, c] <= 2 * np.pi:
        raise DataFormatError(f"{source}: the header says inDegrees=yes but every rotation lies within ±2π "
                              f"({largest}); if they are in radians, the header should say inDegrees=no")
    return bool(stated)


LATERAL_MIRRORED = ("pelvis_list", "pelvis_rotation", "lumbar_bending", "lumbar_rotation")  # roll, yaw: sign flips
CARRIED = ("pelvis_tx", "pelvis_tz")  # root translation carried forward from one segment to the next


def _swap_sides(name: str) -> str:
    for a, b in (("_r", "_l"), ("_l", "_r")):
        if name.endswith(a):
            return name[: -len(a)] + b
    return name


def mirror(coordinates: xr.DataArray) -> xr.DataArray:
    """Left-right mirror image: joint angles swapped between legs, roll, yaw and lateral translation negated."""
    names = [str(c) for c in coordinates.coordinate.values]
    out = coordinates.sel(coordinate=[_swap_sides(n) for n in names]).assign_coords(coordinate=names).copy()
    for name in (n for n in (*LATERAL_MIRRORED, "pelvis_tz") if n in names):
        out.loc[{"coordinate": name}] = -coordinates.sel(coordinate=name)
    return out


def join(segments: list[xr.DataArray], blend: float = 0.1) -> xr.DataArray:
    """Concatenate coordinate segments into one motion.

    Each segment's root translation (``pelvis_tx``, ``pelvis_tz``) continues from where the
    previous one ended. At every seam the jumps in value and in velocity of the other coordinates
    are removed by cubic Hermite corrections spread over ``blend`` s on both sides, so positions
    and velocities stay continuous (no acceleration spikes). Segments share one sampling
    interval; time starts at 0.
    """
    names = [str(c) for c in segments[0].coordinate.values]
    carried = [names.index(c) for c in CARRIED]
    dt = float(np.median(np.diff(segments[0].time.values)))
    parts = [segments[0].transpose("time", "coordinate").values.copy()]
    for segment in segments[1:]:
        prev, part = parts[-1], segment.transpose("time", "coordinate").values.copy()
        part[:, carried] += prev[-1, carried] - part[0, carried]
        jump = part[0] - prev[-1]
        slope_jump = (part[1] - part[0] - (prev[-1] - prev[-2])) / dt
        jump[carried] = 0.0  # the carried root translation is continuous already; its velocity may jump
        n = max(2, min(int(round(blend / 2 / dt)), len(prev) - 1, len(part) - 1))
        span = n * dt
        u = np.arange(n + 1) / n  # 0 far from the seam ... 1 at the seam (tail of prev)
        tail = (3 * u**2 - 2 * u**3)[:, None] * (jump / 2) + (u**3 - u**2)[:, None] * (slope_jump / 2) * span
        prev[-(n + 1):] += tail
        v = u  # 0 at the seam ... 1 far from it (head of part)
        head = (2 * v**3 - 3 * v**2 + 1)[:, None] * (-jump / 2) + (v**3 - 2 * v**2 + v)[:, None] * (-slope_jump / 2) * span
        part[: n + 1] += head
        parts.append(part[1:])  # its first sample now equals the previous segment's last
    values = np.concatenate(parts)
    return xr.DataArray(values, dims=("time", "coordinate"),
                        coords={"time": np.arange(len(values)) * dt, "coordinate": names})


def mirrored_stride(motion: Motion, start: float, stop: float, blend: float = 0.1) -> Motion:
    """One symmetric stride from the half cycle ``start``-``stop`` s (e.g. left to right heel
    strike) followed by its left-right mirror image, joined with :func:`join`."""
    half = motion.window(start, stop).coordinates
    return Motion(join([half, mirror(half)], blend),
                  {**motion.attrs, "construction": f"half cycle {start:g}-{stop:g} s + its mirror image"})


def periodic(stride: Motion, n_strides: int, blend: float = 0.1) -> Motion:
    """``n_strides`` repetitions of ``stride``, root carried forward, seams smoothed over ``blend`` s."""
    coords = join([stride.coordinates] * n_strides, blend)
    return Motion(coords, {**stride.attrs, "periodic_strides": n_strides, "stride_period_s": stride.duration,
                           "seam_blend_s": blend})


def coordinates_from_qpos(model: mujoco.MjModel, qpos: np.ndarray, time, attrs: dict | None = None) -> Motion:
    """The :class:`Motion` whose :meth:`Motion.qpos` is ``qpos`` ((T, nq) MyoLegs states at ``time``, s):
    pelvis Euler angles and translation back in OpenSim's ground frame, leg joints by name (the coupled knee
    dofs follow from the knee angles)."""
    qpos = np.atleast_2d(np.asarray(qpos, dtype=float))
    world_root = Rotation.from_quat(qpos[:, 3:7], scalar_first=True)
    pelvis = Rotation.from_matrix(OPENSIM_TO_MUJOCO).inv() * world_root * pelvis_in_root(model)
    origin = (qpos[:, 0:3] + world_root.apply(pelvis_offset_in_root(model))) @ OPENSIM_TO_MUJOCO
    joints = mdl.joint_table(model)
    values = np.column_stack([pelvis.as_euler("ZXY"), origin,
                              qpos[:, joints.loc[list(mdl.LEG_JOINTS), "qpos_index"].to_numpy()]])
    coords = xr.DataArray(values, dims=("time", "coordinate"),
                          coords={"time": np.asarray(time, dtype=float), "coordinate": list(MOTION_COORDINATES)},
                          attrs={"units": "rad (rotations), m (pelvis_tx/ty/tz)"})
    return Motion(coords, {"frame": "OpenSim ground: x forward, y up, z right", **(attrs or {})})


def compare(motion: Motion, reference: Motion) -> pd.DataFrame:
    """Agreement of ``motion`` with ``reference`` over their common time span (at ``motion``'s samples),
    one row per coordinate both hold: ``rmse``, ``bias`` (mean of motion - reference) in deg (m for the
    pelvis translations), Pearson ``r`` and the ``unit``."""
    time = motion.time[(motion.time >= reference.time[0]) & (motion.time <= reference.time[-1])]
    if time.size < 3:
        raise ProcessingError(f"the motions share fewer than 3 samples ({motion.time[0]:g}-{motion.time[-1]:g} s "
                              f"vs {reference.time[0]:g}-{reference.time[-1]:g} s)")
    ours, theirs = motion.coordinate_values(time), reference.coordinate_values(time)
    rows = []
    for name in (str(c) for c in ours.coordinate.values if c in theirs.coordinate.values):
        a, b = ours.sel(coordinate=name).values, theirs.sel(coordinate=name).values
        scale, unit = (1.0, "m") if name in PELVIS_TRANSLATION else (np.rad2deg(1.0), "deg")
        r = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else float("nan")
        rows.append({"coordinate": name, "rmse": scale * float(np.sqrt(np.mean((a - b) ** 2))),
                     "bias": scale * float(np.mean(a - b)), "r": r, "unit": unit})
    return pd.DataFrame(rows).set_index("coordinate")
