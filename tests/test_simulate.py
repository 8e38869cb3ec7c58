import numpy as np
import pytest

from kinesis_neuro import compare, emg
from kinesis_neuro.cli import main
from kinesis_neuro.record import Recording
from kinesis_neuro.simulate import static_optimisation_recording


@pytest.fixture(scope="module")
def recording(data_dir):
    return static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", progress=False)


def test_static_optimisation_recording(recording):
    data = recording.data
    assert data.sizes["time"] == 1350 and data.sizes["muscle"] == 80 and data.sizes["joint"] == 14
    assert data.attrs["max_leg_residual_n_m"] <= 1e-3
    act = data.activation.values
    assert act.min() >= 0 and act.max() <= 1 and act.mean() > 0.001
    assert ((data.excitation >= 0) & (data.excitation <= 1)).all()
    events = recording.events()
    assert set(events.event) == {"heel_strike", "toe_off"}
    assert data.contact.sel(side="right").values.any() and data.contact.sel(side="left").values.any()


def test_soleus_active_in_stance_tibialis_in_swing(recording):
    """Physiology check: plantarflexors load in late stance, dorsiflexors in swing (right leg)."""
    a = recording.data.activation
    stance = a.sel(time=slice(0.5, 0.95))   # right foot on the ground (heel strike 0.267 s, toe-off 1.036 s)
    swing = a.sel(time=slice(1.1, 1.35))    # right foot in the air
    assert float(stance.sel(muscle="soleus_r").mean()) > 3 * float(swing.sel(muscle="soleus_r").mean())


def test_correlation_with_emg(recording):
    signal = emg.read("moco-walk")
    raw = compare.timeseries_correlation(recording.muscle_activation(), signal)
    assert list(raw.index) == [str(c) for c in signal.channel.values]
    assert raw.attrs["window_s"] == (0.45, pytest.approx(1.799))
    assert raw.loc["soleus", "r"] > 0.5 and raw.loc["medial_hamstrings", "r"] > 0.5
    lagged = compare.emg_through_activation_dynamics(signal)
    # activation dynamics delay the EMG: the peak of a rising envelope comes later
    assert float(lagged.sel(channel="soleus").idxmax()) >= float(signal.sel(channel="soleus").idxmax())


def test_simulate_cli_writes_recording(data_dir, tmp_path, capsys):
    out = tmp_path / "rec.nc"
    assert main(["simulate", "--controller", "static-opt", "--motion", "moco-walk", "--emg", "moco-walk",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1350 frames" in text and "median r" in text
    rec = Recording.load(out)
    assert rec.data.sizes["muscle"] == 80 and np.isfinite(rec.data.activation).all()


def test_periodic_static_optimisation_has_complete_cycles(data_dir):
    rec = static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=3, progress=False)
    events = rec.events()
    strikes = events[(events.event == "heel_strike") & (events.side == "right")]
    assert len(strikes) >= 3  # at least two complete right gait cycles
    assert rec.data.sizes["time"] > 3000 and "periodic walk, 3 strides" in rec.data.attrs["motion"]
    residual = rec.data.attrs["max_leg_residual_n_m"]
    assert residual < 20.0  # only the frame at each seam of the constructed walk is not met exactly
