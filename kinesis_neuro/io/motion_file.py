"""OpenSim coordinates files written by ``kinesis-neuro motion import``, and their provenance.

The file is an OpenSim ``.mot`` (storage version 1): a header with ``inDegrees=no``, a few provenance
lines (``source=``, ``method=``, ``residual_rms_m=``, ``scale=``, ``lab_to_ground=``, ``floor_shift_m=``,
``provenance=``), ``endheader``, then ``time`` and the 20 MyoLegs coordinates (pelvis tilt, list,
rotation and translation in OpenSim's ground frame, 14 leg joints; rad and m) at full precision, so
:func:`kinesis_neuro.motion.from_opensim` reads back exactly what was written. OpenSim ignores header lines
it does not know. The full provenance (every step's settings and measurements) goes to a JSON sidecar
beside it (``NAME.mot.json``). Both are written atomically (:mod:`kinesis_neuro.storage`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from kinesis_neuro.errors import DataFormatError

SIDECAR_SUFFIX = ".json"
HEADER_KEYS = ("source", "method", "residual_rms_m", "scale", "lab_to_ground", "floor_shift_m")


def sidecar_path(path: str | os.PathLike) -> Path:
    """The provenance JSON of a written motion file: ``NAME.mot`` -> ``NAME.mot.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def plain(value):
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists (for JSON)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _header_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(plain(value), allow_nan=True)
    return " ".join(str(text).split())  # one line


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else "nan"


def format_motion(motion, provenance: dict | None = None, *, sidecar: str | None = None) -> str:
    """The text of the coordinates file of ``motion`` (a :class:`~kinesis_neuro.motion.Motion`)."""
    from kinesis_neuro.motion import MOTION_COORDINATES

    coords = motion.coordinates.transpose("time", "coordinate")
    names = [str(c) for c in coords.coordinate.values]
    missing = [c for c in MOTION_COORDINATES if c not in names]
    if missing:
        raise DataFormatError(f"cannot write the motion: coordinates {missing} missing")
    values = np.column_stack([coords.time.values, coords.sel(coordinate=list(MOTION_COORDINATES)).values])
    if not np.all(np.isfinite(values)):
        raise DataFormatError("cannot write the motion: it holds NaN or infinite coordinates")
    provenance = provenance or {}
    lines = ["kinesis-neuro motion import", "version=1", f"nRows={len(values)}",
             f"nColumns={values.shape[1]}", "inDegrees=no"]
    lines += [f"{key}={_header_value(provenance[key])}" for key in HEADER_KEYS if provenance.get(key) is not None]
    if sidecar:
        lines.append(f"provenance={sidecar}")
    lines += ["endheader", "\t".join(["time", *MOTION_COORDINATES])]
    lines += ["\t".join(_number(v) for v in row) for row in values]
    return "\n".join(lines) + "\n"


def write_motion(motion, path: str | os.PathLike, provenance: dict | None = None) -> Path:
    """Write ``motion`` as an OpenSim coordinates file at ``path`` (``.mot`` or ``.sto``) and ``provenance``
    (JSON-able dict) beside it (:func:`sidecar_path`); both atomically. Returns ``path``."""
    from kinesis_neuro import storage

    path = Path(path)
    if path.suffix.lower() not in (".mot", ".sto"):
        raise DataFormatError(f"{path}: a coordinates file must end in .mot or .sto")
    side = sidecar_path(path)
    with storage.created_together(path, side):
        storage.write_json(plain(provenance or {}), side)
        storage.write_text(format_motion(motion, provenance, sidecar=side.name), path)
    return path


def read_provenance(path: str | os.PathLike) -> dict:
    """What ``motion import`` recorded about a motion file: its header's provenance lines (JSON values decoded),
    updated by the sidecar JSON when there is one; ``{}`` for other files (a dataset name, OpenSim's own IK)."""
    from kinesis_neuro import datasets

    if datasets.is_dataset_spec(path):
        return {}
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".mot", ".sto"):
        return {}
    out = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().strip()
        if first != "kinesis-neuro motion import":
            return {}
        for line in fh:
            if line.strip().lower() == "endheader":
                break
            key, sep, value = line.partition("=")
            if sep and key.strip() in (*HEADER_KEYS, "provenance"):
                try:
                    out[key.strip()] = json.loads(value)
                except json.JSONDecodeError:
                    out[key.strip()] = value.strip()
    named = Path(str(out.get("provenance", ""))).name  # a bare file name beside the motion, nothing else
    side = path.with_name(named) if named else sidecar_path(path)
    if side.is_file():
        try:
            out.update(json.loads(side.read_text(encoding="utf-8")))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise DataFormatError(f"{side}: the provenance of {path.name} is not readable JSON ({err})") from err
    return out


FORMATS = ("markers", "opensim", "mdm", "skeleton")
MARKER_SUFFIXES = (".trc", ".c3d")
OPENSIM_SUFFIXES = (".sto", ".mot", ".mat")
PICKLE_SUFFIXES = (".npy", ".pkl", ".pickle")


def detect_format(source: str | os.PathLike, *, data_dir=None) -> str:
    """The :data:`FORMATS` entry of a motion file: marker trajectories (``.trc``/``.c3d``), OpenSim
    coordinates (``.sto``/``.mot``/``.mat``), or a pickled NumPy motion told apart by its content (an MDM
    result dict: ``mdm``; a poselib SkeletonMotion: ``skeleton``)."""
    from kinesis_neuro.emg.read import source_path
    from kinesis_neuro.io.pickles import load_pickle

    path = source_path(source, data_dir)
    suffix = path.suffix.lower()
    if suffix in MARKER_SUFFIXES:
        return "markers"
    if suffix in OPENSIM_SUFFIXES:
        return "opensim"
    if suffix in PICKLE_SUFFIXES:
        obj = load_pickle(path)
        if isinstance(obj, dict) and {"motion", "lengths"} <= set(obj):
            return "mdm"
        if isinstance(obj, dict) and {"rotation", "skeleton_tree"} <= set(obj):
            return "skeleton"
        kind = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataFormatError(f"{path}: a pickle holding {kind}; expected an MDM result (motion, text, lengths) "
                              "or a poselib SkeletonMotion (rotation, root_translation, skeleton_tree)")
    raise DataFormatError(f"{path}: cannot tell the motion format from {suffix or 'no extension'!r}: markers "
                          f"{'/'.join(MARKER_SUFFIXES)}, OpenSim coordinates {'/'.join(OPENSIM_SUFFIXES)}, joint "
                          f"positions {'/'.join(PICKLE_SUFFIXES)}; or give --format ({', '.join(FORMATS)})")


def import_motion(source: str | os.PathLike, *, fmt: str | None = None, sample: int | None = None,
                  static: str | os.PathLike | None = None, floor: bool = True, data_dir=None, model=None):
    """Any supported motion -> MyoLegs coordinates ready to write, and its provenance.

    ``markers`` (``.trc``/``.c3d``): marker inverse kinematics (:func:`kinesis_neuro.ik.inverse_kinematics`,
    calibrated on ``static`` when given); ``opensim``: :func:`kinesis_neuro.motion.from_opensim` (Rajagopal
    and gait2392 IK); ``mdm`` (sample ``sample``, default 0) and ``skeleton``: joint-centre retargeting
    (:func:`kinesis_neuro.retarget.retarget`). Then every coordinate MyoLegs has is filled in (absent
    subtalar/mtp at 0), leg joints are clipped into MyoLegs' ranges and, with ``floor``, the feet are put on
    the floor (:func:`kinesis_neuro.retarget.place_on_floor`; retargeting always does), both made to hold
    for the motion as the commands read it back (:func:`kinesis_neuro.retarget.stabilise`). Returns
    ``(motion, provenance)``."""
    from kinesis_neuro import __version__, ik, retarget
    from kinesis_neuro import model as mdl
    from kinesis_neuro import motion as mo

    fmt = fmt or detect_format(source, data_dir=data_dir)
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown motion format {fmt!r}; one of {', '.join(FORMATS)}")
    if sample is not None and fmt != "mdm":
        raise DataFormatError(f"--sample picks one of the samples of an MDM file; {source} is read as {fmt}")
    if static is not None and fmt != "markers":
        raise DataFormatError(f"--static calibrates marker inverse kinematics; {source} is read as {fmt}")
    model = model or mdl.load_model()
    provenance = {"source": str(source), "format": fmt, "kinesis_neuro_version": __version__}
    if fmt == "markers":
        motion, residuals = ik.inverse_kinematics(source, subject=static, model=model, data_dir=data_dir)
        provenance.update(
            method="marker inverse kinematics (kinesis_neuro.ik)", static_trial=str(static) if static else None,
            residual_rms_m=residuals.attrs["rms_m"], residual_max_m=residuals.attrs["max_m"],
            residual_rms_per_marker_m={str(m): float(v) for m, v in zip(residuals.marker.values, residuals.rms.values)},
            residual_kind="marker", scale=motion.attrs["scale_factors"],
            **{k: motion.attrs[k] for k in ("lab_to_ground", "locked", "weakly_determined", "dropped_markers",
                                             "calibration", "interpolated_frames", "filter_hz")})
    elif fmt == "opensim":
        motion = mo.from_opensim(source, data_dir=data_dir)
        provenance.update(method="OpenSim coordinates (kinesis_neuro.motion.from_opensim)",
                          knee_convention=motion.attrs["knee_convention"], filter_hz=motion.attrs["filter_hz"])
    else:
        centres = (retarget.from_mdm(source, sample or 0, data_dir=data_dir) if fmt == "mdm"
                   else retarget.from_skeleton_motion(source, data_dir=data_dir))
        motion, residuals = retarget.retarget(centres, model=model)
        provenance.update({k: v for k, v in motion.attrs.items() if k not in ("source", "frame", "sampling_rate")})
        provenance.update(residual_kind="joint centre", residual_rms_per_point_m=motion.attrs["residual_rms_per_point_m"])
    if fmt != "mdm" and fmt != "skeleton":
        motion = retarget.complete_coordinates(motion)
        motion, clipped = retarget.clip_to_ranges(motion, model)
        provenance["clipped_to_range_deg"] = clipped
        if floor:
            motion, placed = retarget.place_on_floor(motion, model)
            provenance["floor"] = placed
        motion, provenance["stabilised"] = retarget.stabilise(motion, model, floor=floor)
    provenance["floor_shift_m"] = (provenance.get("floor") or {}).get("floor_shift_m")
    provenance.update(frames=int(motion.time.size), time_s=[float(motion.time[0]), float(motion.time[-1])],
                      sampling_rate=float(motion.attrs.get("sampling_rate") or 1.0 / np.median(np.diff(motion.time))))
    motion.attrs.update({k: v for k, v in provenance.items() if k in ("lab_to_ground", "method")})
    return motion, plain(provenance)
