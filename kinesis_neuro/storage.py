"""Writing every output safely and reading back what was written.

Every output (NetCDF, Zarr, CSV, JSON, figures, checkpoints, policy folders) is written under a
temporary name beside its target and renamed onto it only when complete: an interrupted or failed
command never leaves a half-written file under the final name. A folder of outputs is assembled in
a staging folder and moved into place when all of it is written (:func:`output_folder`). NetCDF is
encoded in memory first, so a full disk gives Python's ``OSError`` (one line at the command line),
never a crash inside the HDF5 library. Outputs that would overwrite an input are refused
(:func:`refuse_overwriting`).
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import xarray as xr

from kinesis_neuro.errors import DataFormatError, KinesisNeuroError

PARTIAL = ".partial-"  # marks temporary names: ``.<stem>.partial-<pid><suffix>``


def _partial_name(path: Path) -> Path:
    """The temporary name of ``path`` for this process; leftovers of killed processes for it are removed."""
    for old in path.parent.glob(f".{glob.escape(path.stem)}{PARTIAL}*{glob.escape(path.suffix)}"):
        pid = old.name[len(path.stem) + 1 + len(PARTIAL):len(old.name) - len(path.suffix)]
        if pid.isdigit() and not _running(int(pid)):
            _remove(old)
    return path.with_name(f".{path.stem}{PARTIAL}{os.getpid()}{path.suffix}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) to write to; renamed onto ``path`` when the block
    ends without error, removed when it fails. Works for files and for folders (``.zarr``)."""
    path = Path(path)
    if path.is_dir() and not path.suffix:
        raise KinesisNeuroError(f"{path}: is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(path)
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.exists():  # a folder (Zarr) cannot be renamed onto a non-empty one
            old = path.with_name(f".{path.stem}.replaced-{os.getpid()}{path.suffix}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(data: bytes | memoryview, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:  # name the output, not the temporary file
            raise OSError(err.errno, err.strerror, str(path)) from err
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes(text.encode("utf-8"), path)


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as NetCDF-4 (h5netcdf), encoded in memory, then written atomically; returns the path."""
    return write_bytes(ds.to_netcdf(engine="h5netcdf", invalid_netcdf=False), path)


def write_zarr(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as a Zarr v2 folder (readable by every Zarr library), atomically; returns the path."""
    with atomic_path(path) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    return Path(path)


def write_csv(table, path: str | os.PathLike, **options) -> Path:
    """Write a pandas table as CSV atomically (``options`` go to ``DataFrame.to_csv``); returns the path."""
    return write_text(table.to_csv(**options), path)


def savefig(fig, path: str | os.PathLike, **options) -> Path:
    """Save a matplotlib figure atomically (format from the suffix; ``options`` go to ``savefig``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **options)
    return path


def _merge(staging: Path, target: Path, last: tuple[str, ...]) -> None:
    """Move every entry of ``staging`` into ``target`` (sub-folders merged), the names in ``last`` at the end."""
    target.mkdir(parents=True, exist_ok=True)
    entries = sorted(staging.iterdir(), key=lambda p: (p.name in last, p.name))
    for entry in entries:
        dest = target / entry.name
        if entry.is_dir() and dest.is_dir() and entry.suffix != ".zarr":
            _merge(entry, dest, last)
            continue
        if entry.is_dir() and dest.exists():
            old = dest.with_name(f".{dest.name}.replaced-{os.getpid()}")
            os.replace(dest, old)
            os.replace(entry, dest)
            _remove(old)
        else:
            if dest.is_dir():
                _remove(dest)
            os.replace(entry, dest)


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if not p.is_dir())


@contextmanager
def output_folder(path: str | os.PathLike, *, protect: Iterable[str | os.PathLike] = (),
                  last: tuple[str, ...] = ("summary.json",)) -> Iterator[Path]:
    """A staging folder for a command's folder of outputs; when the block ends without error its files
    move into ``path`` (a new folder appears whole; in an existing one, ``last`` names are moved last),
    when it fails the staging folder is removed. A file that would replace one of ``protect`` (the
    command's inputs) is refused before anything moves."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise KinesisNeuroError(f"{path}: exists and is not a folder; --out takes an output folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _partial_name(path)
    _remove(staging)
    staging.mkdir()
    try:
        yield staging
        protected = _files_of(protect)
        clash = [str(path / f.relative_to(staging)) for f in _files(staging)
                 if (path / f.relative_to(staging)).resolve() in protected]
        if clash:
            raise KinesisNeuroError(f"{', '.join(clash)}: an output would overwrite an input; choose another --out")
        if path.exists():
            _merge(staging, path, last)
            _remove(staging)
        else:
            os.replace(staging, path)
    except BaseException:
        _remove(staging)
        raise


@contextmanager
def created_together(*paths: str | os.PathLike | None) -> Iterator[None]:
    """Outputs of one command written in one block: when the block fails, those of ``paths`` that it created
    are removed again (each is written atomically; this keeps a command from leaving some of them)."""
    targets = [Path(p) for p in paths if p is not None]
    existed = {p for p in targets if p.exists()}
    try:
        yield
    except BaseException:
        for p in targets:
            if p not in existed:
                _remove(p)
        raise


def _files_of(paths: Iterable[str | os.PathLike | None]) -> set[Path]:
    """The resolved paths, and the files inside those that are folders."""
    out = set()
    for p in (Path(p).resolve() for p in paths if p is not None):
        out.add(p)
        if p.is_dir():
            out.update(f.resolve() for f in _files(p))
    return out


def refuse_overwriting(outputs: Iterable[str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None]) -> None:
    """Raise ``KinesisNeuroError`` when an output path is one of the inputs, or one of the files of an input
    folder (a policy folder's weights, a run's log): writing it would destroy the input."""
    protected = _files_of(inputs)
    for output in (Path(p) for p in outputs if p is not None):
        if output.resolve() in protected:
            raise KinesisNeuroError(f"{output}: the output would overwrite an input (or a file of an input "
                                    "folder); choose another output path")


def _format(path: Path) -> str:
    if path.suffix == ".nc":
        return "netcdf"
    if path.suffix == ".zarr":
        return "zarr"
    raise DataFormatError(f"{path}: unknown output format; use a .nc (NetCDF) or .zarr path")


def save(data: xr.DataArray | xr.Dataset, path: str | Path) -> Path:
    """Write ``data`` with coordinates, units and processing history, atomically; returns the path."""
    path = Path(path)
    fmt = _format(path)
    if isinstance(data, xr.DataArray):
        ds = data.to_dataset(name=data.name or "data")
        ds.attrs["kinesis_neuro_dataarray"] = data.name or "data"
    else:
        ds = data
    return write_netcdf(ds, path) if fmt == "netcdf" else write_zarr(ds, path)


def load(path: str | Path) -> xr.DataArray | xr.Dataset:
    """Read what :func:`save` wrote: a DataArray comes back as a DataArray."""
    path = Path(path)
    fmt = _format(path)
    if not (path.is_dir() if fmt == "zarr" else path.is_file()):
        raise DataFormatError(f"{path}: no such {'Zarr folder' if fmt == 'zarr' else 'file'}"
                              + (" (it exists, but is not a regular file)" if path.exists() else ""))
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
    """Write ``obj`` as strict JSON (NaN and infinities become ``null``, which every reader accepts), atomically."""
    return write_text(json.dumps(_strict(obj), indent=2, allow_nan=False), path)
