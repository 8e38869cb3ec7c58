"""Motion-capture marker sets: where each marker sits on which body, how labs name it, how much it counts.

The reference set is the Rajagopal walking subject's OpenSim ``MarkerSet`` (registered dataset
``rajagopal-run``, file ``markerset_preScale.xml``, read at run time): a body and a location in that
body's frame (m) per marker. MyoLegs keeps the Rajagopal body frames (pelvis, femur, tibia, talus,
calcn, toes: same origins and axes, x anterior, y up, z right), so the locations apply to MyoLegs
unchanged. ``kinesis_neuro/data/marker_aliases.csv`` maps the names other labs use (the Rajagopal
running trial, Plug-in Gait, UWA clusters) onto that set, and adds markers it lacks (wands, clusters)
with a body and a first-guess location that calibration refines. Marker weights default to the
OpenSim IK set-up of the running trial (``ik_setup_run.xml``), then its scale set-up's marker-placement
tasks (knee and ankle landmarks); see :func:`default_weights` for markers neither names.
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import xarray as xr

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import readable_file

MARKER_SET = "rajagopal-run/markerset_preScale.xml"
IK_SETUP = "rajagopal-run/ik_setup_run.xml"
SCALE_SETUP = "rajagopal-run/scale_setup_run.xml"
# markers no set-up names: tracking markers (clusters, wands) weigh as the IK set-up's thigh and shank clusters;
# anatomical ones, which OpenSim's IK would ignore, count 1/50 of those, settling only what the rest leaves open
TRACKING_WEIGHT = 50.0
DEFAULT_WEIGHT = 1.0
LEG_BODIES = tuple(["pelvis"] + [f"{b}_{s}" for s in ("r", "l") for b in ("femur", "patella", "tibia", "talus",
                                                                          "calcn", "toes")])
AXES = ("x", "y", "z")
# the reference set's tracking clusters (OpenSim's scaled model of that subject groups them as "tracking", the
# rest as "anatomical"): their set locations are placeholders that calibration replaces
CLUSTERS = tuple(f"{s}.{seg}{k}" for s in "RL" for seg in ("TH", "SH") for k in range(1, 5))


@dataclass(frozen=True)
class Marker:
    """A marker on ``body`` at ``location`` (3, m, body frame). ``fixed``: an anatomical landmark, kept
    where the set puts it (scaled); otherwise a tracking marker that calibration places (its location a
    first guess)."""

    name: str
    body: str
    location: tuple[float, float, float]
    fixed: bool


def _source(source, data_dir) -> Path:
    from kinesis_neuro import datasets

    if datasets.is_dataset_spec(source):
        name, _, filename = str(source).partition("/")
        return datasets.fetch(name, filename, data_dir=data_dir)
    return readable_file(source)


def _xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataFormatError(f"{path}: not a readable XML file ({err})") from err


def read_marker_set(source: str | os.PathLike = MARKER_SET, *, data_dir=None) -> dict[str, Marker]:
    """An OpenSim ``MarkerSet`` (or a model holding one; OpenSim 3 ``<body>`` or 4 ``<socket_parent_frame>``)
    as ``{name: Marker}``. Only :data:`CLUSTERS` are left to calibration: OpenSim's ``fixed`` flag marks
    what its marker placement may move to match a static pose (heel, toe, malleolus too), while here the
    anatomical markers define the segment frames (the ankle angle's zero, the pelvis tilt's)."""
    path = _source(source, data_dir)
    out = {}
    for element in _xml(path).iter("Marker"):
        body = element.findtext("body") or element.findtext("socket_parent_frame") or ""
        location = (element.findtext("location") or "").split()
        name = element.get("name", "")
        if not body.strip() or len(location) != 3:
            raise DataFormatError(f"{path}: marker {name!r} lacks a body or a 3-number location")
        try:
            xyz = tuple(float(v) for v in location)
        except ValueError:
            raise DataFormatError(f"{path}: marker {name!r} has a non-numeric location {location}") from None
        out[name] = Marker(name, body.strip().rsplit("/", 1)[-1], xyz, name not in CLUSTERS)
    if not out:
        raise DataFormatError(f"{path}: no <Marker> elements; expected an OpenSim MarkerSet")
    return out


def read_task_weights(source: str | os.PathLike = IK_SETUP, *, data_dir=None) -> dict[str, float]:
    """Weights of the applied ``IKMarkerTask``s of an OpenSim IK or scale set-up (``{marker: weight}``)."""
    path = _source(source, data_dir)
    out = {}
    for task in _xml(path).iter("IKMarkerTask"):
        if (task.findtext("apply") or "true").strip().lower() == "true":
            out[task.get("name", "")] = float(task.findtext("weight") or 1.0)
    return out


@cache
def alias_table() -> tuple[dict[str, str], dict[str, Marker]]:
    """``(aliases, extra)``: other labs' names -> marker-set names, and markers the set lacks
    (first-guess locations). Rows marked ``side=r`` get their left mirror image (z negated)."""
    aliases, extra = {}, {}
    with resources.files("kinesis_neuro.data").joinpath("marker_aliases.csv").open() as fh:
        for row in csv.DictReader(fh):
            rows = [row]
            if row["side"] == "r":
                rows.append({**row, "name": "L" + row["name"][1:], "same_as": row["same_as"] and "L" + row["same_as"][1:],
                             "body": row["body"][:-2] + "_l" if row["body"] else "",
                             "z": str(-float(row["z"])) if row["z"] else ""})
            for r in rows:
                if r["same_as"]:
                    aliases[r["name"]] = r["same_as"]
                else:
                    extra[r["name"]] = Marker(r["name"], r["body"], (float(r["x"]), float(r["y"]), float(r["z"])),
                                              fixed=False)
    return aliases, extra


def default_weights(names, *, data_dir=None) -> dict[str, float]:
    """Weight per marker name: the IK set-up's applied task (by its own name or an alias), else the scale
    set-up's marker-placement task, else :data:`TRACKING_WEIGHT` for a tracking marker (:data:`CLUSTERS`,
    alias-table additions), else :data:`DEFAULT_WEIGHT`."""
    aliases, extra = alias_table()
    ik, scale = read_task_weights(IK_SETUP, data_dir=data_dir), read_task_weights(SCALE_SETUP, data_dir=data_dir)
    out = {}
    for name in names:
        known = [name, *(a for a, c in aliases.items() if c == name)]
        weight = next((ik[n] for n in known if n in ik), None)
        fallback = TRACKING_WEIGHT if name in CLUSTERS or name in extra else DEFAULT_WEIGHT
        weight = weight if weight is not None else next((scale[n] for n in known if n in scale), fallback)
        out[name] = float(weight)
    return out


def read_markers(source: str | os.PathLike, *, data_dir=None) -> xr.DataArray:
    """Marker trajectories of a ``.trc`` or ``.c3d`` file (path or ``DATASET/FILE``) as a DataArray
    ``(time, marker, axis)`` in m, in the lab's own frame; gaps are NaN."""
    path = _source(source, data_dir)
    if path.suffix.lower() == ".c3d":
        from kinesis_neuro.io.c3d import read_c3d_markers

        return read_c3d_markers(path)
    if path.suffix.lower() != ".trc":
        raise DataFormatError(f"{path}: marker files must be .trc or .c3d")
    from kinesis_neuro.io.opensim import read_trc

    flat = read_trc(path)
    names = [str(c)[:-2] for c in flat.channel.values[::3]]
    factor = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}.get(flat.attrs["units"].strip().lower())
    if factor is None:
        raise DataFormatError(f"{path}: marker units {flat.attrs['units']!r}; expected mm, cm or m")
    values = flat.values.reshape(flat.sizes["time"], len(names), 3) * factor
    return xr.DataArray(values, dims=("time", "marker", "axis"),
                        coords={"time": flat.time.values, "marker": names, "axis": list(AXES)}, name="markers",
                        attrs={"units": "m", "source": str(path), "sampling_rate": float(flat.attrs["sampling_rate"])})


def resolve(markers: xr.DataArray, marker_set: dict[str, Marker]) -> tuple[xr.DataArray, dict[str, Marker], list[str]]:
    """Rename ``markers`` to marker-set names and keep those on MyoLegs bodies.

    Returns the renamed data, the ``Marker`` of each kept name (alias-table guesses for names the set
    lacks) and the names dropped (upper body, or unknown).
    """
    aliases, extra = alias_table()
    kept, names, dropped = [], [], []
    used = set()
    for label in (str(m) for m in markers.marker.values):
        name = label if label in marker_set else aliases.get(label, label)
        marker = marker_set.get(name) or extra.get(name)
        if marker is None or marker.body not in LEG_BODIES or name in used:
            dropped.append(label)
            continue
        used.add(name)
        kept.append(label)
        names.append(name)
    out = markers.sel(marker=kept).assign_coords(marker=names)
    return out, {n: marker_set.get(n) or extra[n] for n in names}, dropped
