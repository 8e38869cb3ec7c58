"""Delimited text tables (``.csv``, ``.tsv``, ``.txt``): one header row, one column per channel.

Time (s) comes from a time column or from a sampling rate (Hz). Every cell of the columns
that are read must be a number; empty/``NaN`` cells become NaN, which :func:`emg_array`
refuses, so gaps are reported instead of being filtered silently.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError
from kinesis_neuro.io.common import emg_array, readable_file, select_channels

TABLE_EXTENSIONS = (".csv", ".tsv", ".txt")

# "time", "t", "time_s", "time (s)", "Time [ms]", "t_ms", "time_us" ...
_TIME_NAME = re.compile(r"^(?:time|t)(?:[\s_]*[(\[]?\s*(s|sec|ms|msec|us|µs)\s*[)\]]?)?$", re.IGNORECASE)
_TIME_SCALE = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "µs": 1e-6}
_UNIT_SUFFIX = re.compile(r"^(.*?\S)\s*[(\[]\s*([^()\[\]]+?)\s*[)\]]$")  # "TA (uV)" -> ("TA", "uV")
# suffixes taken as units ("TA (R)" is a side, not a unit)
_UNIT_WORDS = {"v", "mv", "uv", "µv", "μv", "nv", "%", "%mvc", "mvc", "a.u.", "au", "arb. units",
               "n", "nm", "n.m", "n·m", "n*m", "deg", "rad", "mm", "cm", "m", "g", "m/s^2", "m/s²"}
_MISSING = {"", "nan", "-nan", "na", "n/a", "null", "none"}
_WHITESPACE = {" ", r"\s+", "whitespace"}
_SNIFF_CHARS = 65536
_CHUNK_ROWS = 50_000


def _fail(path: Path, what: str) -> DataFormatError:
    return DataFormatError(f"{path}: {what}")


def _time_scale(name: str) -> float | None:
    """Seconds per unit of a time column named like ``time``/``time_ms``; None if not a time name."""
    match = _TIME_NAME.match(name.strip())
    if match is None:
        return None
    return _TIME_SCALE[match.group(1).lower() if match.group(1) else None]


def _sniff(path: Path, suffix: str) -> str | None:
    """Delimiter from the extension or the first lines; None means runs of whitespace."""
    if suffix == ".tsv":
        return "\t"
    with path.open(encoding="utf-8-sig", newline="") as fh:
        sample = fh.read(_SNIFF_CHARS)
    lines = sample.splitlines()
    if len(sample) == _SNIFF_CHARS and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    lines = [line for line in lines if line.strip()][:50]
    if not lines:
        return ","
    candidates = [",", ";", "\t"] if suffix == ".csv" else ["\t", ",", ";"]
    for delim in candidates:  # the same number on every line
        counts = {line.count(delim) for line in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return delim
    for delim in candidates:  # quoted names may hold delimiters
        if all(delim in line for line in lines):
            return delim
    if suffix != ".csv" and all(len(line.split()) > 1 for line in lines):
        return None
    return ","


def _rows(fh, delim: str | None) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line."""
    if delim is None:
        for line_no, line in enumerate(fh, 1):
            fields = line.split()
            if fields:
                yield line_no, fields
        return
    reader = csv.reader(fh, delimiter=delim)
    for fields in reader:
        if any(f.strip() for f in fields):
            yield reader.line_num, fields


def _resolve_time(path: Path, names: list[str], time_column) -> tuple[int | None, float]:
    """Index of the time column (None: none) and its seconds per unit."""
    if time_column is None:
        for i, name in enumerate(names):
            scale = _time_scale(name)
            if scale is not None:
                return i, scale
        return None, 1.0
    if isinstance(time_column, (int, np.integer)) and not isinstance(time_column, bool):
        if not -len(names) <= time_column < len(names):
            raise ChannelNotFoundError(
                f"{path}: no column number {time_column}; the table has {len(names)} columns"
            )
        i = int(time_column) % len(names)
    else:
        wanted = str(time_column).strip()
        matches = [i for i, n in enumerate(names) if n == wanted] or [
            i for i, n in enumerate(names) if n.lower() == wanted.lower()
        ]
        if not matches:
            raise ChannelNotFoundError(f"{path}: no time column '{time_column}'; columns: {names}")
        i = matches[0]
    scale = _time_scale(names[i])
    return i, 1.0 if scale is None else scale


def _to_float(path: Path, block: list[list[str]], lines: list[int], first_row: int,
              cols: list[int], names: list[str]) -> np.ndarray:
    """Convert the ``cols`` of a block of rows; NA words become NaN, other text is an error."""
    text = np.array([[row[c] for c in cols] for row in block], dtype=object).reshape(len(block), len(cols))
    try:
        return text.astype(float)
    except ValueError:
        pass
    out = np.empty(text.shape)
    for j in range(len(cols)):
        cells = pd.Series(text[:, j], dtype=object).str.strip()
        values = pd.to_numeric(cells, errors="coerce")
        bad = values.isna() & ~cells.str.lower().isin(_MISSING)
        if bad.any():
            k = int(np.argmax(bad.to_numpy()))
            raise _fail(
                path,
                f"non-numeric value {cells.iloc[k]!r} in column '{names[cols[j]]}' at data row "
                f"{first_row + k} (line {lines[k]}); expected numbers only",
            )
        out[:, j] = values.to_numpy(dtype=float)
    return out


def _read_cells(path: Path, delim: str | None, time_column, channels):
    """Parse the header and the needed columns.

    Returns (time column name or None, seconds per time unit, channel names, units from the
    header or None, values with the time column first when there is one).
    """
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = _rows(fh, delim)
        header = next(rows, None)
        if header is None:
            raise _fail(path, "the file is empty; expected a header row with column names and data rows")
        header_line, raw = header[0], [name.strip() for name in header[1]]
        n_fields = len(raw)
        keep = list(range(n_fields))
        if n_fields > 1 and raw[0] == "":  # a row index written without a name (pandas)
            keep = keep[1:]
        trailing = n_fields > 1 and raw[-1] == ""  # every line ends with a delimiter
        if trailing:
            keep = keep[:-1]
        names = [raw[i] for i in keep]
        unnamed = [i + 1 for i in keep if raw[i] == ""]
        if unnamed:
            raise _fail(path, f"header (line {header_line}) has no name for column(s) {unnamed}")
        if all(_is_number(n) for n in names):
            raise _fail(path, f"line {header_line} holds numbers; expected a header row with column names")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _fail(path, f"duplicate column names {dup} in the header")

        t_idx, t_scale = _resolve_time(path, names, time_column)
        data_idx = [i for i in range(len(names)) if i != t_idx]
        labels, file_units = _strip_units([names[i] for i in data_idx])
        if channels is not None:
            wanted = [channels] if isinstance(channels, str) else [str(c) for c in channels]
            missing = [c for c in wanted if c not in labels]
            if missing:
                raise ChannelNotFoundError(f"{path}: no channel {missing}; available: {labels}")
            data_idx = [data_idx[labels.index(c)] for c in wanted]
            labels = wanted
        read = ([t_idx] if t_idx is not None else []) + data_idx
        cols = [keep[i] for i in read]

        time_name = names[t_idx] if t_idx is not None else None
        values = _fast_values(path, delim, header_line, n_fields, cols, trailing)
        if values is None:
            values = _exact_values(path, rows, n_fields, cols, trailing, raw)
    return time_name, t_scale, labels, file_units, values


def _fast_values(path: Path, delim: str | None, header_line: int, n_fields: int,
                 cols: list[int], trailing: bool) -> np.ndarray | None:
    """The ``cols`` parsed by pandas' C parser; None if anything is off (ragged rows, text, NaN,
    no rows), which :func:`_exact_values` then finds and names."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas warns instead of failing on some ragged rows
        try:
            table = pd.read_csv(
                path,
                sep=r"\s+" if delim is None else delim,
                header=None,
                names=list(range(n_fields + 1)),  # one spare column catches rows with a field too many
                skiprows=header_line,
                index_col=False,
                encoding="utf-8-sig",
                engine="c",
            )
        except Exception:  # anything pandas dislikes is diagnosed by the exact reader
            return None
    if table.empty or not isinstance(table.index, pd.RangeIndex) or table[n_fields].notna().any():
        return None
    checked = table.iloc[:, : n_fields - 1] if trailing else table.iloc[:, :n_fields]
    if trailing and table[n_fields - 1].notna().any():
        return None
    if checked.isna().to_numpy().any():  # a short row, an empty cell, a NaN word
        return None
    numeric = pd.api.types.is_numeric_dtype
    if not all(numeric(table[c]) and not pd.api.types.is_bool_dtype(table[c]) for c in cols):
        return None
    return table[cols].to_numpy(dtype=float)


def _exact_values(path: Path, rows: Iterator[tuple[int, list[str]]], n_fields: int,
                  cols: list[int], trailing: bool, raw: list[str]) -> np.ndarray:
    """The ``cols`` read row by row with the csv module; bad rows and cells are named."""
    blocks, block, lines, n_rows = [], [], [], 0
    for line_no, fields in rows:
        if len(fields) != n_fields:
            raise _fail(
                path,
                f"line {line_no} has {len(fields)} fields but the header has {n_fields} "
                "(ragged rows: a truncated or hand-edited file?)",
            )
        if trailing and fields[-1].strip():
            raise _fail(path, f"line {line_no} has a value in the last column, which has no name")
        block.append(fields)
        lines.append(line_no)
        if len(block) == _CHUNK_ROWS:
            blocks.append(_to_float(path, block, lines, n_rows + 1, cols, raw))
            n_rows += len(block)
            block, lines = [], []
    if block:
        blocks.append(_to_float(path, block, lines, n_rows + 1, cols, raw))
        n_rows += len(block)
    if n_rows == 0:
        raise _fail(path, "the file has a header but no data rows")
    return np.concatenate(blocks)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _strip_units(names: list[str]) -> tuple[list[str], str | None]:
    """``["TA (uV)", "GM (uV)"]`` -> ``(["TA", "GM"], "uV")``; names unchanged unless all agree."""
    matches = [_UNIT_SUFFIX.match(n) for n in names]
    suffixes = {m.group(2) for m in matches if m}
    if names and all(matches) and len(suffixes) == 1 and next(iter(suffixes)).lower() in _UNIT_WORDS:
        return [m.group(1) for m in matches], matches[0].group(2)
    return names, None


def read_table(
    path: str | Path,
    *,
    time_column: str | int | None = None,
    sampling_rate: float | None = None,
    channels: Sequence[str] | str | None = None,
    units: str = "unknown",
    side: str = "unknown",
    sep: str | None = None,
) -> xr.DataArray:
    """Read a CSV/TSV/text table as ``DataArray(dims=("time", "channel"))``.

    Time (s) is the ``time_column`` (by default a column named ``time``, ``t``, ``time_s``,
    ``time (s)``; ``time_ms``/``time (ms)`` are converted from ms) or, without one,
    ``arange(n) / sampling_rate`` (Hz). The separator follows the extension (``.tsv``: tab)
    or is sniffed (``,`` ``;`` tab, whitespace); ``sep`` overrides it. Headers such as
    ``"TA (uV)"`` give channel ``TA`` and, if every channel agrees and ``units`` is not
    given, units ``uV``.
    """
    path = readable_file(path)
    if sampling_rate is not None:
        try:
            rate = float(sampling_rate)
        except (TypeError, ValueError):
            rate = float("nan")
        if not (np.isfinite(rate) and rate > 0):
            raise _fail(path, f"sampling_rate must be a positive number of Hz, got {sampling_rate!r}")
        sampling_rate = rate
    if sep is None:
        delim = "auto"
    elif sep in _WHITESPACE:
        delim = None
    elif isinstance(sep, str) and len(sep) == 1:
        delim = sep
    else:
        raise _fail(path, f"sep={sep!r}: expected one character (',', ';', '\\t') or r'\\s+' for whitespace")
    try:
        if delim == "auto":
            delim = _sniff(path, path.suffix.lower())
        time_name, t_scale, labels, file_units, values = _read_cells(path, delim, time_column, channels)
    except UnicodeDecodeError as err:
        raise _fail(path, f"not a UTF-8 text table ({err.reason})") from err
    except csv.Error as err:
        raise _fail(path, f"cannot be parsed as a delimited table ({err})") from err
    except OSError as err:
        raise _fail(path, f"cannot read file ({err.strerror or err})") from err

    if time_name is not None:
        time = values[:, 0] * t_scale
        data = values[:, 1:]
        steps = np.diff(time)
        if sampling_rate is not None and steps.size and np.all(steps > 0):
            implied = 1.0 / float(np.median(steps))
            if abs(implied - sampling_rate) > 0.01 * sampling_rate:
                raise _fail(
                    path,
                    f"the time column '{time_name}' implies {implied:g} Hz but "
                    f"sampling_rate={sampling_rate:g} Hz; pass a matching sampling_rate or none",
                )
        time_source = f"column '{time_name}'"
    elif sampling_rate is not None:
        time = np.arange(values.shape[0]) / sampling_rate
        data = values
        time_source = "sampling_rate"
    else:
        raise _fail(
            path,
            "no time column (time, t, time_s, 'time (s)', time_ms ...) and no sampling rate; "
            "pass time_column='<name>' or sampling_rate=<Hz>",
        )
    if not labels:
        raise _fail(path, "the table has no data columns besides the time column")
    if units == "unknown" and file_units is not None:
        units = file_units
    da = emg_array(
        data,
        time,
        labels,
        source=path,
        units=units,
        side=side,
        sampling_rate=sampling_rate,
        file_format="delimited text",
        time_source=time_source,
    )
    return select_channels(da, channels)
