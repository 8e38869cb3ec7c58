"""EMG from electrophysiology recording formats: EDF/BDF, BrainVision, Intan and NWB.

EDF/BDF, BrainVision and Intan files are opened with ``neo.rawio``; NWB files with ``pynwb``
(neo's ``NWBIO`` cannot load an ``ElectricalSeries``, drops channel names and ignores the
``offset`` field). Every reader returns the ``(time, channel)`` DataArray of :func:`emg_array`.

Notes on the EDF family: neo's ``EDFRawIO`` parses the header and groups channels into one
stream per sampling rate, but its sample path casts to int16 (breaking 24-bit BDF) and scales
with ``(pmax - pmin) / (dmax - dmin + 1)``; the samples are therefore read with ``pyedflib``
as digital values and scaled here with the EDF formula
``pmin + (d - dmin) * (pmax - pmin) / (dmax - dmin)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from kinesis_neuro.errors import DataFormatError, KinesisNeuroError
from kinesis_neuro.io.common import emg_array, readable_file, select_channels

NEO_EXTENSIONS = (".edf", ".bdf", ".vhdr", ".rhd", ".rhs", ".nwb")

_FORMAT = {
    ".edf": "EDF",
    ".bdf": "BDF",
    ".vhdr": "BrainVision",
    ".rhd": "Intan",
    ".rhs": "Intan",
    ".nwb": "NWB",
}
_EXPECTED = {
    ".edf": "an EDF/EDF+C file: 256-byte 'version 0' header, one 256-byte header per signal, "
    "then whole data records of 16-bit samples",
    ".bdf": "a BDF/BDF+C file: 256-byte '\\xffBIOSEMI' header, one 256-byte header per signal, "
    "then whole data records of 24-bit samples",
    ".vhdr": "a BrainVision text header ([Common Infos], [Binary Infos], [Channel Infos]) naming "
    "its binary .eeg data file and .vmrk marker file in the same folder",
    ".rhd": "an Intan RHD2000 file: magic number 0xC6912702, header, then whole data blocks "
    "(60 samples per block before version 2.0, 128 from 2.0)",
    ".rhs": "an Intan RHS2000 file: magic number 0xD69127AC, header, then whole 128-sample data blocks",
    ".nwb": "an NWB 2 (HDF5) file holding a TimeSeries/ElectricalSeries",
}
_INTAN_MAGIC = {".rhd": 0xC6912702, ".rhs": 0xD69127AC}
# Intan files always carry auxiliary/supply streams at other rates; the EMG electrodes are the amplifier
_DEFAULT_STREAMS = ("RHD2000 amplifier channel", "RHS2000 amplifier channel")
# unit spellings found in headers -> a spelling the ``quantities`` package parses
_UNIT_ALIASES = {
    "u": "uV",  # BrainVision: a channel line without a unit field means microvolt
    "v": "V",
    "volt": "V",
    "volts": "V",
    "uv": "uV",
    "microvolt": "uV",
    "microvolts": "uV",
    "mv": "mV",
    "millivolt": "mV",
    "millivolts": "mV",
}
_VOLT_PREFIX = {1.0: "V", 1e-3: "mV", 1e-6: "uV", 1e-9: "nV"}
_SCALE_TO_VOLT = {"V": 1.0, "mV": 1e-3, "uV": 1e-6, "nV": 1e-9}  # quantities has no "nV"


@dataclasses.dataclass
class _Stream:
    """One group of channels sharing a sampling rate (neo stream, or one NWB TimeSeries)."""

    index: int
    name: str
    ident: str
    rate: float | None  # Hz; None for an NWB series with timestamps
    channels: list[str]
    handle: object = None  # the NWB TimeSeries

    def describe(self) -> str:
        rate = "irregular" if self.rate is None else f"{self.rate:g} Hz"
        shown = ", ".join(self.channels[:8]) + (", ..." if len(self.channels) > 8 else "")
        return f"{self.index}: {self.name!r} ({rate}, {len(self.channels)} channel(s): {shown})"


@contextlib.contextmanager
def _format_errors(path: Path, what: str):
    """Turn anything a reader library raises on a bad file into :class:`DataFormatError`."""
    try:
        yield
    except (KinesisNeuroError, MemoryError):
        raise
    except Exception as err:  # neo, pyedflib, pynwb, h5py, numpy, struct: all kinds on corrupt files
        ext = path.suffix.lower()
        raise DataFormatError(
            f"{path}: cannot {what} as {_FORMAT.get(ext, ext)} (expected {_EXPECTED.get(ext, 'a readable file')}): "
            f"{type(err).__name__}: {err}"
        ) from err


def read_neo(
    path: str | Path,
    *,
    channels: str | Sequence[str] | None = None,
    stream: str | int | None = None,
    side: str = "unknown",
    segment: int = 0,
) -> xr.DataArray:
    """Read EMG from an EDF/BDF, BrainVision (.vhdr), Intan (.rhd/.rhs) or NWB file.

    Returns ``DataArray(dims=("time", "channel"))``: time in seconds from the segment's
    ``t_start``, samples in the file's physical unit (attr ``units``, e.g. ``"uV"`` or ``"V"``;
    channels stored in different voltage units are converted to the most common one and attr
    ``units_converted_from`` says which), ``sampling_rate`` in Hz, plus attrs ``source``,
    ``side``, ``file_format`` and ``stream``.

    ``stream`` (name or index) picks one group of channels sharing a sampling rate; without it
    the file's only stream is read, the stream holding all of ``channels``, or for Intan the
    amplifier stream; otherwise :class:`DataFormatError` lists the streams. ``segment`` is the
    neo segment (NWB files have one). Missing channels raise :class:`ChannelNotFoundError`.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _FORMAT:
        raise DataFormatError(f"{path}: unsupported extension {path.suffix!r}; expected one of {list(NEO_EXTENSIONS)}")
    readable_file(path)
    if isinstance(segment, bool) or not isinstance(segment, (int, np.integer)):
        raise DataFormatError(f"{path}: segment must be an integer index, got {segment!r}")
    if ext == ".nwb":
        return _read_nwb(path, channels=channels, stream=stream, side=side, segment=int(segment))
    return _read_rawio(path, ext, channels=channels, stream=stream, side=side, segment=int(segment))


# ---------------------------------------------------------------------------------------- neo


def _open_rawio(path: Path, ext: str):
    if ext in _INTAN_MAGIC:
        with open(path, "rb") as f:
            head = f.read(4)
        found = int.from_bytes(head, "little") if len(head) == 4 else None
        if found != _INTAN_MAGIC[ext]:
            shown = "fewer than 4 bytes" if found is None else f"0x{found:08X}"
            raise DataFormatError(
                f"{path}: not an Intan {ext} file (expected magic number 0x{_INTAN_MAGIC[ext]:08X}, found {shown})"
            )
    with _format_errors(path, "open"):
        from neo import rawio

        if ext in (".edf", ".bdf"):
            raw = rawio.EDFRawIO(filename=str(path))
        elif ext == ".vhdr":
            raw = rawio.BrainVisionRawIO(filename=str(path))
        else:
            raw = rawio.IntanRawIO(filename=str(path))
        raw.parse_header()
    return raw


def _unique_names(names: list[str], ids: list[str]) -> list[str]:
    """Channel labels, with the channel id appended to any label used twice."""
    names = [n.strip() or f"ch{i}" for n, i in zip(names, ids)]
    counts = Counter(names)
    return [f"{n} ({i})" if counts[n] > 1 else n for n, i in zip(names, ids)]


def _neo_streams(raw, ext: str) -> list[_Stream]:
    header = raw.header
    sig = header["signal_channels"]
    streams = []
    for index, (name, ident) in enumerate(zip(header["signal_streams"]["name"], header["signal_streams"]["id"])):
        chans = sig[sig["stream_id"] == ident]
        if chans.size == 0:
            continue
        rate = float(raw.get_signal_sampling_rate(stream_index=index))
        if ext in (".edf", ".bdf"):
            name = f"{rate:g} Hz"  # neo names EDF streams after a tuple, e.g. "stream ((1000.0,) Hz)"
        names = _unique_names([str(n) for n in chans["name"]], [str(i) for i in chans["id"]])
        streams.append(_Stream(index, str(name), str(ident), rate, names))
    return streams


def _choose_stream(path: Path, streams: list[_Stream], stream, channels) -> _Stream:
    if not streams:
        raise DataFormatError(f"{path}: holds no signal channels")
    listing = "; ".join(s.describe() for s in streams)
    if stream is not None:
        if isinstance(stream, (int, np.integer)) and not isinstance(stream, bool):
            if 0 <= stream < len(streams):
                return streams[int(stream)]
        elif isinstance(stream, str):
            for key in ("name", "ident"):
                hits = [s for s in streams if getattr(s, key) == stream]
                if len(hits) == 1:
                    return hits[0]
            hits = [s for s in streams if s.name.lower() == stream.lower()]
            if len(hits) == 1:
                return hits[0]
        raise DataFormatError(f"{path}: no signal stream {stream!r}; pass a name or index of: {listing}")
    if len(streams) == 1:
        return streams[0]
    if channels is not None:
        wanted = [channels] if isinstance(channels, str) else list(channels)
        holders = [s for s in streams if set(wanted) <= set(s.channels)]
        if len(holders) == 1:
            return holders[0]
        if not holders:
            every = list(dict.fromkeys(c for s in streams for c in s.channels))
            if any(c not in every for c in wanted):
                select_channels(_probe(every, path), wanted)  # raises ChannelNotFoundError
            raise DataFormatError(
                f"{path}: channels {wanted} lie in streams of different sampling rates; "
                f"read each stream separately with stream=: {listing}"
            )
    defaults = [s for s in streams if s.name in _DEFAULT_STREAMS]
    if len(defaults) == 1:
        return defaults[0]
    raise DataFormatError(
        f"{path}: holds {len(streams)} signal streams with different sampling rates or contents; "
        f"choose one with stream= (name or index): {listing}"
    )


def _probe(names: list[str], path: Path) -> xr.DataArray:
    """A one-dimensional stand-in so :func:`select_channels` can check names before any sample is read."""
    return xr.DataArray(np.arange(len(names)), dims="channel", coords={"channel": names}, attrs={"source": str(path)})


def _channel_indexes(path: Path, st: _Stream, channels) -> list[int]:
    return [int(i) for i in np.atleast_1d(select_channels(_probe(st.channels, path), channels).values)]


def _read_edf_samples(path: Path, raw, st: _Stream, idx: list[int], n: int) -> tuple[np.ndarray, list[str]]:
    """Physical samples of the chosen EDF/BDF channels, scaled with the EDF formula."""
    from pyedflib import EdfReader

    sig = raw.header["signal_channels"]
    file_chans = [int(i) for i in sig[sig["stream_id"] == st.ident]["id"][idx]]
    data = np.empty((n, len(idx)))
    units = []
    reader = EdfReader(str(path))
    try:
        for j, ch in enumerate(file_chans):
            h = raw.signal_headers[ch]
            digital = reader.readSignal(ch, 0, n, digital=True)
            if digital.size != n:
                raise ValueError(f"channel {h['label']!r}: expected {n} samples, got {digital.size}")
            dmin, dmax = float(h["digital_min"]), float(h["digital_max"])
            pmin, pmax = float(h["physical_min"]), float(h["physical_max"])
            if dmax == dmin:
                raise ValueError(f"channel {h['label']!r}: digital minimum equals digital maximum ({dmin:g})")
            data[:, j] = pmin + (digital - dmin) * ((pmax - pmin) / (dmax - dmin))
            units.append(str(h["dimension"]))
    finally:
        reader.close()
    return data, units


def _read_rawio(path: Path, ext: str, *, channels, stream, side: str, segment: int) -> xr.DataArray:
    raw = _open_rawio(path, ext)
    with _format_errors(path, "read the header of"):
        streams = _neo_streams(raw, ext)
        n_segments = raw.segment_count(0)
    if not 0 <= segment < n_segments:
        raise DataFormatError(f"{path}: has {n_segments} segment(s); segment={segment} does not exist")
    st = _choose_stream(path, streams, stream, channels)
    idx = _channel_indexes(path, st, channels)
    with _format_errors(path, "read the samples of"):
        n = int(raw.get_signal_size(block_index=0, seg_index=segment, stream_index=st.index))
        t_start = float(raw.get_signal_t_start(block_index=0, seg_index=segment, stream_index=st.index))
        if ext in (".edf", ".bdf"):
            data, units = _read_edf_samples(path, raw, st, idx, n)
        else:
            chunk = raw.get_analogsignal_chunk(
                block_index=0, seg_index=segment, stream_index=st.index, channel_indexes=idx
            )
            data = raw.rescale_signal_raw_to_float(chunk, dtype="float64", stream_index=st.index, channel_indexes=idx)
            sig = raw.header["signal_channels"][raw.header["signal_channels"]["stream_id"] == st.ident]
            units = [str(u) for u in sig["units"][idx]]
            if ext == ".vhdr" and np.issubdtype(np.dtype(sig["dtype"][0]), np.floating):
                data = data * _brainvision_float_resolution(path, sig["id"][idx])
        if data.shape != (n, len(idx)):
            raise ValueError(f"expected {n} samples x {len(idx)} channels, got {data.shape}")
    names = [st.channels[i] for i in idx]
    data, unit, extra = _unify_units(path, names, units, data)
    time = t_start + np.arange(n) / st.rate
    return emg_array(
        data,
        time,
        names,
        source=path,
        units=unit,
        side=side,
        sampling_rate=st.rate,
        file_format=_FORMAT[ext],
        stream=st.name,
        **extra,
    )


def _brainvision_float_resolution(path: Path, ids) -> np.ndarray:
    """Per-channel resolution of an IEEE_FLOAT_32 BrainVision file (neo applies it to integers only).

    The header's ``Ch<n>=<name>,<ref>,<resolution>,<unit>`` resolution multiplies the stored
    value whatever the binary format (as MNE, FieldTrip and pybv read and write it).
    """
    from neo.rawio.brainvisionrawio import read_brainvsion_soup

    infos = read_brainvsion_soup(str(path))["Channel Infos"]
    infos = {k.lower(): v for k, v in infos.items()}
    res = []
    for chan_id in ids:
        fields = infos[f"ch{int(chan_id)}"].split(",")
        res.append(float(fields[2]) if len(fields) >= 3 and fields[2].strip() else 1.0)
    return np.asarray(res)


# -------------------------------------------------------------------------------------- units


def _normalise_unit(unit: str) -> str:
    unit = unit.strip().replace("\u00b5", "u").replace("\u03bc", "u")
    return _UNIT_ALIASES.get(unit.lower(), unit)


def _unit_factor(src: str, dst: str) -> float:
    """Multiplier taking values in ``src`` to ``dst`` (voltage prefixes, else ``quantities``)."""
    if src in _SCALE_TO_VOLT and dst in _SCALE_TO_VOLT:
        return _SCALE_TO_VOLT[src] / _SCALE_TO_VOLT[dst]
    import quantities as pq

    return float(pq.Quantity(1.0, src).rescale(dst).magnitude)


def _unify_units(path: Path, names: list[str], units: list[str], data: np.ndarray):
    """Bring all channels to the most common unit; return (data, unit, extra attrs)."""
    units = [_normalise_unit(u) for u in units]
    target = Counter(units).most_common(1)[0][0]  # ties: the first channel's unit
    if all(u == target for u in units):
        return data, target, {}
    data = data.copy()
    notes = []
    for j, (name, unit) in enumerate(zip(names, units)):
        if unit == target:
            continue
        try:
            data[:, j] *= _unit_factor(unit, target)
        except Exception as err:  # quantities: LookupError (unknown unit), ValueError (other dimension)
            per_channel = ", ".join(f"{n}={u or '?'}" for n, u in zip(names, units))
            raise DataFormatError(
                f"{path}: channel units cannot be brought to one unit ({per_channel}); "
                f"select channels of one kind with channels= ({err})"
            ) from err
        notes.append(f"{name}={unit}")
    return data, target, {"units_converted_from": ", ".join(notes)}


# ---------------------------------------------------------------------------------------- NWB


def _nwb_path(obj, nwbfile) -> str:
    parts = [obj.name]
    parent = obj.parent
    while parent is not None and parent is not nwbfile:
        parts.append(parent.name)
        parent = parent.parent
    return "/".join(reversed(parts))


def _nwb_channel_names(ts, n_channels: int) -> list[str]:
    """ElectricalSeries: an electrode-table column with distinct labels; else ``<series>_<i>``."""
    from pynwb.ecephys import ElectricalSeries

    fallback = [ts.name] if n_channels == 1 else [f"{ts.name}_{i}" for i in range(n_channels)]
    if not isinstance(ts, ElectricalSeries) or ts.electrodes is None:
        return fallback
    rows = [int(r) for r in np.asarray(ts.electrodes.data[:]).ravel()]
    if len(rows) != n_channels:
        return fallback
    table = ts.electrodes.table
    ids = [str(table.id[r]) for r in rows]
    for column in ("channel_name", "label", "name", "muscle", "location"):
        if column not in table.colnames:
            continue
        values = [table[column][r] for r in rows]
        values = [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in values]
        if all(values) and len(set(values)) == len(values):
            return values
    return [f"{ts.name}_{i}" for i in ids]


def _nwb_streams(nwbfile) -> list[_Stream]:
    from pynwb import TimeSeries
    from pynwb.image import ImageSeries
    from pynwb.misc import AnnotationSeries, IntervalSeries

    skip = (AnnotationSeries, IntervalSeries, ImageSeries)
    stimulus = {id(o) for o in list(nwbfile.stimulus.values()) + list(nwbfile.stimulus_template.values())}
    found = []
    for obj in nwbfile.objects.values():
        if not isinstance(obj, TimeSeries) or isinstance(obj, skip) or id(obj) in stimulus:
            continue
        data = obj.data
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", None)
        if shape is None or dtype is None or len(shape) not in (1, 2) or not np.issubdtype(dtype, np.number):
            continue
        in_acquisition = nwbfile.acquisition.get(obj.name) is obj
        found.append((not in_acquisition, _nwb_path(obj, nwbfile), obj))
    found.sort(key=lambda t: (t[0], t[1]))
    streams = []
    for i, (_, name, ts) in enumerate(found):
        n_channels = 1 if len(ts.data.shape) == 1 else int(ts.data.shape[1])
        rate = float(ts.rate) if ts.rate is not None else None
        streams.append(_Stream(i, name, ts.name, rate, _nwb_channel_names(ts, n_channels), handle=ts))
    return streams


def _nwb_values(ts, idx: list[int]) -> tuple[np.ndarray, str]:
    """Samples in physical units, ``data * channel_conversion * conversion + offset`` in ``unit``.

    Volt series are given on the SI prefix (V, mV, uV, nV) nearest the stored resolution, so
    ``"volts"`` with ``conversion=1e-6`` (or 1.95e-7, Intan's 0.195 uV/bit) reads as uV.
    """
    raw = np.asarray(ts.data[:], dtype=float)
    raw = raw[:, None] if raw.ndim == 1 else raw
    raw = raw[:, idx]
    channel_conversion = getattr(ts, "channel_conversion", None)
    if channel_conversion is not None:
        raw = raw * np.asarray(channel_conversion[:], dtype=float)[idx]
    unit = _normalise_unit(str(ts.unit))
    conversion = float(ts.conversion if ts.conversion is not None else 1.0)
    offset = float(getattr(ts, "offset", 0.0) or 0.0)
    if unit == "V" and np.isfinite(conversion) and conversion > 0:
        scale = min(_VOLT_PREFIX, key=lambda f: abs(np.log10(conversion / f)))
        factor = conversion / scale
        values = raw if factor == 1.0 else raw * factor
        return values + offset / scale, _VOLT_PREFIX[scale]
    return raw * conversion + offset, unit


def _read_nwb(path: Path, *, channels, stream, side: str, segment: int) -> xr.DataArray:
    if segment != 0:
        raise DataFormatError(f"{path}: NWB files are read as one segment; segment={segment} does not exist")
    with _format_errors(path, "open"):
        from pynwb import NWBHDF5IO

        io = NWBHDF5IO(str(path), mode="r", load_namespaces=True)
    try:
        with _format_errors(path, "read"):
            nwbfile = io.read()
            streams = _nwb_streams(nwbfile)
        if not streams:
            raise DataFormatError(f"{path}: holds no numeric TimeSeries/ElectricalSeries to read as EMG")
        st = _choose_stream(path, streams, stream, channels)
        idx = _channel_indexes(path, st, channels)
        ts = st.handle
        with _format_errors(path, "read the samples of"):
            data, unit = _nwb_values(ts, idx)
            n = data.shape[0]
            if st.rate is not None:
                t0 = float(ts.starting_time) if ts.starting_time is not None else 0.0
                time = t0 + np.arange(n) / st.rate
            else:
                time = np.asarray(ts.timestamps[:], dtype=float)
                if time.size != n:
                    raise ValueError(f"{time.size} timestamps for {n} samples")
    finally:
        with contextlib.suppress(Exception):
            io.close()
    return emg_array(
        data,
        time,
        [st.channels[i] for i in idx],
        source=path,
        units=unit,
        side=side,
        sampling_rate=st.rate,
        file_format="NWB",
        stream=st.name,
    )
