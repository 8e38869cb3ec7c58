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
    ".mat": ("matlab", "read_mat"),
    ".csv": ("tabular", "read_table"),
    ".tsv": ("tabular", "read_table"),
    ".txt": ("tabular", "read_table"),
    **{ext: ("neo_formats", "read_neo") for ext in (".edf", ".bdf", ".vhdr", ".rhd", ".rhs", ".nwb")},
}


# card kind -> reader, for registered files whose extension says too little (a headerless .txt table)
KIND_READERS = {
    "normative-emg": ("normative", "read_normative_mean"),
    "normative-kinematics": ("normative", "read_normative_mean"),
}
# Reader options that repair a registered file's documented defect (see its card). They apply to that
# file only, whose SHA-256 has been checked, so the defect is known to be there; each repair warns.
REPAIRS = {
    ("rajagopal-run", "emg_run.mat"): {"sampling_rate": 1000.0},  # stored time steps 1/960 s
    ("moco-subject05", "ik_solution.mot"): {"stale_nrows": True},  # header nRows=230, 131 rows
}


def _dataset_file(spec: str, data_dir) -> tuple[Path, dict]:
    name, _, filename = spec.partition("/")
    entry = datasets.get(name).file(filename or None)
    return datasets.fetch(name, entry.name, data_dir=data_dir), entry.meta


def source_path(source: str | os.PathLike, data_dir=None) -> Path:
    """The regular file ``source`` names: a path, or a registered ``DATASET/FILE`` (verified, fetched if needed)."""
    return readable_file(_dataset_file(str(source), data_dir)[0] if datasets.is_dataset_spec(source) else source)


def _reader(path: Path, kind: str | None = None):
    suffix = path.suffix.lower()
    if kind not in KIND_READERS and suffix not in READERS:
        raise DataFormatError(f"{path}: unknown file type {suffix!r}; readable: {' '.join(sorted(READERS))}")
    module, func = KIND_READERS.get(kind) or READERS[suffix]
    return getattr(importlib.import_module(f"kinesis_neuro.io.{module}"), func)


def read(source: str | os.PathLike, *, channels=None, data_dir=None, **options) -> xr.DataArray:
    """Read a signal as ``DataArray(dims=("time", "channel"))`` with time in s (gait-cycle tables:
    ``(cycle, phase, channel)``; normative tables: ``(speed, phase, channel)``, see :func:`read_normative`).

    ``source`` is a file path or a registered dataset: ``"moco-walk"`` (its EMG file) or
    ``"moco-walk/grf_walk.mot"``. The format follows the extension (registered files: their card's
    kind). ``options`` go to the format's reader (``trial=``, ``stream=``, ``sampling_rate=``,
    ``time_column=``, ``side=``, ``units=``, ``quantity=`` ...). Units, side, the EMG channels of a C3D
    file and the repairs of :data:`REPAIRS` of registered files come from their card.
    """
    card = {}
    if datasets.is_dataset_spec(source):
        path, card = _dataset_file(str(source), data_dir)
        options.setdefault("side", card.get("side", "unknown"))
        suffix = Path(path).suffix.lower()
        if "units" in card and (suffix in (".sto", ".mot", ".rdata", ".csv", ".tsv") or card["kind"] == "emg"
                                or card["kind"] in KIND_READERS):
            options.setdefault("units", card["units"])
        if channels is None and suffix == ".c3d" and card.get("muscles"):
            channels = card["muscles"]
        for key, value in REPAIRS.get((str(source).partition("/")[0], card["name"]), {}).items():
            options.setdefault(key, value)
    else:
        path = Path(source)
        if not path.exists():
            raise DataFormatError(f"{path}: no such file (and not a registered dataset: {sorted(datasets.registry())})")
    reader = _reader(Path(path), card.get("kind"))
    da = reader(readable_file(path), channels=channels, **options)
    if card:
        da.attrs.update(dataset=str(source).partition("/")[0], dataset_file=card["name"], sha256=card["sha256"])
    return da


def read_events(source: str | os.PathLike, *, data_dir=None, **options) -> pd.DataFrame:
    """Gait events (``time``, ``event``, ``side``) stored with a recording: C3D events,
    musclesyneRgies ``$cycles``, or detected from an OpenSim GRF file (``.mot``, or a ``.mat`` struct of one;
    ``options`` go to :func:`kinesis_neuro.gait.events_from_grf`)."""
    from kinesis_neuro import gait

    path = source_path(source, data_dir)
    suffix = path.suffix.lower()
    if suffix == ".c3d":
        from kinesis_neuro.io.c3d import read_c3d_events

        return gait.events_from_table(read_c3d_events(path))
    if READERS.get(suffix, ("",))[0] == "rdata":
        from kinesis_neuro.io.rdata import read_rdata_events

        return read_rdata_events(path, **options)
    if READERS.get(suffix, ("",))[0] in ("opensim", "matlab"):  # a GRF table; the card may name its feet
        return gait.events_from_grf(read(source, data_dir=data_dir), **options)
    raise DataFormatError(f"{path}: no gait events can be read from {suffix!r} files (use .c3d, .RData or a GRF "
                          ".mot/.mat)")


def read_normative(source: str | os.PathLike, *, kind: str = "normative-emg", data_dir=None) -> xr.Dataset:
    """Normative curves (``mean`` and ``sd``, ``(speed, phase, channel)``; see
    :func:`kinesis_neuro.io.normative.read_normative`) of a file or of a whole registered dataset: every
    file of ``kind`` (``normative-emg`` or ``normative-kinematics``) of ``"schwartz2008"`` as channels."""
    from kinesis_neuro.io.normative import read_normative as read_table

    text = str(source)
    if not datasets.is_dataset_spec(text):
        return read_table(source_path(source))
    name, _, filename = text.partition("/")
    entries = [datasets.get(name).file(filename)] if filename else datasets.get(name).files_of_kind(kind)
    if not entries:
        raise DataFormatError(f"dataset {name!r} has no files of kind {kind!r}")
    tables = [read_table(datasets.fetch(name, e.name, data_dir=data_dir), units=e.meta["units"],
                         side=e.meta["side"]) for e in entries]
    ds = xr.concat(tables, "channel", combine_attrs="drop_conflicts")
    ds.attrs.update(source=str(Path(tables[0].attrs["source"]).parent), dataset=name,
                    dataset_files=[e.name for e in entries])
    return ds
