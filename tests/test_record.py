from datetime import datetime
from importlib.metadata import version

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kinesis_neuro import gait, mapping
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError
from kinesis_neuro.record import VARIABLES, Recording

FS = 200.0  # Hz
PERIOD = 1.0  # s, gait cycle
FIRST_STRIKE = {"right": 0.25, "left": 0.75}  # s
STANCE = 0.6  # fraction of the cycle
MUSCLES = [f"{m}_{s}" for s in "rl" for m in ("soleus", "gasmed", "gaslat", "tibant")]
JOINTS = [f"{j}_{s}" for s in "rl" for j in ("knee_angle", "ankle_angle")]
PHI = 0.7 * np.arange(4)  # rad, activation phase of each muscle of a leg


def pattern(phase_percent, k):
    """Activation of muscle ``k`` of a leg at ``phase_percent`` of its cycle."""
    return 0.5 + 0.4 * np.sin(2 * np.pi * phase_percent / 100 + PHI[k])


def synthetic(**overrides) -> Recording:
    """4.5 s of periodic walking: sinusoidal activations locked to each leg's heel strikes."""
    t = np.arange(900) / FS
    rng = np.random.default_rng(1)
    phase = {s: 100 * ((t - t0) % PERIOD) / PERIOD for s, t0 in FIRST_STRIKE.items()}
    act = np.column_stack([pattern(phase[s], k) for s in ("right", "left") for k in range(4)])
    force = 1000.0 * act
    force[10, 3] = np.nan  # a gap survives the round trip
    angle = np.column_stack([0.5 * np.sin(2 * np.pi * phase[s] / 100 + j) for s in ("right", "left") for j in (0, 1)])
    strikes = {s: t0 + PERIOD * np.arange(5) for s, t0 in FIRST_STRIKE.items()}
    events = pd.concat([pd.DataFrame({"time": np.r_[strikes[s], strikes[s] + STANCE * PERIOD],
                                      "event": ["heel_strike"] * 5 + ["toe_off"] * 5, "side": s})
                        for s in ("right", "left")])
    events = events[events.time <= t[-1]]
    arrays = dict(
        activation=act, excitation=np.clip(act + 0.05, 0, 1), force=force,
        length=0.3 + 0.01 * act, velocity=np.gradient(0.3 + 0.01 * act, t, axis=0),
        angle=angle, angular_velocity=np.gradient(angle, t, axis=0), torque=50 * angle,
        contact=np.column_stack([phase[s] < 100 * STANCE for s in ("right", "left")]),
        root_residual_force=rng.normal(0, 5, (t.size, 3)), root_residual_moment=rng.normal(0, 1, (t.size, 3)),
        events=events, attrs=dict(motion="synthetic walk", controller="sinusoid", seed=7, note="test data"),
    )
    arrays.update(overrides)
    return Recording.from_arrays(t, MUSCLES, JOINTS, **arrays)


@pytest.fixture(scope="module")
def rec():
    return synthetic()


def assert_attrs_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_layout_units_and_provenance(rec):
    ds = rec.data
    assert set(VARIABLES) <= set(ds.data_vars)
    for name, (dim, units, _) in VARIABLES.items():
        assert ds[name].dims == ("time", dim) and ds[name].attrs["units"] == units and ds[name].attrs["long_name"]
    for name in ("heel_strike_time", "toe_off_time"):
        assert ds[name].attrs["units"] == "s" and ds[name].attrs["long_name"]
    assert ds.time.attrs["units"] == "s" and ds.contact.dtype == np.int8
    assert list(ds.side.values) == ["right", "left"] and list(ds.axis.values) == ["x", "y", "z"]
    assert list(ds.muscle_side.values) == ["right"] * 4 + ["left"] * 4
    a = ds.attrs
    assert a["model"] == f"MyoLegs, myo-sim {version('myo-sim')}" and a["myo_sim_version"] == version("myo-sim")
    assert a["mujoco_version"] == version("mujoco") and a["kinesis_neuro_version"] == version("kinesis-neuro")
    assert a["motion"] == "synthetic walk" and a["controller"] == "sinusoid" and a["seed"] == 7
    assert a["sampling_rate"] == FS and a["note"] == "test data"
    assert datetime.fromisoformat(a["created"]).tzinfo is not None
    assert synthetic(attrs=dict(motion="m", controller="c")).data.attrs["seed"] == -1


def test_netcdf_round_trip_keeps_everything(rec, tmp_path):
    back = Recording.load(rec.save(tmp_path / "sub" / "rec.nc"))
    assert set(back.data.variables) == set(rec.data.variables)
    assert back.data.sizes == rec.data.sizes
    for name, var in rec.data.variables.items():
        np.testing.assert_array_equal(back.data[name].values, var.values, err_msg=name)
        assert back.data[name].dims == var.dims
        assert_attrs_equal(back.data[name].attrs, var.attrs)
    assert back.data.contact.dtype == np.int8 and back.data.time.dtype == np.float64
    assert_attrs_equal(back.data.attrs, rec.data.attrs)
    pd.testing.assert_frame_equal(back.events(), rec.events())
    assert back.summary() == rec.summary()


def test_independent_netcdf4_reader(rec, tmp_path):
    import netCDF4

    path = rec.save(tmp_path / "rec.nc")
    with netCDF4.Dataset(path) as nc:
        assert {d: len(nc.dimensions[d]) for d in nc.dimensions} == dict(rec.data.sizes)
        for name in ("time", *VARIABLES, "heel_strike_time", "toe_off_time"):
            np.testing.assert_array_equal(np.ma.filled(nc[name][:], np.nan), rec.data[name].values, err_msg=name)
            assert nc[name].getncattr("units") == rec.data[name].attrs["units"]
        assert np.isnan(nc["force"][:].filled(np.nan)[10, 3])
        assert list(nc["muscle"][:]) == MUSCLES and list(nc["joint"][:]) == JOINTS
        assert list(nc["heel_strike_side"][:]) == list(rec.data.heel_strike_side.values)
        assert nc["contact"].dtype == np.int8
        assert nc.getncattr("model") == rec.data.attrs["model"] and nc.getncattr("seed") == 7
        assert nc.getncattr("sampling_rate") == FS and nc.getncattr("created") == rec.data.attrs["created"]


def test_events_feed_segment_cycles(rec):
    events = rec.events()
    assert list(events.columns) == ["time", "event", "side"]
    assert set(events.event) == {"heel_strike", "toe_off"} and set(events.side) == {"right", "left"}
    for side in ("right", "left"):
        act = rec.muscle_activation(side)
        assert list(act.muscle.values) == [m for m in MUSCLES if m.endswith(side[0])]
        cycles = gait.segment_cycles(act.rename(muscle="channel"), events, side=side)
        n_cycles = {"right": 4, "left": 3}[side]
        assert cycles.shape == (n_cycles, 101, 4)
        np.testing.assert_allclose(cycles.cycle_start, FIRST_STRIKE[side] + PERIOD * np.arange(n_cycles))
        np.testing.assert_allclose(cycles.stance_percent, 100 * STANCE)
        for k in range(4):
            expected = np.broadcast_to(pattern(cycles.phase.values, k), (n_cycles, 101))
            np.testing.assert_allclose(cycles.isel(channel=k).values, expected, atol=1e-9)
    split = gait.segment_cycles(rec.muscle_activation("right").rename(muscle="channel"), events, split=(100, 100))
    assert split.shape == (4, 200, 4)
    emg_like = mapping.map_to_channels(rec.muscle_activation(), ["soleus", "gastrocnemius"], side="right")
    cycles = gait.segment_cycles(emg_like, events)
    np.testing.assert_allclose(cycles.sel(channel="gastrocnemius").values[0],
                               (pattern(cycles.phase.values, 1) + pattern(cycles.phase.values, 2)) / 2, atol=1e-9)


def test_muscle_activation_and_summary(rec):
    both = rec.muscle_activation()
    assert both.dims == ("time", "muscle") and both.sizes["muscle"] == 8
    assert both.attrs["units"] == "1" and both.attrs["sampling_rate"] == FS and both.attrs["side"] == "both"
    assert rec.muscle_activation("l").attrs["side"] == "left"
    with pytest.raises(KinesisNeuroError, match="side must be 'right' or 'left'"):
        rec.muscle_activation("up")
    line = rec.summary()
    assert "\n" not in line
    for part in ("synthetic walk by sinusoid", "seed 7", "4.495 s at 200 Hz", "8 muscles", "4 joints",
                 "9 heel strikes", "8 toe-offs", "force"):
        assert part in line, part


def test_unit_conversion(rec):
    deg = synthetic(angle=np.rad2deg(rec.data.angle.values), activation=100 * rec.data.activation.values,
                    units={"angle": "degrees", "activation": "%"})
    np.testing.assert_allclose(deg.data.angle.values, rec.data.angle.values, rtol=1e-12)
    np.testing.assert_allclose(deg.data.activation.values, rec.data.activation.values, rtol=1e-12)
    assert deg.data.angle.attrs["units"] == "rad"


@pytest.mark.parametrize("overrides, message", [
    (dict(activation=np.zeros((8, 900))), r"activation: expected shape \(900, 8\).*got \(8, 900\) \(transposed"),
    (dict(torque=np.zeros((900, 3))), r"torque: expected shape \(900, 4\) \(time x joint"),
    (dict(contact=np.zeros((900, 1))), r"contact: expected shape \(900, 2\)"),
    (dict(root_residual_force=np.zeros(900)), r"root_residual_force: expected shape \(900, 3\)"),
    (dict(activation=np.full((900, 8), 50.0)), r"activation must lie in 0-1.*units=\{'activation': '%'\}"),
    (dict(force=-np.ones((900, 8))), r"force must be positive when pulling.*-data.actuator_force"),
    (dict(contact=np.full((900, 2), 2)), r"contact must hold only 0/1"),
    (dict(units={"angle": "furlong"}), r"angle: cannot convert units 'furlong' to 'rad' \(convertible: deg\)"),
    (dict(units={"angel": "deg"}), r"units given for unknown variables \['angel'\]"),
    (dict(attrs=dict(controller="c")), r"attrs needs 'motion'"),
    (dict(attrs=dict(motion="m", controller="c", sampling_rate=100)), r"sampling_rate 100 Hz does not match"),
    (dict(attrs=dict(motion="m", controller="c", extra={"a": 1})), r"attrs\['extra'\].*JSON"),
    (dict(events=pd.DataFrame({"time": [1.0]})), r"event table lacks columns"),
])
def test_bad_arrays(overrides, message):
    with pytest.raises(DataFormatError, match=message):
        synthetic(**overrides)


def test_bad_time_and_names():
    act = np.full((4, 1), 0.5)
    attrs = dict(motion="m", controller="c")
    with pytest.raises(DataFormatError, match="uniformly sampled"):
        Recording.from_arrays([0, 0.1, 0.2, 0.5], ["soleus_r"], activation=act, attrs=attrs)
    with pytest.raises(DataFormatError, match="strictly increasing"):
        Recording.from_arrays([0, 0.1, 0.1, 0.2], ["soleus_r"], activation=act, attrs=attrs)
    with pytest.raises(DataFormatError, match=r"duplicate muscle names \['soleus_r'\]"):
        Recording.from_arrays([0, 1, 2, 3], ["soleus_r", "soleus_r"], activation=np.zeros((4, 2)), attrs=attrs)


def test_loading_what_is_not_a_recording(rec, tmp_path):
    plain = tmp_path / "plain.nc"
    xr.Dataset({"x": ("t", [1.0, 2.0])}).to_netcdf(plain, engine="h5netcdf")
    with pytest.raises(DataFormatError, match=r"plain\.nc: not a kinesis-neuro recording.*variables \['x'\]"):
        Recording.load(plain)
    (tmp_path / "bad.nc").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match=r"bad\.nc: cannot read as NetCDF"):
        Recording.load(tmp_path / "bad.nc")
    with pytest.raises(DataFormatError, match="no such file"):
        Recording.load(tmp_path / "absent.nc")
    altered = rec.data.copy()
    altered["angle"] = altered.angle.assign_attrs(units="deg")
    altered.to_netcdf(tmp_path / "deg.nc", engine="h5netcdf")
    with pytest.raises(DataFormatError, match=r"deg\.nc: variable 'angle' has units 'deg', expected 'rad'"):
        Recording.load(tmp_path / "deg.nc")
    with pytest.raises(DataFormatError, match=r"lacks \['activation'\]"):
        Recording(rec.data.drop_vars("activation"))


def test_rollout_cycles_far_from_the_imitated_stride_are_not_gait_cycles():
    from kinesis_neuro.compare import simulated_cycles
    from kinesis_neuro.errors import ProcessingError

    attrs = dict(motion="synthetic walk", controller="policy", seed=7)
    kept = simulated_cycles(synthetic(attrs={**attrs, "reference_stride_s": 1.1}), ["soleus", "tibialis_anterior"])
    assert kept.sizes["cycle"] == 4 and kept.attrs["dropped_cycles"] == 0  # 1.0 s cycles, within 25 %
    with pytest.raises(ProcessingError, match=r"lasting 2.00 s"):
        simulated_cycles(synthetic(attrs={**attrs, "reference_stride_s": 2.0}), ["soleus"])
    assert simulated_cycles(synthetic(), ["soleus"]).sizes["cycle"] == 4  # not a rollout: no stride to compare
