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
