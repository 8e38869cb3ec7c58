import json

import numpy as np
import pytest
import xarray as xr

from kinesis_neuro import emg
from kinesis_neuro.emg import processing as proc
from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.io.common import emg_array


def _signal(x, fs, channels=None):
    """A (time, channel) DataArray; NaN allowed so processing steps can be tested on them."""
    x = np.atleast_2d(np.asarray(x, float).T).T
    return emg_array(x, np.arange(x.shape[0]) / fs, channels or [f"c{i}" for i in range(x.shape[1])],
                     source="synthetic", units="mV", sampling_rate=fs, allow_nan=True)


def filt_emg_reproduction_error() -> float:
    """Max |ours - musclesyneRgies FILT_EMG| over 13 muscles x 600 points."""
    raw = emg.read("musclesynergies")
    cycles = emg.musclesynergies_cycles(emg.musclesynergies_filter(raw), emg.read_events("musclesynergies"))
    shipped = emg.read("musclesynergies/FILT_EMG.RData")
    assert cycles.shape == shipped.shape == (3, 200, 13)
    assert list(cycles.channel.values) == list(shipped.channel.values)
    np.testing.assert_array_equal(cycles.phase.values, shipped.phase.values)
    return float(np.abs(cycles.values - shipped.values).max())


def test_musclesynergies_preset_reproduces_filt_emg(data_dir):
    error = filt_emg_reproduction_error()
    print(f"FILT_EMG reproduction: max abs difference = {error:.3e}")
    assert error <= 1e-6


def test_scipy_odd_padding_would_not_reproduce_filt_emg(data_dir):
    """The R-style zero padding matters: scipy's default reflection misses by far more than 1e-6."""
    raw = emg.read("musclesynergies")
    da = proc.remove_dc(raw)
    r_style = proc.lowpass(proc.rectify(proc.highpass(da, 50, padding="r-signal")), 20, padding="r-signal")
    odd = proc.lowpass(proc.rectify(proc.highpass(da, 50)), 20)
    assert float(np.abs(r_style - odd).max()) > 1e-3


def test_history_records_every_step_and_parameter():
    da = _signal(np.random.default_rng(0).normal(size=(2000, 2)), 1000.0)
    out = emg.normalise(emg.envelope(emg.bandpass(emg.remove_dc(da), 20, 450), 6), "trial_max")
    steps = emg.history(out)
    assert [s["step"] for s in steps] == ["remove_dc", "bandpass", "rectify", "lowpass", "normalise"]
    assert steps[1]["cutoff_hz"] == [20.0, 450.0] and steps[1]["order"] == 4 and steps[3]["cutoff_hz"] == 6.0
    assert out.attrs["units"] == "1" and steps[4]["reference_units"] == "mV"
    assert emg.history(da) == []  # inputs are never modified
    json.dumps(out.attrs)


def test_cutoff_above_nyquist_is_refused():
    da = _signal(np.zeros((500, 1)), 500.0)
    with pytest.raises(ProcessingError, match="450 Hz is not between 0 and the Nyquist frequency 250 Hz"):
        emg.bandpass(da)


def test_bandpass_keeps_band_and_removes_drift():
    fs = 2000.0
    t = np.arange(4000) / fs
    da = _signal(np.sin(2 * np.pi * 100 * t) + 2.0 + np.sin(2 * np.pi * 2 * t), fs)
    out = emg.bandpass(da, 20, 450).values[:, 0]
    mid = slice(500, 3500)
    np.testing.assert_allclose(out[mid], np.sin(2 * np.pi * 100 * t)[mid], atol=0.02)


def test_notch_removes_mains():
    fs = 1000.0
    t = np.arange(5000) / fs
    base = np.sin(2 * np.pi * 7 * t)
    out = emg.notch(_signal(base + 0.5 * np.sin(2 * np.pi * 50 * t), fs), 50).values[:, 0]
    assert np.abs(out - base)[500:-500].max() < 0.02


def test_envelope_recovers_amplitude_modulation():
    fs = 2000.0
    t = np.arange(8000) / fs
    modulation = 1 + 0.8 * np.sin(2 * np.pi * 1.0 * t)
    carrier = np.random.default_rng(1).normal(size=t.size)
    env = emg.envelope(emg.bandpass(_signal(modulation * carrier, fs)), 6).values[:, 0]
    r = np.corrcoef(env[1000:-1000], modulation[1000:-1000])[0, 1]
    assert r > 0.95


def test_moving_rms_of_a_sine():
    fs = 1000.0
    t = np.arange(3000) / fs
    out = emg.moving_rms(_signal(3 * np.sin(2 * np.pi * 20 * t), fs), window=0.1).values[200:-200, 0]
    np.testing.assert_allclose(out, 3 / np.sqrt(2), rtol=0.01)
    with pytest.raises(ProcessingError, match="window"):
        emg.moving_rms(_signal(np.ones(10), fs), window=1.0)


def test_rectify_and_normalisations():
    da = _signal(np.c_[[-2.0, 1, 4, -1], [1.0, -3, 2, 0]], 100.0, ["a", "b"])
    np.testing.assert_array_equal(emg.rectify(da).values, np.abs(da.values))
    np.testing.assert_array_equal(emg.rectify(da, "half").values, np.clip(da.values, 0, None))
    np.testing.assert_allclose(emg.normalise(emg.rectify(da)).max("time").values, [1, 1])
    np.testing.assert_allclose(emg.normalise(da, "mvc", mvc={"a": 2.0, "b": 4.0}).values[0], [-1.0, 0.25])
    with pytest.raises(ProcessingError, match="missing for channels"):
        emg.normalise(da, "mvc", mvc={"a": 2.0})
    with pytest.raises(ProcessingError, match="segment the data first"):
        emg.normalise(da, "mean_cycle_peak")
    cycles = xr.DataArray(np.abs(np.random.default_rng(2).normal(size=(4, 11, 2))), dims=("cycle", "phase", "channel"),
                          coords={"channel": ["a", "b"]}, attrs={"units": "mV"})
    out = emg.normalise(cycles, "mean_cycle_peak")
    np.testing.assert_allclose(out.mean("cycle").max("phase").values, [1, 1])


def test_resample_keeps_slow_signal():
    fs = 1000.0
    t = np.arange(2001) / fs
    da = _signal(np.sin(2 * np.pi * 3 * t), fs)
    out = emg.resample(da, 100.0)
    assert out.attrs["sampling_rate"] == 100.0 and out.sizes["time"] == 201
    np.testing.assert_allclose(out.values[20:-20, 0], np.sin(2 * np.pi * 3 * out.time.values[20:-20]), atol=0.01)


def test_unknown_preset():
    with pytest.raises(ProcessingError, match="choose one of"):
        emg.process(_signal(np.ones(10), 100.0), "fancy")


def test_nan_samples_are_refused():
    da = _signal(np.r_[np.ones(50), np.nan, np.ones(49)], 100.0)
    with pytest.raises(ProcessingError, match="NaN"):
        emg.rectify(da)
