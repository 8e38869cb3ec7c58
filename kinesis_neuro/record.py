"""A :class:`Recording`: one simulated movement of MyoLegs, held as an ``xarray.Dataset`` and saved as NetCDF.

Layout (``time`` in s, uniformly sampled; ``muscle`` and ``joint`` are MuJoCo actuator and joint
names; ``side`` is ``right``, ``left``; ``axis`` is ``x``, ``y``, ``z`` of the MuJoCo world frame, z up):

======================  ===============  =====  ==================================================
variable                dims             units  meaning
======================  ===============  =====  ==================================================
excitation              time, muscle     1      neural excitation (control input), 0-1
activation              time, muscle     1      muscle activation, 0-1 (the one required variable)
force                   time, muscle     N      muscle-tendon force, **positive = pulling**; MuJoCo's
                                                ``data.actuator_force`` of a muscle is <= 0, so store
                                                ``-data.actuator_force``
length                  time, muscle     m      muscle-tendon length (``data.actuator_length``)
velocity                time, muscle     m/s    muscle-tendon velocity, positive = lengthening
angle                   time, joint      rad    hinge joint angle
angular_velocity        time, joint      rad/s  joint angular velocity
torque                  time, joint      N m    torque about the joint axis, positive = towards a
                                                larger angle
contact                 time, side       1      foot-floor contact, int8 1/0 (NetCDF has no bool)
root_residual_force     time, axis       N      residual force on the root (pelvis free joint)
root_residual_moment    time, axis       N m    residual moment on the root
heel_strike_time        heel_strike      s      heel strikes; coordinate ``heel_strike_side``
toe_off_time            toe_off          s      toe-offs; coordinate ``toe_off_side``
======================  ===============  =====  ==================================================

Gait events are two 1-D variables, each along its own dimension with a string side coordinate:
NetCDF has no table type, and separate dimensions store any number of events per kind and side
without padding. Global attributes hold the provenance: ``model``, ``motion``, ``controller``,
``seed`` (-1: none), ``kinesis_neuro_version``, ``mujoco_version``, ``myo_sim_version``,
``created`` (ISO 8601, UTC) and ``sampling_rate`` (Hz).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import gait
from kinesis_neuro.errors import DataFormatError

FORMAT = "kinesis-neuro recording"
FORMAT_VERSION = 1
SIDES = ("right", "left")
AXES = ("x", "y", "z")
EVENT_KINDS = ("heel_strike", "toe_off")

# variable -> (dimension after time, units, long_name)
VARIABLES = {
    "excitation": ("muscle", "1", "muscle excitation (neural control input, 0-1)"),
    "activation": ("muscle", "1", "muscle activation (0-1)"),
    "force": ("muscle", "N", "muscle-tendon force, positive = pulling (MuJoCo: -actuator_force)"),
    "length": ("muscle", "m", "muscle-tendon length (MuJoCo actuator_length)"),
    "velocity": ("muscle", "m/s", "muscle-tendon velocity, positive = lengthening (MuJoCo actuator_velocity)"),
    "angle": ("joint", "rad", "joint angle"),
    "angular_velocity": ("joint", "rad/s", "joint angular velocity"),
    "torque": ("joint", "N m", "torque about the joint axis, positive = towards a larger angle"),
    "contact": ("side", "1", "foot-floor contact (1 = in contact)"),
    "root_residual_force": ("axis", "N", "residual force on the root (pelvis free joint), world frame"),
    "root_residual_moment": ("axis", "N m", "residual moment on the root (pelvis free joint), world frame"),
}
REQUIRED_ATTRS = ("model", "motion", "controller", "seed", "kinesis_neuro_version", "mujoco_version",
                  "myo_sim_version", "created", "sampling_rate")
UNIT_ALIASES = {"degree": "deg", "degrees": "deg", "deg s-1": "deg/s", "rad s-1": "rad/s", "m s-1": "m/s",
                "mm s-1": "mm/s", "N.m": "N m", "N*m": "N m", "Nm": "N m", "N.mm": "N mm", "Nmm": "N mm",
                "percent": "%", "": "1", "dimensionless": "1"}
# (given units, stored units) -> factor
UNIT_FACTORS = {("deg", "rad"): np.pi / 180, ("deg/s", "rad/s"): np.pi / 180, ("mm", "m"): 1e-3, ("cm", "m"): 1e-2,
                ("mm/s", "m/s"): 1e-3, ("cm/s", "m/s"): 1e-2, ("kN", "N"): 1e3, ("N mm", "N m"): 1e-3,
                ("%", "1"): 1e-2, ("ms", "s"): 1e-3}


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _to_units(name: str, values: np.ndarray, given: str, stored: str) -> np.ndarray:
    """``values`` in ``given`` units converted to the ``stored`` units of variable ``name``."""
    unit = UNIT_ALIASES.get(given.strip(), given.strip())
    if unit == stored:
        return values
    if (unit, stored) not in UNIT_FACTORS:
        known = sorted(g for g, s in UNIT_FACTORS if s == stored)
        raise DataFormatError(f"{name}: cannot convert units {given!r} to {stored!r}"
                              + (f" (convertible: {', '.join(known)})" if known else ""))
    return values * UNIT_FACTORS[unit, stored]


def _side_of(name: str) -> str:
    return {"r": "right", "l": "left"}.get(name.rsplit("_", 1)[-1], "none") if "_" in name else "none"


def _names(kind: str, names) -> list[str]:
    names = [str(n) for n in names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataFormatError(f"duplicate {kind} names {dup}")
    return names


def _attr_value(key: str, value):
    """``value`` as a NetCDF attribute (text, number, or 1-D numbers)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(v, (int, float, np.number)) for v in value):
        return np.asarray(value)
    raise DataFormatError(f"attrs[{key!r}]: NetCDF attributes hold text or numbers, not {type(value).__name__}; "
                          f"store it as JSON text")


def check_recording_path(path: str | os.PathLike) -> Path:
    """``path`` if it can name a recording file (NetCDF, ``.nc``); ``DataFormatError`` otherwise."""
    path = Path(path)
    if path.suffix != ".nc":
        raise DataFormatError(f"{path}: a recording is saved as NetCDF; give a path ending in .nc")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder; give a file name ending in .nc")
    return path


def _check_values(data: xr.Dataset, where: str) -> None:
    """Refuse samples no simulation produces: a time axis that is not finite and increasing, infinite values,
    NaN or values outside 0-1 in activations/excitations (other variables may hold NaN gaps), event times
    that are NaN or outside the recording."""
    time = np.asarray(data["time"].values, dtype=float)
    if time.size < 2 or not np.all(np.isfinite(time)) or np.any(np.diff(time) <= 0):
        raise DataFormatError(f"{where}: variable 'time' must hold at least 2 finite, strictly increasing values")
    for name in [v for v in VARIABLES if v in data]:
        values = np.asarray(data[name].values, dtype=float)
        bad = ~np.isfinite(values) if name in ("excitation", "activation") else np.isinf(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataFormatError(f"{where}: variable {name!r} holds {int(bad.sum())} NaN/infinite values (first at "
                                  f"t={time[row]:g} s, {data[name].dims[1]} {data[name][data[name].dims[1]].values[col]})")
        if name in ("excitation", "activation") and values.size and (values.min() < 0 or values.max() > 1):
            raise DataFormatError(f"{where}: variable {name!r} must lie in 0-1, holds {values.min():g} to "
                                  f"{values.max():g}")
    for kind in EVENT_KINDS:
        times = np.asarray(data[f"{kind}_time"].values, dtype=float)
        if times.size and (not np.all(np.isfinite(times)) or times.min() < time[0] - 1e-9
                           or times.max() > time[-1] + 1e-9):
            raise DataFormatError(f"{where}: variable '{kind}_time' must hold finite times within the recording "
                                  f"({time[0]:g}-{time[-1]:g} s)")


class Recording:
    """One simulated movement: muscle, joint, contact and residual time series plus gait events.

    ``data`` is the ``xarray.Dataset`` described in :mod:`kinesis_neuro.record`; build one with
    :meth:`from_arrays` or :meth:`load`.
    """

    def __init__(self, data: xr.Dataset, *, source: str | None = None):
        """Wrap ``data`` after checking it is a recording (``DataFormatError`` naming ``source`` if not)."""
        where = source or "recording"
        if data.attrs.get("kinesis_neuro_format") != FORMAT:
            raise DataFormatError(
                f"{where}: not a kinesis-neuro recording (global attribute kinesis_neuro_format = {FORMAT!r} "
                f"missing); it holds variables {sorted(map(str, data.variables))}"
            )
        if int(data.attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise DataFormatError(f"{where}: recording format version {data.attrs['format_version']} is newer than "
                                  f"this kinesis-neuro reads ({FORMAT_VERSION}); update kinesis-neuro")
        missing = [a for a in REQUIRED_ATTRS if a not in data.attrs]
        missing += [v for v in ("time", "muscle", "activation", "muscle_side") if v not in data.variables]
        missing += [v for k in EVENT_KINDS for v in (f"{k}_time", f"{k}_side") if v not in data.variables]
        if missing:
            raise DataFormatError(f"{where}: recording lacks {missing}")
        for name, (dim, units, _) in VARIABLES.items():
            if name not in data:
                continue
            var = data[name]
            if var.dims != ("time", dim):
                raise DataFormatError(f"{where}: variable {name!r} has dims {var.dims}, expected ('time', {dim!r})")
            if var.attrs.get("units") != units:
                raise DataFormatError(f"{where}: variable {name!r} has units {var.attrs.get('units')!r}, "
                                      f"expected {units!r}")
        if "contact" in data and not np.issubdtype(data["contact"].dtype, np.integer):
            raise DataFormatError(f"{where}: contact must be stored as int8 0/1 (NetCDF has no bool), "
                                  f"got {data['contact'].dtype}")
        _check_values(data, where)
        self.data = data
        self.source = source or f"recording ({data.attrs['motion']}, {data.attrs['controller']})"

    @classmethod
    def from_arrays(
        cls,
        time,
        muscles: Sequence[str],
        joints: Sequence[str] = (),
        *,
        activation,
        excitation=None,
        force=None,
        length=None,
        velocity=None,
        angle=None,
        angular_velocity=None,
        torque=None,
        contact=None,
        root_residual_force=None,
        root_residual_moment=None,
        events: pd.DataFrame | None = None,
        units: Mapping[str, str] | None = None,
        attrs: Mapping,
    ) -> Recording:
        """Build a recording from ``(n_time, n_columns)`` arrays.

        ``time`` (s) must be uniformly sampled. Muscle variables are ``time x muscles``, joint
        variables ``time x joints``, ``contact`` ``time x (right, left)`` (bool or 0/1), root
        residuals ``time x (x, y, z)``. Arrays are in the units of the module table unless
        ``units`` says otherwise (``{"angle": "deg"}``, ``{"activation": "%"}``...), then they are
        converted. ``events`` is a table (``time``, ``event``, ``side``) as :mod:`kinesis_neuro.gait`
        makes. ``attrs`` needs ``motion`` and ``controller``; ``seed`` (int) and other text or
        numeric attributes are kept; versions, ``model``, ``created`` and ``sampling_rate`` are added.
        """
        units = dict(units or {})
        unknown = sorted(set(units) - set(VARIABLES) - {"time"})
        if unknown:
            raise DataFormatError(f"units given for unknown variables {unknown}; "
                                  f"variables: time, {', '.join(VARIABLES)}")
        time = _to_units("time", np.asarray(time, dtype=float), units.get("time", "s"), "s")
        if time.ndim != 1 or time.size < 2:
            raise DataFormatError(f"time must be 1-D with at least 2 samples, got shape {time.shape}")
        steps = np.diff(time)
        if not np.all(np.isfinite(time)) or np.any(steps <= 0):
            raise DataFormatError("time must be finite and strictly increasing")
        dt = float(np.median(steps))
        if np.abs(steps - dt).max() > 1e-4 * dt:
            raise DataFormatError(f"time must be uniformly sampled; steps range {steps.min():g}-{steps.max():g} s")
        rate = 1.0 / dt
        rate = float(round(rate)) if abs(rate - round(rate)) < 1e-6 * rate else rate
        muscles, joints = _names("muscle", muscles), _names("joint", joints)
        if not muscles:
            raise DataFormatError("a recording needs at least one muscle")
        columns = {"muscle": muscles, "joint": joints, "side": list(SIDES), "axis": list(AXES)}
        given = dict(excitation=excitation, activation=activation, force=force, length=length, velocity=velocity,
                     angle=angle, angular_velocity=angular_velocity, torque=torque, contact=contact,
                     root_residual_force=root_residual_force, root_residual_moment=root_residual_moment)
        variables = {}
        for name, values in given.items():
            if values is None:
                continue
            dim, stored, long_name = VARIABLES[name]
            values = np.asarray(values, dtype=float)
            expected = (time.size, len(columns[dim]))
            if values.shape != expected:
                hint = " (transposed? arrays are time x columns)" if values.shape == expected[::-1] else ""
                raise DataFormatError(f"{name}: expected shape {expected} (time x {dim}: {time.size} samples x "
                                      f"{len(columns[dim])} {dim}s), got {values.shape}{hint}")
            values = _to_units(name, values, units.get(name, stored), stored)
            if name in ("excitation", "activation") and (np.nanmin(values) < 0 or np.nanmax(values) > 1):
                raise DataFormatError(f"{name} must lie in 0-1, got {np.nanmin(values):g} to {np.nanmax(values):g}"
                                      f" (pass units={{{name!r}: '%'}} for percent)")
            if name == "force" and np.nanmin(values) < -1e-6:
                raise DataFormatError(f"force must be positive when pulling, got {np.nanmin(values):g} N; MuJoCo's "
                                      f"actuator_force is negative for muscles: pass -data.actuator_force")
            if name == "contact":
                if not np.all(np.isin(values, (0.0, 1.0))):
                    raise DataFormatError("contact must hold only 0/1 (or False/True)")
                values = values.astype(np.int8)
            var_attrs = {"units": stored, "long_name": long_name}
            if name == "contact":
                var_attrs.update(flag_values=np.array([0, 1], np.int8), flag_meanings="no_contact contact")
            variables[name] = (("time", dim), values, var_attrs)
        table = gait.events_from_table(events if events is not None else pd.DataFrame(columns=gait.EVENT_COLUMNS))
        bad = sorted(set(table["side"]) - set(SIDES))
        if bad:
            raise DataFormatError(f"events: sides must be 'right' or 'left', got {bad}")
        coords = {
            "time": ("time", time, {"units": "s", "long_name": "time"}),
            "muscle": ("muscle", muscles, {"long_name": "muscle (MuJoCo actuator name)"}),
            "muscle_side": ("muscle", [_side_of(m) for m in muscles], {"long_name": "side of the muscle"}),
            "joint": ("joint", joints, {"long_name": "joint (MuJoCo joint name)"}),
            "side": ("side", list(SIDES), {"long_name": "body side"}),
            "axis": ("axis", list(AXES), {"long_name": "axis of the MuJoCo world frame (z up)"}),
        }
        for kind in EVENT_KINDS:
            rows = table[table["event"] == kind]
            label = kind.replace("_", " ")
            variables[f"{kind}_time"] = (kind, rows["time"].to_numpy(float),
                                         {"units": "s", "long_name": f"{label} time"})
            coords[f"{kind}_side"] = (kind, rows["side"].to_numpy(str), {"long_name": f"side of the {label}"})
        attrs = dict(attrs)
        for key in ("motion", "controller"):
            if not isinstance(attrs.get(key), str) or not attrs[key]:
                raise DataFormatError(f"attrs needs {key!r} (text naming the {key}), got {attrs.get(key)!r}")
        if "sampling_rate" in attrs and not np.isclose(float(attrs["sampling_rate"]), rate, rtol=1e-6):
            raise DataFormatError(f"attrs sampling_rate {attrs['sampling_rate']} Hz does not match the time "
                                  f"axis ({rate:g} Hz)")
        seed = attrs.get("seed")
        attrs["seed"] = -1 if seed is None else int(seed)
        attrs.setdefault("model", f"MyoLegs, myo-sim {_version('myo-sim')}")
        attrs.update(
            kinesis_neuro_format=FORMAT, format_version=FORMAT_VERSION, sampling_rate=rate, sampling_rate_units="Hz",
            kinesis_neuro_version=_version("kinesis-neuro"), mujoco_version=_version("mujoco"),
            myo_sim_version=_version("myo-sim"), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        attrs = {k: _attr_value(k, v) for k, v in attrs.items()}
        return cls(xr.Dataset(variables, coords=coords, attrs=attrs))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the recording as NetCDF-4 (h5netcdf) to a ``.nc`` path, atomically; returns the path."""
        from kinesis_neuro.storage import write_netcdf

        return write_netcdf(self.data, check_recording_path(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recording:
        """Read a recording written by :meth:`save` (``DataFormatError`` for anything else)."""
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(f"{path}: no such file" + (" (it exists, but is not a regular file)"
                                                             if path.exists() else ""))
        try:
            data = xr.load_dataset(path, engine="h5netcdf", decode_timedelta=False)
        except Exception as err:
            raise DataFormatError(f"{path}: cannot read as NetCDF ({type(err).__name__}: {err})") from err
        return cls(data, source=str(path))

    def muscle_activation(self, side: str | None = None) -> xr.DataArray:
        """Activation (``time x muscle``, units 1) of all muscles or of one ``side`` (``right``/``left``)."""
        da = self.data["activation"]
        if side is not None:
            side = gait.check_side(side)
            da = da.isel(muscle=np.flatnonzero(da["muscle_side"].values == side))
        da = da.copy()
        da.attrs.update({k: self.data.attrs[k] for k in ("model", "motion", "controller", "seed", "sampling_rate")},
                        sampling_rate_units="Hz", side=side or "both", source=self.source)
        return da

    def events(self) -> pd.DataFrame:
        """Gait events as a table (``time`` s, ``event``, ``side``) for :func:`kinesis_neuro.gait.segment_cycles`."""
        tables = [pd.DataFrame({"time": self.data[f"{k}_time"].values.astype(float), "event": k,
                                "side": self.data[f"{k}_side"].values.astype(str)}) for k in EVENT_KINDS]
        return gait.events_from_table(pd.concat(tables, ignore_index=True))

    def within_one_episode(self, cycles: xr.DataArray) -> xr.DataArray:
        """``cycles`` (from :func:`kinesis_neuro.gait.segment_cycles` on this recording) without those that
        start in one episode and end in another (recordings of several rollout episodes)."""
        if "episode" not in self.data:
            return cycles
        episode = self.data.episode
        same = (episode.sel(time=cycles.cycle_start.values, method="nearest").values
                == episode.sel(time=cycles.cycle_end.values, method="nearest").values)
        return cycles.isel(cycle=np.flatnonzero(same))

    def summary(self) -> str:
        """One line: motion, controller, duration, sampling, sizes, variables, events."""
        a, t = self.data.attrs, self.data["time"].values
        present = [v for v in VARIABLES if v in self.data]
        counts = {k: self.data.sizes[k] for k in EVENT_KINDS}
        return (f"{a['motion']} by {a['controller']} (seed {a['seed']}, {a['model']}): {t[-1] - t[0]:.3f} s at "
                f"{float(a['sampling_rate']):g} Hz, {self.data.sizes['muscle']} muscles, "
                f"{self.data.sizes['joint']} joints; {', '.join(present)}; "
                f"{counts['heel_strike']} heel strikes, {counts['toe_off']} toe-offs")

    def __repr__(self) -> str:
        return f"<Recording: {self.summary()}>"
