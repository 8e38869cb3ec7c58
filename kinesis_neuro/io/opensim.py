"""OpenSim storage files: ``.sto``/``.mot`` (header versions 0, 1 and 3) and ``.trc`` markers."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import emg_array, read_text, select_channels
from kinesis_neuro.io.tabular import _exact_values

OPENSIM_EXTENSIONS = (".sto", ".mot")
TRC_EXTENSIONS = (".trc",)


def _short_label(label: str) -> str:
    """``/jointset/hip_r/hip_flexion_r/value`` -> ``hip_flexion_r`` (``.../speed`` -> ``..._speed``)."""
    if not label.startswith("/"):
        return label
    parts = [p for p in label.split("/") if p]
    if len(parts) >= 2 and parts[-1] == "value":
        return parts[-2]
    return "_".join(parts[-2:]) if len(parts) >= 2 else parts[-1]


def read_storage_table(path: str | Path, stale_nrows: bool = False) -> tuple[pd.DataFrame, dict[str, str]]:
    """Parse an OpenSim ``.sto``/``.mot`` file into (table with a ``time`` column, header dict).

    The header keys are lower-cased (``version``, ``nrows``, ``ncolumns``, ``indegrees``,
    ``datatype``, ...); ``name`` is the first header line. The column names must be distinct and
    every row must hold one number per column. A row count other than the header's ``nRows`` means a
    truncated file, unless ``stale_nrows`` (a file known to carry a wrong count): then a warning.
    """
    path = Path(path)
    lines = read_text(path).splitlines()
    try:
        end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    except StopIteration:
        raise DataFormatError(
            f"{path}: no 'endheader' line; expected an OpenSim .sto/.mot header "
            "(name, version=, nRows=, nColumns=, inDegrees=, endheader)"
        ) from None
    header: dict[str, str] = {"name": lines[0].strip() if end > 0 else ""}
    for line in lines[1:end] if end > 0 else []:
        if "=" in line:
            key, _, value = line.partition("=")
            header[key.strip().lower()] = value.strip()
    rows = [(i + 1, line.split()) for i, line in enumerate(lines[end + 1 :], start=end + 1) if line.strip()]
    if len(rows) < 2 or rows[0][1][0] != "time":
        raise DataFormatError(
            f"{path}: expected a column header starting with 'time' and at least one data row"
        )
    (label_line, names), rows = rows[0], rows[1:]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataFormatError(f"{path}: duplicate column names {dup} in the column header (line {label_line})")
    values = _exact_values(path, iter(rows), len(names), list(range(len(names))), False, names)
    table = pd.DataFrame(values, columns=names)
    # nColumns is often stale in OpenSim 4 files (coordinates.sto says 40, holds 32); nRows is not.
    n_rows = header.get("nrows", "")
    if n_rows.isdigit() and int(n_rows) != len(table):
        problem = f"{path}: header says nRows={n_rows} but the data block has {len(table)} rows"
        if not stale_nrows:
            raise DataFormatError(f"{problem}; the file is truncated or corrupt")
        warnings.warn(f"{problem} ({table['time'].iloc[0]:g}-{table['time'].iloc[-1]:g} s); the rows are read "
                      "(a stale header count, a known defect of this file)", stacklevel=3)
    return table, header


def read_storage(
    path: str | Path,
    *,
    channels=None,
    units: str | None = None,
    side: str = "unknown",
    allow_nan: bool = False,
    stale_nrows: bool = False,
) -> xr.DataArray:
    """Read an OpenSim ``.sto``/``.mot`` file as a ``(time, channel)`` DataArray.

    Long OpenSim 4 labels are shortened to the coordinate name. The header's ``inDegrees`` is kept
    in attrs (``in_degrees``: 1 or 0; absent when the header does not say, as in SIMM-style
    headers); values are not converted, since only the model knows which columns are rotations.
    ``stale_nrows``: see :func:`read_storage_table`.
    """
    table, header = read_storage_table(path, stale_nrows)
    stated = {"in_degrees": int(header["indegrees"].lower() in ("yes", "true", "1"))} if "indegrees" in header else {}
    labels = [_short_label(c) for c in table.columns[1:]]
    da = emg_array(
        table.iloc[:, 1:].to_numpy(),
        table["time"].to_numpy(),
        labels,
        source=path,
        units=units or "unknown",
        side=side,
        allow_nan=allow_nan,
        file_format=f"OpenSim storage (version {header.get('version', '0')})",
        table_name=header["name"],
        **stated,
    )
    return select_channels(da, channels)


def read_trc(path: str | Path, *, channels=None, side: str = "unknown") -> xr.DataArray:
    """Read a ``.trc`` marker file: channels ``<marker>_x/_y/_z`` in the file's units; gaps (empty
    cells) are NaN, any other non-numeric cell is an error."""
    path = Path(path)
    lines = read_text(path).splitlines()
    if len(lines) < 6 or not lines[0].startswith("PathFileType"):
        raise DataFormatError(f"{path}: expected a .trc file starting with 'PathFileType' and 5 header lines")
    keys, values = lines[1].split(), lines[2].split()
    meta = {k.strip(): v.strip() for k, v in zip(keys, values)}
    try:
        rate = float(meta["DataRate"])
        n_markers = int(meta["NumMarkers"])
        n_frames = int(meta["NumFrames"])
    except (KeyError, ValueError) as err:
        raise DataFormatError(f"{path}: the .trc header lacks DataRate/NumMarkers/NumFrames ({err})") from err
    if not 0 < rate < float("inf"):
        raise DataFormatError(f"{path}: DataRate is {meta['DataRate']}; expected a positive sampling rate in Hz")
    markers = [m.strip() for m in lines[3].split("\t")[2:] if m.strip()]
    if len(markers) != n_markers:
        raise DataFormatError(f"{path}: header says {n_markers} markers, the name row has {len(markers)}")
    rows = [line for line in lines[5:] if line.strip()]
    try:
        table = pd.read_csv(io.StringIO("\n".join(rows)), sep="\t", header=None, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataFormatError(f"{path}: cannot parse the marker data ({err})") from err
    if len(table) != n_frames:
        raise DataFormatError(f"{path}: header says {n_frames} frames, found {len(table)}; truncated file?")
    cells = table.iloc[:, 1 : 2 + 3 * n_markers]  # time, then the coordinates
    if cells.shape[1] != 1 + 3 * n_markers:
        raise DataFormatError(f"{path}: expected {3 * n_markers} coordinate columns, found {cells.shape[1] - 1}")
    names = [f"{m}_{axis}" for m in markers for axis in "xyz"]
    numbers = cells.apply(pd.to_numeric, errors="coerce")
    text = numbers.isna() & cells.notna()
    if text.to_numpy().any():
        row, col = (int(i[0]) for i in np.nonzero(text.to_numpy()))
        raise DataFormatError(f"{path}: non-numeric value {cells.iat[row, col]!r} in column "
                              f"'{(['time'] + names)[col]}' of frame {row + 1}; expected numbers only")
    da = emg_array(
        numbers.iloc[:, 1:].to_numpy(),
        numbers.iloc[:, 0].to_numpy(),
        names,
        source=path,
        units=meta.get("Units", "unknown"),
        side=side,
        sampling_rate=rate,
        allow_nan=True,
        name="markers",
        file_format="TRC",
    )
    return select_channels(da, channels)
