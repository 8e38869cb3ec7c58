"""CSV/TSV/text reader: tables written here with pandas and with the csv module."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError
from kinesis_neuro.io import tabular
from kinesis_neuro.io.tabular import read_table

RATE = 1000.0


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 200
    return pd.DataFrame(
        {"time": np.arange(n) / RATE, **{m: rng.normal(size=n) for m in ("TA", "GM", "SOL")}}
    )


def write_rows(path, header, rows, delimiter=","):
    """Independent writer: Python's csv module, floats as repr (exact round trip)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- good files --------------------------------------------------------------------------------


def test_pandas_csv_with_time_column(tmp_path, frame):
    path = tmp_path / "emg.csv"
    frame.to_csv(path, index=False)
    da = read_table(path, units="mV", side="left")
    assert da.dims == ("time", "channel")
    assert list(da.channel.values) == ["TA", "GM", "SOL"]
    np.testing.assert_array_equal(da.values, frame[["TA", "GM", "SOL"]].to_numpy())
    np.testing.assert_array_equal(da.time.values, frame["time"].to_numpy())
    assert da.attrs["sampling_rate"] == pytest.approx(RATE)
    assert (da.attrs["units"], da.attrs["side"], da.attrs["source"]) == ("mV", "left", str(path))


def test_csv_module_file_with_units_in_headers(tmp_path, frame):
    path = write_rows(
        tmp_path / "emg.csv",
        ["time (s)", "TA (uV)", "GM (uV)"],
        [[repr(t), repr(a), repr(b)] for t, a, b in frame[["time", "TA", "GM"]].itertuples(index=False)],
    )
    da = read_table(path)
    assert list(da.channel.values) == ["TA", "GM"]
    assert da.attrs["units"] == "uV"
    np.testing.assert_array_equal(da.values, frame[["TA", "GM"]].to_numpy())
    np.testing.assert_array_equal(da.time.values, frame["time"].to_numpy())


def test_header_suffixes_that_are_no_units_stay_in_the_names(tmp_path):
    path = write_rows(tmp_path / "sides.csv", ["TA (R)", "TA (L)"], [[1, 2], [3, 4]])
    da = read_table(path, sampling_rate=100)
    assert list(da.channel.values) == ["TA (R)", "TA (L)"]
    assert da.attrs["units"] == "unknown"


def test_time_column_in_milliseconds(tmp_path):
    path = write_rows(tmp_path / "ms.csv", ["time_ms", "TA"], [[2 * k, 0.5 * k] for k in range(10)])
    da = read_table(path)
    np.testing.assert_allclose(da.time.values, 0.002 * np.arange(10))
    assert da.attrs["sampling_rate"] == pytest.approx(500.0)


def test_time_built_from_sampling_rate(tmp_path, frame):
    path = tmp_path / "no_time.csv"
    frame[["TA", "GM"]].to_csv(path, index=False)
    da = read_table(path, sampling_rate=2000)
    np.testing.assert_allclose(da.time.values, np.arange(len(frame)) / 2000.0)
    assert da.time.values[0] == 0.0
    assert da.attrs["sampling_rate"] == 2000.0
    np.testing.assert_array_equal(da.values, frame[["TA", "GM"]].to_numpy())


def test_sampling_rate_must_match_the_time_column(tmp_path, frame):
    path = tmp_path / "emg.csv"
    frame.to_csv(path, index=False)
    da = read_table(path, sampling_rate=RATE)
    assert "time" not in list(da.channel.values)
    with pytest.raises(DataFormatError, match="implies 1000 Hz"):
        read_table(path, sampling_rate=2000)


def test_named_time_column(tmp_path, frame):
    path = tmp_path / "stamp.csv"
    frame.rename(columns={"time": "stamp"}).to_csv(path, index=False)
    da = read_table(path, time_column="stamp")
    assert list(da.channel.values) == ["TA", "GM", "SOL"]
    np.testing.assert_array_equal(da.time.values, frame["time"].to_numpy())
    with pytest.raises(ChannelNotFoundError, match="clock"):
        read_table(path, time_column="clock")


def test_tsv(tmp_path, frame):
    path = tmp_path / "emg.tsv"
    frame.to_csv(path, sep="\t", index=False)
    da = read_table(path)
    np.testing.assert_array_equal(da.values, frame[["TA", "GM", "SOL"]].to_numpy())


@pytest.mark.parametrize(("name", "delimiter"), [("semi.csv", ";"), ("tabs.txt", "\t"), ("spaces.txt", " ")])
def test_separator_is_sniffed(tmp_path, frame, name, delimiter):
    path = tmp_path / name
    frame.to_csv(path, sep=delimiter, index=False)
    da = read_table(path)
    np.testing.assert_array_equal(da.values, frame[["TA", "GM", "SOL"]].to_numpy())


def test_separator_argument_overrides(tmp_path, frame):
    path = tmp_path / "pipes.txt"
    frame.to_csv(path, sep="|", index=False)
    da = read_table(path, sep="|")
    np.testing.assert_array_equal(da.values, frame[["TA", "GM", "SOL"]].to_numpy())


def test_pandas_row_index_is_not_a_channel(tmp_path, frame):
    path = tmp_path / "indexed.csv"
    frame.to_csv(path)  # index=True writes an unnamed first column
    da = read_table(path)
    assert list(da.channel.values) == ["TA", "GM", "SOL"]


def test_channels_are_selected_in_the_given_order(tmp_path, frame):
    path = tmp_path / "emg.csv"
    frame.to_csv(path, index=False)
    da = read_table(path, channels=["SOL", "TA"])
    assert list(da.channel.values) == ["SOL", "TA"]
    np.testing.assert_array_equal(da.values, frame[["SOL", "TA"]].to_numpy())


def test_bad_cells_in_columns_not_asked_for_do_not_matter(tmp_path, frame):
    frame = frame.astype(object)
    frame.loc[5, "GM"] = "saturated"
    path = tmp_path / "emg.csv"
    frame.to_csv(path, index=False)
    da = read_table(path, channels=["TA"])
    np.testing.assert_array_equal(da.values[:, 0], frame["TA"].to_numpy(dtype=float))


def test_exact_reader_matches_the_fast_one(tmp_path, frame, monkeypatch):
    """pandas' parser reads clean files; the row-by-row reader (used to name errors) must agree."""
    path = tmp_path / "emg.csv"
    frame.to_csv(path, index=False)
    fast = read_table(path)
    monkeypatch.setattr(tabular, "_fast_values", lambda *args: None)
    exact = read_table(path)
    np.testing.assert_array_equal(exact.values, fast.values)
    np.testing.assert_array_equal(exact.time.values, fast.time.values)


def test_rows_are_read_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "_CHUNK_ROWS", 7)
    monkeypatch.setattr(tabular, "_fast_values", lambda *args: None)
    rows = [[k / 100, float(k), -float(k)] for k in range(30)]
    path = write_rows(tmp_path / "blocks.csv", ["t", "A", "B"], rows)
    np.testing.assert_array_equal(read_table(path).values, np.array(rows)[:, 1:])
    rows[22][2] = "x"
    write_rows(path, ["t", "A", "B"], rows)
    with pytest.raises(DataFormatError, match=r"'B' at data row 23 \(line 24\)"):
        read_table(path)


# --- bad files ---------------------------------------------------------------------------------


def test_missing_channel(tmp_path, frame):
    path = tmp_path / "emg.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ChannelNotFoundError, match="VL") as info:
        read_table(path, channels=["TA", "VL"])
    assert "GM" in str(info.value)


def test_no_time_column_and_no_rate(tmp_path, frame):
    path = tmp_path / "bare.csv"
    frame[["TA", "GM"]].to_csv(path, index=False)
    with pytest.raises(DataFormatError, match="sampling_rate=") as info:
        read_table(path)
    assert str(path) in str(info.value) and "time_column=" in str(info.value)


def test_non_numeric_cell_names_column_and_row(tmp_path):
    rows = [[0.0, 1, 2], [0.001, 3, 4], [0.002, 5, "oops"]]
    path = write_rows(tmp_path / "text.csv", ["time", "TA", "GM"], rows)
    with pytest.raises(DataFormatError, match=r"'oops' in column 'GM' at data row 3 \(line 4\)"):
        read_table(path)


def test_non_monotonic_time(tmp_path):
    path = write_rows(tmp_path / "back.csv", ["time", "TA"], [[0.0, 1], [0.002, 2], [0.001, 3]])
    with pytest.raises(DataFormatError, match="not strictly increasing"):
        read_table(path)


@pytest.mark.parametrize("gap", ["", "NaN", "nan", "NA"])
def test_nan_run_is_refused(tmp_path, gap):
    rows = [[k / 1000, float(k), float(k)] for k in range(20)]
    for k in range(5, 9):
        rows[k][1] = gap
    path = write_rows(tmp_path / "gap.csv", ["time", "TA", "GM"], rows)
    with pytest.raises(DataFormatError, match="NaN") as info:
        read_table(path)
    assert "'TA'" in str(info.value) and "t=0.005" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("time,TA,GM\n", "no data rows"),
        ("time,TA,GM\n0,1,2\n0.001,3\n0.002,5,6\n", "line 3 has 2 fields"),
        ("time,TA,GM\n0,1,2\n0.001,3,4,5\n", "line 3 has 4 fields"),
        ("0,1,2\n0.001,3,4\n", "header row"),
        ("time,TA,TA\n0,1,2\n0.001,3,4\n", "duplicate column names"),
        ("time,,GM\n0,1,2\n0.001,3,4\n", "no name for column"),
    ],
)
def test_malformed_tables(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_table(path, sampling_rate=1000)
    assert str(path) in str(info.value)


def test_binary_file_named_csv(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_bytes(np.random.default_rng(5).bytes(2048))
    with pytest.raises(DataFormatError) as info:
        read_table(path, sampling_rate=1000)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("rate", [0, -5, float("nan"), "fast"])
def test_impossible_sampling_rate(tmp_path, frame, rate):
    path = tmp_path / "emg.csv"
    frame[["TA"]].to_csv(path, index=False)
    with pytest.raises(DataFormatError, match="sampling_rate must be a positive"):
        read_table(path, sampling_rate=rate)


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_table(tmp_path / "nothing.csv", sampling_rate=1000)
