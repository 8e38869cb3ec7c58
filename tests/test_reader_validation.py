"""Bad input never crashes, lies or hangs: corrupt copies of the real files (made in tmp_path) give a
one-line KinesisNeuroError naming the file and the problem, and the file is left as it was."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from kinesis_neuro import compare, dynamics, emg, motion
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError
from kinesis_neuro.io.c3d import read_c3d, read_c3d_events
from kinesis_neuro.io.neo_formats import read_neo
from kinesis_neuro.io.opensim import read_trc
from kinesis_neuro.io.rdata import read_rdata, read_syns
from kinesis_neuro.io.tabular import read_table


def _refused(path, call, *parts):
    """``call(path)`` raises a one-line KinesisNeuroError naming ``path`` and every one of ``parts``;
    the file is unchanged."""
    before = path.read_bytes()
    with pytest.raises(KinesisNeuroError) as err:
        call(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message
    for part in parts:
        assert part in message, message
    assert path.read_bytes() == before
    return message


def _opensim(data_dir, name="moco-walk/grf_walk.mot"):
    """(header lines up to endheader, column names, rows of cells) of a real OpenSim file."""
    lines = (data_dir / name).read_text().splitlines()
    end = lines.index("endheader")
    return lines[: end + 1], lines[end + 1].split("\t"), [line.split("\t") for line in lines[end + 2 :]]


def _write(path, header, columns, rows, encoding="utf-8"):
    n_rows = [f"nRows={len(rows)}" if line.startswith("nRows=") else line for line in header]
    text = "\n".join([*n_rows, "\t".join(columns), *("\t".join(row) for row in rows)]) + "\n"
    path.write_bytes(text.encode(encoding))
    return path


def _grf_with(data_dir, tmp_path, row, column, value):
    header, columns, rows = _opensim(data_dir)
    rows[row][columns.index(column)] = value
    return _write(tmp_path / "grf.mot", header, columns, rows)


def test_absurd_cell_in_any_signal(data_dir, tmp_path):
    path = _grf_with(data_dir, tmp_path, 10, "ground_force_r_vy", "1e300")
    for call in (emg.read, emg.read_events, dynamics.grf_from_opensim):
        _refused(path, call, "1 signal sample(s) beyond the plausible ±1e+12 in any unit",
                 "channel 'ground_force_r_vy', t=0.005 s: 1e+300")


@pytest.mark.parametrize(("column", "quantity"), [("ground_force_r_vy", "force"), ("ground_torque_r_x", "moment")])
def test_implausible_grf_magnitude(data_dir, tmp_path, column, quantity):
    path = _grf_with(data_dir, tmp_path, 10, column, "2e5")
    _refused(path, dynamics.grf_from_opensim, f"1 {quantity} sample(s) beyond the plausible ±100000",
             f"channel '{column}', t=0.005 s: 200000")
    if quantity == "force":
        _refused(path, emg.read_events, "force sample(s) beyond")


def test_centre_of_pressure_is_checked_where_the_foot_is_loaded(data_dir, tmp_path):
    header, columns, rows = _opensim(data_dir)
    vy, px = columns.index("ground_force_r_vy"), columns.index("ground_force_r_px")
    loaded = next(k for k, row in enumerate(rows) if float(row[vy]) > 100)
    unloaded = next(k for k, row in enumerate(rows) if float(row[vy]) == 0)
    rows[unloaded][px] = "500"  # meaningless without load, replaced by the nearest loaded point
    grf = dynamics.grf_from_opensim(_write(tmp_path / "unloaded.mot", header, columns, rows))
    assert float(np.abs(grf.point).max()) < 100
    rows[loaded][px] = "-250"
    _refused(_write(tmp_path / "loaded.mot", header, columns, rows), dynamics.grf_from_opensim,
             "centre of pressure sample(s) beyond the plausible ±100 m", "'ground_force_r_px'", "-250")


def test_nan_and_infinite_cells(data_dir, tmp_path):
    path = _grf_with(data_dir, tmp_path, 10, "ground_force_r_vz", "NaN")
    _refused(path, emg.read, "NaN/infinite", "channel 'ground_force_r_vz', t=0.005 s")
    table = tmp_path / "emg.csv"
    table.write_text("time,TA\n0,1\n0.001,inf\n0.002,3\n")
    _refused(table, emg.read, "NaN/infinite", "channel 'TA', t=0.001 s: inf")


def test_duplicated_column_is_named(data_dir, tmp_path):
    header, columns, rows = _opensim(data_dir)
    columns[columns.index("ground_force_l_vy")] = "ground_force_r_vy"
    path = _write(tmp_path / "dup.mot", header, columns, rows)
    for call in (emg.read, emg.read_events, dynamics.grf_from_opensim):  # never right-foot events only
        _refused(path, call, "duplicate column names ['ground_force_r_vy']")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("swap", "not strictly increasing (it goes back from 0.003 s to 0.0025 s"),
        ("repeat", "not strictly increasing (0.002 s appears twice"),
        ("gap", "jumps from 0.4995 s to 0.55 s, 101 times the median step of 0.0005 s"),
        ("ms", "is the time in ms?"),
    ],
)
def test_bad_time_column(data_dir, tmp_path, edit, expected):
    header, columns, rows = _opensim(data_dir)
    if edit == "swap":
        rows[5], rows[6] = rows[6], rows[5]
    elif edit == "repeat":
        rows[5][0] = rows[4][0]
    elif edit == "gap":
        del rows[1000:1100]
    else:
        for row in rows:
            row[0] = repr(1000 * float(row[0]))
    path = _write(tmp_path / f"{edit}.mot", header, columns, rows)
    _refused(path, emg.read, "the time column", expected)
    _refused(path, dynamics.grf_from_opensim, expected)


def test_trc_text_cell_and_time_in_ms(data_dir, tmp_path):
    lines = (data_dir / "moco-walk" / "markers_walk.trc").read_text().splitlines()
    cells = lines[7].split("\t")
    cells[3] = "abc"  # R.Shoulder y of frame 2
    bad = tmp_path / "text.trc"
    bad.write_text("\n".join([*lines[:7], "\t".join(cells), *lines[8:]]) + "\n")
    _refused(bad, read_trc, "non-numeric value 'abc' in column 'R.Shoulder_y' of frame 2")
    ms = [*lines[:6]]
    for line in lines[6:]:
        cells = line.split("\t")
        cells[1] = f"{1000 * float(cells[1]):g}"
        ms.append("\t".join(cells))
    path = tmp_path / "ms.trc"
    path.write_text("\n".join(ms) + "\n")
    _refused(path, emg.read, "is the time in ms?")


def test_truncated_files(data_dir, tmp_path):
    text = (data_dir / "moco-walk" / "grf_walk.mot").read_text()
    half = tmp_path / "half.mot"
    half.write_text(text[: text.rindex("\n", 0, len(text) // 2) + 1])  # whole rows
    _refused(half, emg.read, "header says nRows=4778 but the data block has 2398 rows")
    cut = tmp_path / "cut.mot"
    cut.write_text(text[: len(text) // 2])  # inside a row
    _refused(cut, emg.read, "line 2406 has 7 fields but the header has 19")
    c3d = tmp_path / "cut.c3d"
    c3d.write_bytes((data_dir / "c3d-gait-emg" / "Vicon_analysis.c3d").read_bytes()[:1_000_000])
    _refused(c3d, read_c3d_events, "truncated: the header announces 694 frames")
    rdata = tmp_path / "cut.RData"
    rdata.write_bytes((data_dir / "musclesynergies" / "SYNS.RData").read_bytes()[:20_000])
    _refused(rdata, read_syns, "not a readable R data file")


def test_non_utf8_empty_and_binary_text_files(data_dir, tmp_path):
    header, columns, rows = _opensim(data_dir)
    rows[3][1] = "0\u00e9"
    latin = _write(tmp_path / "latin.mot", header, columns, rows, encoding="latin-1")
    _refused(latin, emg.read, f"not UTF-8 text (byte 0xe9 on line {len(header) + 2 + 3})")
    for name in ("empty.sto", "empty.trc", "empty.csv"):
        (tmp_path / name).write_bytes(b"  \n")
        _refused(tmp_path / name, emg.read, "empty")
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    for name in ("garbage.sto", "garbage.trc", "garbage.csv", "garbage.txt", "garbage.c3d", "garbage.edf",
                 "garbage.RData"):
        (tmp_path / name).write_bytes(garbage)
        _refused(tmp_path / name, emg.read)


READERS = [emg.read, emg.read_events, read_table, read_trc, read_c3d, read_neo, read_rdata,
           motion.from_opensim, dynamics.grf_from_opensim]
SUFFIX = {read_table: ".csv", read_trc: ".trc", read_c3d: ".c3d", read_neo: ".edf", read_rdata: ".RData"}


@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
def test_fifo_and_directory_are_refused_at_once(tmp_path, reader):
    suffix = SUFFIX.get(reader, ".mot")
    fifo, folder = tmp_path / f"pipe{suffix}", tmp_path / f"folder{suffix}"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    folder.mkdir()
    for path, kind in ((fifo, "is a named pipe (FIFO), not a regular file"),
                       (folder, "is a directory, not a regular file")):
        with pytest.raises(DataFormatError) as err:
            reader(path)
        assert str(err.value) == f"{path}: {kind}"
    with pytest.raises(DataFormatError, match="no such file"):
        reader(tmp_path / f"absent{suffix}")


def test_rdata_with_an_unrelated_object(data_dir, tmp_path):
    rdata = pytest.importorskip("rdata")
    table = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    named_syns = tmp_path / "table.RData"
    rdata.write_rda(named_syns, {"SYNS": table})
    _refused(named_syns, read_syns, "the R object SYNS is not one (not a named list of people)",
             "SYNS is a list of people")
    _refused(named_syns, read_rdata, "the R object SYNS is not one")
    other = tmp_path / "other.RData"
    rdata.write_rda(other, {"mydata": table})
    _refused(other, read_rdata, "found R object(s) ['mydata']", "RAW_DATA is a list of trials")
    raw = tmp_path / "RAW_DATA.RData"
    raw.write_bytes((data_dir / "musclesynergies" / "RAW_DATA.RData").read_bytes())
    _refused(raw, read_syns, "expected a SYNS object, found RAW_DATA")
    nan_time = tmp_path / "nan_time.RData"
    trial = {"emg": pd.DataFrame({"time": [0.0, 0.001, np.nan, 0.003], "TA": [1.0, 2.0, 3.0, 4.0]}),
             "cycles": pd.DataFrame({"V1": [0.0], "V2": [0.002]})}
    rdata.write_rda(nan_time, {"RAW_DATA": {"trial1": trial}})
    _refused(nan_time, read_rdata, "the time column holds nan at sample 3")


def test_musclesynergies_files_are_recognised_by_content(data_dir, tmp_path):
    syns = tmp_path / "SYNS_lab2.RData"
    syns.write_bytes((data_dir / "musclesynergies" / "SYNS.RData").read_bytes())
    cycles = compare.human_cycles(syns, split=(100, 100))
    assert cycles.dims == ("subject", "phase", "channel") and cycles.sizes["subject"] == 15
    with pytest.raises(KinesisNeuroError, match="100 stance"):
        compare.human_cycles(syns, n_points=101)
    filt = tmp_path / "walking.rda"
    filt.write_bytes((data_dir / "musclesynergies" / "FILT_EMG.RData").read_bytes())
    assert compare.human_cycles(filt, split=(100, 100)).dims == ("cycle", "phase", "channel")


def _coordinates(data_dir, tmp_path, name, *, header_edit=None, scale_rotations=1.0, cell=None):
    header, columns, rows = _opensim(data_dir, "moco-walk/coordinates.sto")
    header = header_edit(header) if header_edit else header
    rotations = [i for i, c in enumerate(columns) if c.endswith("/value") and not c.split("/")[-2].endswith(
        ("_tx", "_ty", "_tz"))]
    for row in rows:
        for i in rotations:
            row[i] = repr(float(row[i]) * scale_rotations)
    if cell:
        column, value = cell
        rows[20][next(i for i, c in enumerate(columns) if f"/{column}/" in c)] = value
    return _write(tmp_path / name, header, columns, rows)


def test_motion_units_must_fit(data_dir, tmp_path):
    yes = _coordinates(data_dir, tmp_path, "yes.sto", header_edit=lambda h: [
        "inDegrees=yes" if line == "inDegrees=no" else line for line in h])
    _refused(yes, motion.from_opensim, "the header says inDegrees=yes but every rotation lies within ±2π",
             "inDegrees=no")
    degrees = _coordinates(data_dir, tmp_path, "degrees.sto", cell=("knee_angle_r", "72.5"))
    _refused(degrees, motion.from_opensim, "angle sample(s) beyond the plausible ±12.5664 rad",
             "channel 'knee_angle_r', t=0.47 s: 72.5", "say inDegrees=yes")
    far = _coordinates(data_dir, tmp_path, "far.sto", cell=("pelvis_tx", "2e4"))
    _refused(far, motion.from_opensim, "translation sample(s) beyond the plausible ±10000 m", "'pelvis_tx'")


def test_header_without_in_degrees_is_read_from_the_values(data_dir, tmp_path):
    """The one deliberate repair: SIMM-style headers do not say inDegrees; rotations beyond 2π are degrees."""
    reference = motion.from_opensim(data_dir / "moco-walk" / "coordinates.sto").coordinates
    path = _coordinates(data_dir, tmp_path, "simm.sto", scale_rotations=180 / np.pi,
                        header_edit=lambda h: [line for line in h if not line.startswith("inDegrees")])
    with pytest.warns(UserWarning, match=r"does not say inDegrees; the rotations are read as degrees since the "
                                         r"largest, \w+, reaches [\d.]+ at t=[\d.]+ s"):
        read = motion.from_opensim(path).coordinates
    np.testing.assert_allclose(read.values, reference.values, atol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a header that says no draws no warning
        motion.from_opensim(data_dir / "moco-walk" / "coordinates.sto")


def test_grf_shorter_than_the_motion(data_dir, tmp_path):
    from kinesis_neuro.simulate import static_optimisation_recording

    header, columns, rows = _opensim(data_dir)
    short = _write(tmp_path / "short.mot", header, columns, rows[:1000])
    _refused(short, lambda p: static_optimisation_recording("moco-walk", str(p), progress=False),
             "the GRF covers 0-0.4995 s but the motion moco-walk needs 0.45-1.799 s")
