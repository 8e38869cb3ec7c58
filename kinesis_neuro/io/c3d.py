"""C3D motion-capture files (read with ``ezc3d``): analog channels (EMG), markers, force plates, gait events.

Times are in seconds on the recording's own clock: sample 0 of the analogs lies at
``first_frame / point_rate`` (first frame counted from 0), the clock C3D events use too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError
from kinesis_neuro.io.common import check_values, emg_array, readable_file

C3D_EXTENSIONS = (".c3d",)
EVENT_COLUMNS = ["time", "event", "side"]

_HEADER_BYTES = 512
_PROCESSORS = {84: "<", 85: "<", 86: ">"}  # Intel, DEC (little-endian integers), MIPS/SGI
_PARAM_TYPES = (-1, 1, 2, 4)  # char, byte, int16, float32: bytes per element = abs(type)

_HEEL_STRIKE = {"heel_strike", "foot_strike", "heelstrike", "footstrike", "hs", "fs",
                "initial_contact", "ic", "foot_contact", "heel_contact"}
_TOE_OFF = {"toe_off", "foot_off", "toeoff", "footoff", "to", "fo", "final_contact"}
_SIDE_PREFIX = {"right": "right", "left": "left", "r": "right", "l": "left"}


def _fail(path: Path, what: str) -> DataFormatError:
    return DataFormatError(f"{path}: {what}")


def _check_structure(path: Path) -> int:
    """Check the 512-byte header and walk the parameter section before ezc3d parses it.

    ezc3d loops forever on some truncated or corrupt parameter sections, so those are
    refused here with a message saying what was expected. Returns the number of frames
    the header announces (ezc3d silently keeps only the frames a cut file still holds).
    """
    size = readable_file(path).stat().st_size
    with path.open("rb") as fh:
        head = fh.read(_HEADER_BYTES)
        if len(head) < _HEADER_BYTES:
            raise _fail(path, f"{size} bytes is too short for a C3D file (a C3D header alone is 512 bytes)")
        if head[1] != 0x50:
            raise _fail(path, f"not a C3D file (header byte 2 is 0x{head[1]:02x}, a C3D file has 0x50)")
        start = (head[0] - 1) * _HEADER_BYTES
        if head[0] < 2 or start + 4 > size:
            raise _fail(
                path,
                f"the header puts the parameter section at block {head[0]}, outside the "
                f"{size}-byte file (truncated or not a C3D file)",
            )
        fh.seek(start)
        sect = fh.read(4)
        n_blocks, processor = sect[2], sect[3]
        if processor not in _PROCESSORS:
            raise _fail(
                path, f"unknown processor type {processor} in the parameter section (expected 84, 85 or 86)"
            )
        order = _PROCESSORS[processor]
        # the parameters end where the header's block count says, or where the data start
        # (ezc3d ignores the block count, which some writers get wrong)
        declared = start + n_blocks * _HEADER_BYTES
        data_start = (int(np.frombuffer(head, order + "u2", 1, 16)[0]) - 1) * _HEADER_BYTES
        end = max(declared, data_start)
        if end > size:
            raise _fail(
                path,
                f"truncated: the parameter section should end at byte {end} (parameter blocks: {n_blocks}, "
                f"data start block: {data_start // _HEADER_BYTES + 1}) but the file has {size} bytes",
            )
        fh.seek(start)
        params = fh.read(end - start)
    names = _walk_parameters(path, params, order)
    n_analog, first, last = (int(v) for v in np.frombuffer(head, order + "u2", 3, 4))
    lacking = [p for p in ("ANALOG:SCALE", "ANALOG:OFFSET") if p not in names]
    if n_analog and any(n.startswith("ANALOG:") for n in names) and lacking:
        # ezc3d crashes the interpreter on such files
        raise _fail(path, f"the parameters {lacking} are missing; they are required to scale analog channels")
    return last - first + 1


def _walk_parameters(path: Path, sect: bytes, order: str) -> set[str]:
    """Follow the chain of groups/parameters; every entry and link must lie inside the section.

    Returns the parameter names as ``"GROUP:NAME"``.
    """
    end = len(sect)
    pos = 4
    groups: dict[int, str] = {}
    params: list[tuple[int, str]] = []
    for _ in range(end):  # each entry moves forward at least one byte
        if pos + 2 > end:
            raise _fail(path, "corrupt parameter section (the list of parameters runs past its end)")
        n_chars = abs(int(np.frombuffer(sect, np.int8, 1, pos)[0]))
        group_id = int(np.frombuffer(sect, np.int8, 1, pos + 1)[0])
        if n_chars == 0 or group_id == 0:
            break
        link = pos + 2 + n_chars
        if link + (4 if group_id > 0 else 3) > end:
            raise _fail(path, "corrupt parameter section (an entry is cut off at its end)")
        name = sect[pos + 2 : link].decode("latin-1")
        offset = int(np.frombuffer(sect, order + "i2", 1, link)[0])
        nxt = link + offset if offset else end  # offset 0 marks the last entry
        if offset and (nxt <= pos or nxt > end):
            raise _fail(path, "corrupt parameter section (a link points outside it)")
        if group_id > 0:  # a parameter: type, dimensions, values, description
            kind, n_dims = int(np.frombuffer(sect, np.int8, 1, link + 2)[0]), sect[link + 3]
            if kind not in _PARAM_TYPES or n_dims > 7:
                raise _fail(
                    path,
                    f"corrupt parameter section (parameter type {kind} with {n_dims} dimensions; "
                    "expected type -1, 1, 2 or 4 with at most 7)",
                )
            dims = sect[link + 4 : link + 4 + n_dims]
            n_values = int(np.prod([int(d) for d in dims])) if n_dims else 1
            desc = link + 4 + n_dims + abs(kind) * n_values
            params.append((group_id, name))
        else:  # a group: description only
            desc = link + 2
            groups[-group_id] = name
        if desc + 1 > nxt or desc + 1 + sect[desc] > nxt:
            raise _fail(path, "corrupt parameter section (an entry runs past the start of the next)")
        if nxt == end:
            break
        pos = nxt
    else:
        raise _fail(path, "corrupt parameter section (the list of parameters does not end)")
    return {f"{groups.get(gid, '?')}:{name}" for gid, name in params}


def _load(path: str | Path, forceplates: bool = False):
    """Open with ezc3d after the structural checks (``forceplates``: with ezc3d's force-platform
    extraction); any ezc3d failure becomes DataFormatError."""
    import ezc3d

    path = Path(path)
    announced = _check_structure(path)
    try:
        c3d = ezc3d.c3d(str(path), extract_forceplat_data=forceplates)
    except Exception as err:  # ezc3d raises OSError/RuntimeError/... from C++
        raise _fail(path, f"cannot be read as a C3D file ({type(err).__name__}: {err})") from err
    frames = c3d["header"]["points"]
    held = int(frames["last_frame"]) - int(frames["first_frame"]) + 1  # ezc3d's count of frames read
    if announced > held:
        raise _fail(path, f"truncated: the header announces {announced} frames, the file holds {held}")
    return c3d


def _param(c3d, group: str, name: str, default=None):
    try:
        return c3d["parameters"][group][name]["value"]
    except KeyError:
        return default


def _strings(c3d, group: str, name: str) -> list[str]:
    """A string parameter including its ``NAME2``, ``NAME3``... continuations (>255 entries)."""
    out: list[str] = []
    key, k = name, 1
    while (value := _param(c3d, group, key)) is not None:
        out.extend(str(v).strip() for v in value)
        k += 1
        key = f"{name}{k}"
    return out


def _first_value(value, default: float) -> float:
    arr = np.asarray(value if value is not None else [], dtype=float).ravel()
    return float(arr[0]) if arr.size and np.isfinite(arr[0]) else default


def _first_frame(c3d) -> int:
    """First frame counted from 0; TRIAL:ACTUAL_START_FIELD (two 16-bit words) wins if present."""
    field = _param(c3d, "TRIAL", "ACTUAL_START_FIELD")
    if field is not None:
        words = [int(w) & 0xFFFF for w in np.asarray(field).ravel()[:2]]
        if len(words) == 2 and words[0] + 65536 * words[1] >= 1:
            return words[0] + 65536 * words[1] - 1
    return int(c3d["header"]["points"]["first_frame"])


def _pick(path: Path, labels: list[str], channels) -> list[int]:
    """Indices of the requested channels (in request order)."""
    wanted = [channels] if isinstance(channels, str) else [str(c) for c in channels]
    missing = [c for c in wanted if c not in labels]
    if missing:
        raise ChannelNotFoundError(f"{path}: no channel {missing}; available: {labels}")
    ambiguous = sorted({c for c in wanted if labels.count(c) > 1})
    if ambiguous:
        raise _fail(path, f"analog labels {ambiguous} occur more than once; cannot tell them apart")
    return [labels.index(c) for c in wanted]


def _plate_channels(c3d) -> set[int]:
    """Indices (from 0) of the analog channels FORCE_PLATFORM:CHANNEL gives to force plates."""
    used = int(_first_value(_param(c3d, "FORCE_PLATFORM", "USED"), 0.0))
    table = np.asarray(_param(c3d, "FORCE_PLATFORM", "CHANNEL", []), dtype=int)
    return {int(v) - 1 for v in table.reshape(-1, table.shape[-1])[:, :used].ravel()} if used and table.size else set()


def _emg_channels(c3d, n_channels: int, units: list[str]) -> list[int]:
    """The EMG among all analog channels: those the EMG group types as EMG (TYPE 1, per analog channel),
    else all but the force-plate channels when those differ in unit from the rest, else all."""
    kinds = np.asarray(_param(c3d, "EMG", "TYPE", []), dtype=float).ravel()
    if kinds.size == n_channels and (kinds == 1).any():
        return [int(i) for i in np.flatnonzero(kinds == 1)]
    plates = _plate_channels(c3d)
    rest = [i for i in range(n_channels) if i not in plates]
    if rest and len({units[i] for i in rest}) == 1 and {units[i] for i in plates} - {units[rest[0]]}:
        return rest
    return list(range(n_channels))


def _analog_time(c3d, n_samples: int, rate: float) -> tuple[np.ndarray, float, int]:
    """Analog sample times (s, recording clock), the point rate (Hz) and the first frame (from 0)."""
    point_rate = _first_value(_param(c3d, "POINT", "RATE"), float(c3d["header"]["points"]["frame_rate"]))
    first = _first_frame(c3d)
    t0 = first / point_rate if point_rate > 0 else first / rate
    return t0 + np.arange(n_samples) / rate, point_rate, first


def _analog_rate(path: Path, c3d) -> float:
    rate = _first_value(_param(c3d, "ANALOG", "RATE"), float(c3d["header"]["analogs"]["frame_rate"]))
    if not rate > 0:
        raise _fail(path, f"ANALOG:RATE is {rate:g}; expected a positive sampling rate in Hz")
    return rate


def read_c3d(
    path: str | Path, *, channels: Sequence[str] | str | None = None, side: str = "unknown",
    names: str = "label",
) -> xr.DataArray:
    """Read the analog EMG channels of a C3D file as ``DataArray(dims=("time", "channel"))``.

    Samples are in ANALOG:UNITS (ezc3d has already applied ANALOG:OFFSET, SCALE and
    GEN_SCALE), the rate is ANALOG:RATE (Hz) and time (s) starts at the first frame. Without
    ``channels`` the EMG channels are picked: those the EMG group types as EMG, else every channel
    but the force plates' (FORCE_PLATFORM:CHANNEL). All selected channels must share one unit.
    ``names="description"`` names channels by ANALOG:DESCRIPTIONS and the EMG group's SIDE
    (``"Gastrocnemius (left)"``); coords ``label``, ``description`` and ``channel_side`` keep both.
    """
    path = Path(path)
    c3d = _load(path)
    analogs = np.asarray(c3d["data"]["analogs"], dtype=float)
    if analogs.ndim != 3 or analogs.shape[1] == 0 or analogs.shape[2] == 0:
        raise _fail(path, "the C3D file holds no analog channels (expected EMG in the ANALOG group)")
    n_channels, n_samples = analogs.shape[1], analogs.shape[2]
    labels = _strings(c3d, "ANALOG", "LABELS")[:n_channels]
    labels += [f"analog_{k + 1}" for k in range(len(labels), n_channels)]
    units = _strings(c3d, "ANALOG", "UNITS")[:n_channels]
    units = [u or "unknown" for u in units] + ["unknown"] * (n_channels - len(units))
    descriptions = (_strings(c3d, "ANALOG", "DESCRIPTIONS") + [""] * n_channels)[:n_channels]
    letters = (_strings(c3d, "EMG", "SIDE") + [""] * n_channels)[:n_channels]
    sides = [{"R": "right", "L": "left"}.get(v.upper(), "unknown") for v in letters]
    idx = _emg_channels(c3d, n_channels, units) if channels is None else _pick(path, labels, channels)
    chosen_units = sorted({units[i] for i in idx})
    if len(chosen_units) > 1:
        by_unit = {u: [labels[i] for i in idx if units[i] == u] for u in chosen_units}
        raise _fail(
            path,
            f"the analog channels have different units {by_unit}; "
            "read channels of one unit at a time with channels=[...]",
        )
    if names not in ("label", "description"):
        raise _fail(path, f"names={names!r}; choose 'label' or 'description'")
    chosen = [labels[i] if names == "label" or not descriptions[i] else
              descriptions[i] + (f" ({sides[i]})" if sides[i] != "unknown" else "") for i in idx]
    rate = _analog_rate(path, c3d)
    time, point_rate, first = _analog_time(c3d, n_samples, rate)
    da = emg_array(
        analogs[0][idx].T,
        time,
        chosen,
        source=path,
        units=chosen_units[0],
        side=side,
        sampling_rate=rate,
        file_format="C3D",
        point_rate=point_rate,
        first_frame=first + 1,
    )
    return da.assign_coords(label=("channel", [labels[i] for i in idx]),
                            description=("channel", [descriptions[i] for i in idx]),
                            channel_side=("channel", [sides[i] for i in idx]))


# model outputs (PlugInGait angles, forces...) stored as points alongside the markers
MODEL_OUTPUT_GROUPS = ("ANGLES", "FORCES", "MOMENTS", "POWERS", "SCALARS", "REACTIONS")
LENGTH_UNITS = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}


def read_c3d_markers(path: str | Path) -> xr.DataArray:
    """Marker trajectories of a C3D file as ``DataArray(dims=("time", "marker", "axis"))`` in m, in the
    lab frame, time (s) on the recording clock at POINT:RATE. Gaps (all three coordinates exactly 0, or
    a negative residual) are NaN; model outputs listed in POINT:ANGLES, FORCES, ... are left out."""
    path = Path(path)
    c3d = _load(path)
    points = np.asarray(c3d["data"]["points"], dtype=float)[:3].transpose(2, 1, 0)  # frame, marker, axis
    labels = _strings(c3d, "POINT", "LABELS")[: points.shape[1]]
    outputs = {name for group in MODEL_OUTPUT_GROUPS for name in _strings(c3d, "POINT", group)}
    keep = [i for i, label in enumerate(labels) if label and label not in outputs and labels.count(label) == 1]
    if not keep:
        raise _fail(path, "the C3D file holds no labelled marker trajectories")
    units = (_strings(c3d, "POINT", "UNITS") or ["mm"])[0]
    if units.strip().lower() not in LENGTH_UNITS:
        raise _fail(path, f"POINT:UNITS is {units!r}; expected mm, cm or m")
    residuals = np.asarray(c3d["data"]["meta_points"]["residuals"], dtype=float)[0].T
    points[np.all(points == 0.0, axis=2) | (residuals < 0)] = np.nan
    rate = _first_value(_param(c3d, "POINT", "RATE"), float(c3d["header"]["points"]["frame_rate"]))
    time = (_first_frame(c3d) + np.arange(points.shape[0])) / rate
    da = xr.DataArray(points[:, keep] * LENGTH_UNITS[units.strip().lower()], dims=("time", "marker", "axis"),
                      coords={"time": ("time", time, {"units": "s"}), "marker": [labels[i] for i in keep],
                              "axis": ["x", "y", "z"]}, name="markers",
                      attrs={"units": "m", "source": str(path), "sampling_rate": float(rate),
                             "frame": "lab (the C3D file's own axes)", "file_format": "C3D"})
    check_values(da.assign_attrs(source=str(path)), "translation", where=np.isfinite(da.values))
    return da


def read_c3d_plates(path: str | Path, threshold: float = 20.0) -> xr.Dataset:
    """Force-plate loads of a C3D file (ezc3d's extraction: calibration, plate corners and origin
    applied) in the lab frame: ``force`` (N, the reaction on the subject), ``point`` (m, centre of
    pressure) and ``torque`` (N m, free moment at that point), dims ``(time, plate, axis)`` at the
    analog rate. Where a plate carries at most ``threshold`` N its centre of pressure is meaningless
    (ezc3d divides by a near-zero force): ``point`` and ``torque`` are 0 there."""
    path = Path(path)
    c3d = _load(path, forceplates=True)
    plates = c3d["data"].get("platform", [])
    if not plates:
        raise _fail(path, "the C3D file describes no force plates (FORCE_PLATFORM:USED is 0)")
    scale = {}
    for plate in plates:
        for key, unit in (("force", "unit_force"), ("moment", "unit_moment"), ("position", "unit_position")):
            scale[key] = {"N": 1.0, "Nmm": 1e-3, "Nm": 1.0, "mm": 1e-3, "m": 1.0}.get(str(plate[unit]))
            if scale[key] is None:
                raise _fail(path, f"force plate unit {plate[unit]!r} for {key}; expected N, N mm, N m, mm or m")
    stack = {key: np.nan_to_num(np.stack([np.asarray(p[field], dtype=float).T for p in plates], axis=1)) * factor
             for key, field, factor in (("force", "force", scale["force"]),
                                        ("point", "center_of_pressure", scale["position"]),
                                        ("torque", "Tz", scale["moment"]))}
    unloaded = ~(np.linalg.norm(stack["force"], axis=2, keepdims=True) > threshold)
    stack["point"], stack["torque"] = (np.where(unloaded, 0.0, stack[k]) for k in ("point", "torque"))
    rate = _analog_rate(path, c3d)
    time, _, _ = _analog_time(c3d, stack["force"].shape[0], rate)
    ds = xr.Dataset({k: (("time", "plate", "axis"), v) for k, v in stack.items()},
                    coords={"time": ("time", time, {"units": "s"}), "plate": np.arange(1, len(plates) + 1),
                            "axis": ["x", "y", "z"]},
                    attrs={"source": str(path), "frame": "lab (the C3D file's own axes)", "sampling_rate": rate})
    for key, quantity, units in (("force", "force", "N"), ("point", "centre of pressure", "m"),
                                 ("torque", "moment", "N m")):
        ds[key].attrs["units"] = units
        check_values(ds[key].assign_attrs(source=str(path)), quantity)
    return ds


def normalise_event(label: str) -> tuple[str, str | None]:
    """``"Foot Strike"`` -> ``("heel_strike", None)``; ``"Right Foot Off"`` -> ``("toe_off", "right")``.

    Other labels are lower-cased with runs of non-alphanumerics turned into ``_``.
    """
    name = re.sub(r"[^0-9a-z]+", "_", str(label).strip().lower()).strip("_")
    side = None
    prefix, _, rest = name.partition("_")
    if rest and prefix in _SIDE_PREFIX and (rest in _HEEL_STRIKE or rest in _TOE_OFF):
        side, name = _SIDE_PREFIX[prefix], rest
    if name in _HEEL_STRIKE:
        return "heel_strike", side
    if name in _TOE_OFF:
        return "toe_off", side
    return name or "event", side


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series(dtype=float), "event": pd.Series(dtype=object),
                         "side": pd.Series(dtype=object)})


def read_c3d_events(path: str | Path) -> pd.DataFrame:
    """Events of a C3D file as a table ``time`` (s), ``event``, ``side``, sorted by time.

    EVENT:TIMES holds (minutes, seconds) pairs; ``event`` is ``heel_strike`` ("Foot Strike"),
    ``toe_off`` ("Foot Off") or the label in snake_case; ``side`` comes from EVENT:CONTEXTS
    ("Right"/"Left", else "unknown"). A file without events gives an empty table.
    """
    path = Path(path)
    c3d = _load(path)
    times = _param(c3d, "EVENT", "TIMES")
    used = _first_value(_param(c3d, "EVENT", "USED"), -1.0)
    if times is None or used == 0:
        return _empty_events()
    times = np.asarray(times, dtype=float)
    if times.ndim == 1:
        if times.size % 2:
            raise _fail(path, f"EVENT:TIMES has {times.size} values; expected (minutes, seconds) pairs")
        times = times.reshape(2, -1, order="F")
    if times.ndim != 2 or times.shape[0] != 2:
        raise _fail(path, f"EVENT:TIMES has shape {times.shape}; expected 2 x n (minutes, seconds)")
    n = times.shape[1] if used < 0 else int(used)
    if n > times.shape[1]:
        raise _fail(path, f"EVENT:USED says {n} events but EVENT:TIMES holds {times.shape[1]}")
    labels = _strings(c3d, "EVENT", "LABELS")
    contexts = _strings(c3d, "EVENT", "CONTEXTS")
    if len(labels) < n:
        raise _fail(path, f"EVENT:USED says {n} events but EVENT:LABELS names {len(labels)}")
    contexts += [""] * (n - len(contexts))
    rows = []
    for k in range(n):
        seconds = 60.0 * times[0, k] + times[1, k]
        if not np.isfinite(seconds):
            raise _fail(path, f"event {k + 1} ('{labels[k]}') has no valid time in EVENT:TIMES")
        event, label_side = normalise_event(labels[k])
        context = contexts[k].strip().lower()
        side = context if context in ("right", "left") else (label_side or "unknown")
        rows.append((seconds, event, side))
    if not rows:
        return _empty_events()
    table = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    return table.sort_values("time", kind="stable").reset_index(drop=True)
