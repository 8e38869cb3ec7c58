"""Saving and loading DataArrays/Datasets as NetCDF (``.nc``) or Zarr (``.zarr``), attrs included;
summaries as strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import xarray as xr

from kinesis_neuro.errors import DataFormatError


def _format(path: Path) -> str:
    if path.suffix == ".nc":
        return "netcdf"
    if path.suffix == ".zarr":
        return "zarr"
    raise DataFormatError(f"{path}: unknown output format; use a .nc (NetCDF) or .zarr path")


def save(data: xr.DataArray | xr.Dataset, path: str | Path) -> Path:
    """Write ``data`` with coordinates, units and processing history; returns the path."""
    path = Path(path)
    fmt = _format(path)
    if isinstance(data, xr.DataArray):
        ds = data.to_dataset(name=data.name or "data")
        ds.attrs["kinesis_neuro_dataarray"] = data.name or "data"
    else:
        ds = data
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "netcdf":
        ds.to_netcdf(path, engine="h5netcdf", invalid_netcdf=False)
    else:
        ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)  # v2: readable by every Zarr library
    return path


def load(path: str | Path) -> xr.DataArray | xr.Dataset:
    """Read what :func:`save` wrote: a DataArray comes back as a DataArray."""
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise DataFormatError(f"{path}: no such file")
    try:
        ds = xr.load_dataset(path, engine="h5netcdf") if fmt == "netcdf" else xr.open_zarr(path, consolidated=True).load()
    except Exception as err:
        raise DataFormatError(f"{path}: cannot read as {fmt} ({type(err).__name__}: {err})") from err
    name = ds.attrs.get("kinesis_neuro_dataarray")
    if name is None:
        return ds
    return ds[name]


def _strict(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as strict JSON (NaN and infinities become ``null``, which every reader accepts)."""
    path = Path(path)
    path.write_text(json.dumps(_strict(obj), indent=2, allow_nan=False))
    return path
