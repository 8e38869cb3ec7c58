import numpy as np
import pytest

from kinesis_neuro import emg, gait, storage
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError


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


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    target = storage.write_text("old", tmp_path / "a.json")
    with pytest.raises(RuntimeError):
        with storage.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk gone")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_save_replaces_an_existing_output_whole(cycles, tmp_path, suffix):
    path = storage.save(cycles, tmp_path / f"c{suffix}")
    storage.save(cycles.isel(cycle=[0]), path)
    assert storage.load(path).sizes["cycle"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_output_folder_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with storage.output_folder(tmp_path / "out") as staging:
            storage.write_text("{}", staging / "summary.json")
            raise RuntimeError("figure failed")
    assert list(tmp_path.iterdir()) == []
    with storage.output_folder(tmp_path / "out") as staging:
        storage.write_text("{}", staging / "sub" / "summary.json")
        storage.write_text("1", staging / "table.csv")
    assert (tmp_path / "out" / "sub" / "summary.json").exists() and not list(tmp_path.glob(".*"))


def test_output_folder_merges_into_an_existing_one_and_protects_inputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    keep, recording = out / "notes.txt", out / "rec.nc"
    keep.write_text("mine")
    recording.write_text("input")
    with storage.output_folder(out) as staging:
        storage.write_text("new", staging / "table.csv")
    assert keep.read_text() == "mine" and (out / "table.csv").read_text() == "new"
    with pytest.raises(KinesisNeuroError, match="would overwrite an input"):
        with storage.output_folder(out, protect=[recording]) as staging:
            storage.write_text("overwritten", staging / "rec.nc")
    assert recording.read_text() == "input" and not list(tmp_path.glob(".*"))


def test_refuse_overwriting_inputs_and_files_of_input_folders(tmp_path):
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.safetensors").write_bytes(b"w")
    for output in (policy / "policy.safetensors", policy, tmp_path / "x" / ".." / "policy"):
        with pytest.raises(KinesisNeuroError, match="would overwrite an input"):
            storage.refuse_overwriting([output], [policy])
    storage.refuse_overwriting([policy / "new.nc", None], [policy, None])


def test_leftovers_of_killed_writers_are_cleared(tmp_path):
    stale = tmp_path / ".a.partial-999999999.nc"  # no such process
    stale.write_text("half")
    storage.write_text("whole", tmp_path / "a.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nc"]
