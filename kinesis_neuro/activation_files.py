"""Muscle activations computed by other tools, as :class:`~kinesis_neuro.record.Recording` s.

A lab validates whatever it has. :func:`load_recording` reads, besides a recording ``.nc``:

* OpenSim static optimisation ``*_activation.sto``: a storage file whose columns are muscle names, plus the
  model's coordinate actuators (``lumbar_ext``, ``shoulder_flex_r``...), residuals and reserves;
* OpenSim CMC ``*_states.sto``: ``<muscle>.activation`` (OpenSim 3) or ``/forceset/<muscle>/activation``
  (OpenSim 4) columns among coordinates, speeds and fibre lengths;
* OpenSim Moco solutions (``MocoTrajectory.write``): ``/forceset/<muscle>/activation`` states, coordinate
  values and speeds, controls and multipliers;
* plain CSV/TSV tables: a time column (``time``, ``t``, ``time_s``, ``time_ms``...) and one column per muscle
  (``soleus_r``, ``tib_ant_l``...).

The format is recognised by the file's content (an OpenSim ``endheader`` and the column names), never by its
name. Muscle names: Rajagopal names are MyoLegs names (``addbrev_r``, ``gasmed_l``); names of other models
(gait2392: ``glut_med1_r``, ``bifemlh_r``, ``med_gas_r``...) become MyoLegs names through
``kinesis_neuro/data/muscle_names.csv`` (columns ``name`` without side suffix, ``myolegs``: MyoLegs base
names separated by spaces, empty when MyoLegs has no such muscle, ``model``, ``note``), which a user CSV of
the same columns extends or overrides. Several columns naming one MyoLegs muscle are averaged. Nothing is
dropped silently: the recording's attrs list every column it did not use (``ignored_columns``: reserves,
residuals, actuators and coordinates, controls, multipliers, other muscle states; ``unknown_columns``;
``muscles_without_counterpart``), and unknown names also give a warning.

Gait events (:func:`parse_events`): a GRF file or registered dataset file (:func:`kinesis_neuro.emg.read_events`),
an event table, or given heel-strike times ``"right:0.61,1.72;left:1.15"`` (toe-offs as
``right_toe_off:0.95``). Events outside the recording's time range are left out.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.record import Recording

MUSCLE_NAMES = "muscle_names.csv"
NAME_COLUMNS = ("name", "myolegs", "model", "note")
CLIP_TOLERANCE = 1e-6  # activations this far outside 0-1 are rounding: clipped (and said so in attrs)
UNIFORM_TOLERANCE = 1e-4  # relative spread of time steps still taken as uniform sampling

# column categories that are not muscle activations (reported in attrs['ignored_columns'])
RESERVES, RESIDUALS, ACTUATORS = "reserves", "residuals", "actuators and coordinates (joints, lumbar, arms)"
CONTROLS, MULTIPLIERS, STATES = "controls", "multipliers", "other states (fibre lengths, tendon forces, ...)"
JOINT_PREFIX = re.compile(r"^(pelvis|hip|knee|ankle|subtalar|mtp|lumbar|back|arm|shoulder|elbow|pro_sup|wrist|"
                          r"neck|radius|radioulnar|torso)_", re.IGNORECASE)
RESIDUAL_NAMES = {"FX", "FY", "FZ", "MX", "MY", "MZ"}  # gait2392 SO set-ups name pelvis residuals like this
SIDE_SUFFIX = re.compile(r"^(?P<base>.+)_(?P<side>[rl])$")


def load_muscle_names(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Other models' muscle names (base names, no side suffix) -> MyoLegs base names: the package table,
    extended or overridden by the rows of the user CSV at ``path`` (same columns). Indexed by ``name``;
    column ``myolegs`` holds a tuple (empty: no MyoLegs counterpart)."""
    from kinesis_neuro.mapping import base_muscle_names

    with resources.files("kinesis_neuro.data").joinpath(MUSCLE_NAMES).open() as f:
        tables = [_read_names(f, f"kinesis_neuro/data/{MUSCLE_NAMES}", base_muscle_names())]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(f"{path}: no such muscle-name table")
        tables.append(_read_names(path, str(path), base_muscle_names()))
    table = tables[0]
    if len(tables) > 1:
        table = pd.concat([table.drop(index=tables[1].index, errors="ignore"), tables[1]])
    return table


def _read_names(source, label: str, valid: list[str]) -> pd.DataFrame:
    from kinesis_neuro.mapping import read_csv_table

    raw = read_csv_table(source, label, "muscle-name table", ("name", "myolegs"), NAME_COLUMNS)
    rows = []
    for i, rec in enumerate(raw.to_dict("records")):
        name = rec["name"].strip()
        where = f"{label}, line {i + 2}"
        if not name:
            raise DataFormatError(f"{where}: empty name")
        if SIDE_SUFFIX.match(name):
            raise DataFormatError(f"{where}: name {name!r} carries a side suffix; give base names "
                                  f"({SIDE_SUFFIX.match(name)['base']!r}): the suffix of each column is kept")
        targets = tuple(m for m in re.split(r"[\s+]+", rec["myolegs"].strip()) if m)
        bad = [m for m in targets if m not in valid]
        if bad:
            raise DataFormatError(f"{where}, name {name!r}: unknown MyoLegs muscle(s) {bad} (give base names without "
                                  f"the side suffix); valid: {', '.join(valid)}")
        rows.append({"name": name, "myolegs": targets, "model": rec.get("model", "").strip() or "user",
                     "note": rec.get("note", "").strip(), "source": label})
    table = pd.DataFrame(rows, columns=["name", "myolegs", "model", "note", "source"])
    dup = table["name"][table["name"].duplicated()].tolist()
    if dup:
        raise DataFormatError(f"{label}: names listed more than once: {dup}")
    return table.set_index("name")


def _names_table(muscle_names) -> pd.DataFrame:
    return muscle_names if isinstance(muscle_names, pd.DataFrame) else load_muscle_names(muscle_names)


def myolegs_names(name: str, muscle_names=None) -> tuple[str, ...] | None:
    """MyoLegs muscles (with side suffix) behind a muscle column ``name`` (``glut_med1_r`` -> ``("glmed1_r",)``);
    ``()`` for a known muscle without MyoLegs counterpart, ``None`` for an unknown name."""
    from kinesis_neuro.mapping import base_muscle_names

    match = SIDE_SUFFIX.match(name)
    if not match:
        return None
    base, side = match["base"], match["side"]
    table = _names_table(muscle_names)
    if base in table.index:  # a user row may override even a Rajagopal name
        return tuple(f"{m}_{side}" for m in table.loc[base, "myolegs"])
    if base in base_muscle_names():
        return (name,)
    return None


# -- reading ------------------------------------------------------------------------------------------------


def _is_storage(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(65536)
    return any(line.strip().lower() == b"endheader" for line in head.splitlines())


def _read_table(path: Path) -> tuple[np.ndarray, pd.DataFrame, dict, str]:
    """(time, table of every other column under its name in the file, header, format label)."""
    from kinesis_neuro.io.opensim import read_storage_table

    if _is_storage(path):
        table, header = read_storage_table(path)
        time = table["time"].to_numpy(float)
        columns = table.drop(columns="time")
        names = list(columns.columns)
        if any(n.startswith("/forceset/") and n.endswith("/activation") for n in names):
            moco = any(k.startswith(("num_states", "num_controls", "objective")) for k in header)
            label = "OpenSim Moco solution" if moco else "OpenSim states (CMC, OpenSim 4 paths)"
        elif any(n.endswith(".activation") for n in names):
            label = "OpenSim CMC states (OpenSim 3)"
        elif "static optimization" in header.get("name", "").lower():
            label = "OpenSim static optimisation activations"
        else:
            label = "OpenSim storage table"
        return time, columns, header, label
    from kinesis_neuro.io.tabular import read_table

    da = read_table(path)
    columns = pd.DataFrame(da.transpose("time", "channel").values, columns=[str(c) for c in da.channel.values])
    return da.time.values.astype(float), columns, {}, "table (time + one column per muscle)"


def _classify(name: str) -> tuple[str, str | None]:
    """(category, muscle candidate): category ``muscle`` with the muscle's name in the file, or the
    category of a column that is not a muscle activation."""
    if name.startswith("/"):
        parts = [p for p in name.split("/") if p]
        if parts[:1] == ["forceset"] and len(parts) == 3 and parts[2] == "activation":
            return "muscle", parts[1]
        if parts[:1] == ["forceset"] and len(parts) == 2:
            return CONTROLS, None
        if parts[:1] == ["jointset"]:
            return ACTUATORS, None
        return STATES, None
    if "." in name:
        base, _, state = name.rpartition(".")
        return ("muscle", base) if state == "activation" else (STATES, None)
    low = name.lower()
    if "reserve" in low:
        return RESERVES, None
    if "residual" in low or name in RESIDUAL_NAMES:
        return RESIDUALS, None
    if low.startswith(("lambda_", "gamma_")):
        return MULTIPLIERS, None
    if JOINT_PREFIX.match(name):
        return ACTUATORS, None
    return "muscle", name


def read_activations(path: str | os.PathLike, muscle_names=None) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Muscle activations of another tool's file: (time in s, table time x MyoLegs muscle, info).

    ``info``: ``format``, ``ignored_columns`` (category -> names), ``unknown_columns``,
    ``muscles_without_counterpart``, ``renamed`` (file name -> MyoLegs names, only where they differ),
    ``averaged`` (MyoLegs muscle -> the columns averaged into it), ``clipped`` (samples within
    ``CLIP_TOLERANCE`` outside 0-1), ``pelvis_speed_m_s`` (from pelvis coordinates, when the file holds them)."""
    from kinesis_neuro.io.common import readable_file

    path = readable_file(path)
    table = _names_table(muscle_names)
    time, columns, header, label = _read_table(path)
    ignored: dict[str, list[str]] = {}
    unknown, without, renamed = [], [], {}
    sources: dict[str, list[str]] = {}
    for name in columns.columns:
        category, candidate = _classify(str(name))
        if category != "muscle":
            ignored.setdefault(category, []).append(str(name))
            continue
        targets = myolegs_names(candidate, table)
        if targets is None:
            unknown.append(str(name))
        elif not targets:
            without.append(str(name))
        else:
            if targets != (candidate,):
                renamed[str(name)] = list(targets)
            for target in targets:
                sources.setdefault(target, []).append(str(name))
    if not sources:
        raise DataFormatError(f"{path}: no muscle activation columns recognised ({label}; columns: "
                              f"{list(map(str, columns.columns))[:12]}{' ...' if columns.shape[1] > 12 else ''}); "
                              "muscles are named like MyoLegs/Rajagopal (soleus_r) or gait2392 (tib_ant_r), with "
                              "a side suffix; other names need a --muscle-names CSV (name,myolegs)")
    if unknown:
        warnings.warn(f"{path}: {len(unknown)} column(s) are not muscles kinesis-neuro knows and are left out: "
                      f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''} (add them to a --muscle-names "
                      "CSV: name,myolegs)", stacklevel=2)
    order = _myolegs_order()
    muscles = sorted(sources, key=lambda m: order.get(m, len(order)))
    values = np.column_stack([columns[sources[m]].to_numpy(float).mean(axis=1) for m in muscles])
    outside = (values < 0) | (values > 1)
    far = (values < -CLIP_TOLERANCE) | (values > 1 + CLIP_TOLERANCE)
    if far.any():
        row, col = np.argwhere(far)[0]
        raise DataFormatError(f"{path}: muscle {muscles[col]} (column {sources[muscles[col]][0]!r}) has activation "
                              f"{values[row, col]:g} at t={time[row]:g} s; activations lie in 0-1 "
                              f"({int(far.sum())} samples outside)")
    values = values.clip(0.0, 1.0)
    info = {"format": label, "ignored_columns": ignored, "unknown_columns": unknown,
            "muscles_without_counterpart": without, "renamed": renamed,
            "averaged": {m: s for m, s in sources.items() if len(s) > 1}, "clipped": int(outside.sum()),
            "header_name": header.get("name", "")}
    speed = _pelvis_speed(time, columns)
    if speed is not None:
        info["pelvis_speed_m_s"] = speed
    return time, pd.DataFrame(values, columns=muscles), info


def _myolegs_order() -> dict[str, int]:
    from kinesis_neuro.mapping import base_muscle_names

    names = [f"{m}_{s}" for s in "rl" for m in base_muscle_names()]
    return {n: i for i, n in enumerate(names)}


def _pelvis_speed(time: np.ndarray, columns: pd.DataFrame) -> float | None:
    """Mean horizontal pelvis speed (m/s) from OpenSim pelvis_tx/pelvis_tz columns (y up), if present."""
    found = {}
    for name in columns.columns:
        for axis in ("tx", "tz"):
            if re.search(rf"(^|/)pelvis_{axis}(/value)?$", str(name)):
                found[axis] = columns[name].to_numpy(float)
    if set(found) != {"tx", "tz"} or time[-1] <= time[0]:
        return None
    return float(np.hypot(found["tx"][-1] - found["tx"][0], found["tz"][-1] - found["tz"][0]) / (time[-1] - time[0]))


def _uniform(time: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """``time`` and ``values`` on a uniform grid (linear interpolation at the median step when the steps vary
    more than ``UNIFORM_TOLERANCE``); the third item says what was done."""
    steps = np.diff(time)
    if steps.size == 0 or np.any(steps <= 0):
        raise DataFormatError("time must be strictly increasing")
    dt = float(np.median(steps))
    if np.abs(steps - dt).max() <= UNIFORM_TOLERANCE * dt:
        return time, values, ""
    n = int(np.floor((time[-1] - time[0]) / dt + 1e-9)) + 1
    grid = time[0] + dt * np.arange(n)
    resampled = np.column_stack([np.interp(grid, time, values[:, k]) for k in range(values.shape[1])])
    return grid, resampled, (f"resampled from uneven steps ({steps.min():g}-{steps.max():g} s) onto an even "
                             f"{dt:g} s grid (linear interpolation)")


# -- events ------------------------------------------------------------------------------------------------

EVENT_TEXT = re.compile(r"^\s*(right|left|r|l)(_toe_off|_heel_strike)?\s*:", re.IGNORECASE)


def parse_events(spec, *, data_dir=None) -> pd.DataFrame:
    """Gait events from ``spec``: an event table (``time``, ``event``, ``side``), given times such as
    ``"right:0.61,1.72;left:1.15"`` (heel strikes; ``right_toe_off:0.95`` for toe-offs), or a file / registered
    dataset file that :func:`kinesis_neuro.emg.read_events` reads (GRF ``.mot``, ``.c3d``, ``.RData``)."""
    from kinesis_neuro import emg, gait

    if isinstance(spec, pd.DataFrame):
        return gait.events_from_table(spec)
    text = str(spec)
    if not EVENT_TEXT.match(text):
        return emg.read_events(spec, data_dir=data_dir)
    rows = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, times = part.partition(":")
        match = EVENT_TEXT.match(key + ":")
        if not sep or not match:
            raise DataFormatError(f"events {text!r}: each part looks like SIDE:T1,T2 (side right or left, times in s; "
                                  f"right_toe_off:T for toe-offs), got {part!r}")
        side = gait.check_side(match[1])
        kind = "toe_off" if (match[2] or "").lower() == "_toe_off" else "heel_strike"
        for value in filter(None, (v.strip() for v in times.split(","))):
            try:
                t = float(value)
            except ValueError:
                raise DataFormatError(f"events {text!r}: {value!r} is not a time in s") from None
            if not np.isfinite(t):
                raise DataFormatError(f"events {text!r}: times must be finite, got {value!r}")
            rows.append({"time": t, "event": kind, "side": side})
    if not rows:
        raise DataFormatError(f"events {text!r}: no times given")
    return gait.events_from_table(pd.DataFrame(rows))


def _events_within(events: pd.DataFrame, time: np.ndarray) -> tuple[pd.DataFrame, int]:
    inside = (events.time >= time[0] - 1e-9) & (events.time <= time[-1] + 1e-9)
    return events[inside].reset_index(drop=True), int((~inside).sum())


def with_events(recording: Recording, events: pd.DataFrame, note: str = "") -> Recording:
    """``recording`` with its gait events replaced by ``events`` (those inside its time range)."""
    kept, outside = _events_within(events, recording.data.time.values)
    data = recording.data.drop_dims(["heel_strike", "toe_off"], errors="ignore")
    for kind in ("heel_strike", "toe_off"):
        rows = kept[kept.event == kind]
        data[f"{kind}_time"] = (kind, rows.time.to_numpy(float),
                                {"units": "s", "long_name": f"{kind.replace('_', ' ')} time"})
        data = data.assign_coords({f"{kind}_side": (kind, rows.side.to_numpy(str))})
    data.attrs.update(events_source=note or "given", events_outside_recording=outside)
    return Recording(data, source=recording.source)


# -- recordings -----------------------------------------------------------------------------------------------


def _registered(path_or_spec: str, data_dir) -> tuple[Path, dict]:
    """The file of a registered ``DATASET/FILE`` and defaults from its card: ``motion`` and ``events`` of the
    dataset it was derived from (``derived_from`` with a GRF file)."""
    from kinesis_neuro import datasets, emg

    path = emg.source_path(path_or_spec, data_dir)
    card = datasets.get(str(path_or_spec).partition("/")[0]).card
    defaults = {}
    parent = card.get("derived_from")
    if parent:
        defaults["motion"] = parent
        grf = datasets.get(parent).card.get("grf")
        if grf:
            defaults["events"] = f"{parent}/{grf}"
    return path, defaults


def read_activation_file(path, *, events=None, muscle_names=None, motion: str | None = None,
                         data_dir=None) -> Recording:
    """Another tool's activations (see the module doc) as a Recording with the MyoLegs muscles found; ``events``
    as :func:`parse_events` takes them; ``motion`` names the movement (text; a dataset such as ``moco-walk`` lets
    benchmarks find its speed)."""
    from kinesis_neuro import datasets

    defaults = {}
    if datasets.is_dataset_spec(path):
        path, defaults = _registered(str(path), data_dir)
    path = Path(path)
    time, table, info = read_activations(path, muscle_names)
    time, values, resampled = _uniform(time, table.to_numpy())
    events = events if events is not None else defaults.get("events")
    event_table, outside, event_note = None, 0, "none"
    if events is not None:
        event_table, outside = _events_within(parse_events(events, data_dir=data_dir), time)
        event_note = events if isinstance(events, str) else "table"
    tool = info["format"].replace(" activations", "").replace(" solution", "")
    attrs = {"motion": motion or defaults.get("motion") or f"unknown (activations from {path.name})",
             "controller": f"{tool} ({path.name})", "source_file": str(path), "source_format": info["format"],
             "ignored_columns": json.dumps(info["ignored_columns"]),
             "unknown_columns": json.dumps(info["unknown_columns"]),
             "muscles_without_counterpart": json.dumps(info["muscles_without_counterpart"]),
             "renamed_muscles": json.dumps(info["renamed"]), "averaged_muscles": json.dumps(info["averaged"]),
             "clipped_samples": info["clipped"], "events_source": str(event_note), "events_outside_recording": outside}
    if resampled:
        attrs["resampled"] = resampled
    if "pelvis_speed_m_s" in info:
        attrs["pelvis_speed_m_s"] = info["pelvis_speed_m_s"]
    try:
        rec = Recording.from_arrays(time, list(table.columns), activation=values, events=event_table, attrs=attrs)
    except DataFormatError as err:
        raise DataFormatError(f"{path}: {err}") from None
    return Recording(rec.data, source=str(path))


def is_recording_file(path) -> bool:
    """Whether ``path`` names a kinesis-neuro recording (NetCDF ``.nc``), not another tool's activations."""
    return Path(str(path)).suffix.lower() == ".nc"


def load_recording(path, *, events=None, muscle_names=None, motion: str | None = None, data_dir=None) -> Recording:
    """A recording ``.nc`` (``Recording.load``) or another tool's activation file (:func:`read_activation_file`:
    OpenSim SO / CMC / Moco ``.sto``, CSV/TSV; a path or a registered ``DATASET/FILE``). ``events`` replace the
    recording's gait events (GRF file, dataset file, table or ``"right:0.61,1.72;left:1.15"``); ``muscle_names``:
    a CSV of other models' muscle names (see :func:`load_muscle_names`)."""
    if is_recording_file(path):
        rec = Recording.load(path)
        if events is not None:
            rec = with_events(rec, parse_events(events, data_dir=data_dir), events if isinstance(events, str) else "")
        return rec
    return read_activation_file(path, events=events, muscle_names=muscle_names, motion=motion, data_dir=data_dir)
