"""R ``.RData`` files as written by the R package musclesyneRgies (``RAW_DATA``, ``FILT_EMG``, ``SYNS``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.gait import split_phase
from kinesis_neuro.io.common import check_values, emg_array, readable_file, select_channels

RDATA_EXTENSIONS = (".rdata", ".rda")
KNOWN_OBJECTS = ("RAW_DATA", "FILT_EMG", "SYNS")


EXPECTED = {
    "RAW_DATA": "a list of trials, each a list with $emg (data frame: time, one column per muscle) "
    "and $cycles (data frame: touchdown, lift-off)",
    "FILT_EMG": "a list of trials, each a data frame: time, one column per muscle",
    "SYNS": "a list of people, each a list with $V and $M (matrices with named rows), $P (data frame), "
    "$syns, $R2 and $iterations",
}


def _frame_problem(value, what: str) -> str | None:
    if not isinstance(value, pd.DataFrame) or value.shape[1] < 2 or len(value) < 1:
        return f"{what} is not a data frame with a time column and data columns"
    text = [str(c) for c in value.columns if not pd.api.types.is_numeric_dtype(value[c])]
    return f"{what} has non-numeric columns {text}" if text else None


def _problem(kind: str, value) -> str | None:
    """What keeps ``value`` from being a musclesyneRgies ``kind`` object (None: nothing)."""
    if not isinstance(value, dict) or not value:
        return "not a named list of " + ("people" if kind == "SYNS" else "trials")
    for trial, item in value.items():
        if kind == "FILT_EMG":
            problem = _frame_problem(item, "the data")
        elif not isinstance(item, dict):
            problem = "not a list"
        elif kind == "RAW_DATA":
            problem = ("no $emg" if "emg" not in item else "no $cycles" if "cycles" not in item
                       else _frame_problem(item["emg"], "$emg") or _frame_problem(item["cycles"], "$cycles"))
        else:
            problem = _person_problem(item)
        if problem:
            return f"{str(trial)!r}: {problem}"
    return None


def _person_problem(item: dict) -> str | None:
    """What keeps one person of a ``SYNS`` list from holding musclesyneRgies' results (None: nothing)."""
    missing = [f"${k}" for k in ("V", "M", "P", "syns", "R2", "iterations") if k not in item]
    if missing:
        return f"no {', '.join(missing)}"
    named = {"V": {"dim_0"}, "M": {"dim_0", "dim_1"}}  # muscles x points, muscles x synergies
    bad = [f"${k}" for k, dims in named.items() if not (
        isinstance(item[k], xr.DataArray) and item[k].ndim == 2 and dims <= set(item[k].coords)
        and np.issubdtype(item[k].dtype, np.number))]
    bad += [f"${k}" for k in ("syns", "R2", "iterations")
            if not (np.asarray(item[k]).size and np.issubdtype(np.asarray(item[k]).dtype, np.number))]
    if bad:
        return f"{', '.join(bad)} not numeric (matrices with named rows, or numbers)"
    v, m, p = item["V"], item["M"], item["P"]
    problem = _frame_problem(p, "$P")
    if problem is None and (m.shape[0] != v.shape[0] or len(p) != v.shape[1] or v.shape[1] % 2):
        problem = (f"$V ({v.shape[0]} muscles x {v.shape[1]} points, an even number: stance + swing), "
                   f"$M ({m.shape[0]} muscles) and $P ({len(p)} points) do not match")
    return problem


def _load(path: str | Path, expected: str | None = None) -> tuple[str, dict]:
    """Parse an .RData file with the ``rdata`` package; return (kind, {trial: value}) of the one
    musclesyneRgies object it holds, recognised by its structure (:data:`EXPECTED`), whatever its name.
    ``expected``: the only kind accepted."""
    import rdata

    path = readable_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rdata warns about the R class "EMG" it has no constructor for
            objects = rdata.conversion.convert(rdata.parser.parse_file(path))
    except Exception as err:  # rdata raises ValueError, EOFError, NotImplementedError, zlib errors...
        raise DataFormatError(f"{path}: not a readable R data file ({type(err).__name__}: {err})") from err
    found = [(name, kind) for name, value in objects.items()
             for kind in KNOWN_OBJECTS if _problem(kind, value) is None]
    if len(found) == 1 and expected in (None, found[0][1]):
        return found[0][1], objects[found[0][0]]
    if len(found) == 1:
        raise DataFormatError(f"{path}: expected a {expected} object, found {found[0][1]}")
    kinds = [expected] if expected else list(KNOWN_OBJECTS)
    named = [str(n) for n in objects if n in kinds]
    if len(found) > 1:
        problem = f"found several: {', '.join(f'{n} ({k})' for n, k in found)}"
    elif named:
        kinds = named[:1]
        problem = f"the R object {named[0]} is not one ({_problem(named[0], objects[named[0]])})"
    else:
        problem = f"found R object(s) {[str(n) for n in objects]}"
    raise DataFormatError(f"{path}: expected one musclesyneRgies {' or '.join(kinds)} object; {problem}. "
                          + "; ".join(f"{k} is {EXPECTED[k]}" for k in kinds))


def _trial(path, trials: dict, trial: str | None):
    keys = [str(k) for k in trials]
    if trial is None:
        if len(keys) > 1:
            raise DataFormatError(f"{path}: holds {len(keys)} trials {keys}; pass trial=NAME")
        trial = keys[0]
    if trial not in keys:
        raise DataFormatError(f"{path}: no trial {trial!r}; available: {keys}")
    return trial, trials[trial]


def _split_phase(n_points: int) -> np.ndarray:
    """musclesyneRgies' grid: half the points for stance, half for swing."""
    return split_phase((n_points // 2, n_points // 2))


def read_rdata(
    path: str | Path, *, trial: str | None = None, channels=None, side: str = "right", units: str = "unknown"
) -> xr.DataArray:
    """Read EMG from a musclesyneRgies .RData file.

    ``RAW_DATA`` -> ``(time, channel)`` raw EMG; ``FILT_EMG`` -> ``(cycle, phase, channel)``
    (100 stance + 100 swing points per cycle, phase in percent); ``SYNS`` -> the processed EMG
    ``V`` of every person as ``(subject, phase, channel)``.
    """
    kind, trials = _load(path)
    if kind == "SYNS":
        return select_channels(_syns(path, trials)["V"], channels)
    trial, value = _trial(path, trials, trial)
    if kind == "RAW_DATA":
        emg = value["emg"]
        da = emg_array(
            emg.iloc[:, 1:].to_numpy(dtype=float),
            emg.iloc[:, 0].to_numpy(dtype=float),
            list(emg.columns[1:]),
            source=path,
            units=units,
            side=side,
            file_format="RData (musclesyneRgies RAW_DATA)",
            trial=trial,
        )
        return select_channels(da, channels)
    table = value
    values = table.iloc[:, 1:].to_numpy(dtype=float)
    n_cycle_points = 200
    if values.shape[0] % n_cycle_points:
        raise DataFormatError(f"{path}: FILT_EMG has {values.shape[0]} rows, expected a multiple of 200")
    n_cycles = values.shape[0] // n_cycle_points
    da = xr.DataArray(
        values.reshape(n_cycles, n_cycle_points, -1),
        dims=("cycle", "phase", "channel"),
        coords={
            "cycle": np.arange(n_cycles),
            "phase": ("phase", _split_phase(n_cycle_points), {"units": "%", "long_name": "gait phase"}),
            "channel": [str(c) for c in table.columns[1:]],
        },
        name="emg",
        attrs=dict(
            units="1", source=str(path), side=side, trial=trial, file_format="RData (musclesyneRgies FILT_EMG)",
            phase_definition="stance 0-50 %, swing 50-100 %, 100 points each", processing="[]",
        ),
    )
    check_values(da)
    return select_channels(da, channels)


def read_rdata_events(path: str | Path, *, trial: str | None = None, side: str = "right") -> pd.DataFrame:
    """Gait events of a ``RAW_DATA`` trial: ``$cycles`` (touchdown, lift-off in s) as an event table."""
    kind, trials = _load(path)
    if kind != "RAW_DATA":
        raise DataFormatError(f"{path}: only RAW_DATA holds gait-cycle timings; this file holds {kind}")
    trial, value = _trial(path, trials, trial)
    cycles = np.asarray(value["cycles"], dtype=float)
    if cycles.ndim != 2 or cycles.shape[1] < 2:
        raise DataFormatError(f"{path}: $cycles of {trial!r} should have (touchdown, lift-off) columns")
    if not np.isfinite(cycles[:, :2]).all():
        row = int(np.argmax(~np.isfinite(cycles[:, :2]).all(axis=1)))
        raise DataFormatError(f"{path}: $cycles of {trial!r} holds NaN/infinite times (row {row + 1})")
    events = pd.DataFrame(
        {
            "time": np.concatenate([cycles[:, 0], cycles[:, 1]]),
            "event": ["heel_strike"] * len(cycles) + ["toe_off"] * len(cycles),
            "side": side,
        }
    )
    return events.sort_values("time", kind="stable").reset_index(drop=True)


def read_syns(path: str | Path) -> dict:
    """All of a musclesyneRgies ``SYNS`` file.

    Returns ``{"V": DataArray(subject, phase, channel), "rank": DataArray(subject), "R2": ...,
    "iterations": ..., "M": {subject: DataArray(channel, synergy)}, "P": {subject: DataArray(phase, synergy)}}``.
    """
    return _syns(path, _load(path, "SYNS")[1])


def _syns(path, people: dict) -> dict:
    """:func:`read_syns` of the ``SYNS`` list ``people`` already loaded from ``path``."""
    subjects = [str(s) for s in people]
    first = people[next(iter(people))]["V"]
    channels = [str(c) for c in first.coords["dim_0"].values]
    for s in people:
        other = people[s]["V"]
        if other.shape != first.shape or [str(c) for c in other.coords["dim_0"].values] != channels:
            raise DataFormatError(f"{path}: $V of {str(s)!r} has other muscles or points than that of {subjects[0]!r}")
    v = np.stack([np.asarray(people[s]["V"], dtype=float).T for s in people])
    phase = _split_phase(v.shape[1])
    out = {
        "V": xr.DataArray(
            v,
            dims=("subject", "phase", "channel"),
            coords={"subject": subjects, "phase": ("phase", phase, {"units": "%"}), "channel": channels},
            name="emg",
            attrs=dict(units="1", source=str(path), side="right", file_format="RData (musclesyneRgies SYNS)",
                       phase_definition="stance 0-50 %, swing 50-100 %, 100 points each", processing="[]"),
        ),
        "M": {},
        "P": {},
    }
    check_values(out["V"])
    for key in ("syns", "R2", "iterations"):
        out["rank" if key == "syns" else key] = xr.DataArray(
            [float(np.asarray(people[s][key]).ravel()[0]) for s in people], dims="subject", coords={"subject": subjects}
        )
    for s in people:
        m = people[s]["M"]
        out["M"][str(s)] = xr.DataArray(
            np.asarray(m, dtype=float), dims=("channel", "synergy"),
            coords={"channel": [str(c) for c in m.coords["dim_0"].values],
                    "synergy": [str(c) for c in m.coords["dim_1"].values]},
        )
        p = people[s]["P"]
        out["P"][str(s)] = xr.DataArray(
            p.iloc[:, 1:].to_numpy(dtype=float), dims=("phase", "synergy"),
            coords={"phase": phase, "synergy": [str(c) for c in p.columns[1:]]},
        )
    return out
