"""MATLAB ``.mat`` files: v5 structs (``scipy.io.loadmat``) and MATLAB ``dataset`` objects (MCOS, ``mat-io``).

Three layouts are recognised by content, whatever the file is called:

* cycle tables (Falisse et al. 2019 ``ExperimentalData.<quantity>.<subject>.{all, colheaders}``,
  ``all`` = points x channels x cycles) -> ``(cycle, phase, channel)``;
* an OpenSim ``.mot`` kept as a struct (``Qsall``/``GRFall``: ``data``, ``colheaders``, ``textdata``
  holding the header lines) -> ``(time, channel)`` as :func:`kinesis_neuro.io.opensim.read_storage` gives;
* MATLAB ``dataset`` objects (Statistics Toolbox, stored as MCOS objects that scipy cannot decode; one
  per variable, e.g. ``emg`` or ``run_emg_raw``) -> ``(time, channel)``, the variable chosen by ``trial=``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import check_values, emg_array, readable_file, select_channels

MAT_EXTENSIONS = (".mat",)
# ExperimentalData fields with cycles -> (path below the subject, units); Falisse's extraction script
# stores rotations in deg (pelvis_tx/ty/tz in m) and GRF in % body weight (force / (body weight / 100)).
CYCLE_QUANTITIES = {
    "EMG": ((), "unknown (unnormalised EMG envelope)"),
    "Q": (("Qs",), "deg (rotations), m (pelvis_tx/ty/tz)"),
    "Qdots": (("Qdots",), "deg/s (rotations), m/s (pelvis_tx/ty/tz)"),
    "GRFs": ((), "% body weight"),
    "Torques": ((), "N m"),
    "Powers": ((), "W"),
}
PHASE_DEFINITION = ("0-100 % from heel strike to the next heel strike of the same leg, both included "
                    "(the points are evenly spaced in time, as Falisse et al.'s extraction interpolates them)")


def _fail(path: Path, what: str) -> DataFormatError:
    return DataFormatError(f"{path}: {what}")


def _variables(path: Path) -> dict:
    """The variables of a MAT-file: scipy structs, or mat-io objects when the file holds MCOS objects."""
    import scipy.io

    try:
        with warnings.catch_warnings():  # scipy on MCOS files: 'Duplicate variable name "None"'; mat-io: pandas
            warnings.simplefilter("ignore")
            found = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
            if "__function_workspace__" in found:  # MCOS objects (dataset, table, string...): scipy sees none
                from matio import load_from_mat

                found = load_from_mat(str(path))
    except Exception as err:  # scipy and mat-io raise OSError, ValueError, TypeError, zlib.error...
        raise _fail(path, f"cannot be read as a MATLAB .mat file ({type(err).__name__}: {err}); "
                          "truncated or corrupt, or a v7.3 (HDF5) file") from err
    return {k: v for k, v in found.items() if not k.startswith("__")}


def read_mat(path: str | Path, *, channels=None, side: str = "unknown", units: str | None = None,
             quantity: str = "EMG", subject: str = "subject1", trial: str | None = None,
             sampling_rate: float | None = None) -> xr.DataArray:
    """Read a MAT-file by its content (see the module doc).

    Cycle tables: ``quantity`` (``EMG``, ``Q``, ``Qdots``, ``GRFs``, ``Torques``, ``Powers``) of
    ``subject``. ``dataset`` objects: ``trial`` names the variable (needed when there are several);
    ``sampling_rate`` (Hz) rebuilds a wrong stored time column as ``t0 + k / sampling_rate``. ``units``
    labels time series whose file does not say them.
    """
    path = readable_file(path)
    variables = _variables(path)
    if "ExperimentalData" in variables:
        da = _cycle_table(path, variables["ExperimentalData"], quantity, subject, side)
    elif objects := {k: v for k, v in variables.items() if getattr(v, "classname", None) == "dataset"}:
        da = _dataset_object(path, objects, trial, side, units, sampling_rate)
    elif structs := [k for k, v in variables.items() if {"data", "colheaders"} <= set(getattr(v, "_fieldnames", ()))]:
        da = _storage_struct(path, structs[0], variables[structs[0]], side, units)
    else:
        raise _fail(path, f"holds {sorted(variables) or 'no variables'}; expected ExperimentalData (gait-cycle "
                          "tables), MATLAB dataset objects, or a struct with data/colheaders (an OpenSim .mot)")
    return select_channels(da, channels)


def _field(path: Path, struct, names: tuple[str, ...], where: str):
    for name in names:
        if name not in getattr(struct, "_fieldnames", ()):
            have = list(getattr(struct, "_fieldnames", ()))
            raise _fail(path, f"{where} has no field {name!r}" + (f" (fields: {have})" if have else " (not a struct)"))
        struct, where = getattr(struct, name), f"{where}.{name}"
    return struct


def _cycle_table(path: Path, data, quantity: str, subject: str, side: str) -> xr.DataArray:
    """``ExperimentalData.<quantity>.<subject>`` as ``(cycle, phase, channel)``, missing cycles NaN."""
    if quantity not in CYCLE_QUANTITIES:
        raise _fail(path, f"unknown quantity {quantity!r}; choose one of {sorted(CYCLE_QUANTITIES)}")
    below, units = CYCLE_QUANTITIES[quantity]
    where = f"ExperimentalData.{quantity}.{subject}" + "".join(f".{b}" for b in below)
    table = _field(path, data, (quantity, subject, *below), "ExperimentalData")
    values = np.asarray(_field(path, table, ("all",), where), dtype=float)
    names = [str(c) for c in np.atleast_1d(_field(path, table, ("colheaders",), where))]
    stored = values.shape
    if values.ndim == 2:  # squeeze_me dropped a single cycle
        values = values[:, :, None]
    if values.ndim != 3 or values.shape[1] != len(names) or values.shape[0] < 2:
        raise _fail(path, f"{where}.all has shape {stored}; expected points x {len(names)} channels "
                          "(one per colheaders entry) x cycles")
    cycles = values.transpose(2, 0, 1)  # (cycle, phase, channel)
    missing = np.isnan(cycles)
    partly = missing.any(axis=1) & ~missing.all(axis=1)
    if partly.any():
        c, k = np.argwhere(partly)[0]
        warnings.warn(f"{path}: {int(partly.sum())} cycle(s) of {where} are partly NaN (first: cycle {c}, "
                      f"channel {names[k]!r}); each is dropped for its channel like a missing cycle", stacklevel=3)
    valid = ~missing.any(axis=1)  # (cycle, channel)
    cycles = np.where(valid[:, None, :], cycles, np.nan)
    da = xr.DataArray(
        cycles, dims=("cycle", "phase", "channel"), name=quantity.lower(),
        coords={"cycle": np.arange(cycles.shape[0]),
                "phase": ("phase", np.linspace(0.0, 100.0, cycles.shape[1]),
                          {"units": "%", "long_name": "percent of gait cycle"}),
                "channel": names,
                "valid": (("cycle", "channel"), valid, {"long_name": "cycle recorded for this channel"})},
        attrs={"source": str(path), "units": units, "side": side, "quantity": quantity, "subject": subject,
               "file_format": f"MATLAB v5 struct {where}", "phase_definition": PHASE_DEFINITION,
               "valid_cycles": json.dumps({n: int(v) for n, v in zip(names, valid.sum(0))}), "processing": "[]"},
    )
    check_values(da, where=valid[:, None, :])
    empty = [n for n, v in zip(names, valid.sum(0)) if v == 0]
    if empty:
        raise _fail(path, f"{where}: channels {empty} hold no complete cycle")
    return da


def valid_cycles(cycles: xr.DataArray) -> xr.DataArray:
    """The cycles of a table from :func:`read_mat` recorded in every one of its channels (NaN-free).

    Select channels first to keep more cycles: a channel recorded in fewer cycles limits all the others.
    """
    keep = cycles["valid"].all("channel").values
    if not keep.any():
        raise DataFormatError(f"{cycles.attrs.get('source', 'cycles')}: no cycle is recorded in all of the channels "
                              f"{[str(c) for c in cycles.channel.values]}; compare fewer channels")
    return cycles.isel(cycle=np.flatnonzero(keep))


def _storage_struct(path: Path, name: str, struct, side: str, units: str | None) -> xr.DataArray:
    """An OpenSim storage file saved as a struct: ``textdata`` lines up to ``endheader``, ``colheaders``, ``data``."""
    from kinesis_neuro.io.opensim import _short_label

    columns = [str(c) for c in np.atleast_1d(struct.colheaders)]
    values = np.atleast_2d(np.asarray(struct.data, dtype=float))
    if not columns or columns[0] != "time" or values.shape[1] != len(columns):
        raise _fail(path, f"{name}: {len(columns)} column names (first {columns[:1]}) for data of shape "
                          f"{values.shape}; expected 'time' first and one name per data column")
    text = np.asarray(getattr(struct, "textdata", []), dtype=object)
    lines = [str(v) for v in (text[:, 0] if text.ndim == 2 else text.ravel())]
    header = dict(line.split("=", 1) for line in lines if "=" in line)
    header = {k.strip().lower(): v.strip() for k, v in header.items()}
    n_rows = header.get("nrows", "")
    if n_rows.isdigit() and int(n_rows) != len(values):
        raise _fail(path, f"{name}: header says nRows={n_rows} but data has {len(values)} rows; truncated or corrupt")
    stated = {"in_degrees": int(header["indegrees"].lower() in ("yes", "true", "1"))} if "indegrees" in header else {}
    return emg_array(values[:, 1:], values[:, 0], [_short_label(c) for c in columns[1:]], source=path,
                     units=units or "unknown", side=side, file_format=f"MATLAB v5 struct {name} (OpenSim storage)",
                     table_name=lines[0] if lines else "", **stated)


def _text(value) -> str:
    return str(np.asarray(value, dtype=object).ravel()[0]) if np.asarray(value).size else ""


def _dataset_object(path: Path, objects: dict, trial: str | None, side: str, units: str | None,
                    sampling_rate: float | None) -> xr.DataArray:
    """One MATLAB ``dataset`` (a time column, then one column per channel) as ``(time, channel)``."""
    if trial is None and len(objects) > 1:
        raise _fail(path, f"holds several datasets {sorted(objects)}; choose one with trial=")
    trial = trial or next(iter(objects))
    if trial not in objects:
        raise _fail(path, f"no dataset {trial!r}; the file holds {sorted(objects)}")
    props = getattr(objects[trial], "properties", None) or {}
    try:
        names = [_text(v) for v in np.asarray(props["varnames"], dtype=object).ravel()]
        columns = [np.asarray(v, dtype=float).ravel() for v in np.asarray(props["data"], dtype=object).ravel()]
    except (KeyError, TypeError, ValueError) as err:
        raise _fail(path, f"dataset {trial!r} lacks readable varnames/data ({type(err).__name__}: {err})") from err
    if len(names) != len(columns) or len(names) < 2 or len({c.size for c in columns}) != 1:
        raise _fail(path, f"dataset {trial!r}: {len(names)} variable names for {len(columns)} columns of lengths "
                          f"{sorted({c.size for c in columns})}; expected a time column and channels of one length")
    if names[0].lower() != "time":
        raise _fail(path, f"dataset {trial!r}: the first variable is {names[0]!r}; expected a time column")
    values = np.column_stack(columns)
    empty = np.isnan(values).all(axis=1)
    tail = int(np.argmax(~empty[::-1])) if not empty.all() else len(values)
    if tail:
        warnings.warn(f"{path}: the last {tail} row(s) of dataset {trial!r} are empty (NaN in every column, time "
                      "included); dropped", stacklevel=3)
        values = values[: len(values) - tail]
    time, attrs = values[:, 0], {"file_format": f"MATLAB dataset object {trial!r}", "trial": trial}
    if sampling_rate is not None:
        file_rate = 1.0 / float(np.median(np.diff(time)))
        if abs(file_rate - sampling_rate) > 1e-3 * sampling_rate:
            time = time[0] + np.arange(len(time)) / sampling_rate
            attrs["time_base_fix"] = (f"the stored time column steps at {file_rate:g} Hz; sample k is taken at "
                                      f"t0 + k / {sampling_rate:g} s")
            warnings.warn(f"{path}: dataset {trial!r}: {attrs['time_base_fix']}", stacklevel=3)
    da = emg_array(values[:, 1:], time, names[1:], source=path, units=units or "unknown", side=side,
                   sampling_rate=sampling_rate, **attrs)
    if "time_base_fix" in attrs:
        da.attrs["processing"] = json.dumps([{"step": "time_base_fix", "file_rate_hz": round(file_rate, 6),
                                              "sampling_rate_hz": float(sampling_rate)}])
    return da
