"""EMG already normalised to the gait cycle: normative curves (mean ± SD per % of the cycle), and a recording's
mean gait cycle compared with them.

Accepted tables, recognised by content:

* a CSV/TSV with a column of the percent of the gait cycle (``gait_cycle_percent``, ``% gait cycle``,
  ``percent``, ``phase``...; rising from about 0 to about 100) and, per muscle, either one column (its mean
  curve, e.g. ``soleus``) or a mean and an SD column (``soleus_mean``, ``soleus_sd``; also ``_std``/``_avg``);
* Schwartz et al. (2008) tables (``schwartz2008``, or one of its ``.txt`` files): mean and SD at 5 walking
  speeds, read by :func:`kinesis_neuro.emg.read_normative`; the speed nearest the recording's non-dimensional
  speed ``v / sqrt(g * leg length)`` is used unless one is given.

Amplitudes of normative EMG are normalised in ways a simulation cannot share, so curves are compared by shape
and timing: Pearson r and a circular lag scan of the means, and, after scaling each mean curve to its peak
(the normative SD scaled with its mean), the RMSE and whether the simulation lies within ±1 SD at each phase.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import DataFormatError, ProcessingError

NORMATIVE_KIND = "normative-emg"
STAT = re.compile(r"^(?P<name>.+?)[ _.-]+(?P<stat>mean|avg|average|sd|std|stdev|stddev)$", re.IGNORECASE)
TIME_NAMES = {"time", "t", "time_s", "times", "time (s)", "time_ms", "time (ms)"}
G = 9.81  # m/s^2


def _is_phase_name(name: str) -> bool:
    low = name.strip().lower()
    squeezed = re.sub(r"[^a-z%]", "", low)
    return ("%" in low or "percent" in low or "pct" in squeezed or squeezed in ("phase", "cycle", "gaitcycle", "gc")
            or "gaitcycle" in squeezed)


def _header(path: Path) -> list[str] | None:
    """The column names of a delimited text table (None when the first line is all numbers: no header)."""
    from kinesis_neuro.io.common import read_text

    lines = [line for line in read_text(path).splitlines()[:5] if line.strip()]
    if not lines:
        return None
    first = lines[0]
    delim = "\t" if "\t" in first else ";" if ";" in first else "," if "," in first else None
    names = [c.strip().strip('"') for c in (first.split(delim) if delim else first.split())]
    try:
        [float(c) for c in names]
        return None
    except ValueError:
        return names


def is_cycle_table(path) -> bool:
    """Whether ``path`` is a text table with a % gait cycle column and no time column."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv", ".txt") or not path.is_file():
        return False
    try:
        names = _header(path)
    except DataFormatError:
        return False
    return bool(names) and any(_is_phase_name(n) for n in names) and not any(n.lower() in TIME_NAMES for n in names)


def _schwartz_layout(path: Path) -> bool:
    """A headerless table of 16 numeric columns (Schwartz et al. 2008 as biomechZoo keeps them)."""
    from kinesis_neuro.io.common import read_text

    if path.suffix.lower() != ".txt" or not path.is_file():
        return False
    try:
        line = next(line for line in read_text(path).splitlines() if line.strip())
        return len([float(v) for v in line.split()]) == 16
    except (DataFormatError, ValueError, StopIteration):
        return False


def is_normative(source, *, data_dir=None) -> bool:
    """Whether ``source`` holds EMG curves already normalised to the gait cycle with a mean (and SD) per phase:
    a registered dataset (or file) of kind ``normative-emg``, a CSV/TSV cycle table, or a Schwartz-layout file."""
    from kinesis_neuro import datasets

    text = str(source)
    if datasets.is_dataset_spec(text):
        name, _, filename = text.partition("/")
        card = datasets.get(name)
        if filename:
            return card.file(filename).meta.get("kind") == NORMATIVE_KIND
        return bool(card.files_of_kind(NORMATIVE_KIND)) and not card.card.get("default_emg")
    path = Path(text)
    return is_cycle_table(path) or _schwartz_layout(path)


def read_cycle_table(path, *, units: str = "unknown", side: str = "unknown") -> xr.Dataset:
    """A CSV/TSV of EMG curves over the gait cycle as a Dataset: ``mean`` and ``sd`` ``(phase, channel)`` (``sd``
    NaN for muscles given without one); ``phase`` in %."""
    from kinesis_neuro.io.common import readable_file

    path = readable_file(path)
    names = _header(path)
    if not names:
        raise DataFormatError(f"{path}: no header row; a gait-cycle table names its columns (% gait cycle, then "
                              "one column per muscle, or MUSCLE_mean and MUSCLE_sd)")
    try:
        table = pd.read_csv(path, sep=None, engine="python", encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read as a delimited table ({type(err).__name__}: {err})") from err
    table.columns = [str(c).strip() for c in table.columns]
    phase_columns = [c for c in table.columns if _is_phase_name(c)]
    if len(phase_columns) != 1:
        raise DataFormatError(f"{path}: expected one column of the percent of the gait cycle (e.g. "
                              f"'gait_cycle_percent'), found {phase_columns or 'none'} among {list(table.columns)}")
    dup = sorted({c for c in table.columns if list(table.columns).count(c) > 1})
    if dup:
        raise DataFormatError(f"{path}: duplicated columns {dup}")
    numbers = table.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna() & table.notna()
    if bad.to_numpy().any() or numbers.isna().to_numpy().any():
        row, col = np.argwhere((numbers.isna()).to_numpy())[0]
        raise DataFormatError(f"{path}: row {row + 1}, column {table.columns[col]!r}: {table.iat[row, col]!r} is not "
                              "a number; a cycle table holds numbers only, without gaps")
    phase = numbers[phase_columns[0]].to_numpy(float)
    if phase.size < 3 or np.any(np.diff(phase) <= 0) or not (0 <= phase[0] <= 5 and 95 <= phase[-1] <= 100):
        raise DataFormatError(f"{path}: column {phase_columns[0]!r} runs {phase[0]:g} to {phase[-1]:g} % in "
                              f"{phase.size} rows; expected the % of the gait cycle rising from about 0 to about 100")
    curves: dict[str, dict[str, np.ndarray]] = {}
    for name in table.columns:
        if name == phase_columns[0]:
            continue
        match = STAT.match(name)
        channel, stat = (match["name"].strip(), "sd" if match["stat"].lower().startswith(("s",)) else "mean") \
            if match else (name, "mean")
        if stat in curves.setdefault(channel, {}):
            raise DataFormatError(f"{path}: two {stat} columns for {channel!r}")
        curves[channel][stat] = numbers[name].to_numpy(float)
    orphans = [c for c, v in curves.items() if "mean" not in v]
    if orphans:
        raise DataFormatError(f"{path}: SD columns without a mean column for {orphans}")
    if not curves:
        raise DataFormatError(f"{path}: no muscle columns besides {phase_columns[0]!r}")
    channels = list(curves)
    mean = np.column_stack([curves[c]["mean"] for c in channels])
    sd = np.column_stack([curves[c].get("sd", np.full(phase.size, np.nan)) for c in channels])
    if np.any(sd < 0):
        raise DataFormatError(f"{path}: negative SD values")
    coords = {"phase": ("phase", phase, {"units": "%", "long_name": "percent of gait cycle"}), "channel": channels}
    ds = xr.Dataset({"mean": (("phase", "channel"), mean, {"units": units}),
                     "sd": (("phase", "channel"), sd, {"units": units})}, coords=coords)
    ds.attrs.update(source=str(path), units=units, side=side, file_format="gait-cycle table (CSV/TSV)",
                    phase_definition=(f"0-100 % of the gait cycle from heel strike to heel strike as the table gives "
                                      f"it ({phase.size} points, {phase[0]:g}-{phase[-1]:g} %)"), processing="[]")
    return ds


def load_normative(source, *, data_dir=None) -> xr.Dataset:
    """Normative curves ``mean``/``sd`` (``(speed, phase, channel)`` for Schwartz tables, else ``(phase, channel)``)
    from a registered dataset or file (see the module doc)."""
    from kinesis_neuro import datasets, emg

    text = str(source)
    if datasets.is_dataset_spec(text):
        ds = emg.read_normative(text, data_dir=data_dir)
        ds.attrs["source"] = text
        return ds
    path = Path(text)
    if is_cycle_table(path):
        return read_cycle_table(path)
    return emg.read_normative(path)


@lru_cache(maxsize=1)
def myolegs_leg_length() -> float:
    """Leg length of MyoLegs (m): height of the hip joint centre above the sole in the model's standing pose."""
    import mujoco

    from kinesis_neuro import model as mdl

    model = mdl.load_model()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    hip = data.xanchor[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "hip_flexion_r")][2]
    feet = {mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in ("calcn_r", "toes_r")}
    lowest = []
    for g in range(model.ngeom):
        if model.geom_bodyid[g] not in feet or not model.geom_contype[g]:
            continue
        size, up = model.geom_size[g], data.geom_xmat[g].reshape(3, 3)[2]  # world z of the geom's local axes
        kind = model.geom_type[g]
        if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            extent = size[0]
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:  # axis: local z, half-length size[1]
            extent = size[0] + size[1] * abs(up[2])
        elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
            extent = size[0] * np.hypot(up[0], up[1]) + size[1] * abs(up[2])
        elif kind == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            extent = float(np.sqrt(np.sum((up * size) ** 2)))
        else:  # box (and anything else: its bounding box)
            extent = float(np.sum(np.abs(up) * size))
        lowest.append(data.geom_xpos[g][2] - extent)
    return float(hip - min(lowest))


def recording_speed(recording, *, data_dir=None) -> tuple[float | None, str]:
    """Mean walking speed of ``recording`` (m/s) and where it comes from: the pelvis coordinates of the file it
    was read from (attr ``pelvis_speed_m_s``), else the pelvis motion of the trial named by its ``motion``
    attribute (a dataset such as ``moco-walk`` or an OpenSim coordinates file). None when neither is known."""
    from kinesis_neuro import datasets, motion

    attrs = recording.data.attrs
    if "pelvis_speed_m_s" in attrs:
        return float(attrs["pelvis_speed_m_s"]), "pelvis coordinates in the activation file"
    name = str(attrs.get("motion", "")).split(" (")[0].strip()
    if not name or not (datasets.is_dataset_spec(name) or Path(name).is_file()):
        return None, f"motion {attrs.get('motion', '')!r} is not a dataset or file kinesis-neuro can read"
    try:
        walk = motion.from_opensim(name, filter_hz=None, data_dir=data_dir)
    except Exception as err:  # noqa: BLE001 - any reader error: the speed is unknown, said so
        return None, f"cannot read the motion {name!r} ({err})"
    c = walk.coordinates
    dx = float(c.sel(coordinate="pelvis_tx")[-1] - c.sel(coordinate="pelvis_tx")[0])
    dz = float(c.sel(coordinate="pelvis_tz")[-1] - c.sel(coordinate="pelvis_tz")[0])
    return float(np.hypot(dx, dz) / walk.duration), f"pelvis motion of {name}"


def nondimensional_speed(recording, *, data_dir=None) -> tuple[float | None, str]:
    """``v / sqrt(g * leg length)`` of ``recording`` (MyoLegs leg length, :func:`myolegs_leg_length`) and how it was
    found (None when the speed is unknown)."""
    speed, how = recording_speed(recording, data_dir=data_dir)
    if speed is None:
        return None, how
    length = myolegs_leg_length()
    return speed / np.sqrt(G * length), f"{speed:.2f} m/s from the {how}, leg length {length:.3f} m (MyoLegs)"


def select_speed(norm: xr.Dataset, speed: float | None, how: str = "") -> tuple[xr.Dataset, dict]:
    """The curves of one speed group: the nearest to ``speed`` (non-dimensional), the free speed when unknown."""
    if "speed" not in norm.dims:
        return norm, {}
    names = [str(n) for n in (norm.speed_name if "speed_name" in norm.coords else norm.speed).values]
    if speed is None:
        index = names.index("Free") if "Free" in names else norm.sizes["speed"] // 2
        note = f"free speed group (the recording's speed is unknown: {how})"
    else:
        index = int(np.argmin(np.abs(norm.speed.values - speed)))
        note = f"nearest to the recording's non-dimensional speed {speed:.3f} ({how})"
    info = {"group": names[index], "nondimensional_speed": float(norm.speed.values[index]),
            "recording_nondimensional_speed": None if speed is None else float(speed), "choice": note}
    return norm.isel(speed=index, drop=True), info


def normative_comparison(recording, source, *, side: str = "right", mapping_table=None, speed: float | None = None,
                         data_dir=None) -> xr.Dataset:
    """The simulated mean gait cycle against normative EMG (mean ± SD per phase) of ``source``.

    Per channel: Pearson r of the mean curves, the best circular lag (% of the cycle, positive: simulation late)
    and r there, and, with each mean scaled to its peak (the SD scaled with its mean), the RMSE and the share of
    phases where the simulation lies within ±1 SD (``within_sd`` per phase). ``speed`` picks the speed group of
    Schwartz tables (default: nearest the recording's own, :func:`nondimensional_speed`)."""
    from kinesis_neuro import metrics, registration
    from kinesis_neuro.compare import simulated_cycles

    norm = load_normative(source, data_dir=data_dir)
    how = "given"
    if "speed" in norm.dims and speed is None:
        speed, how = nondimensional_speed(recording, data_dir=data_dir)
    norm, speed_info = select_speed(norm, speed, how)
    if registration.convention(norm)["kind"] != registration.EVEN:
        raise ProcessingError(f"{source}: normative curves on a {registration.describe(norm)} grid; only curves from "
                              "heel strike to heel strike on an even grid are supported")
    channels = [str(c) for c in norm.channel.values]
    sim = simulated_cycles(recording, channels, side=side, n_points=101, mapping_table=mapping_table)
    sim = registration.annotate(sim).interp(phase=norm.phase.values)
    sim_mean = sim.mean("cycle")
    mean, sd = norm["mean"], norm["sd"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sim_scaled = sim_mean / sim_mean.max("phase")
        peak = mean.max("phase")
        mean_scaled, sd_scaled = mean / peak, sd / peak
        r = metrics.pearson(sim_mean, mean)
        rmse = np.sqrt(((sim_scaled - mean_scaled) ** 2).mean("phase"))
    within = xr.where(np.isfinite(sd_scaled), (np.abs(sim_scaled - mean_scaled) <= sd_scaled).astype(float), np.nan)
    try:
        lags = metrics.lag_scan(sim_mean, mean)
        best_lag, r_best = lags.best_lag, lags.r_best
    except (DataFormatError, ProcessingError):  # an uneven grid or one not covering the cycle: no circular shift
        best_lag = r_best = xr.full_like(r, np.nan)
    cycles = sim.rename(cycle="sim_cycle").drop_vars(["cycle_start", "cycle_end", "toe_off", "stance_percent"],
                                                      errors="ignore")
    ds = xr.Dataset({
        "sim_cycles": cycles, "sim_mean": sim_mean.drop_vars("muscles", errors="ignore"),
        "normative_mean": mean, "normative_sd": sd,
        "sim_scaled": sim_scaled.assign_attrs(units="1", long_name="simulated mean cycle / its peak"),
        "normative_mean_scaled": mean_scaled.assign_attrs(units="1", long_name="normative mean / its peak"),
        "normative_sd_scaled": sd_scaled.assign_attrs(units="1", long_name="normative SD / the normative mean's peak"),
        "within_sd": within.assign_attrs(units="1", long_name="1 where the scaled simulation lies within ±1 SD"),
        "share_within_sd": within.mean("phase").assign_attrs(units="1", long_name="share of phases within ±1 SD"),
        "r": r, "rmse": rmse.assign_attrs(units="1", long_name="RMSE of peak-scaled mean curves"),
        "best_lag": best_lag, "r_at_best_lag": r_best,
    })
    group = (f", speed group {speed_info['group']} ({speed_info['nondimensional_speed']:.3f})" if speed_info else "")
    name = norm.attrs.get("dataset") or Path(str(norm.attrs.get("source", source))).name
    ds.attrs.update(
        comparison_kind="normative",
        comparison=(f"mean gait cycle ({int(sim.sizes['cycle'])} simulated cycle(s)) vs normative mean ± 1 SD "
                    f"({name}{group})"),
        amplitude="each mean curve scaled to its peak; the normative SD scaled with the normative mean",
        speed=str(speed_info) if speed_info else "", speed_choice=speed_info.get("choice", ""),
        phase_definition=str(norm.attrs.get("phase_definition", "")), registration=registration.REGISTRATIONS["even"],
        side=side, human_source=str(source), recording=str(recording.source or ""),
        controller=str(recording.data.attrs.get("controller", "")), sim_cycles_n=int(sim.sizes["cycle"]),
        emg_mapping=str(sim.attrs.get("emg_mapping", "")))
    if speed_info:
        ds.attrs.update(speed_group=speed_info["group"], speed_nondimensional=speed_info["nondimensional_speed"])
    return ds


def normative_summary(ds: xr.Dataset) -> dict:
    """The ``summary.json`` content of a :func:`normative_comparison`."""
    from kinesis_neuro.metrics import fisher_mean

    muscles = {}
    for ch in map(str, ds.channel.values):
        muscles[ch] = {"r": float(ds.r.sel(channel=ch)), "rmse": float(ds.rmse.sel(channel=ch)),
                       "best_lag_pct": float(ds.best_lag.sel(channel=ch)),
                       "r_at_best_lag": float(ds.r_at_best_lag.sel(channel=ch)),
                       "share_within_sd": float(ds.share_within_sd.sel(channel=ch))}
    r = ds.r.values
    defined = np.isfinite(r)
    share = ds.share_within_sd.values
    return {"comparison": ds.attrs["comparison"], "comparison_kind": "normative", "muscles": muscles,
            "median_r": float(np.median(r[defined])) if defined.any() else float("nan"),
            "mean_r_fisher": float(fisher_mean(ds.r.clip(-0.999999, 0.999999))),
            "median_share_within_sd": float(np.nanmedian(share)) if np.isfinite(share).any() else float("nan"),
            "undefined_r": [ch for ch, ok in zip(muscles, defined) if not ok],
            "speed": {"group": ds.attrs.get("speed_group"), "nondimensional": ds.attrs.get("speed_nondimensional"),
                      "choice": ds.attrs.get("speed_choice", "")},
            "amplitude": ds.attrs["amplitude"], "cycles": {"simulated": ds.attrs["sim_cycles_n"]},
            "side": ds.attrs["side"], "controller": ds.attrs["controller"], "human_source": ds.attrs["human_source"],
            "phase_definition": ds.attrs["phase_definition"], "registration": ds.attrs["registration"]}
