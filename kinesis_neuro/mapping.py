"""Which MyoLegs muscles an EMG channel stands for, and simulated activations combined per channel.

The mapping is data (``kinesis_neuro/data/emg_mapping.csv``), one row per EMG channel name:

``emg_name``
    the channel as a dataset names it (``gastrocnemius``, ``GM``, ``Medial Gastrocnemius``).
``convention``
    whose names these are: ``moco-walk``, ``musclesynergies``, ``kinesis`` (``user`` by default
    in a user file).
``muscles``
    MyoLegs base muscle names separated by spaces or ``+`` (``gasmed gaslat``); the side
    suffix (``_r``/``_l``) is added by the code.
``rule``
    how the muscles' activations make one channel: ``mean`` (default), ``max``, ``sum``,
    ``weighted`` (weights from the ``weights`` column, normalised to sum 1) or
    ``force_weighted`` (weights proportional to each muscle's max isometric force).
``weights``
    space-separated non-negative numbers, one per muscle; only with rule ``weighted``.
``note``
    why the channel maps as it does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError, ProcessingError

RULES = ("mean", "max", "sum", "weighted", "force_weighted")
COLUMNS = ("emg_name", "convention", "muscles", "rule", "weights", "note")
SIDE_SUFFIX = {"right": "r", "left": "l", "r": "r", "l": "l"}
PACKAGE_MAPPING = "emg_mapping.csv"


def base_muscle_names() -> list[str]:
    """The 40 MyoLegs muscle names without side suffix (``soleus``, ``gasmed``...)."""
    with resources.files("kinesis_neuro.data").joinpath("myolegs_muscles.csv").open() as f:
        return pd.read_csv(f)["muscle"].tolist()


def read_csv_table(source, label: str, kind: str, required, columns) -> pd.DataFrame:
    """A user CSV table as text cells, with its ``required`` columns and no columns outside ``columns``
    (``DataFormatError`` naming ``label`` and the ``kind`` of table otherwise)."""
    try:
        raw = pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataFormatError(f"{label}: cannot read as a CSV {kind} ({type(err).__name__}: {err})") from err
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in required if c not in raw.columns]
    unknown = [c for c in raw.columns if c not in columns]
    if missing or unknown:
        raise DataFormatError(
            f"{label}: " + (f"missing columns {missing}; " if missing else "")
            + (f"unknown columns {unknown}; " if unknown else "") + f"the columns are {list(columns)}"
        )
    return raw


def _read_table(source, label: str, default_convention: str) -> pd.DataFrame:
    """Parse and validate one mapping CSV; ``label`` names it in error messages."""
    raw = read_csv_table(source, label, "mapping table", ("emg_name", "muscles"), COLUMNS)
    valid = base_muscle_names()
    rows = []
    for i, rec in enumerate(raw.to_dict("records")):
        where = f"{label}, row {i + 1} (line {i + 2})"
        name = rec["emg_name"].strip()
        if not name:
            raise DataFormatError(f"{where}: empty emg_name")
        where += f", EMG channel {name!r}"
        muscles = [m for m in re.split(r"[\s+]+", rec["muscles"].strip()) if m]
        if not muscles:
            raise DataFormatError(f"{where}: no muscles given")
        for m in muscles:
            if m not in valid:
                hint = (f" (give base names without the side suffix: {m.rsplit('_', 1)[0]!r})"
                        if m.rsplit("_", 1)[0] in valid else "")
                raise DataFormatError(
                    f"{where}: unknown MyoLegs muscle {m!r}{hint}; valid names: {', '.join(valid)}"
                )
        if len(set(muscles)) != len(muscles):
            raise DataFormatError(f"{where}: a muscle is listed twice in {muscles}")
        rule = rec.get("rule", "").strip() or "mean"
        if rule not in RULES:
            raise DataFormatError(f"{where}: unknown rule {rule!r}; rules: {', '.join(RULES)}")
        text = rec.get("weights", "").strip()
        try:
            weights = tuple(float(w) for w in text.split())
        except ValueError as err:
            raise DataFormatError(f"{where}: weights must be space-separated numbers, got {text!r}") from err
        if rule == "weighted":
            if len(weights) != len(muscles):
                raise DataFormatError(f"{where}: rule 'weighted' needs {len(muscles)} weights "
                                      f"(one per muscle {muscles}), got {len(weights)}")
            if not all(np.isfinite(weights)) or min(weights) < 0 or sum(weights) <= 0:
                raise DataFormatError(f"{where}: weights must be finite, >= 0 and not all 0, got {list(weights)}")
        elif weights:
            raise DataFormatError(f"{where}: weights are only used with rule 'weighted', not {rule!r}")
        rows.append(dict(emg_name=name, convention=rec.get("convention", "").strip() or default_convention,
                         muscles=tuple(muscles), rule=rule, weights=weights, note=rec.get("note", "").strip(),
                         source=label))
    table = pd.DataFrame(rows, columns=[*COLUMNS, "source"])
    dup = table["emg_name"][table["emg_name"].duplicated()].tolist()
    if dup:
        raise DataFormatError(f"{label}: EMG channel names listed more than once: {dup}")
    return table.set_index("emg_name")


def load_mapping(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The mapping table indexed by ``emg_name``; rows of the CSV at ``path`` replace or add to the package's.

    Columns: ``convention``, ``muscles`` (tuple of base names), ``rule``, ``weights`` (tuple),
    ``note`` and ``source`` (the file a row came from).
    """
    with resources.files("kinesis_neuro.data").joinpath(PACKAGE_MAPPING).open() as f:
        table = _read_table(f, f"kinesis_neuro/data/{PACKAGE_MAPPING}", "package")
    if path is None:
        return table
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such mapping file")
    user = _read_table(path, str(path), "user")
    return pd.concat([table.drop(index=user.index, errors="ignore"), user])


def _table(mapping) -> pd.DataFrame:
    return mapping if isinstance(mapping, pd.DataFrame) else load_mapping(mapping)


def _suffix(side: str) -> str:
    try:
        return SIDE_SUFFIX[str(side).lower()]
    except KeyError:
        raise ProcessingError(f"side must be 'right' or 'left', got {side!r}") from None


def _row(table: pd.DataFrame, name: str) -> pd.Series:
    if name not in table.index:
        groups = table.groupby("convention", sort=False).groups
        known = "; ".join(f"{conv}: {', '.join(map(str, names))}" for conv, names in groups.items())
        raise ChannelNotFoundError(f"EMG channel {name!r} is not in the muscle mapping; known names ({known}). "
                                   f"Add a row to a user mapping CSV (see kinesis_neuro.mapping)")
    return table.loc[name]


def muscles_for(name: str, side: str = "right", mapping=None) -> list[str]:
    """MyoLegs muscles (with side suffix) behind EMG channel ``name``, e.g. ``["gasmed_r", "gaslat_r"]``.

    ``mapping`` is a table from :func:`load_mapping`, a user CSV path, or ``None`` (package table).
    """
    suffix = _suffix(side)
    return [f"{m}_{suffix}" for m in _row(_table(mapping), name)["muscles"]]


def _max_isometric_force(model, muscles: Sequence[str]) -> np.ndarray:
    """Max isometric force (N) of ``muscles`` in ``model`` (MyoLegs compiled on first need)."""
    from kinesis_neuro.model import load_model, muscle_table

    table = muscle_table(model if model is not None else load_model())
    return table.loc[list(muscles), "max_isometric_force"].to_numpy()


def _weights(row: pd.Series, muscles: list[str], model) -> np.ndarray:
    """Weights of ``muscles`` under the row's rule (all but ``max``)."""
    n = len(muscles)
    if row["rule"] == "mean":
        return np.full(n, 1.0 / n)
    if row["rule"] == "sum":
        return np.ones(n)
    w = np.asarray(row["weights"], float) if row["rule"] == "weighted" else _max_isometric_force(model, muscles)
    return w / w.sum()


def map_to_channels(activation: xr.DataArray, channels: str | Sequence[str], side: str = "right",
                    mapping=None, model=None) -> xr.DataArray:
    """Combine muscle activations (dimension ``muscle``) into EMG ``channels`` (dimension ``channel``).

    Each channel follows its row's rule over its muscles of ``side``; NaN in any of them gives
    NaN. The ``channel`` dimension takes the place of ``muscle``; coordinate ``muscles`` gives the
    muscles of each channel and attr ``emg_mapping`` (JSON) the full mapping used. ``model`` (a
    MyoLegs ``MjModel``) supplies max isometric forces for ``force_weighted`` rows; it is
    compiled when needed and not given.
    """
    if "muscle" not in activation.dims:
        raise ProcessingError(f"map_to_channels needs a 'muscle' dimension, got dims {activation.dims}")
    channels = [channels] if isinstance(channels, str) else [str(c) for c in channels]
    table = _table(mapping)
    suffix = _suffix(side)
    side = {"r": "right", "l": "left"}[suffix]
    present = set(map(str, activation.muscle.values))
    used, combined = [], []
    for name in channels:
        row = _row(table, name)
        muscles = [f"{m}_{suffix}" for m in row["muscles"]]
        lacking = [m for m in muscles if m not in present]
        if lacking:
            raise ChannelNotFoundError(f"channel {name!r} needs muscles {lacking} that the activation lacks "
                                       f"(it holds {sorted(present)})")
        sub = activation.sel(muscle=muscles)
        if row["rule"] == "max":
            weights = None
            out = sub.max("muscle", skipna=False)
        else:
            weights = _weights(row, muscles, model)
            out = (sub * xr.DataArray(weights, dims="muscle", coords={"muscle": muscles})).sum("muscle", skipna=False)
        combined.append(out)
        used.append(dict(channel=name, muscles=muscles, rule=row["rule"],
                         weights=None if weights is None else [float(w) for w in weights],
                         convention=row["convention"], note=row["note"], source=row["source"]))
    dims = tuple("channel" if d == "muscle" else d for d in activation.dims)
    result = xr.concat(combined, dim="channel")
    result = result.assign_coords(channel=channels, muscles=("channel", ["+".join(u["muscles"]) for u in used]))
    result = result.transpose(*dims)
    result.name = activation.name
    result.attrs = dict(activation.attrs)
    steps = json.loads(result.attrs.get("processing", "[]"))
    steps.append({"step": "map_to_channels", "side": side, "channels": channels})
    result.attrs.update(side=side, processing=json.dumps(steps),
                        emg_mapping=json.dumps({"side": side, "channels": used}))
    return result
