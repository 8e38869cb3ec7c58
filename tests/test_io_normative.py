"""Normative tables (Schwartz et al. 2008, biomechZoo layout): mean and SD per speed over the gait cycle."""

import numpy as np
import pytest

from kinesis_neuro import emg
from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.normative import SPEED_ND, SPEEDS, read_normative

EMG_FILES = ["MGastrocnemiusMed", "MHamstringsLat", "MHamstringsMed", "MRectusFem", "MTibialisAnt"]


def test_one_table_mean_and_sd(data_dir):
    path = data_dir / "schwartz2008" / "MGastrocnemiusMed.txt"
    ds = read_normative(path, units="1")
    assert ds["mean"].dims == ("speed", "phase", "channel") and ds["mean"].shape == (5, 51, 1)
    np.testing.assert_allclose(ds.phase, np.arange(0, 101, 2))
    assert list(ds.speed.values) == list(SPEED_ND) and list(ds.speed_name.values) == list(SPEEDS)
    first = [float(v) for v in path.read_text().splitlines()[0].split()]  # 0, then (-1 SD, mean, +1 SD) x 5
    np.testing.assert_allclose(ds["mean"].isel(phase=0, channel=0), first[2::3])
    np.testing.assert_allclose(ds.sd.isel(phase=0, channel=0), (np.array(first[3::3]) - first[1::3]) / 2)
    assert ds.attrs["phase_definition"].startswith("0-100 %") and ds["sd"].attrs["units"] == "1"


def test_registered_tables(data_dir):
    da = emg.read("schwartz2008/MTibialisAnt.txt")  # a headerless .txt: read by the card's kind
    assert da.dims == ("speed", "phase", "channel") and da.attrs["units"] == "1"
    assert "read_normative" in da.attrs["note"]
    ds = emg.read_normative("schwartz2008")
    assert list(ds.channel.values) == EMG_FILES and ds["mean"].shape == (5, 51, 5)
    assert 0.5 < float(ds["mean"].max()) < 1.0 and ds.attrs["dataset"] == "schwartz2008"
    angles = emg.read_normative("schwartz2008", kind="normative-kinematics")
    assert list(angles.channel.values) == ["AHip_FlexExt", "AKnee_FlexExt", "AAnkle_DfPf"]
    assert angles.attrs["units"] == "deg" and 55 < float(angles["mean"].sel(channel="AKnee_FlexExt").max()) < 75


@pytest.mark.parametrize(("edit", "message"), [
    (lambda lines: lines[:-1] + [lines[-1][: len(lines[-1]) // 2]], "line 51 has 8 fields but the header has 16"),
    (lambda lines: [lines[0].replace("0.06", "n/a", 1)] + lines[1:], "NaN/infinite sample.*speed 0.172, phase 0.0"),
    (lambda lines: lines[:25], "runs 0 to 48 % in 25 rows"),
    (lambda lines: [" ".join(ln.split()[:1] + [v for i in range(5) for v in ln.split()[1 + 3 * i: 4 + 3 * i][::-1]])
                    for ln in lines], "a \\+1 SD curve lies below its -1 SD curve"),
    (lambda lines: [lines[0].replace("0.06", "1e300", 1)] + lines[1:], "beyond the plausible"),
])
def test_corrupt_copies(data_dir, tmp_path, edit, message):
    lines = (data_dir / "schwartz2008" / "MGastrocnemiusMed.txt").read_text().splitlines()
    bad = tmp_path / "MGastrocnemiusMed.txt"
    bad.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(DataFormatError, match=message) as err:
        read_normative(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_empty_and_binary(tmp_path):
    for name, data in (("empty.txt", b"\n"), ("binary.txt", bytes(range(256)))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataFormatError, match=name):
            emg.read_normative(tmp_path / name)
