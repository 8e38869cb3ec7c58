import numpy as np
import pytest

from kinesis_neuro import compare, export
from kinesis_neuro.cli import main
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.simulate import static_optimisation_recording


@pytest.fixture(scope="module")
def study(data_dir):
    rec = static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=3, progress=False)
    comparison = compare.compare(rec, compare.human_cycles("moco-walk"), n_boot=50, synergies=False)
    return export.study_dataset([rec], comparison)


def test_study_layout(study):
    assert study.activation.dims == ("source", "cycle", "phase", "muscle")
    assert study.activation.attrs["units"] == "1" and study.phase.attrs["units"] == "%"
    assert study.attrs["Conventions"] == "CF-1.10" and "myo-sim" in study.attrs["provenance"]
    assert study.sizes["muscle"] == 40 and study.sizes["cycle"] >= 2


@pytest.mark.parametrize("fmt, name", [("netcdf", "study.nc"), ("zarr", "study.zarr")])
def test_round_trip_and_dictionary(study, tmp_path, fmt, name):
    import xarray as xr

    path, dictionary = export.write(study, tmp_path / name, fmt)
    back = xr.open_zarr(path).load() if fmt == "zarr" else xr.load_dataset(path, engine="h5netcdf")
    np.testing.assert_array_equal(back.activation.values, study.activation.values)
    assert back.activation.attrs["long_name"] == study.activation.attrs["long_name"]
    frame = back.activation.to_dataframe().dropna()
    assert {"activation"} <= set(frame.columns) and frame.index.names == ["source", "cycle", "phase", "muscle"]
    assert "activation (source, cycle, phase, muscle)" in dictionary.read_text()


def test_netcdf_read_by_netcdf4(study, tmp_path):
    import netCDF4

    path, _ = export.write(study, tmp_path / "study.nc", "netcdf")
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_allclose(nc["activation"][:].filled(np.nan), study.activation.values, equal_nan=True)
        assert nc["comparison_r"].getncattr("units") == "1"


def test_cli_csv_and_errors(study, tmp_path, data_dir):
    rec_path = tmp_path / "rec.nc"
    static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=3, progress=False).save(rec_path)
    assert main(["export", "--recording", str(rec_path), "--format", "csv", "--out", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "source,cycle,phase,muscle,activation"
    with pytest.raises(KinesisNeuroError, match="unknown export format"):
        export.write(study, tmp_path / "x", "xlsx")
