"""The one place where readers check their input: files, text, time columns and sample values.

Every reader opens its file through :func:`readable_file` (or :func:`read_text`) and turns samples
into a validated ``(time, channel)`` DataArray with :func:`emg_array`; physical quantities are held
to the plausible magnitudes of :data:`LIMITS` by :func:`check_values`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError

# Largest magnitude accepted per quantity (after unit conversion): beyond it a value is a corrupt
# cell or a unit mix-up, never a measurement of walking or running. Signals of any unit (EMG in
# V, uV, ADC counts or normalised) are only held to "signal", which no instrument reaches.
LIMITS = {
    "signal": (1e12, "in any unit"),  # squares (RMS, power) of larger values overflow soon
    "force": (1e5, "N"),  # ground reaction force: ~100 body weights
    "moment": (1e5, "N m"),
    "centre of pressure": (100.0, "m"),  # of a loaded foot, from the lab origin
    "angle": (4 * np.pi, "rad"),  # two turns
    "translation": (1e4, "m"),
}
GAP_FACTOR = 5.0  # a time step this many times the median step is a gap in the recording
MAX_STEP_S = 0.5  # nothing read here is sampled below 2 Hz: larger steps mean time in ms (or another unit)


def readable_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking that it names an existing regular file.

    Directories, named pipes (a reader would wait on one forever), sockets and devices are refused.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file") from None
    except OSError as err:
        raise DataFormatError(f"{path}: cannot access the file ({err.strerror or err})") from err
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise DataFormatError(f"{path}: is {kind}, not a regular file")
    return path


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of a regular, non-empty file (a byte-order mark is dropped); binary content or
    another encoding is a :class:`DataFormatError` naming the line of the first bad byte."""
    path = readable_file(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataFormatError(f"{path}: cannot read the file ({err.strerror or err})") from err
    if not data.strip():
        raise DataFormatError(f"{path}: the file is empty")
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataFormatError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); "
            "a binary file, or text in another encoding (save it as UTF-8)"
        ) from err


def check_time(time: np.ndarray, source: str | Path, column: str = "time") -> None:
    """Check a time column (s): finite, strictly increasing, without gaps (a step over
    :data:`GAP_FACTOR` times the median) and plausibly in seconds (median step below :data:`MAX_STEP_S`)."""
    bad = ~np.isfinite(time)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(f"{source}: the {column} column holds {time[i]} at sample {i + 1}; expected finite times")
    steps = np.diff(time)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        what = f"{time[i]:g} s appears twice" if steps[i] == 0 else f"it goes back from {time[i]:g} s to {time[i + 1]:g} s"
        raise DataFormatError(
            f"{source}: the {column} column is not strictly increasing ({what}, samples {i + 1}-{i + 2})"
        )
    if steps.size == 0:
        return
    median = float(np.median(steps))
    if median >= MAX_STEP_S:
        raise DataFormatError(
            f"{source}: the {column} column steps by {median:g} (median): in seconds that is under 2 samples "
            "per second; is the time in ms? Convert it to seconds"
        )
    gap = steps > GAP_FACTOR * median
    if gap.any():
        i = int(np.argmax(gap))
        raise DataFormatError(
            f"{source}: the {column} column jumps from {time[i]:g} s to {time[i + 1]:g} s, {steps[i] / median:.0f} "
            f"times the median step of {median:g} s (a gap in the recording); cut the file at the gap"
        )


def _position(da: xr.DataArray, index: tuple[int, ...]) -> str:
    """``channel 'TA', t=0.5 s`` for the sample at ``index``."""
    parts = []
    for dim, i in sorted(zip(da.dims, index), key=lambda d: d[0] != "channel"):
        value = da[dim].values[i] if dim in da.coords else i
        parts.append(f"channel '{value}'" if dim == "channel" else f"t={float(value):g} s" if dim == "time"
                     else f"{dim} {value}")
    return ", ".join(parts)


def check_values(da: xr.DataArray, quantity: str = "signal", *, where=None, hint: str = "") -> None:
    """Refuse NaN/infinite samples of ``da`` and magnitudes beyond the limit of ``quantity`` in
    :data:`LIMITS`. ``where`` (booleans broadcasting against ``da``) restricts the check, e.g. to the
    samples where a foot is loaded; ``hint`` ends the message. Names the first bad channel and time."""
    values = np.asarray(da.values, dtype=float)
    source = da.attrs.get("source", "data")
    limit, units = LIMITS[quantity]
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= limit)  # NaN too
    if where is not None:
        bad &= np.broadcast_to(np.asarray(where, dtype=bool), bad.shape)
    if not bad.any():
        return
    index = np.unravel_index(int(np.argmax(bad)), bad.shape)
    first = f"{_position(da, index)}: {values[index]:g}"
    finite = np.isfinite(values)
    if not finite[index]:
        raise DataFormatError(f"{source}: {int((bad & ~finite).sum())} NaN/infinite sample(s) (first: {first}); "
                              f"fill or cut them before loading{hint}")
    raise DataFormatError(f"{source}: {int((bad & finite).sum())} {quantity} sample(s) beyond the plausible "
                          f"±{limit:g} {units} (first: {first}); a corrupt cell or wrong units{hint}")


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

    ``time`` is in seconds and must pass :func:`check_time`; ``sampling_rate`` (Hz) is
    taken from the median sample interval when not given. NaN samples are refused unless
    ``allow_nan`` (marker gaps), so later filters never spread them silently; infinite ones and
    magnitudes beyond the ``"signal"`` limit of :data:`LIMITS` always.
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
    check_time(time, source)
    if sampling_rate is None:
        sampling_rate = float(1.0 / np.median(np.diff(time)))
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
    check_values(da, where=~np.isnan(data) if allow_nan else None)
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
