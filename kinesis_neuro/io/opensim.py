"""OpenSim storage files: ``.sto``/``.mot`` (header versions 0, 1 and 3) and ``.trc`` markers."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import xarray as xr

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import emg_array, select_channels

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


def read_storage_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Parse an OpenSim ``.sto``/``.mot`` file into (table with a ``time`` column, header dict).

    The header keys are lower-cased (``version``, ``nrows``, ``ncolumns``, ``indegrees``,
    ``datatype``, ...); ``name`` is the first header line.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="strict")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not a text OpenSim storage file ({err.reason})") from err
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read file ({err.strerror})") from err
    lines = text.splitlines()
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
    body = "\n".join(lines[end + 1 :])
    try:
        table = pd.read_csv(io.StringIO(body), sep=r"\s+", engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataFormatError(f"{path}: cannot parse the data block after 'endheader' ({err})") from err
    if table.empty or "time" not in table.columns:
        raise DataFormatError(
            f"{path}: expected a column header starting with 'time' and at least one data row"
        )
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise DataFormatError(f"{path}: non-numeric values in columns {non_numeric} (truncated or corrupt file?)")
    # nColumns is often stale in OpenSim 4 files (coordinates.sto says 40, holds 32); nRows is not.
    n_rows = header.get("nrows", "")
    if n_rows.isdigit() and int(n_rows) != len(table):
        raise DataFormatError(
            f"{path}: header says nRows={n_rows} but the data block has {len(table)} rows; "
            "the file is truncated or corrupt"
        )
    return table, header


def read_storage(
    path: str | Path,
    *,
    channels=None,
    units: str | None = None,
    side: str = "unknown",
    allow_nan: bool = False,
) -> xr.DataArray:
    """Read an OpenSim ``.sto``/``.mot`` file as a ``(time, channel)`` DataArray.

    Long OpenSim 4 labels are shortened to the coordinate name. ``inDegrees=yes`` is kept
    in attrs (``in_degrees``); values are not converted, since only the model knows which
    columns are rotations.
    """
    table, header = read_storage_table(path)
    in_degrees = header.get("indegrees", "no").lower() in ("yes", "true", "1")
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
        in_degrees=int(in_degrees),
        table_name=header["name"],
    )
    return select_channels(da, channels)


def read_trc(path: str | Path, *, channels=None, side: str = "unknown") -> xr.DataArray:
    """Read a ``.trc`` marker file: channels ``<marker>_x/_y/_z`` in the file's units; gaps are NaN."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read as a text .trc file ({err})") from err
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
    values = table.iloc[:, 2 : 2 + 3 * n_markers].apply(pd.to_numeric, errors="coerce").to_numpy()
    if values.shape[1] != 3 * n_markers:
        raise DataFormatError(f"{path}: expected {3 * n_markers} coordinate columns, found {values.shape[1]}")
    names = [f"{m}_{axis}" for m in markers for axis in "xyz"]
    da = emg_array(
        values,
        pd.to_numeric(table.iloc[:, 1], errors="coerce").to_numpy(),
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
