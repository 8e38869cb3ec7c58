"""EMG processing steps: pure functions on ``(time, channel)`` DataArrays.

Each step returns a new DataArray whose ``processing`` attribute (a JSON list) has the step
and all its parameters appended, so a saved file tells exactly how it was made.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from scipy import signal

from kinesis_neuro.errors import ProcessingError

ZERO_PHASE_PADDING = ("odd", "r-signal")


def history(da: xr.DataArray) -> list[dict]:
    """The processing steps recorded on ``da`` (oldest first)."""
    return json.loads(da.attrs.get("processing", "[]"))


def _record(out: xr.DataArray, source: xr.DataArray, step: str, **params) -> xr.DataArray:
    out.attrs = dict(source.attrs)
    out.attrs["processing"] = json.dumps(history(source) + [{"step": step, **params}])
    out.name = source.name
    return out


def _apply(da: xr.DataArray, func, step: str, **params) -> xr.DataArray:
    """Apply ``func`` to the samples along ``time`` and record the step (NaN samples are refused)."""
    if not np.all(np.isfinite(da.values)):
        raise ProcessingError(f"{da.attrs.get('source', 'data')}: {step} on data with NaN/infinite samples "
                              "would spread them; fill or cut the gaps first")
    axis = da.get_axis_num("time")
    return _record(da.copy(data=func(da.values, axis)), da, step, **params)


def _rate(da: xr.DataArray) -> float:
    try:
        return float(da.attrs["sampling_rate"])
    except KeyError:
        raise ProcessingError(
            f"{da.attrs.get('source', 'data')}: no sampling_rate attribute; filters need the sampling rate in Hz"
        ) from None


def _check_cutoffs(da: xr.DataArray, step: str, *cutoffs: float) -> float:
    fs = _rate(da)
    nyquist = fs / 2
    for fc in cutoffs:
        if not 0 < fc < nyquist:
            raise ProcessingError(
                f"{da.attrs.get('source', 'data')}: {step} cut-off {fc:g} Hz is not between 0 and the "
                f"Nyquist frequency {nyquist:g} Hz (sampling rate {fs:g} Hz); lower the cut-off or use "
                "data sampled faster"
            )
    return fs


def _zero_phase(b: np.ndarray, a: np.ndarray, x: np.ndarray, axis: int, padding: str,
                padlen: int) -> np.ndarray:
    """Forward-backward IIR filtering.

    ``"odd"``: odd reflection over ``padlen`` samples (callers use three periods of the lowest
    cut-off; scipy's default of 3 filter lengths is far too short for low cut-offs).
    ``"r-signal"``: the R package ``signal``'s ``filtfilt`` (zero initial state, zeros appended),
    needed to reproduce musclesyneRgies to machine precision.
    """
    if padding == "odd":
        return signal.sosfiltfilt(signal.tf2sos(b, a), x, axis=axis, padlen=min(x.shape[axis] - 1, padlen))
    if padding == "r-signal":
        n = 2 * max(len(a), len(b))
        pad_shape = list(x.shape)
        pad_shape[axis] = n
        y = signal.lfilter(b, a, np.concatenate([x, np.zeros(pad_shape)], axis=axis), axis=axis)
        y = np.flip(signal.lfilter(b, a, np.flip(y, axis), axis=axis), axis)
        return np.take(y, np.arange(x.shape[axis]), axis=axis)
    raise ProcessingError(f"unknown zero-phase padding {padding!r}; choose one of {ZERO_PHASE_PADDING}")


def _butter(da, step, cutoff, order, btype, padding):
    fs = _check_cutoffs(da, step, *np.atleast_1d(cutoff))
    b, a = signal.butter(order, np.asarray(cutoff) / (fs / 2), btype=btype)
    cut = [float(c) for c in np.atleast_1d(cutoff)]
    padlen = int(round(3 * fs / min(cut)))
    return _apply(da, lambda x, ax: _zero_phase(b, a, x, ax, padding, padlen), step,
                  cutoff_hz=cut if len(cut) > 1 else cut[0], order=order, zero_phase=True, padding=padding)


def remove_dc(da: xr.DataArray) -> xr.DataArray:
    """Subtract each channel's mean (DC offset)."""
    return _apply(da, lambda x, ax: x - x.mean(axis=ax, keepdims=True), "remove_dc")


def bandpass(da: xr.DataArray, low: float = 20.0, high: float = 450.0, order: int = 4,
             padding: str = "odd") -> xr.DataArray:
    """Zero-phase Butterworth band-pass between ``low`` and ``high`` Hz."""
    if low >= high:
        raise ProcessingError(f"band-pass needs low < high, got {low:g} Hz and {high:g} Hz")
    return _butter(da, "bandpass", [low, high], order, "bandpass", padding)


def highpass(da: xr.DataArray, cutoff: float = 20.0, order: int = 4, padding: str = "odd") -> xr.DataArray:
    """Zero-phase Butterworth high-pass at ``cutoff`` Hz."""
    return _butter(da, "highpass", cutoff, order, "highpass", padding)


def lowpass(da: xr.DataArray, cutoff: float = 6.0, order: int = 4, padding: str = "odd") -> xr.DataArray:
    """Zero-phase Butterworth low-pass at ``cutoff`` Hz."""
    return _butter(da, "lowpass", cutoff, order, "lowpass", padding)


def notch(da: xr.DataArray, frequency: float = 50.0, quality: float = 30.0, harmonics: int = 1) -> xr.DataArray:
    """Zero-phase IIR notch at mains ``frequency`` Hz (and ``harmonics - 1`` multiples below Nyquist)."""
    fs = _check_cutoffs(da, "notch", frequency)
    freqs = [k * frequency for k in range(1, harmonics + 1) if k * frequency < fs / 2]

    def run(x, ax):
        for f0 in freqs:
            b, a = signal.iirnotch(f0, quality, fs)
            x = _zero_phase(b, a, x, ax, "odd", int(round(3 * fs * quality / f0)))
        return x

    return _apply(da, run, "notch", frequency_hz=freqs, quality=quality)


def rectify(da: xr.DataArray, kind: str = "full") -> xr.DataArray:
    """Full-wave (absolute value) or half-wave (negative samples set to 0) rectification."""
    if kind not in ("full", "half"):
        raise ProcessingError(f"rectification must be 'full' or 'half', got {kind!r}")
    func = (lambda x, ax: np.abs(x)) if kind == "full" else (lambda x, ax: np.clip(x, 0, None))
    return _apply(da, func, "rectify", kind=kind)


def envelope(da: xr.DataArray, cutoff: float = 6.0, order: int = 4, padding: str = "odd") -> xr.DataArray:
    """Linear envelope: full-wave rectification then a zero-phase low-pass at ``cutoff`` Hz."""
    return lowpass(rectify(da), cutoff, order, padding)


def moving_rms(da: xr.DataArray, window: float = 0.05) -> xr.DataArray:
    """Centred moving root-mean-square over ``window`` seconds (edges use the samples available)."""
    fs = _rate(da)
    n = int(round(window * fs))
    if n < 1 or n > da.sizes["time"]:
        raise ProcessingError(f"moving RMS window {window:g} s is {n} samples at {fs:g} Hz; "
                              f"it must be between 1 and {da.sizes['time']} samples")
    rolled = (da**2).rolling(time=n, center=True, min_periods=1).mean() ** 0.5
    return _record(rolled.transpose(*da.dims), da, "moving_rms", window_s=window, window_samples=n)


def subtract_minimum(da: xr.DataArray) -> xr.DataArray:
    """Subtract each channel's minimum over time (musclesyneRgies ``min_sub``)."""
    return _apply(da, lambda x, ax: x - x.min(axis=ax, keepdims=True), "subtract_minimum")


def floor_nonpositive(da: xr.DataArray) -> xr.DataArray:
    """Replace samples <= 0 by the smallest positive sample of the whole array (musclesyneRgies)."""
    def run(x, ax):
        positive = x[x > 0]
        if positive.size == 0:
            raise ProcessingError(f"{da.attrs.get('source', 'data')}: no positive sample to floor to")
        return np.where(x <= 0, positive.min(), x)

    return _apply(da, run, "floor_nonpositive")


def normalise(da: xr.DataArray, method: str = "trial_max", mvc=None) -> xr.DataArray:
    """Amplitude normalisation per channel, result dimensionless (units ``"1"``).

    ``"trial_max"``: divide by the channel's maximum; ``"mean_cycle_peak"``: divide by the peak
    of the mean cycle (needs a ``cycle`` dimension); ``"mvc"``: divide by ``mvc`` (a mapping
    channel -> value, or a sequence in channel order, in the data's units).
    """
    channels = [str(c) for c in da.channel.values]
    if method == "trial_max":
        scale = da.max(dim=[d for d in da.dims if d != "channel"])
    elif method == "mean_cycle_peak":
        if "cycle" not in da.dims:
            raise ProcessingError("mean_cycle_peak normalisation needs cycles: segment the data first")
        scale = da.mean("cycle").max(dim=[d for d in da.dims if d not in ("channel", "cycle")])
    elif method == "mvc":
        if mvc is None:
            raise ProcessingError("mvc normalisation needs mvc= (one value per channel)")
        if isinstance(mvc, dict):
            missing = [c for c in channels if c not in mvc]
            if missing:
                raise ProcessingError(f"mvc values missing for channels {missing}")
            mvc = [mvc[c] for c in channels]
        if len(mvc) != len(channels):
            raise ProcessingError(f"got {len(mvc)} mvc values for {len(channels)} channels")
        scale = xr.DataArray(np.asarray(mvc, dtype=float), dims="channel", coords={"channel": da.channel})
    else:
        raise ProcessingError(f"unknown normalisation {method!r}; choose trial_max, mean_cycle_peak or mvc")
    if np.any(scale.values <= 0) or not np.all(np.isfinite(scale.values)):
        raise ProcessingError(f"cannot normalise: a channel's reference amplitude is not positive ({scale.values})")
    out = _record((da / scale).transpose(*da.dims), da, "normalise", method=method,
                  reference=[float(v) for v in scale.values], reference_units=da.attrs.get("units", "unknown"))
    out.attrs["units"] = "1"
    return out


def resample(da: xr.DataArray, rate: float) -> xr.DataArray:
    """Resample to ``rate`` Hz over the same time span (anti-aliased polyphase when downsampling)."""
    fs = _rate(da)
    if rate <= 0:
        raise ProcessingError(f"resampling rate must be positive, got {rate:g} Hz")
    t0, t1 = float(da.time[0]), float(da.time[-1])
    new_time = t0 + np.arange(int(np.floor((t1 - t0) * rate + 1e-9)) + 1) / rate
    source = da
    if rate < fs:  # low-pass below the new Nyquist before interpolating
        b, a = signal.butter(8, 0.8 * rate / fs)
        source = da.copy(data=_zero_phase(b, a, da.values, da.get_axis_num("time"), "odd",
                                           int(round(3 / (0.4 * rate) * fs))))
    out = source.interp(time=new_time)
    out = _record(out, da, "resample", rate_hz=float(rate), from_rate_hz=fs,
                  anti_alias_hz=0.4 * rate if rate < fs else None)
    out.attrs["sampling_rate"] = float(rate)
    return out
