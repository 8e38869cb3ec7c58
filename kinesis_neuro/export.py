"""Lab-ready export: one self-describing dataset per study (NetCDF, Zarr or CSV) plus a data dictionary."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from kinesis_neuro import __version__, gait, registration, storage
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError
from kinesis_neuro.record import Recording

FORMATS = ("netcdf", "zarr", "csv")
COMPARISON_VARIABLES = ("r", "r_ci_lower", "r_ci_upper", "best_lag", "rmse", "cosine", "onoff_agreement",
                        "human_cycles")


def load_comparison(path) -> xr.Dataset:
    """A ``comparison.nc`` written by ``kinesis-neuro compare`` (``DataFormatError`` naming what is missing
    or invalid for any other file)."""
    ds = storage.load(path)
    kind = ds.attrs.get("comparison_kind", "cycles") if isinstance(ds, xr.Dataset) else "cycles"
    if kind != "cycles":
        raise DataFormatError(f"{path}: a {kind} comparison ({ds.attrs.get('comparison', '')}); the study dataset "
                              "holds gait-cycle comparisons only (its figures and summary.json are the outputs of "
                              "this one)")
    missing = [v for v in COMPARISON_VARIABLES if not isinstance(ds, xr.Dataset) or v not in ds]
    if missing:
        raise DataFormatError(f"{path}: not a kinesis-neuro comparison (comparison.nc of `kinesis-neuro compare`): "
                              f"lacks variables {missing}")
    for name in ("r", "r_ci_lower", "r_ci_upper", "cosine"):
        values = ds[name].values.astype(float)
        if np.any(np.abs(values[np.isfinite(values)]) > 1 + 1e-9) or np.any(np.isinf(values)):
            raise DataFormatError(f"{path}: variable {name!r} must lie in -1..1 (NaN where undefined)")
    return ds


def _source_name(recording: Recording, index: int) -> str:
    attrs = recording.data.attrs
    seed = int(attrs.get("seed", -1))
    return f"{attrs.get('controller', 'recording')}" + (f" (seed {seed})" if seed >= 0 else f" #{index}")


def recording_cycles(recording: Recording, *, side: str = "right", n_points: int = 101) -> xr.DataArray:
    """Muscle activations of one side cut into gait cycles: ``(cycle, phase, muscle)``."""
    act = recording.muscle_activation(side).rename(muscle="channel").transpose("time", "channel")
    cycles = gait.segment_cycles(act, recording.events(), side=side, n_points=n_points, outlier_sd=None)
    return cycles.rename(channel="muscle")


def study_dataset(recordings: list[Recording], comparison: xr.Dataset | None = None, *, side: str = "right",
                  n_points: int = 101) -> xr.Dataset:
    """Activation cycles of every recording along ``source`` (cycles padded with NaN), the comparison's
    per-muscle metrics when given, CF-style attributes and provenance."""
    if not recordings:
        raise KinesisNeuroError("export needs at least one recording")
    parts, names, provenance = [], [], []
    for k, rec in enumerate(recordings):
        cycles = recording_cycles(rec, side=side, n_points=n_points)
        parts.append(cycles.drop_vars([c for c in cycles.coords if c not in ("phase", "muscle")])
                     .assign_coords(cycle=np.arange(cycles.sizes["cycle"])))
        names.append(_source_name(rec, k))
        provenance.append({key: rec.data.attrs.get(key) for key in
                           ("model", "motion", "controller", "seed", "kinesis_neuro_version", "mujoco_version",
                            "myo_sim_version", "created", "sampling_rate")})
    activation = xr.concat(parts, dim="source", join="outer", fill_value=np.nan).assign_coords(source=names)
    activation.attrs = {"units": "1", "long_name": "muscle activation, time-normalised gait cycles",
                        "standard_name": "muscle_activation"}
    ds = xr.Dataset({"activation": activation})
    if comparison is not None:
        for name, long_name in (("r", "Pearson r of mean cycles, simulation vs human"),
                                ("r_ci_lower", "lower bound of the bootstrap CI of r"),
                                ("r_ci_upper", "upper bound of the bootstrap CI of r"),
                                ("best_lag", "circular lag of highest r (positive: simulation late)"),
                                ("rmse", "RMSE of peak-normalised mean cycles"),
                                ("cosine", "cosine similarity of mean cycles"),
                                ("onoff_agreement", "fraction of the cycle where both are on or both off")):
            ds[f"comparison_{name}"] = comparison[name].assign_attrs(
                long_name=long_name, units="%" if name == "best_lag" else "1")
        ds["human_emg"] = comparison["human_cycles"].assign_attrs(units="1", long_name="human EMG cycles (normalised)")
    coordinate_names = {"phase": ("percent of gait cycle (heel strike to heel strike)", "%"),
                        "muscle": ("MyoLegs muscle (MuJoCo actuator name)", "1"),
                        "cycle": ("gait cycle index within a source", "1"),
                        "source": ("controller (and seed) that produced the activations", "1"),
                        "channel": ("human EMG channel", "1"), "human_cycle": ("human gait cycle or subject", "1")}
    for name, (long_name, units) in coordinate_names.items():
        if name in ds.coords:
            ds[name].attrs.update(long_name=long_name, units=units)
    ds.attrs = {
        "Conventions": "CF-1.10", "title": "kinesis-neuro study: simulated muscle activations in gait cycles",
        "institution": "", "source": "kinesis-neuro " + __version__,
        "history": f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} kinesis-neuro export",
        "side": side, "provenance": json.dumps(provenance, default=str),
        "phase_definition": str(cycles.attrs.get("phase_definition", "")),
        "registration": registration.REGISTRATIONS[registration.EVEN],
        "comparison": json.dumps({k: str(v) for k, v in comparison.attrs.items()}) if comparison is not None else "",
    }
    return ds


def data_dictionary(ds: xr.Dataset) -> str:
    """Plain-text description of every dimension, variable and attribute (for MATLAB/R/pandas users)."""
    lines = [ds.attrs.get("title", "dataset"), "", "dimensions:"]
    lines += [f"  {dim}: {size}" for dim, size in ds.sizes.items()]
    lines += ["", "variables:"]
    for name, var in {**ds.coords, **ds.data_vars}.items():
        lines.append(f"  {name} ({', '.join(var.dims)}): {var.attrs.get('long_name', '')} "
                     f"[{var.attrs.get('units', '-')}]")
    lines += ["", "global attributes:"]
    lines += [f"  {key}: {value}" for key, value in ds.attrs.items()]
    return "\n".join(lines) + "\n"


def write(ds: xr.Dataset, path: str | Path, fmt: str = "netcdf") -> list[Path]:
    """Write ``ds`` as NetCDF (.nc), Zarr (.zarr) or CSV (long table) plus ``<path>.dictionary.txt``."""
    if fmt not in FORMATS:
        raise KinesisNeuroError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    path = Path(path)
    if fmt == "netcdf":
        storage.write_netcdf(ds, path)
    elif fmt == "zarr":
        storage.write_zarr(ds, path)
    else:
        storage.write_csv(ds["activation"].to_dataframe().dropna(), path)
    dictionary = path.with_name(path.name + ".dictionary.txt")
    storage.write_text(data_dictionary(ds), dictionary)
    return [path, dictionary]
