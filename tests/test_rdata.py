import numpy as np
import pytest

from kinesis_neuro import emg
from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.rdata import read_rdata, read_syns

MUSCLES = ["ME", "MA", "FL", "RF", "VM", "VL", "ST", "BF", "TA", "PL", "GM", "GL", "SO"]


def test_raw_data(data_dir):
    da = emg.read("musclesynergies")
    assert da.dims == ("time", "channel") and da.shape == (7618, 13)
    assert list(da.channel.values) == MUSCLES and da.attrs["sampling_rate"] == 1000.0
    assert da.attrs["trial"] == "ID0012_TW_01" and da.attrs["side"] == "right"
    events = emg.read_events("musclesynergies")
    strikes = events[events.event == "heel_strike"].time.to_numpy()
    np.testing.assert_allclose(strikes, [1.414, 2.448, 3.488, 4.515, 5.549, 6.596])
    assert (events.side == "right").all()


def test_filt_emg_and_syns(data_dir):
    filt = emg.read("musclesynergies/FILT_EMG.RData")
    assert filt.dims == ("cycle", "phase", "channel") and filt.shape == (3, 200, 13)
    assert filt.phase.values[100] == 50.0 and filt.phase.attrs["units"] == "%"
    syns = read_syns(data_dir / "musclesynergies" / "SYNS.RData")
    assert syns["V"].shape == (15, 200, 13) and list(syns["V"].channel.values) == MUSCLES
    assert syns["rank"].sel(subject="ID0001_TW_01") == 5 and 0.8 < float(syns["R2"].min()) <= 1
    m = syns["M"]["ID0001_TW_01"]
    assert m.dims == ("channel", "synergy") and m.shape == (13, 5)


def test_corrupt_rdata(tmp_path, data_dir):
    half = tmp_path / "half.RData"
    half.write_bytes((data_dir / "musclesynergies" / "RAW_DATA.RData").read_bytes()[:5000])
    with pytest.raises(DataFormatError, match="half.RData"):
        read_rdata(half)
    junk = tmp_path / "junk.RData"
    junk.write_bytes(b"RDX3\n" + bytes(200))
    with pytest.raises(DataFormatError, match="junk.RData"):
        read_rdata(junk)
    with pytest.raises(DataFormatError, match="no trial 'ID9999'"):
        read_rdata(data_dir / "musclesynergies" / "RAW_DATA.RData", trial="ID9999")
