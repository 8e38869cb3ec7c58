"""One entry point for EMG (and other time series) from any supported file or registered dataset."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pandas as pd
import xarray as xr

from kinesis_neuro import datasets
from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import readable_file

# extension -> (module under kinesis_neuro.io, reader function); modules are imported on first use
READERS = {
    ".sto": ("opensim", "read_storage"),
    ".mot": ("opensim", "read_storage"),
    ".trc": ("opensim", "read_trc"),
    ".rdata": ("rdata", "read_rdata"),
    ".rda": ("rdata", "read_rdata"),
    ".c3d": ("c3d", "read_c3d"),
    ".csv": ("tabular", "read_table"),
    ".tsv": ("tabular", "read_table"),
    ".txt": ("tabular", "read_table"),
    **{ext: ("neo_formats", "read_neo") for ext in (".edf", ".bdf", ".vhdr", ".rhd", ".rhs", ".nwb")},
}


def _dataset_file(spec: str, data_dir) -> tuple[Path, dict]:
    name, _, filename = spec.partition("/")
    entry = datasets.get(name).file(filename or None)
    return datasets.fetch(name, entry.name, data_dir=data_dir), entry.meta


def _reader(path: Path):
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise DataFormatError(f"{path}: unknown file type {suffix!r}; readable: {' '.join(sorted(READERS))}")
    module, func = READERS[suffix]
    return getattr(importlib.import_module(f"kinesis_neuro.io.{module}"), func)


def read(source: str | os.PathLike, *, channels=None, data_dir=None, **options) -> xr.DataArray:
    """Read a signal as ``DataArray(dims=("time", "channel"))`` with time in s.

    ``source`` is a file path or a registered dataset: ``"moco-walk"`` (its EMG file) or
    ``"moco-walk/grf_walk.mot"``. The format follows the extension. ``options`` go to the
    format's reader (``trial=``, ``stream=``, ``sampling_rate=``, ``time_column=``, ``side=``,
    ``units=`` ...). Units, side and sampling rate of registered files come from their card.
    """
    card = {}
    if datasets.is_dataset_spec(source):
        path, card = _dataset_file(str(source), data_dir)
        options.setdefault("side", card.get("side", "unknown"))
        if "units" in card and Path(path).suffix.lower() in (".sto", ".mot", ".rdata", ".csv", ".tsv"):
            options.setdefault("units", card["units"])
    else:
        path = Path(source)
        if not path.exists():
            raise DataFormatError(f"{path}: no such file (and not a registered dataset: {sorted(datasets.registry())})")
    reader = _reader(Path(path))
    da = reader(readable_file(path), channels=channels, **options)
    if card:
        da.attrs.update(dataset=str(source).partition("/")[0], dataset_file=card["name"], sha256=card["sha256"])
    return da


def read_events(source: str | os.PathLike, *, data_dir=None, **options) -> pd.DataFrame:
    """Gait events (``time``, ``event``, ``side``) stored with a recording: C3D events,
    musclesyneRgies ``$cycles``, or detected from an OpenSim GRF file (``options`` go to
    :func:`kinesis_neuro.gait.events_from_grf`)."""
    from kinesis_neuro import gait

    path = readable_file(_dataset_file(str(source), data_dir)[0] if datasets.is_dataset_spec(source) else source)
    suffix = path.suffix.lower()
    if suffix == ".c3d":
        from kinesis_neuro.io.c3d import read_c3d_events

        return gait.events_from_table(read_c3d_events(path))
    if READERS.get(suffix, ("",))[0] == "rdata":
        from kinesis_neuro.io.rdata import read_rdata_events

        return read_rdata_events(path, **options)
    if READERS.get(suffix, ("",))[0] == "opensim":
        from kinesis_neuro.io.opensim import read_storage

        return gait.events_from_grf(read_storage(path), **options)
    raise DataFormatError(f"{path}: no gait events can be read from {suffix!r} files (use .c3d, .RData or a GRF .mot)")
