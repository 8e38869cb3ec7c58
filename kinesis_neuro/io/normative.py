"""Normative gait-cycle curves: Schwartz, Rozumalski & Trost (2008) tables as kept in biomechZoo.

Each text file holds one quantity (an EMG envelope or a joint angle) without a header: 51 rows
(0:2:100 % of the gait cycle) x 16 columns: % cycle, then for each of 5 walking speeds the triple
(-1 SD, mean, +1 SD), as ``schwartz2mat.m`` reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import check_values, read_text, select_channels
from kinesis_neuro.io.tabular import _exact_values

# schwartz2mat.m, velnd: speed groups and their non-dimensional speeds v / sqrt(g * leg length), mean and SD
SPEEDS = ("VerySlow", "Slow", "Free", "Fast", "VeryFast")
SPEED_ND = (0.172, 0.290, 0.429, 0.560, 0.694)
SPEED_ND_SD = (0.035, 0.027, 0.026, 0.031, 0.047)
COLUMNS = ["gait_cycle_percent", *(f"{s}_{k}" for s in SPEEDS for k in ("minus1sd", "mean", "plus1sd"))]
PHASE_DEFINITION = "0-100 % of the gait cycle from foot contact, every 2 % (51 points, both ends included)"


def read_normative(path: str | Path, *, units: str = "unknown", side: str = "unknown") -> xr.Dataset:
    """One normative table as a Dataset: ``mean`` and ``sd`` (``(speed, phase, channel)``, in ``units``),
    one channel named after the file (``MGastrocnemiusMed``). ``speed`` holds the non-dimensional speeds
    (coords ``speed_name``, ``speed_sd``); ``phase`` is in % of the gait cycle. ``sd`` is half the
    distance between the file's +1 SD and -1 SD curves."""
    path = Path(path)
    rows = [(i + 1, line.split()) for i, line in enumerate(read_text(path).splitlines()) if line.strip()]
    values = _exact_values(path, iter(rows), len(COLUMNS), list(range(len(COLUMNS))), False, COLUMNS)
    phase = values[:, 0]
    if len(phase) < 2 or phase[0] != 0.0 or phase[-1] != 100.0 or np.any(np.diff(phase) <= 0):
        raise DataFormatError(f"{path}: the first column runs {phase[0]:g} to {phase[-1]:g} % in {len(phase)} rows; "
                              "expected the gait cycle percent rising from 0 to 100 (e.g. 0:2:100)")
    triples = values[:, 1:].reshape(len(phase), len(SPEEDS), 3).transpose(1, 0, 2)[..., None, :]  # speed, phase, 1, k
    coords = {"speed": ("speed", list(SPEED_ND), {"units": "1", "long_name": "non-dimensional walking speed"}),
              "speed_name": ("speed", list(SPEEDS)),
              "speed_sd": ("speed", list(SPEED_ND_SD), {"units": "1", "long_name": "SD of the group's speed"}),
              "phase": ("phase", phase, {"units": "%", "long_name": "percent of gait cycle"}),
              "channel": [path.stem]}
    dims = ("speed", "phase", "channel")
    ds = xr.Dataset({"mean": (dims, triples[..., 1], {"units": units}),
                     "sd": (dims, (triples[..., 2] - triples[..., 0]) / 2, {"units": units})}, coords=coords)
    ds.attrs.update(source=str(path), units=units, side=side, phase_definition=PHASE_DEFINITION, processing="[]",
                    file_format="Schwartz 2008 normative table (biomechZoo)")
    for name in ("mean", "sd"):
        check_values(ds[name].assign_attrs(source=str(path)))
    if np.any(ds.sd < 0):
        raise DataFormatError(f"{path}: a +1 SD curve lies below its -1 SD curve; the columns are not in the "
                              "order (-1 SD, mean, +1 SD) per speed")
    return ds


def read_normative_mean(path: str | Path, *, channels=None, units: str = "unknown",
                        side: str = "unknown") -> xr.DataArray:
    """The ``mean`` curves of :func:`read_normative` as a ``(speed, phase, channel)`` DataArray (its SD in
    ``read_normative(path).sd``)."""
    ds = read_normative(path, units=units, side=side)
    return select_channels(ds["mean"].assign_attrs(ds.attrs, note="mean curves; their SD: read_normative(...).sd"),
                           channels)
