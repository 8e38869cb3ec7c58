"""Phase registration of gait cycles, made explicit.

A gait cycle runs from a heel strike (0 %) to the next heel strike of the same foot (100 %). Three ways of
putting cycles of different durations on one phase axis are in use, and curves cut in different ways must
never be compared point by point:

``even``
    each cycle resampled evenly in time from heel strike to heel strike (KINESIS, Falisse et al., normative
    tables): toe-off falls wherever it falls in each cycle (about 60 % in walking).
``stance-swing``
    stance and swing resampled separately, stance filling 0-50 % of the phase axis and swing 50-100 %
    (musclesyneRgies' 100 + 100 points): toe-off is always at "50 %", which is not 50 % of the cycle's time.
``toe-off``
    piecewise-linear time warping: stance mapped onto 0-P % and swing onto P-100 % of an even 1 % grid, so
    that every cycle's toe-off lands at the same P % (e.g. 60 %); amplitude is kept, timing within each
    phase is stretched linearly.

Every cycle array and comparison carries two attributes that say which: ``phase_definition`` (what 0 and
100 % are and how the points are spaced) and ``registration`` (the warping applied, or none).
:func:`check_same` refuses to mix conventions, even where the phase coordinates happen to coincide (an
even 200-point grid from 0 to 99.5 % has the same numbers as the stance/swing grid).
"""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from kinesis_neuro.errors import ProcessingError

EVEN, STANCE_SWING, TOE_OFF = "even", "stance-swing", "toe-off"
REGISTRATIONS = {
    EVEN: "none: each cycle resampled evenly in time from heel strike (0 %) to the next heel strike (100 %)",
    STANCE_SWING: ("stance and swing resampled separately: stance (heel strike to toe-off) fills 0-50 % of the "
                   "phase axis, swing (toe-off to heel strike) 50-100 %"),
    TOE_OFF: ("piecewise-linear time warping: stance (heel strike to toe-off) mapped linearly onto 0-{p:g} %, "
              "swing onto {p:g}-100 %, so that every cycle's toe-off lies at {p:g} %"),
}
_TOE_OFF = re.compile(r"toe-off (?:lies )?at (?P<p>[0-9.]+) %")


def convention(cycles: xr.DataArray | xr.Dataset) -> dict:
    """How ``cycles`` were put on their phase axis: ``kind`` (even, stance-swing, toe-off), ``points``,
    ``toe_off_percent`` (toe-off registration only), ``phase_definition`` and ``registration`` texts."""
    definition = str(cycles.attrs.get("phase_definition", ""))
    registration = str(cycles.attrs.get("registration", ""))
    points = int(cycles.sizes["phase"]) if "phase" in cycles.dims else 0
    if registration.startswith("piecewise-linear"):
        match = _TOE_OFF.search(registration)
        p = float(match["p"]) if match else float("nan")
        return {"kind": TOE_OFF, "points": points, "toe_off_percent": p,
                "phase_definition": definition, "registration": registration}
    kind = STANCE_SWING if definition.startswith("stance") else EVEN
    return {"kind": kind, "points": points, "toe_off_percent": None, "phase_definition": definition,
            "registration": registration or REGISTRATIONS[kind]}


def describe(cycles) -> str:
    """One line: the phase definition and the registration of ``cycles``."""
    c = convention(cycles)
    definition = c["phase_definition"] or "phase in % of the gait cycle"
    return f"{definition} ({c['points']} points); registration: {c['registration']}"


def check_same(a, b, names=("simulation", "human")) -> None:
    """``ProcessingError`` naming both conventions unless ``a`` and ``b`` are cycles cut the same way on the same
    phase grid (kind, toe-off %, number of points and phase values)."""
    ca, cb = convention(a), convention(b)
    same = (ca["kind"] == cb["kind"] and ca["points"] == cb["points"]
            and (ca["kind"] != TOE_OFF or np.isclose(ca["toe_off_percent"], cb["toe_off_percent"])))
    if same and "phase" in a.coords and "phase" in b.coords:
        same = np.allclose(a.phase.values.astype(float), b.phase.values.astype(float), atol=1e-6)
    if not same:
        raise ProcessingError(f"mismatched phase conventions: {names[0]}: {describe(a)}; {names[1]}: {describe(b)}; "
                              "cut both the same way (--phase-points N or STANCE,SWING, --register-toe-off) before "
                              "comparing them point by point")


def annotate(cycles, kind: str | None = None, toe_off_percent: float | None = None):
    """``cycles`` with the ``registration`` attribute set (from its ``phase_definition`` unless ``kind`` says)."""
    kind = kind or convention(cycles)["kind"]
    text = REGISTRATIONS[kind].format(p=toe_off_percent if toe_off_percent is not None else float("nan"))
    return cycles.assign_attrs(registration=text)


def toe_off_split(toe_off_percent: float, n_points: int = 100) -> tuple[int, int]:
    """(stance points, swing points) of an even ``n_points`` grid (0 to just under 100 %) with toe-off at
    ``toe_off_percent``; cut cycles with this split, then :func:`register_toe_off`."""
    if not 0 < float(toe_off_percent) < 100:
        raise ProcessingError(f"toe-off registration needs 0 < toe-off % < 100, got {toe_off_percent}")
    stance = round(n_points * float(toe_off_percent) / 100.0)
    if not 1 <= stance < n_points:
        raise ProcessingError(f"toe-off at {toe_off_percent} % leaves no stance or swing point on {n_points} points")
    return stance, n_points - stance


def register_toe_off(cycles: xr.DataArray, toe_off_percent: float) -> xr.DataArray:
    """Cycles cut with ``split=toe_off_split(p, n)`` (stance and swing resampled separately) placed on the even
    grid ``0, 100/n, ... %`` with toe-off at ``p`` %: a piecewise-linear registration of every cycle."""
    n = cycles.sizes["phase"]
    stance, swing = toe_off_split(toe_off_percent, n)
    if "phase" in cycles.coords and int((cycles.phase.values < 50.0).sum()) != stance:
        raise ProcessingError(f"register_toe_off needs cycles cut with split=({stance}, {swing}) for toe-off at "
                              f"{toe_off_percent:g} % on {n} points")
    p = 100.0 * stance / n
    phase = np.arange(n) * 100.0 / n
    out = cycles.assign_coords(phase=("phase", phase, {"units": "%", "long_name": "percent of gait cycle"}))
    out.attrs = dict(cycles.attrs)
    out.attrs["phase_definition"] = (f"0-100 % from heel strike to next heel strike ({n} points, "
                                     f"{100.0 / n:g} % apart), toe-off registered at {p:g} %")
    return annotate(out, TOE_OFF, p)
