"""The one place where readers turn samples into a validated ``(time, channel)`` DataArray."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError


def emg_array(
    data: np.ndarray,
    time: np.ndarray,
    channels: Sequence[str],
    *,
    source: str | Path,
    units: str,
    side: str = "unknown",
    sampling_rate: float | None = None,
    name: str = "emg",
    allow_nan: bool = False,
    **attrs,
) -> xr.DataArray:
    """Validate samples and wrap them as ``DataArray(dims=("time", "channel"))``.

    ``time`` is in seconds and must be strictly increasing; ``sampling_rate`` (Hz) is
    taken from the median sample interval when not given. NaN samples are refused unless
    ``allow_nan`` (marker gaps), so later filters never spread them silently.
    """
    source = str(source)
    data = np.asarray(data, dtype=float)
    time = np.asarray(time, dtype=float)
    channels = [str(c) for c in channels]
    if data.ndim != 2 or data.shape != (time.size, len(channels)):
        raise DataFormatError(
            f"{source}: expected {time.size} samples x {len(channels)} channels, "
            f"got an array of shape {data.shape}"
        )
    if time.size < 2:
        raise DataFormatError(f"{source}: expected at least 2 samples, found {time.size}")
    if len(set(channels)) != len(channels):
        dup = sorted({c for c in channels if channels.count(c) > 1})
        raise DataFormatError(f"{source}: duplicate channel names {dup}")
    if not np.all(np.isfinite(time)):
        raise DataFormatError(f"{source}: the time column holds NaN or infinite values")
    steps = np.diff(time)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        raise DataFormatError(
            f"{source}: time is not strictly increasing (t[{i}]={time[i]:g} s, "
            f"t[{i + 1}]={time[i + 1]:g} s)"
        )
    if not allow_nan:
        bad = ~np.isfinite(data)
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise DataFormatError(
                f"{source}: {bad.sum()} NaN/infinite samples (first in channel "
                f"'{channels[cols[0]]}' at t={time[rows[0]]:g} s); fill or cut them before loading"
            )
    if sampling_rate is None:
        sampling_rate = float(1.0 / np.median(steps))
        if abs(sampling_rate - round(sampling_rate)) < 1e-6 * sampling_rate:  # 1999.9999999 -> 2000
            sampling_rate = float(round(sampling_rate))
    da = xr.DataArray(
        data,
        dims=("time", "channel"),
        coords={"time": ("time", time, {"units": "s", "long_name": "time"}), "channel": channels},
        name=name,
    )
    da.attrs.update(
        sampling_rate=float(sampling_rate),
        sampling_rate_units="Hz",
        units=units,
        source=source,
        side=side,
        processing="[]",
    )
    da.attrs.update(attrs)
    return da


def select_channels(da: xr.DataArray, channels: Sequence[str] | None) -> xr.DataArray:
    """Keep the named channels in the given order; a missing name lists what the data has."""
    if channels is None:
        return da
    channels = [channels] if isinstance(channels, str) else list(channels)
    available = [str(c) for c in da.channel.values]
    missing = [c for c in channels if c not in available]
    if missing:
        raise ChannelNotFoundError(
            f"{da.attrs.get('source', 'data')}: no channel {missing}; available: {available}"
        )
    return da.sel(channel=channels)
