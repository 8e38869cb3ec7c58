"""MATLAB readers: Falisse et al. cycle tables and OpenSim structs (scipy), MATLAB dataset objects (mat-io)."""

import json
import warnings

import numpy as np
import pytest
import scipy.io
import xarray as xr

from kinesis_neuro import compare, dynamics, emg, gait, metrics, motion
from kinesis_neuro.errors import DataFormatError, ProcessingError
from kinesis_neuro.io.matlab import read_mat, valid_cycles

CYCLES_PER_MUSCLE = {"Soleus": 11, "Vastus-lateralis": 11, "Peroneus-longus": 8, "Hamstrings-medialis": 8}


def test_emg_cycle_table_keeps_missing_cycles_missing(data_dir):
    da = emg.read("falisse2019")
    assert da.dims == ("cycle", "phase", "channel") and da.shape == (11, 100, 14)
    np.testing.assert_allclose(da.phase, np.linspace(0, 100, 100))
    assert da.attrs["side"] == "right" and "unnormalised" in da.attrs["units"]
    assert da.attrs["phase_definition"].startswith("0-100 % from heel strike")
    counts = json.loads(da.attrs["valid_cycles"])
    assert counts == {str(c): CYCLES_PER_MUSCLE.get(str(c), 6) for c in da.channel.values}
    assert (da["valid"].sum("cycle").values == list(counts.values())).all()
    assert (np.isnan(da).all("phase").values == ~da["valid"].values).all()
    assert not np.isnan(da).any("phase").where(da["valid"], False).any()  # recorded cycles are complete


def test_kinematics_grf_and_torque_tables(data_dir):
    q = emg.read("falisse2019/ExperimentalData.mat", quantity="Q")
    assert q.shape == (11, 100, 19) and q.attrs["units"].startswith("deg")
    assert float(q.sel(channel="knee_angle").max()) < 0  # gait2392: knee flexion negative, in degrees
    grf = emg.read("falisse2019/ExperimentalData.mat", quantity="GRFs")
    assert list(grf.channel.values) == ["Fore-aft", "Vertical", "Lateral"] and grf.attrs["units"] == "% body weight"
    assert 100 < float(grf.sel(channel="Vertical").mean("cycle").max()) < 120
    assert emg.read("falisse2019/ExperimentalData.mat", quantity="Torques").attrs["units"] == "N m"
    with pytest.raises(DataFormatError, match="unknown quantity 'Forces'"):
        emg.read("falisse2019/ExperimentalData.mat", quantity="Forces")


def test_cycle_table_feeds_the_comparison(data_dir):
    human = compare.human_cycles("falisse2019", split=None)
    assert human.sizes["cycle"] == 6 and "valid" not in human.coords and np.isfinite(human).all()
    # the simulated side is cut on the table's own grid, which segment_cycles reproduces exactly
    grid = compare._phase_grid(human)
    assert grid == {"n_points": 100, "split": None}
    time = np.arange(0, 4.0, 0.01)
    signal = xr.DataArray(np.outer(1.5 + np.sin(2 * np.pi * time), np.arange(1, 15)), dims=("time", "channel"),
                          coords={"time": time, "channel": human.channel.values})
    events = gait.events_from_contact(np.sin(2 * np.pi * time) > -0.2, time, side="right")
    sim = gait.segment_cycles(signal, events, n_points=grid["n_points"])
    np.testing.assert_allclose(sim.phase, human.phase)
    assert metrics.bootstrap_ci(sim, human, n_boot=20).r.sizes["channel"] == 14
    assert valid_cycles(emg.read("falisse2019", channels=["Soleus", "Vastus-lateralis"])).sizes["cycle"] == 11
    with pytest.raises(ProcessingError, match="without a stance/swing split"):
        compare.human_cycles("falisse2019", split=(50, 50))


def test_opensim_structs_as_motions_and_grf(data_dir):
    ik = emg.read("falisse2019/IK_gait_1.mat")
    assert ik.shape == (146, 37) and ik.attrs["sampling_rate"] == 100.0 and ik.attrs["in_degrees"] == 1
    walk = motion.from_opensim("falisse2019")  # IK_gait_1.mat, the card's coordinates file
    knee = walk.coordinates.sel(coordinate="knee_angle_r")
    assert walk.attrs["knee_convention"].startswith("gait2392") and 0 < float(knee.max()) < 1.3  # rad, flexion +
    with pytest.warns(UserWarning, match="does not say inDegrees"):  # by path: the header does not say
        half = motion.from_opensim(data_dir / "falisse2019" / "IK_average_running_HGC.mat")
    with warnings.catch_warnings():  # registered: its card says degrees, nothing to guess
        warnings.simplefilter("error")
        assert motion.from_opensim("falisse2019/IK_average_running_HGC.mat").coordinates.equals(half.coordinates)
    assert half.coordinates.sizes["time"] == 50 and "mtp_angle_r" not in half.coordinates.coordinate.values
    feet = {"right": "1_ground_force", "left": "ground_force"}  # from the IK: left hip flexed at 3.195 s
    with pytest.raises(DataFormatError, match=r"which GRF columns belong to the right and left foot \(plates: "
                                              r"\['1_ground_force', 'ground_force'\]"):
        dynamics.grf_from_opensim(data_dir / "falisse2019" / "GRF_gait_1.mat")  # by path: no card to name the feet
    grf = dynamics.grf_from_opensim("falisse2019/GRF_gait_1.mat")  # the card names them
    assert grf.equals(dynamics.grf_from_opensim("falisse2019/GRF_gait_1.mat", feet=feet))
    assert grf.force.dims == ("time", "side", "axis") and float(grf.force.sel(axis="z").max()) > 600
    strikes = emg.read_events("falisse2019/GRF_gait_1.mat", feet=feet).query("event == 'heel_strike'")
    assert strikes.side.tolist() == ["left", "right"]
    np.testing.assert_allclose(strikes.time, [3.195, 3.75], atol=0.005)


def test_dataset_object_time_base_fix(data_dir):
    with pytest.warns(UserWarning, match=r"emg_run.mat: dataset 'emg': the stored time column steps at 960 Hz"):
        da = emg.read("rajagopal-run")
    assert da.shape == (5590, 11) and list(da.channel.values) == ["SOL", "GASLAT", "GASMED", "TA", "SM", "BFLH",
                                                                  "VL", "VM", "RF", "GMAX", "GMED"]
    assert da.attrs["sampling_rate"] == 1000.0 and float(da.time[-1]) == pytest.approx(5.589)
    assert "1000" in da.attrs["time_base_fix"] and da.attrs["units"] == "1" and da.attrs["side"] == "right"
    assert json.loads(da.attrs["processing"])[0]["step"] == "time_base_fix"
    assert 0 <= float(da.min()) and float(da.max()) <= 1


def test_dataset_objects_chosen_by_trial(data_dir):
    with pytest.raises(DataFormatError, match=r"several datasets \['run_emg_raw', 'walk_emg_raw'\]; choose one"):
        emg.read("rajagopal-run/emg_raw.mat")
    run = emg.read("rajagopal-run/emg_raw.mat", trial="run_emg_raw")
    assert run.shape == (5590, 16) and run.attrs["sampling_rate"] == 1000.0 and "time_base_fix" not in run.attrs
    with pytest.warns(UserWarning, match="the last 3 row.* of dataset 'walk_emg_raw' are empty"):
        walk = emg.read("rajagopal-run/emg_raw.mat", trial="walk_emg_raw")
    assert walk.shape == (4780, 10) and walk.attrs["sampling_rate"] == 2000.0
    with pytest.raises(DataFormatError, match="no dataset 'jog'"):
        emg.read("rajagopal-run/emg_raw.mat", trial="jog")


# --- corrupt copies ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["falisse2019/ExperimentalData.mat", "rajagopal-run/emg_run.mat",
                                  "falisse2019/IK_gait_1.mat"])
def test_truncated_and_garbage_files(data_dir, tmp_path, name):
    raw = (data_dir / name).read_bytes()
    cut = tmp_path / "cut.mat"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"cut.mat: cannot be read as a MATLAB .mat file") as err:
        read_mat(cut)
    assert "\n" not in str(err.value)
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8)))
    with pytest.raises(DataFormatError, match="garbage.mat: cannot be read"):
        emg.read(garbage)


def _experimental(path, emg_all, names):
    scipy.io.savemat(path, {"ExperimentalData": {"EMG": {"subject1": {
        "all": emg_all, "colheaders": np.array(names, dtype=object)}}}})
    return path


@pytest.fixture(scope="module")
def real_emg(data_dir):
    table = scipy.io.loadmat(data_dir / "falisse2019" / "ExperimentalData.mat", squeeze_me=True,
                             struct_as_record=False)["ExperimentalData"].EMG.subject1
    return table.all, [str(c) for c in table.colheaders]


def test_corrupt_cycle_tables(tmp_path, real_emg):
    values, names = real_emg
    bad = values.copy()
    bad[40, 5, 2] = np.inf
    with pytest.raises(DataFormatError, match=r"inf.mat: 1 NaN/infinite sample.*channel 'Soleus'"):
        read_mat(_experimental(tmp_path / "inf.mat", bad, names))
    with pytest.raises(DataFormatError, match=r"shape \(100, 14\); expected points x 13 channels"):
        read_mat(_experimental(tmp_path / "shape.mat", values[:, :, 0], names[:13]))
    partly = values.copy()
    partly[10:20, 5, 3] = np.nan
    with pytest.warns(UserWarning, match=r"partly.mat: 1 cycle\(s\) .* partly NaN \(first: cycle 3, channel 'Soleus'"):
        da = read_mat(_experimental(tmp_path / "partly.mat", partly, names))
    assert json.loads(da.attrs["valid_cycles"])["Soleus"] == 10 and np.isnan(da.sel(channel="Soleus")[3]).all()
    gone = values.copy()
    gone[:, 0, :] = np.nan
    with pytest.raises(DataFormatError, match=r"channels \['Hamstrings-lateralis'\] hold no complete cycle"):
        read_mat(_experimental(tmp_path / "gone.mat", gone, names))
    scipy.io.savemat(tmp_path / "other.mat", {"speed": np.arange(3.0)})
    with pytest.raises(DataFormatError, match=r"other.mat: holds \['speed'\]; expected ExperimentalData"):
        read_mat(tmp_path / "other.mat")
    scipy.io.savemat(tmp_path / "noemg.mat", {"ExperimentalData": {"Q": {"subject1": {"all": values}}}})
    with pytest.raises(DataFormatError, match="ExperimentalData has no field 'EMG'"):
        read_mat(tmp_path / "noemg.mat")


def test_corrupt_storage_struct(data_dir, tmp_path):
    struct = scipy.io.loadmat(data_dir / "falisse2019" / "IK_gait_1.mat", squeeze_me=True,
                              struct_as_record=False)["Qsall"]
    fields = {"data": struct.data[:100], "colheaders": struct.colheaders, "textdata": struct.textdata}
    scipy.io.savemat(tmp_path / "short.mat", {"Qsall": fields})
    with pytest.raises(DataFormatError, match="short.mat: Qsall: header says nRows=146 but data has 100 rows"):
        read_mat(tmp_path / "short.mat")
    backwards = struct.data.copy()
    backwards[[5, 6], 0] = backwards[[6, 5], 0]
    scipy.io.savemat(tmp_path / "time.mat", {"Qsall": {**fields, "data": backwards}})
    with pytest.raises(DataFormatError, match="time.mat: the time column is not strictly increasing"):
        read_mat(tmp_path / "time.mat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real struct reads without repairs
        read_mat(data_dir / "falisse2019" / "GRF_gait_1.mat")
