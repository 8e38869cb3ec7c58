"""Named processing pipelines: raw EMG -> envelope, and raw EMG -> time-normalised cycles."""

from __future__ import annotations

import pandas as pd
import xarray as xr

from kinesis_neuro.emg import processing as proc
from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.gait import segment_cycles


def default_envelope(da: xr.DataArray, band=(20.0, 450.0), envelope_hz: float = 6.0, order: int = 4,
                     notch_hz: float | None = None) -> xr.DataArray:
    """DC removal, band-pass (20-450 Hz), optional notch, full-wave rectification, 6 Hz low-pass envelope."""
    da = proc.bandpass(proc.remove_dc(da), *band, order=order)
    if notch_hz:
        da = proc.notch(da, notch_hz)
    return proc.envelope(da, envelope_hz, order)


def musclesynergies_filter(da: xr.DataArray, hp_hz: float = 50.0, hp_order: int = 4, lp_hz: float = 20.0,
                           lp_order: int = 4) -> xr.DataArray:
    """musclesyneRgies ``filtEMG`` defaults, to machine precision: demean, high-pass 50 Hz,
    full-wave rectification, low-pass 20 Hz (R ``signal::filtfilt`` padding), non-positive samples
    floored, minimum subtracted, trial maximum set to 1."""
    da = proc.highpass(proc.remove_dc(da), hp_hz, hp_order, padding="r-signal")
    da = proc.lowpass(proc.rectify(da), lp_hz, lp_order, padding="r-signal")
    return proc.normalise(proc.subtract_minimum(proc.floor_nonpositive(da)), "trial_max")


def musclesynergies_cycles(da: xr.DataArray, events: pd.DataFrame, *, side: str = "right",
                           cycle_div=(100, 100), trim: bool = True, max_cycles: int | None = None) -> xr.DataArray:
    """musclesyneRgies ``normEMG``: stance and swing each resampled to ``cycle_div`` points
    (sample-snapped boundaries), first and last cycle trimmed, at most ``max_cycles`` kept."""
    cycles = segment_cycles(da, events, side=side, split=cycle_div, snap_to_samples=True, outlier_sd=None)
    if trim:
        if cycles.sizes["cycle"] < 3:
            raise ProcessingError(f"trimming first and last cycle leaves nothing of {cycles.sizes['cycle']} cycles")
        cycles = cycles.isel(cycle=slice(1, -1))
    if max_cycles is not None:
        cycles = cycles.isel(cycle=slice(0, max_cycles))
    return cycles.assign_coords(cycle=range(cycles.sizes["cycle"]))


PRESETS = {
    "default": default_envelope,
    "musclesynergies": musclesynergies_filter,
    "processed": lambda da: da,
}


def process(da: xr.DataArray, preset: str = "default") -> xr.DataArray:
    """Apply a named preset: ``default`` (20-450 Hz, 6 Hz envelope), ``musclesynergies``, or
    ``processed`` (data that already are envelopes, left as they are)."""
    if preset not in PRESETS:
        raise ProcessingError(f"unknown processing preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset](da)
