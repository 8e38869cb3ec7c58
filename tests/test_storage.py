import numpy as np
import pytest

from kinesis_neuro import emg, gait, storage
from kinesis_neuro.errors import DataFormatError


@pytest.fixture(scope="module")
def cycles(data_dir):
    signal = emg.read("moco-walk")
    return gait.segment_cycles(emg.normalise(signal), gait.events_from_grf(emg.read("moco-walk/grf_walk.mot")))


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_round_trip_keeps_coords_units_history(cycles, tmp_path, suffix):
    back = storage.load(storage.save(cycles, tmp_path / f"cycles{suffix}"))
    np.testing.assert_array_equal(back.values, cycles.values)
    assert back.dims == cycles.dims and back.name == cycles.name
    for coord in ("phase", "channel", "cycle_start", "cycle_end", "toe_off"):
        np.testing.assert_array_equal(back[coord].values, cycles[coord].values)
    assert back.phase.attrs["units"] == "%" and back.cycle_start.attrs["units"] == "s"
    assert back.attrs == cycles.attrs
    assert [s["step"] for s in emg.history(back)] == ["normalise", "segment_cycles"]


def test_netcdf_read_by_independent_reader(cycles, tmp_path):
    import netCDF4

    path = storage.save(cycles, tmp_path / "c.nc")
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_array_equal(nc["emg"][:], cycles.values)
        assert nc["emg"].getncattr("units") == "1" and nc["emg"].getncattr("side") == "right"


def test_time_series_round_trip(data_dir, tmp_path):
    signal = emg.read("moco-walk")
    back = storage.load(storage.save(signal, tmp_path / "s.nc"))
    np.testing.assert_array_equal(back.time.values, signal.time.values)
    assert back.time.attrs["units"] == "s" and back.attrs["sampling_rate"] == 2000.0


def test_bad_paths(tmp_path):
    with pytest.raises(DataFormatError, match="use a .nc"):
        storage.load(tmp_path / "x.h5")
    with pytest.raises(DataFormatError, match="no such file"):
        storage.load(tmp_path / "x.nc")
    (tmp_path / "bad.nc").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="bad.nc"):
        storage.load(tmp_path / "bad.nc")
