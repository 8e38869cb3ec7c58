"""Round trips through :func:`kinesis_neuro.io.neo_formats.read_neo`.

Each file is written by a writer independent of the reader (edfio, pybv, pynwb, and a small
Intan RHD2000 writer below), read back, and compared sample by sample.
"""

from __future__ import annotations

import datetime
import struct
import warnings

import numpy as np
import pytest

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError
from kinesis_neuro.io.neo_formats import NEO_EXTENSIONS, read_neo

RNG = np.random.default_rng(20240611)


def _check_common(da, *, names, rate, units, fmt, n, t0=0.0):
    assert da.dims == ("time", "channel")
    assert list(da.channel.values) == names
    assert da.shape == (n, len(names))
    assert da.attrs["sampling_rate"] == pytest.approx(rate, rel=1e-12)
    assert da.attrs["units"] == units
    assert da.attrs["file_format"] == fmt
    assert isinstance(da.attrs["stream"], str) and da.attrs["stream"]
    t = da.time.values
    assert t[0] == pytest.approx(t0, abs=1e-12)
    np.testing.assert_allclose(np.diff(t), 1.0 / rate, rtol=1e-9)


# ----------------------------------------------------------------------------------- EDF / BDF


def _write_edf(path, signals, cls_name="Edf"):
    edfio = pytest.importorskip("edfio")
    sig_cls = edfio.EdfSignal if cls_name == "Edf" else edfio.BdfSignal
    sigs = [
        sig_cls(x, fs, label=label, physical_dimension=unit, physical_range=prange)
        for label, x, fs, unit, prange in signals
    ]
    getattr(edfio, cls_name)(sigs).write(path)


@pytest.mark.parametrize(
    ("ext", "cls_name", "bits", "unit"),
    [(".edf", "Edf", 16, "uV"), (".bdf", "Bdf", 24, "mV")],
)
def test_edf_bdf_roundtrip(tmp_path, ext, cls_name, bits, unit):
    fs, n = 2000.0, 4000
    x = RNG.normal(0.0, 150.0, (n, 3)).clip(-990, 990)
    names = ["TA_L", "GM_L", "VL_L"]
    path = tmp_path / f"trial{ext}"
    _write_edf(path, [(nm, x[:, i], fs, unit, (-1000.0, 1000.0)) for i, nm in enumerate(names)], cls_name)

    da = read_neo(path, side="left")
    _check_common(da, names=names, rate=fs, units=unit, fmt=cls_name.upper(), n=n)
    assert da.attrs["side"] == "left" and da.attrs["source"] == str(path)
    step = 2000.0 / (2**bits - 1)  # physical range / digital range
    np.testing.assert_allclose(da.values, x, rtol=0, atol=step / 2 + 1e-9)

    sub = read_neo(path, channels=["VL_L", "TA_L"])
    assert list(sub.channel.values) == ["VL_L", "TA_L"]
    np.testing.assert_array_equal(sub.values, da.sel(channel=["VL_L", "TA_L"]).values)


def test_edf_streams_of_different_rates(tmp_path):
    path = tmp_path / "mixed.edf"
    emg = RNG.normal(0.0, 100.0, (2, 1000)).clip(-490, 490)
    acc = np.sin(np.linspace(0, 6, 100))
    _write_edf(
        path,
        [
            ("EMG1", emg[0], 1000.0, "uV", (-500.0, 500.0)),
            ("EMG2", emg[1], 1000.0, "uV", (-500.0, 500.0)),
            ("ACC", acc, 100.0, "g", (-2.0, 2.0)),
        ],
    )
    with pytest.raises(DataFormatError) as err:
        read_neo(path)
    msg = str(err.value)
    assert str(path) in msg and "1000 Hz" in msg and "100 Hz" in msg and "stream=" in msg

    by_name = read_neo(path, stream="100 Hz")
    _check_common(by_name, names=["ACC"], rate=100.0, units="g", fmt="EDF", n=100)
    np.testing.assert_allclose(by_name.values[:, 0], acc, atol=4.0 / 65535)
    by_index = read_neo(path, stream=0)
    _check_common(by_index, names=["EMG1", "EMG2"], rate=1000.0, units="uV", fmt="EDF", n=1000)
    assert by_index.attrs["stream"] == "1000 Hz"
    # the channels asked for decide the stream when they all lie in one
    assert read_neo(path, channels="EMG2").attrs["sampling_rate"] == 1000.0
    assert read_neo(path, channels=["ACC"]).attrs["sampling_rate"] == 100.0
    with pytest.raises(DataFormatError, match="different sampling rates"):
        read_neo(path, channels=["EMG1", "ACC"])
    with pytest.raises(DataFormatError, match="no signal stream"):
        read_neo(path, stream="250 Hz")
    with pytest.raises(ChannelNotFoundError, match="ACC"):
        read_neo(path, channels=["SOL"])


# ----------------------------------------------------------------------------------- BrainVision


def test_brainvision_roundtrip(tmp_path):
    pybv = pytest.importorskip("pybv")
    fs, n = 1000.0, 3000
    x_uv = RNG.normal(0.0, 80.0, (n, 2))
    names = ["RF", "BF"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pybv.write_brainvision(
            data=x_uv.T * 1e-6, sfreq=fs, ch_names=names, fname_base="walk", folder_out=tmp_path,
            fmt="binary_int16", resolution=0.1, unit="µV",
        )
    da = read_neo(tmp_path / "walk.vhdr")
    _check_common(da, names=names, rate=fs, units="uV", fmt="BrainVision", n=n)
    # 0.1 uV per bit; pybv truncates towards zero rather than rounding, so the error is up to one bit
    np.testing.assert_allclose(da.values, x_uv, rtol=0, atol=0.1 + 1e-9)


def test_brainvision_mixed_units_are_converted(tmp_path):
    pybv = pytest.importorskip("pybv")
    x_v = RNG.normal(0.0, 1e-4, (3, 500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pybv warns that mV is outside the BrainVision spec
        pybv.write_brainvision(
            data=x_v, sfreq=500.0, ch_names=["A", "B", "C"], fname_base="mix", folder_out=tmp_path,
            fmt="binary_float32", unit=["µV", "mV", "µV"],
        )
    da = read_neo(tmp_path / "mix.vhdr")
    assert da.attrs["units"] == "uV"  # the most common unit
    assert da.attrs["units_converted_from"] == "B=mV"
    # float32 storage of value / resolution (0.1 in each channel's unit), read back times the resolution
    np.testing.assert_allclose(da.values, x_v.T * 1e6, rtol=1e-6)


# ----------------------------------------------------------------------------------- NWB


@pytest.fixture(scope="module")
def nwb_file(tmp_path_factory):
    pynwb = pytest.importorskip("pynwb")
    from pynwb.ecephys import ElectricalSeries

    nwb = pynwb.NWBFile(
        session_description="gait EMG",
        identifier="kinesis-test",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    )
    device = nwb.create_device(name="amplifier")
    group = nwb.create_electrode_group(name="emg", description="surface EMG", location="leg", device=device)
    nwb.add_electrode_column(name="label", description="muscle")
    for muscle in ("TA", "GM", "SOL"):
        nwb.add_electrode(group=group, location="leg", label=muscle)
    region = nwb.create_electrode_table_region([0, 1, 2], "EMG electrodes")
    counts = RNG.integers(-2000, 2000, (1200, 3)).astype(np.int16)
    gains = np.array([0.195, 0.195, 0.5])  # uV per count: channel_conversion x conversion (1e-6) = volts
    emg_uv = counts * gains + 2.0  # offset 2 uV
    nwb.add_acquisition(
        ElectricalSeries(
            name="EMG", data=counts, electrodes=region, rate=2000.0, starting_time=1.5,
            conversion=1e-6, channel_conversion=gains, offset=2e-6,
        )
    )
    acc = RNG.normal(0.0, 1.0, 150)
    nwb.add_acquisition(pynwb.TimeSeries(name="ACC", data=acc, unit="g", rate=100.0, starting_time=1.5))
    force = RNG.normal(0.0, 1.0, (50, 2))
    nwb.add_acquisition(
        pynwb.TimeSeries(name="FORCE", data=force, unit="N", timestamps=2.0 + np.arange(50) / 50.0)
    )
    path = tmp_path_factory.mktemp("nwb") / "session.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path, emg_uv, acc, force


def test_nwb_electrical_series(nwb_file):
    path, emg_uv, _, _ = nwb_file
    da = read_neo(path, stream="EMG")
    _check_common(da, names=["TA", "GM", "SOL"], rate=2000.0, units="uV", fmt="NWB", n=1200, t0=1.5)
    np.testing.assert_allclose(da.values, emg_uv, rtol=1e-12)
    one = read_neo(path, channels=["SOL", "TA"])  # the channels pick the series
    np.testing.assert_allclose(one.values, emg_uv[:, [2, 0]], rtol=1e-12)


def test_nwb_timeseries_and_ambiguity(nwb_file):
    path, _, acc, force = nwb_file
    with pytest.raises(DataFormatError) as err:
        read_neo(path)
    assert str(path) in str(err.value) and "'EMG'" in str(err.value) and "'ACC'" in str(err.value)
    da = read_neo(path, stream="ACC")
    _check_common(da, names=["ACC"], rate=100.0, units="g", fmt="NWB", n=150, t0=1.5)
    np.testing.assert_allclose(da.values[:, 0], acc, rtol=1e-12)
    irregular = read_neo(path, stream="FORCE")  # a series with timestamps instead of a rate
    _check_common(irregular, names=["FORCE_0", "FORCE_1"], rate=50.0, units="N", fmt="NWB", n=50, t0=2.0)
    np.testing.assert_allclose(irregular.values, force, rtol=1e-12)
    with pytest.raises(ChannelNotFoundError, match="TA"):
        read_neo(path, channels=["RF"])


# ----------------------------------------------------------------------------------- Intan RHD2000
# A minimal writer following Intan's "RHD2000 data file format" description: little-endian
# header fields, QStrings as uint32 byte length + UTF-16LE text, then data blocks of 60 samples
# (file version < 2.0) or 128 samples (>= 2.0): int32 timestamps, uint16 amplifier samples
# (0.195 uV/bit, offset 32768) per channel, one auxiliary sample per 4, one supply sample per block.


def _qstring(text: str | None) -> bytes:
    if text is None:
        return struct.pack("<I", 0xFFFFFFFF)
    data = text.encode("utf-16-le")
    return struct.pack("<I", len(data)) + data


def _rhd_channel(native: str, custom: str, order: int, signal_type: int) -> bytes:
    return (
        _qstring(native)
        + _qstring(custom)
        + struct.pack("<hhhhhh", order, order, signal_type, 1, order, 0)  # orders, type, enabled, chip ch, stream
        + struct.pack("<hhhh", 0, 0, 0, 0)  # spike scope: trigger mode, threshold, digital channel, edge
        + struct.pack("<ff", 1.0e4, -45.0)  # electrode impedance magnitude (ohm), phase (degree)
    )


def write_rhd(path, amp_codes, names, sample_rate, version=(1, 3), aux_codes=None):
    """Write an RHD2000 file with amplifier channels (+ one auxiliary and one supply channel)."""
    block = 128 if version >= (2, 0) else 60
    n, n_amp = amp_codes.shape
    assert n % block == 0
    head = struct.pack("<Ihh", 0xC6912702, *version)
    head += struct.pack("<f", sample_rate)
    head += struct.pack("<h", 1)  # DSP offset removal enabled
    head += struct.pack("<fff", 1.0, 10.0, 7500.0)  # actual DSP cut-off, lower and upper bandwidth (Hz)
    head += struct.pack("<fff", 1.0, 10.0, 7500.0)  # desired DSP cut-off, lower and upper bandwidth (Hz)
    head += struct.pack("<h", 1)  # notch filter mode: 50 Hz
    head += struct.pack("<ff", 1000.0, 1000.0)  # desired and actual impedance test frequency (Hz)
    head += _qstring("gait lab") + _qstring("") + _qstring(None)  # notes 1-3
    if version >= (1, 1):
        head += struct.pack("<h", 0)  # temperature sensor channels
    if version >= (1, 3):
        head += struct.pack("<h", 0)  # eval board mode
    if version >= (2, 0):
        head += _qstring("hardware")  # reference channel
    chans = [_rhd_channel(f"A-{i:03d}", nm, i, 0) for i, nm in enumerate(names)]
    chans.append(_rhd_channel("A-AUX1", "AUX1", 32, 1))
    chans.append(_rhd_channel("A-VDD1", "VDD1", 33, 2))
    head += struct.pack("<h", 1)  # one signal group
    head += _qstring("Port A") + _qstring("A") + struct.pack("<hhh", 1, len(chans), n_amp)
    head += b"".join(chans)

    if aux_codes is None:
        aux_codes = np.zeros(n // 4, dtype=np.uint16)
    stamps = np.arange(n, dtype="<i4")
    blocks = []
    for b in range(n // block):
        s = slice(b * block, (b + 1) * block)
        blocks.append(stamps[s].tobytes())
        blocks.append(np.ascontiguousarray(amp_codes[s].T, dtype="<u2").tobytes())  # channel by channel
        blocks.append(aux_codes[b * block // 4 : (b + 1) * block // 4].astype("<u2").tobytes())
        blocks.append(struct.pack("<H", 49000))  # supply voltage sample
    with open(path, "wb") as f:
        f.write(head + b"".join(blocks))


@pytest.mark.parametrize("version", [(1, 3), (3, 0)])
def test_intan_rhd_roundtrip(tmp_path, version):
    block = 128 if version >= (2, 0) else 60
    fs, n = 20000.0, 5 * block
    names = ["TA", "GM", "SOL", "VL"]
    amp = (32768 + RNG.normal(0.0, 500.0, (n, 4))).round().clip(0, 65535).astype(np.uint16)
    aux = RNG.integers(0, 65535, n // 4, dtype=np.uint16)
    path = tmp_path / "rec.rhd"
    write_rhd(path, amp, names, fs, version=version, aux_codes=aux)

    da = read_neo(path)  # the amplifier stream is the default among amplifier, aux and supply
    _check_common(da, names=names, rate=fs, units="uV", fmt="Intan", n=n)
    assert da.attrs["stream"] == "RHD2000 amplifier channel"
    np.testing.assert_allclose(da.values, (amp.astype(float) - 32768) * 0.195, rtol=0, atol=1e-9)

    aux_da = read_neo(path, stream="RHD2000 auxiliary input channel")
    _check_common(aux_da, names=["AUX1"], rate=fs / 4, units="V", fmt="Intan", n=n // 4)
    np.testing.assert_allclose(aux_da.values[:, 0], aux * 37.4e-6, rtol=1e-9)

    with pytest.raises(ChannelNotFoundError) as err:
        read_neo(path, channels=["TA", "RF"])
    assert "RF" in str(err.value) and "GM" in str(err.value)


def test_intan_bad_files(tmp_path):
    names = ["TA", "GM"]
    amp = np.full((120, 2), 32768, dtype=np.uint16)
    path = tmp_path / "cut.rhd"
    write_rhd(path, amp, names, 1000.0)
    data = path.read_bytes()
    path.write_bytes(data[:-37])  # stops inside the last data block
    with pytest.raises(DataFormatError, match="cut.rhd"):
        read_neo(path)

    gaps = tmp_path / "gaps.rhd"
    write_rhd(gaps, amp, names, 1000.0)
    raw = bytearray(gaps.read_bytes())
    block_bytes = 60 * 4 + 2 * 60 * 2 + 15 * 2 + 2  # timestamps, 2 amplifier channels, aux, supply
    second = len(raw) - block_bytes  # start of the second (last) block
    raw[second : second + 4] = struct.pack("<i", 999)  # its first timestamp jumps
    gaps.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="gaps.rhd"):
        read_neo(gaps)

    wrong = tmp_path / "wrong.rhd"
    wrong.write_bytes(b"\x00\x01\x02\x03" + RNG.bytes(500))
    with pytest.raises(DataFormatError, match="magic number 0xC6912702"):
        read_neo(wrong)


# ----------------------------------------------------------------------------------- bad input


def test_truncated_edf(tmp_path):
    path = tmp_path / "cut.edf"
    x = RNG.normal(0.0, 100.0, 5000).clip(-900, 900)
    _write_edf(path, [("TA", x, 1000.0, "uV", (-1000.0, 1000.0))])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as err:
        read_neo(path)
    assert str(path) in str(err.value) and "EDF" in str(err.value)
    assert err.value.__cause__ is not None


@pytest.mark.parametrize("name", ["junk.edf", "junk.bdf", "junk.vhdr", "junk.nwb", "junk.rhs"])
def test_garbage_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(RNG.bytes(4096))
    with pytest.raises(DataFormatError) as err:
        read_neo(path)
    assert str(path) in str(err.value)


def test_brainvision_missing_data_file(tmp_path):
    pybv = pytest.importorskip("pybv")
    pybv.write_brainvision(
        data=RNG.normal(0, 1e-5, (1, 100)), sfreq=100.0, ch_names=["TA"], fname_base="rec", folder_out=tmp_path
    )
    (tmp_path / "rec.eeg").unlink()
    with pytest.raises(DataFormatError, match="rec.vhdr"):
        read_neo(tmp_path / "rec.vhdr")


def test_missing_channel_lists_available(tmp_path):
    path = tmp_path / "ok.edf"
    x = RNG.normal(0.0, 10.0, (2, 500))
    _write_edf(path, [("TA", x[0], 500.0, "uV", (-100.0, 100.0)), ("GM", x[1], 500.0, "uV", (-100.0, 100.0))])
    with pytest.raises(ChannelNotFoundError) as err:
        read_neo(path, channels=["TA", "SOL"])
    msg = str(err.value)
    assert "SOL" in msg and "'TA'" in msg and "'GM'" in msg and str(path) in msg


def test_bad_arguments(tmp_path):
    other = tmp_path / "rec.xyz"
    other.write_bytes(b"abc")
    with pytest.raises(DataFormatError, match="unsupported extension"):
        read_neo(other)
    with pytest.raises(DataFormatError, match="absent.edf: no such file"):
        read_neo(tmp_path / "absent.edf")
    path = tmp_path / "ok.edf"
    _write_edf(path, [("TA", np.zeros(200), 100.0, "uV", (-1.0, 1.0))])
    with pytest.raises(DataFormatError, match="segment"):
        read_neo(path, segment=1)
    assert set(NEO_EXTENSIONS) == {".edf", ".bdf", ".vhdr", ".rhd", ".rhs", ".nwb"}
    assert all(e == e.lower() for e in NEO_EXTENSIONS)
