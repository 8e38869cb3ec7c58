"""Gait events (heel strike, toe-off) and time normalisation of gait cycles.

Events are a :class:`pandas.DataFrame` with columns ``time`` (s), ``event`` (``"heel_strike"``
or ``"toe_off"``) and ``side`` (``"right"``/``"left"``). Cycles are ``(cycle, phase, channel)``
DataArrays with ``phase`` in percent of the gait cycle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import DataFormatError, ProcessingError
from kinesis_neuro.io.common import check_values

EVENT_COLUMNS = ["time", "event", "side"]
SIDES = {"r": "right", "l": "left", "right": "right", "left": "left"}


def check_side(side) -> str:
    """``'right'`` or ``'left'`` from any spelling in :data:`SIDES` (``ProcessingError`` otherwise)."""
    if str(side).lower() not in SIDES:
        raise ProcessingError(f"side must be 'right' or 'left', got {side!r}")
    return SIDES[str(side).lower()]


def _events(times, kinds, side) -> pd.DataFrame:
    table = pd.DataFrame({"time": np.asarray(times, float), "event": list(kinds), "side": side})
    return table.sort_values("time", kind="stable").reset_index(drop=True)


def _debounce(contact: np.ndarray, time: np.ndarray, min_duration: float) -> np.ndarray:
    """``contact`` with runs shorter than ``min_duration`` s (not touching the ends) flipped to their
    neighbours' state, the shortest run first: a one-sample gap inside a contact closes before the contact's
    halves are judged (in order of time, a short first half would be dropped and take the whole contact along)."""
    contact = contact.copy()
    while True:
        edges = np.flatnonzero(np.diff(contact.astype(int))) + 1
        starts, stops = edges[:-1], edges[1:]  # interior runs: from their first sample to the next run's
        if starts.size == 0:
            return contact
        durations = time[stops] - time[starts]
        shortest = int(np.argmin(durations))
        if durations[shortest] >= min_duration:
            return contact
        contact[starts[shortest]:stops[shortest]] = contact[starts[shortest] - 1]


def events_from_contact(contact, time, side: str = "unknown", min_duration: float = 0.1) -> pd.DataFrame:
    """Heel strikes (first sample in contact) and toe-offs (first sample off) of a boolean contact signal;
    contacts or gaps shorter than ``min_duration`` s (a foot bouncing or scuffing) are ignored."""
    time = np.asarray(time, dtype=float)
    contact = _debounce(np.asarray(contact, dtype=bool), time, min_duration)
    change = np.diff(contact.astype(int))
    on, off = np.nonzero(change == 1)[0] + 1, np.nonzero(change == -1)[0] + 1
    return _events(np.r_[time[on], time[off]], ["heel_strike"] * on.size + ["toe_off"] * off.size, side)


def _crossing(force, time, i, level):
    """Time at which ``force`` crosses ``level`` between samples ``i - 1`` and ``i`` (linear)."""
    f0, f1 = force[i - 1], force[i]
    frac = 0.0 if f1 == f0 else (level - f0) / (f1 - f0)
    return time[i - 1] + np.clip(frac, 0.0, 1.0) * (time[i] - time[i - 1])


def events_from_force(force, time, *, threshold: float = 20.0, hysteresis: float = 10.0,
                      min_duration: float = 0.05, side: str = "unknown") -> pd.DataFrame:
    """Events from a vertical ground-reaction force (N) by thresholding with hysteresis.

    Contact starts when the force rises above ``threshold`` and ends when it falls below
    ``threshold - hysteresis``; contacts or gaps shorter than ``min_duration`` seconds are
    ignored. Event times are interpolated to the threshold crossings.
    """
    force = np.asarray(force, dtype=float)
    time = np.asarray(time, dtype=float)
    if force.shape != time.shape or force.ndim != 1:
        raise DataFormatError(f"force and time must be 1-D of equal length, got {force.shape} and {time.shape}")
    if not np.all(np.isfinite(force)):
        raise DataFormatError("the vertical force holds NaN samples; fill or cut them before detecting events")
    off_level = threshold - hysteresis
    state = pd.Series(np.where(force > threshold, 1.0, np.where(force < off_level, 0.0, np.nan))).ffill()
    contact = state.fillna(float(force[0] > threshold)).to_numpy().astype(bool)
    contact = _debounce(contact, time, min_duration)
    change = np.diff(contact.astype(int))
    on, off = np.nonzero(change == 1)[0] + 1, np.nonzero(change == -1)[0] + 1
    times = [_crossing(force, time, i, threshold) for i in on] + [_crossing(force, time, i, off_level) for i in off]
    return _events(times, ["heel_strike"] * on.size + ["toe_off"] * off.size, side)


# How GRF columns name the foot (OpenSim .mot conventions; the axis letter ends each name):
#   ground_force_r_vy, ground_force_r_px, ground_torque_r_x   side after the quantity (moco-walk, moco-subject05)
#   R_ground_force_vy, R_ground_force_px, R_ground_torque_x   side first (rajagopal-run)
#   ground_force_vy, 1_ground_force_vy, 1_ground_torque_x     numbered plates, not feet (hamner-run, falisse2019):
#       the foot of each plate comes from ``feet=`` or from the dataset card's ``channels`` table
GRF_COLUMN = re.compile(r"^(?:(?P<first>[0-9]+|[rRlL])_)?ground_(?P<kind>force|torque)(?:_(?P<after>[rRlL]))?_"
                        r"(?P<part>[vp]?)(?P<axis>[xyz])$")
PARTS = {"v": "force", "p": "point", "": "torque"}  # force (N), centre of pressure (m), torque (N m)
GRF_PARTS = tuple(PARTS.values())


def _grf_column(name: str) -> tuple[str, str | None, str] | None:
    """``(plate, side letter or None, part)`` of a GRF column, e.g. ``R_ground_torque_x`` -> ``("R_ground_force",
    "R", "torque")``; None for other columns. A plate is named by its force-column stem."""
    match = GRF_COLUMN.match(name)
    if not match or (match["kind"] == "torque") != (match["part"] == ""):
        return None
    first, after = match["first"], match["after"]
    plate = (f"{first}_" if first else "") + "ground_force" + (f"_{after}" if after else "")
    return plate, next((t for t in (first, after) if t and not t.isdigit()), None), PARTS[match["part"]]


def _card_feet(grf: xr.DataArray) -> dict[str, str]:
    """``{side: plate}`` from the registered file's card (``channels``: ``ground_force = "right foot ..."``)."""
    from kinesis_neuro import datasets

    if "dataset" not in grf.attrs:
        return {}
    meta = datasets.get(grf.attrs["dataset"]).file(grf.attrs.get("dataset_file")).meta
    return {words[0]: plate for plate, text in meta.get("channels", {}).items()
            if (words := str(text).split())[:2] in (["right", "foot"], ["left", "foot"])}


def grf_columns(grf: xr.DataArray, feet: dict[str, str] | None = None,
                parts=GRF_PARTS) -> dict[str, dict[str, list[str]]]:
    """GRF column names per foot: ``{"right": {"force": [vx, vy, vz], "point": [px, py, pz], "torque": [x, y,
    z]}, "left": {...}}`` for the ``parts`` asked (naming: :data:`GRF_COLUMN`). Numbered plates need ``feet``
    (e.g. ``{"right": "1_ground_force", "left": "ground_force"}``) unless the dataset card says which foot
    each one carries."""
    channels = [str(c) for c in grf.channel.values]
    plates: dict[str, dict[str, list[str]]] = {}
    labelled = {}
    for name in channels:
        if parsed := _grf_column(name):
            plate, side, part = parsed
            plates.setdefault(plate, {}).setdefault(part, []).append(name)
            if side:
                labelled[SIDES[side.lower()]] = plate
    feet = {**labelled, **_card_feet(grf), **(feet or {})}
    source = grf.attrs.get("source", "GRF data")
    unknown = [s for s in ("right", "left") if feet.get(s) not in plates]
    if unknown:
        raise DataFormatError(
            f"{source}: cannot tell which GRF columns belong to the {' and '.join(unknown)} foot (plates: "
            f"{sorted(plates) or 'none'}; channels: {channels}); name the feet like ground_force_r_vy or "
            "R_ground_force_vy, or pass feet={'right': PLATE, 'left': PLATE}")
    out = {}
    for side in ("right", "left"):
        found = plates[feet[side]]
        incomplete = [p for p in parts if len(found.get(p, [])) != 3]
        if incomplete:
            raise DataFormatError(f"{source}: the {side} foot's plate {feet[side]} lacks x, y and z columns of "
                                  f"{incomplete} (has {sorted(n for names in found.values() for n in names)})")
        out[side] = {p: sorted(found[p], key=lambda n: n[-1]) for p in parts}
    return out


def vertical_force_channels(grf: xr.DataArray, up_axis: str = "y",
                            feet: dict[str, str] | None = None) -> dict[str, str]:
    """Vertical-force channel per side (``ground_force_r_vy`` with y up; naming as in :func:`grf_columns`)."""
    axis = "xyz".index(up_axis)
    return {side: parts["force"][axis] for side, parts in grf_columns(grf, feet, ("force",)).items()}


def events_from_grf(grf: xr.DataArray, *, threshold: float = 20.0, hysteresis: float = 10.0,
                    min_duration: float = 0.05, vertical: dict[str, str] | None = None,
                    up_axis: str = "y", feet: dict[str, str] | None = None) -> pd.DataFrame:
    """Events of both feet from a ground-reaction-force DataArray (e.g. OpenSim ``grf_walk.mot``; column
    naming and ``feet`` as in :func:`grf_columns`); vertical forces beyond ±1e5 N are refused
    (:data:`kinesis_neuro.io.common.LIMITS`)."""
    vertical = vertical or vertical_force_channels(grf, up_axis, feet)
    check_values(grf.sel(channel=list(vertical.values())), "force")
    tables = [
        events_from_force(grf.sel(channel=ch).values, grf.time.values, threshold=threshold,
                          hysteresis=hysteresis, min_duration=min_duration, side=side)
        for side, ch in vertical.items()
    ]
    return pd.concat(tables).sort_values("time", kind="stable").reset_index(drop=True)


def events_from_table(table: pd.DataFrame) -> pd.DataFrame:
    """Check and normalise an event table (C3D events, musclesyneRgies cycles...); other events are dropped."""
    missing = [c for c in EVENT_COLUMNS if c not in table.columns]
    if missing:
        raise DataFormatError(f"event table lacks columns {missing}; expected {EVENT_COLUMNS}")
    out = table.loc[table["event"].isin(["heel_strike", "toe_off"]), EVENT_COLUMNS].copy()
    out["time"] = out["time"].astype(float)
    out["side"] = [SIDES.get(str(s).lower(), str(s).lower()) for s in out["side"]]
    return out.sort_values("time", kind="stable").reset_index(drop=True)


def split_phase(points: Sequence[int]) -> np.ndarray:
    """Phase (%) of a grid with ``points[k]`` samples in segment k; segments share the cycle equally."""
    share = 100.0 / len(points)
    return np.concatenate([share * (k + np.arange(n) / n) for k, n in enumerate(points)])


def _resample_segment(values: np.ndarray, time: np.ndarray, ta: float, tb: float, n: int,
                      snap: bool, endpoint: bool) -> np.ndarray:
    """``n`` samples of ``values`` between times ``ta`` and ``tb`` (linear interpolation along time)."""
    if snap:  # musclesyneRgies: first sample >= ta up to the last sample before tb, both included
        i1 = int(np.searchsorted(time, ta, side="left"))
        i2 = int(np.searchsorted(time, tb, side="left")) - 1
        ta, tb, endpoint = time[i1], time[i2], True
    query = np.linspace(ta, tb, n, endpoint=endpoint)
    upper = np.clip(np.searchsorted(time, query, side="right"), 1, len(time) - 1)
    weight = np.clip((query - time[upper - 1]) / (time[upper] - time[upper - 1]), 0.0, 1.0)[:, None]
    return values[upper - 1] * (1.0 - weight) + values[upper] * weight  # linear, all channels at once


def segment_cycles(
    da: xr.DataArray,
    events: pd.DataFrame,
    *,
    side: str = "right",
    n_points: int = 101,
    split: Sequence[int] | None = None,
    snap_to_samples: bool = False,
    outlier_sd: float | None = 2.0,
) -> xr.DataArray:
    """Cut a ``(time, channel)`` signal into time-normalised gait cycles of one side.

    A cycle runs from a heel strike to the next heel strike of ``side``. Without ``split`` each
    cycle is sampled at ``n_points`` evenly spaced times (phase 0-100 %, both ends included).
    With ``split=(100, 100)`` stance and swing are normalised separately (as musclesyneRgies
    does), stance filling 0-50 % and swing 50-100 % of the phase axis. Cycles lasting longer or
    shorter than mean +- ``outlier_sd`` SD are rejected (``None`` keeps all).
    """
    side = SIDES.get(side, side)
    if split is not None and len(split) != 2:
        raise ProcessingError(f"split must give (stance points, swing points), got {tuple(split)}")
    if "time" not in da.dims:
        raise ProcessingError("segment_cycles needs a (time, channel) signal")
    ev = events[events["side"] == side]
    strikes = np.sort(ev.loc[ev["event"] == "heel_strike", "time"].to_numpy(float))
    offs = np.sort(ev.loc[ev["event"] == "toe_off", "time"].to_numpy(float))
    time = da.time.values
    strikes = strikes[(strikes >= time[0]) & (strikes <= time[-1])]
    if strikes.size < 2:
        raise ProcessingError(
            f"{da.attrs.get('source', 'data')}: need 2 heel strikes of the {side} side inside "
            f"{time[0]:g}-{time[-1]:g} s for a cycle, found {strikes.size}"
        )
    starts, ends = strikes[:-1], strikes[1:]
    toe_off = np.array([next((t for t in offs if s < t < e), np.nan) for s, e in zip(starts, ends)])
    keep = np.ones(starts.size, bool)
    if split is not None:
        keep &= np.isfinite(toe_off)
    durations = ends - starts
    rejected = []
    if outlier_sd is not None and keep.sum() >= 3:
        d = durations[keep]
        sd = d.std(ddof=1)
        outlier = np.abs(durations - d.mean()) > outlier_sd * sd if sd > 0 else np.zeros_like(keep)
        rejected = [float(s) for s in starts[keep & outlier]]
        keep &= ~outlier
    if not keep.any():
        raise ProcessingError(f"{da.attrs.get('source', 'data')}: no complete {side} gait cycle left to segment")
    values = da.transpose("time", "channel").values
    cycles = []
    for s, e, to in zip(starts[keep], ends[keep], toe_off[keep]):
        if split is None:
            cycles.append(_resample_segment(values, time, s, e, n_points, snap_to_samples, endpoint=True))
        else:
            bounds = [s, to, e]
            cycles.append(np.concatenate([
                _resample_segment(values, time, bounds[k], bounds[k + 1], n, snap_to_samples, endpoint=False)
                for k, n in enumerate(split)
            ]))
    phase = np.linspace(0.0, 100.0, n_points) if split is None else split_phase(split)
    out = xr.DataArray(
        np.stack(cycles),
        dims=("cycle", "phase", "channel"),
        coords={
            "cycle": np.arange(int(keep.sum())),
            "phase": ("phase", phase, {"units": "%", "long_name": "percent of gait cycle"}),
            "channel": da.channel.values,
            "cycle_start": ("cycle", starts[keep], {"units": "s", "long_name": "heel strike"}),
            "cycle_end": ("cycle", ends[keep], {"units": "s", "long_name": "next heel strike"}),
            "toe_off": ("cycle", toe_off[keep], {"units": "s"}),
            "stance_percent": ("cycle", 100 * (toe_off[keep] - starts[keep]) / durations[keep], {"units": "%"}),
        },
        name=da.name,
        attrs={k: v for k, v in da.attrs.items() if k != "sampling_rate"},
    )
    out.attrs.update(
        side=side,
        phase_definition=("0-100 % from heel strike to next heel strike" if split is None else
                          f"stance 0-50 % ({split[0]} points), swing 50-100 % ({split[1]} points)"),
        source_sampling_rate=da.attrs.get("sampling_rate", float("nan")),
    )
    steps = json.loads(da.attrs.get("processing", "[]"))
    steps.append({"step": "segment_cycles", "side": side, "n_points": n_points, "split": list(split or []),
                  "snap_to_samples": snap_to_samples, "outlier_sd": outlier_sd, "rejected_cycle_starts": rejected})
    out.attrs["processing"] = json.dumps(steps)
    return out
