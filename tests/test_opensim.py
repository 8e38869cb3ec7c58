import warnings

import numpy as np
import pytest

from kinesis_neuro import emg
from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError
from kinesis_neuro.io.opensim import read_storage, read_trc


def test_emg_storage_version1(data_dir):
    da = emg.read("moco-walk")
    assert da.dims == ("time", "channel") and da.shape == (4780, 10)
    assert da.attrs["sampling_rate"] == 2000.0 and da.attrs["units"] == "1" and da.attrs["side"] == "right"
    assert da.attrs["source"].endswith("electromyography.sto")
    assert list(da.channel.values[:3]) == ["soleus", "gastrocnemius", "tibialis_anterior"]
    assert da.time.attrs["units"] == "s" and float(da.time[0]) == 0.0
    assert np.isclose(float(da.max()), 1.0, atol=1e-3)  # max-normalised envelopes


def test_coordinates_version3_labels_shortened(data_dir):
    da = read_storage(data_dir / "moco-walk" / "coordinates.sto")
    assert da.shape == (1350, 31) and da.attrs["sampling_rate"] == 1000.0 and da.attrs["in_degrees"] == 0
    assert "knee_angle_r" in da.channel.values and "pelvis_tx" in da.channel.values
    assert da.attrs["file_format"] == "OpenSim storage (version 3)"


def _write(path, header, columns, rows):
    body = "\n".join("\t".join(f"{v:.6f}" for v in row) for row in rows)
    path.write_text(header + "\nendheader\n" + "\t".join(columns) + "\n" + body + "\n")
    return path


def test_in_degrees_flag_and_version0_header(tmp_path):
    rows = np.c_[np.arange(5) / 100, np.arange(5) * 10.0]
    p = _write(tmp_path / "a.mot", "angles\nnRows=5\nnColumns=2\ninDegrees=yes", ["time", "knee_angle_r"], rows)
    da = read_storage(p)
    assert da.attrs["in_degrees"] == 1 and da.attrs["sampling_rate"] == 100.0
    np.testing.assert_allclose(da.sel(channel="knee_angle_r"), rows[:, 1])


@pytest.mark.parametrize(
    "header, columns, rows, match",
    [
        ("x\nversion=1\nnRows=9\ninDegrees=no", ["time", "a"], np.c_[np.arange(5.0), np.ones(5)], "nRows=9"),
        ("x\nversion=1\nnRows=4", ["time", "a"], np.c_[[0, 1, 1, 2.0], np.ones(4)], "not strictly increasing"),
        ("x\nversion=1\nnRows=4", ["time", "a"], np.c_[np.arange(4.0) / 100, [1, np.nan, np.nan, 1]], "NaN"),
        ("x\nversion=1", ["t", "a"], np.c_[np.arange(4.0), np.ones(4)], "starting with 'time'"),
    ],
)
def test_bad_storage_files(tmp_path, header, columns, rows, match):
    p = _write(tmp_path / "bad.sto", header, columns, rows)
    with pytest.raises(DataFormatError, match=match) as err:
        read_storage(p)
    assert str(p) in str(err.value)


def test_truncated_and_headerless_files(data_dir, tmp_path):
    text = (data_dir / "moco-walk" / "grf_walk.mot").read_text()
    cut = tmp_path / "grf_cut.mot"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(DataFormatError, match="grf_cut.mot"):
        read_storage(cut)
    raw = tmp_path / "noheader.sto"
    raw.write_text("time\ta\n0\t1\n")
    with pytest.raises(DataFormatError, match="no 'endheader'"):
        read_storage(raw)
    binary = tmp_path / "binary.sto"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataFormatError, match="binary.sto"):
        read_storage(binary)


def test_missing_channel_lists_available(data_dir):
    with pytest.raises(ChannelNotFoundError, match="available: .*soleus"):
        emg.read("moco-walk", channels=["soleus", "peroneus"])


def test_trc_markers(data_dir):
    da = read_trc(data_dir / "moco-walk" / "markers_walk.trc")
    assert da.attrs["units"] == "mm" and da.attrs["sampling_rate"] == 100.0
    assert da.shape == (238, 41 * 3) and "R.Heel_y" in da.channel.values
    assert float(da.time[1] - da.time[0]) == pytest.approx(0.01)


# --- other model versions and naming --------------------------------------------------------------


def test_stale_row_count_is_repaired_for_the_registered_file_only(data_dir):
    with pytest.warns(UserWarning, match=r"ik_solution.mot: header says nRows=230 but the data block has 131 rows "
                                         r"\(0-1.3 s\); the rows are read"):
        da = emg.read("moco-subject05/ik_solution.mot")
    assert da.shape[0] == 131
    with pytest.raises(DataFormatError, match="nRows=230 .* truncated or corrupt"):
        read_storage(data_dir / "moco-subject05" / "ik_solution.mot")  # any other copy: refused


def test_gait2392_kinematics_become_myolegs_coordinates(data_dir):
    from kinesis_neuro import motion

    with pytest.warns(UserWarning) as caught:
        run = motion.from_opensim("hamner-run")
    messages = [str(w.message) for w in caught]
    assert not any("inDegrees" in m for m in messages)  # the header does not say; the dataset card does (deg)
    assert any("time steps vary from 0.016 to 0.017 s; the coordinates are resampled onto 600 even steps" in m
               for m in messages)
    names = list(run.coordinates.coordinate.values)
    assert len(names) == 20 and not any(n.startswith(("lumbar", "arm", "R.ASIS")) for n in names)
    assert run.attrs["knee_convention"].startswith("gait2392")
    knee = run.coordinates.sel(coordinate="knee_angle_r")
    assert 1.5 < float(knee.max()) < 2.0 and float(knee.min()) > 0  # rad, flexion positive (running: ~110 deg)
    assert np.allclose(np.diff(run.time), run.time[1] - run.time[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two repairs above, again
        kept = motion.from_opensim("hamner-run", knee_convention="rajagopal", filter_hz=None)
    assert float(kept.coordinates.sel(coordinate="knee_angle_r").max()) < 0
    walk = motion.from_opensim("moco-walk")  # full state paths, Rajagopal convention: unchanged
    assert walk.attrs["knee_convention"].startswith("rajagopal") and "hip_flexion_r" in walk.coordinates.coordinate


@pytest.mark.parametrize(("source", "right_strikes"), [
    ("rajagopal-run/grf_run.mot", [0.868, 1.552, 2.23, 2.916, 3.619, 4.297, 4.988]),  # R_/L_ prefixes
    ("hamner-run/subject02_grf_HiFreq.mot", [1.104]),  # numbered plates; the card names their feet
])
def test_grf_naming_conventions_find_both_feet(data_dir, source, right_strikes):
    from kinesis_neuro import dynamics

    events = emg.read_events(source)
    assert set(events.side) == {"right", "left"}
    np.testing.assert_allclose(events.query("side == 'right' and event == 'heel_strike'").time, right_strikes,
                               atol=0.005)
    grf = dynamics.grf_from_opensim(source)
    assert grf.force.dims == ("time", "side", "axis") and float(grf.force.sel(axis="z").max()) > 1000


def test_grf_without_identifiable_feet(tmp_path):
    from kinesis_neuro import dynamics

    rows = np.c_[np.arange(5) / 100, np.ones((5, 9)) * 100]
    columns = ["time", *(f"{p}ground_force_v{a}" for p in ("", "1_") for a in "xyz"),
               *(f"ground_force_p{a}" for a in "xyz")]
    plates = _write(tmp_path / "plates.mot", "grf\nnRows=5", columns, rows)
    with pytest.raises(DataFormatError, match=r"plates.mot: cannot tell which GRF columns belong to the right and "
                                              r"left foot \(plates: \['1_ground_force', 'ground_force'\]"):
        emg.read_events(plates)
    events = emg.read_events(plates, feet={"right": "ground_force", "left": "1_ground_force"})
    assert events.empty  # loaded throughout: no contact starts or ends
    with pytest.raises(DataFormatError, match=r"the right foot's plate ground_force lacks x, y and z columns of "
                                              r"\['torque'\] \(has \['ground_force_px'"):
        dynamics.grf_from_opensim(plates, feet={"right": "ground_force", "left": "1_ground_force"})
    right_only = _write(tmp_path / "right.mot", "grf\nnRows=5", ["time", "R_ground_force_vy"], rows[:, :2])
    with pytest.raises(DataFormatError, match=r"the left foot .*channels: \['R_ground_force_vy'\]"):
        emg.read_events(right_only)
