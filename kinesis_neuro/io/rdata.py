"""R ``.RData`` files as written by the R package musclesyneRgies (``RAW_DATA``, ``FILT_EMG``, ``SYNS``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.gait import split_phase
from kinesis_neuro.io.common import emg_array, select_channels

RDATA_EXTENSIONS = (".rdata", ".rda")
KNOWN_OBJECTS = ("RAW_DATA", "FILT_EMG", "SYNS")


def _load(path: str | Path) -> tuple[str, dict]:
    """Parse an .RData file with the ``rdata`` package; return (object name, {trial: value})."""
    import rdata

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rdata warns about the R class "EMG" it has no constructor for
            objects = rdata.conversion.convert(rdata.parser.parse_file(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # rdata raises ValueError, EOFError, NotImplementedError, zlib errors...
        raise DataFormatError(f"{path}: not a readable R data file ({type(err).__name__}: {err})") from err
    names = [n for n in objects if n in KNOWN_OBJECTS]
    if len(names) != 1:
        raise DataFormatError(
            f"{path}: expected exactly one musclesyneRgies object {list(KNOWN_OBJECTS)}, found {list(objects)}"
        )
    return names[0], objects[names[0]]


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
        return select_channels(read_syns(path)["V"], channels)
    trial, value = _trial(path, trials, trial)
    if kind == "RAW_DATA":
        try:
            emg = value["emg"]
        except (KeyError, TypeError) as err:
            raise DataFormatError(f"{path}: trial {trial!r} has no $emg data frame") from err
        da = emg_array(
            emg.iloc[:, 1:].to_numpy(dtype=float),
            emg.iloc[:, 0].to_numpy(dtype=float),
            list(emg.columns[1:]),
            source=path,
            units=units,
            side=side,
            sampling_rate=float(round(1.0 / np.mean(np.diff(emg.iloc[:, 0].to_numpy(dtype=float))))),
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
    kind, people = _load(path)
    if kind != "SYNS":
        raise DataFormatError(f"{path}: expected a SYNS object, found {kind}")
    subjects = [str(s) for s in people]
    v = np.stack([np.asarray(people[s]["V"], dtype=float).T for s in people])
    channels = [str(c) for c in people[next(iter(people))]["V"].coords["dim_0"].values]
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
