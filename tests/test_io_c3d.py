"""C3D reader: files are written here with ezc3d itself, then read back."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ezc3d = pytest.importorskip("ezc3d")

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError  # noqa: E402
from kinesis_neuro.io.c3d import normalise_event, read_c3d, read_c3d_events  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
POINT_RATE = 100.0
ANALOG_RATE = 1000.0
N_FRAMES = 50  # -> 500 analog samples per channel


def write_c3d(
    path: Path,
    data: np.ndarray | None = None,
    labels=("TA", "GM", "SOL"),
    units=("V", "V", "V"),
    *,
    first_frame: int = 0,
    scale=None,
    events=(),
    trial_start: int | None = None,
) -> tuple[Path, np.ndarray]:
    """Write a C3D with one marker and ``data`` (channels x samples) as analogs; returns (path, data)."""
    n_sub = int(ANALOG_RATE / POINT_RATE)
    if data is None:
        rng = np.random.default_rng(7)
        data = rng.normal(scale=1e-3, size=(len(labels), N_FRAMES * n_sub))
    c = ezc3d.c3d()
    c["parameters"]["POINT"]["RATE"]["value"] = [POINT_RATE]
    c["parameters"]["POINT"]["LABELS"]["value"] = ["M1"]
    c["data"]["points"] = np.ones((4, 1, data.shape[1] // n_sub))
    c["parameters"]["ANALOG"]["RATE"]["value"] = [ANALOG_RATE]
    c["parameters"]["ANALOG"]["LABELS"]["value"] = list(labels)
    c.add_parameter("ANALOG", "UNITS", list(units))
    if scale is not None:
        c.add_parameter("ANALOG", "SCALE", list(scale))
    c["data"]["analogs"] = data[np.newaxis]
    c["header"]["points"]["first_frame"] = first_frame  # ezc3d counts frames from 0
    if trial_start is not None:  # Vicon: first frame (from 1) as two 16-bit words, for starts > 65535
        c.add_parameter("TRIAL", "ACTUAL_START_FIELD", [trial_start % 65536, trial_start // 65536])
    for minutes, seconds, context, label in events:
        c.add_event([minutes, seconds], context=context, label=label)
    c.write(str(path))
    return path, data


def assert_float32_close(actual, expected):
    """C3D stores samples as float32."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def run_isolated(code: str, path: Path) -> str:
    """Run a reader in a child interpreter: a hang or crash of ezc3d must not take pytest down."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(path)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, f"child exited with {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


ISOLATED_READ = """
    import sys
    from kinesis_neuro.errors import DataFormatError
    from kinesis_neuro.io.c3d import read_c3d
    try:
        read_c3d(sys.argv[1])
    except DataFormatError as err:
        print("DataFormatError:", err)
"""


# --- analog channels ---------------------------------------------------------------------------


def test_read_c3d_samples_labels_units_rate_time(tmp_path):
    path, data = write_c3d(tmp_path / "walk.c3d")
    da = read_c3d(path, side="right")
    assert da.dims == ("time", "channel")
    assert list(da.channel.values) == ["TA", "GM", "SOL"]
    assert da.shape == (500, 3)
    assert_float32_close(da.values, data.T)
    assert da.attrs["units"] == "V"
    assert da.attrs["sampling_rate"] == ANALOG_RATE
    assert da.attrs["side"] == "right"
    assert da.attrs["source"] == str(path)
    np.testing.assert_allclose(da.time.values, np.arange(500) / ANALOG_RATE, atol=1e-12)
    assert da.time.attrs["units"] == "s"


def test_time_starts_at_the_first_frame(tmp_path):
    path, _ = write_c3d(tmp_path / "late.c3d", first_frame=10)
    # the file itself stores the first frame counted from 1 (header word 4)
    assert struct.unpack_from("<H", path.read_bytes(), 6)[0] == 11
    da = read_c3d(path)
    np.testing.assert_allclose(da.time.values, 0.1 + np.arange(500) / ANALOG_RATE, atol=1e-12)
    assert da.attrs["first_frame"] == 11


def test_trial_actual_start_field_beats_the_16_bit_header(tmp_path):
    path, _ = write_c3d(tmp_path / "long.c3d", first_frame=65534, trial_start=70001)
    da = read_c3d(path)
    np.testing.assert_allclose(da.time.values[:3], 700.0 + np.arange(3) / ANALOG_RATE)
    assert da.attrs["first_frame"] == 70001


def test_channels_are_selected_in_the_given_order(tmp_path):
    path, data = write_c3d(tmp_path / "walk.c3d")
    da = read_c3d(path, channels=["SOL", "TA"])
    assert list(da.channel.values) == ["SOL", "TA"]
    assert_float32_close(da.values, data[[2, 0]].T)
    assert list(read_c3d(path, channels="GM").channel.values) == ["GM"]


def test_missing_channel_names_what_the_file_has(tmp_path):
    path, _ = write_c3d(tmp_path / "walk.c3d")
    with pytest.raises(ChannelNotFoundError, match="VL") as info:
        read_c3d(path, channels=["TA", "VL"])
    assert "GM" in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, KeyError)


def test_mixed_units_ask_for_a_channel_selection(tmp_path):
    path, data = write_c3d(tmp_path / "mixed.c3d", units=("mV", "mV", "N"))
    with pytest.raises(DataFormatError, match="channels=") as info:
        read_c3d(path)
    assert str(path) in str(info.value) and "SOL" in str(info.value)
    da = read_c3d(path, channels=["TA", "GM"])
    assert da.attrs["units"] == "mV"
    assert_float32_close(da.values, data[:2].T)
    assert read_c3d(path, channels=["SOL"]).attrs["units"] == "N"


def test_analog_scale_is_applied_once(tmp_path):
    """ezc3d stores data / SCALE and multiplies on reading; the reader must not scale again."""
    scale = np.float32(0.123)
    path, data = write_c3d(tmp_path / "scaled.c3d", scale=(float(scale), 1.0, 1.0))
    assert_float32_close(read_c3d(path).values, data.T)
    # doubling ANALOG:SCALE of channel 1 in the file must double that channel only
    raw = path.read_bytes()
    old = struct.pack("<f", scale)
    assert raw.count(old) == 1
    path.write_bytes(raw.replace(old, struct.pack("<f", 2 * scale)))
    da = read_c3d(path)
    assert_float32_close(da.values[:, 0], 2 * data[0])
    assert_float32_close(da.values[:, 1:], data[1:].T)


def test_file_without_analog_channels_is_refused(tmp_path):
    c = ezc3d.c3d()
    c["parameters"]["POINT"]["RATE"]["value"] = [POINT_RATE]
    c["parameters"]["POINT"]["LABELS"]["value"] = ["M1"]
    c["data"]["points"] = np.ones((4, 1, 20))
    path = tmp_path / "markers.c3d"
    c.write(str(path))
    with pytest.raises(DataFormatError, match="no analog channels"):
        read_c3d(path)


# --- events ------------------------------------------------------------------------------------


def test_events_time_label_and_side(tmp_path):
    events = [
        (0, 1.25, "Right", "Foot Strike"),
        (0, 0.5, "Left", "Foot Off"),
        (1, 2.0, "General", "My Event"),  # 1 min 2 s
        (0, 0.75, "", "Heel Strike"),
        (0, 0.9, "Right", "Toe Off"),
    ]
    path, _ = write_c3d(tmp_path / "events.c3d", events=events)
    table = read_c3d_events(path)
    expected = pd.DataFrame(
        {
            "time": [0.5, 0.75, 0.9, 1.25, 62.0],
            "event": ["toe_off", "heel_strike", "toe_off", "heel_strike", "my_event"],
            "side": ["left", "unknown", "right", "right", "unknown"],
        }
    )
    pd.testing.assert_frame_equal(table, expected, check_exact=False, atol=1e-6)


def test_no_events_give_an_empty_table(tmp_path):
    path, _ = write_c3d(tmp_path / "quiet.c3d")
    table = read_c3d_events(path)
    assert list(table.columns) == ["time", "event", "side"]
    assert table.empty


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Foot Strike", ("heel_strike", None)),
        ("heel strike", ("heel_strike", None)),
        ("Foot Off", ("toe_off", None)),
        ("toe-off", ("toe_off", None)),
        ("Right Foot Strike", ("heel_strike", "right")),
        ("Left Toe Off", ("toe_off", "left")),
        ("General  Event!", ("general_event", None)),
    ],
)
def test_event_labels_are_normalised(label, expected):
    assert normalise_event(label) == expected


# --- broken files ------------------------------------------------------------------------------


def test_truncated_file_names_the_file(tmp_path):
    path, _ = write_c3d(tmp_path / "full.c3d", events=[(0, 0.2, "Right", "Foot Strike")])
    raw = path.read_bytes()
    cut = tmp_path / "half.c3d"
    cut.write_bytes(raw[: len(raw) // 2])
    for reader in (read_c3d, read_c3d_events):
        with pytest.raises(DataFormatError, match="truncated") as info:
            reader(cut)
        assert str(cut) in str(info.value)


def test_cut_inside_the_parameter_section_is_refused(tmp_path):
    """ezc3d itself loops forever on such a file; the reader must refuse it first."""
    path, _ = write_c3d(tmp_path / "full.c3d")
    cut = tmp_path / "cut.c3d"
    cut.write_bytes(path.read_bytes()[:704])
    out = run_isolated(ISOLATED_READ, cut)
    assert out.startswith("DataFormatError:") and str(cut) in out


def test_missing_analog_offset_is_refused(tmp_path):
    """ezc3d crashes the interpreter when ANALOG:OFFSET is missing; the reader must refuse it first."""
    path, _ = write_c3d(tmp_path / "full.c3d")
    raw = path.read_bytes()
    assert raw.count(b"OFFSET") == 1
    bad = tmp_path / "no_offset.c3d"
    bad.write_bytes(raw.replace(b"OFFSET", b"OFFSEX"))
    out = run_isolated(ISOLATED_READ, bad)
    assert out.startswith("DataFormatError:") and "ANALOG:OFFSET" in out


@pytest.mark.parametrize("kind", ["random", "random_with_c3d_key", "empty", "short"])
def test_not_a_c3d_file(tmp_path, kind):
    rng = np.random.default_rng(3)
    content = {
        "random": rng.bytes(4096),
        "random_with_c3d_key": b"\x02\x50" + rng.bytes(4094),
        "empty": b"",
        "short": b"\x02\x50" + bytes(100),
    }[kind]
    path = tmp_path / f"{kind}.c3d"
    path.write_bytes(content)
    for reader in (read_c3d, read_c3d_events):
        with pytest.raises(DataFormatError) as info:
            reader(path)
        assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_c3d(tmp_path / "nothing.c3d")


# --- real lab files: EMG picked by itself, markers, force plates ----------------------------------


@pytest.mark.parametrize(("dataset", "n_emg"), [("gaitextract-walk", 10), ("c3d-gait-emg", 16)])
def test_dataset_emg_channels_are_picked(data_dir, dataset, n_emg):
    from kinesis_neuro import datasets, emg

    da = emg.read(dataset)  # the card's muscles
    assert da.shape[1] == n_emg and da.attrs["units"] == "V"
    by_path = read_c3d(datasets.fetch(dataset))  # the EMG group's TYPE, else all but the force-plate channels
    assert list(by_path.channel.values) == list(da.channel.values)


def test_emg_named_by_description_and_side(data_dir):
    path = data_dir / "c3d-gait-emg" / "Vicon_analysis.c3d"
    da = read_c3d(path, names="description")
    assert list(da.channel.values[:4]) == ["Gastrocnemius (left)", "Gastrocnemius (right)",
                                          "Lateral Hamstrings (left)", "Lateral Hamstrings (right)"]
    assert list(da.label.values[:2]) == ["EMG1", "EMG2"] and list(da.channel_side.values[:2]) == ["left", "right"]
    with pytest.raises(DataFormatError, match="names='side'"):
        read_c3d(path, names="side")


def test_markers_in_metres_without_model_outputs(data_dir):
    from kinesis_neuro.io.c3d import read_c3d_markers

    walk = read_c3d_markers(data_dir / "gaitextract-walk" / "example1_walking.c3d")
    assert walk.dims == ("time", "marker", "axis") and walk.shape == (454, 46, 3) and walk.attrs["units"] == "m"
    assert walk.attrs["sampling_rate"] == 120.0 and float(walk.time[1]) == pytest.approx(1 / 120)
    heel = walk.sel(marker="RHEEL", axis="z")
    assert 0.0 < float(heel.min()) < 0.1 and float(heel.max()) < 0.4  # m, on the floor to mid-swing
    vicon = read_c3d_markers(data_dir / "c3d-gait-emg" / "Vicon_analysis.c3d")
    assert "LHipAngles" not in vicon.marker.values and "RANK" in vicon.marker.values
    assert np.isnan(vicon.values).any() and not (vicon.values == 0).all(axis=2).any()  # gaps are NaN, not 0


def test_force_plates_in_the_lab_frame(data_dir):
    from kinesis_neuro.io.c3d import read_c3d_plates

    plates = read_c3d_plates(data_dir / "gaitextract-walk" / "example1_walking.c3d")
    assert plates.force.dims == ("time", "plate", "axis") and plates.sizes["plate"] == 3
    assert plates.attrs["sampling_rate"] == 1080.0 and plates.point.attrs["units"] == "m"
    fz = plates.force.sel(axis="z")
    assert 780 < float(fz.max()) < 850  # the reaction on the subject points up
    loaded = fz.isel(plate=1) > 100
    y = plates.point.sel(axis="y").isel(plate=1).where(loaded)
    assert 0.658 < float(y.min()) and float(y.max()) < 1.166  # inside plate 2 (corners y 658-1166 mm)


@pytest.mark.parametrize("name", ["gaitextract-walk/example1_walking.c3d", "c3d-gait-emg/Vicon_analysis.c3d"])
def test_grf_of_each_foot_agrees_with_the_events(data_dir, name):
    import json

    from kinesis_neuro import dynamics, emg

    grf = dynamics.grf_from_c3d(name)
    reference = dynamics.grf_from_opensim("moco-walk/grf_walk.mot")
    assert {k: (v.dims, v.attrs["units"]) for k, v in grf.data_vars.items()} == {
        k: (v.dims, v.attrs["units"]) for k, v in reference.data_vars.items()}
    strikes = emg.read_events(name).query("event == 'heel_strike'")
    contacts = json.loads(grf.attrs["contacts"])
    assert len(contacts) == 3 and {c["by"] for c in contacts} == {"nearest foot markers"}
    for contact in contacts:
        near = strikes[np.abs(strikes.time - contact["start_s"]) < 0.02]
        if len(near):  # a contact starting before the trial's first event has none
            assert near.side.iloc[0] == contact["side"], contact
    loaded = grf.force.sel(axis="z") > 20
    assert 500 < float(grf.force.sel(axis="z").where(loaded).mean()) < 650
    # MuJoCo world: walking along -y, x points left, so the right foot's centre of pressure has the smaller x
    x = grf.point.sel(axis="x").where(loaded).mean("time")
    assert float(x.sel(side="right")) < float(x.sel(side="left"))
    assert float(np.abs(grf.torque.sel(axis=["x", "y"])).max()) < 1e-6  # a free moment is vertical


def test_loads_of_a_foot_on_two_plates_combine():
    from kinesis_neuro.dynamics import _combined

    force = np.array([[[10.0, 0.0, 300.0], [0.0, -20.0, 100.0]]])  # one sample, two plates (N)
    point = np.array([[[0.2, 1.0, 0.0], [0.4, 1.2, 0.0]]])
    torque = np.array([[[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]]])
    total, cop, free = _combined(force, point, torque, np.ones((1, 2), bool))
    np.testing.assert_allclose(total[0], [10.0, -20.0, 400.0])
    np.testing.assert_allclose(cop[0, :2], (300 * point[0, 0, :2] + 100 * point[0, 1, :2]) / 400)
    moment = np.cross(point[0], force[0]).sum(0) + torque[0].sum(0)
    np.testing.assert_allclose(np.cross(cop[0], total[0]) + free[0], moment, atol=1e-9)
    single = _combined(force, point, torque, np.array([[True, False]]))
    np.testing.assert_allclose(single[1][0], point[0, 0])
    np.testing.assert_allclose(single[2][0], torque[0, 0])


def test_corrupt_lab_files(data_dir, tmp_path):
    from kinesis_neuro import dynamics
    from kinesis_neuro.io.c3d import read_c3d_markers, read_c3d_plates

    raw = (data_dir / "gaitextract-walk" / "example1_walking.c3d").read_bytes()
    cut = tmp_path / "cut.c3d"
    cut.write_bytes(raw[: len(raw) // 2])
    for reader in (read_c3d_markers, read_c3d_plates, dynamics.grf_from_c3d):
        with pytest.raises(DataFormatError, match="cut.c3d: truncated"):
            reader(cut)
    path, _ = write_c3d(tmp_path / "noplates.c3d")
    with pytest.raises(DataFormatError, match="noplates.c3d: the C3D file describes no force plates"):
        read_c3d_plates(path)
    c = ezc3d.c3d(str(data_dir / "gaitextract-walk" / "example1_walking.c3d"))
    c["parameters"]["POINT"]["UNITS"]["value"] = ["in"]
    c.write(str(tmp_path / "inches.c3d"))
    with pytest.raises(DataFormatError, match="inches.c3d: POINT:UNITS is 'in'; expected mm, cm or m"):
        read_c3d_markers(tmp_path / "inches.c3d")
