"""Agreement between simulated muscle activations and human EMG over the gait cycle.

Curves are DataArrays with dims ``("cycle", "phase", "channel")`` (the cycles of one person or
of one simulation, see :func:`kinesis_neuro.gait.segment_cycles`), ``("subject", "phase",
"channel")`` (one mean cycle per person) or ``("phase", "channel")`` (a mean cycle). ``phase`` is
in percent of the gait cycle. Simulated and human curves must share the phase grid and the
channels (map simulated muscles onto EMG channels first with
:func:`kinesis_neuro.mapping.map_to_channels`); channel order may differ. Correlations,
similarities and normalised errors are dimensionless (``units="1"``); phases and lags are in %.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError, ProcessingError

OBSERVATION_DIMS = ("cycle", "subject")
NORMALISATIONS = ("peak", "minmax")
SPM_COLUMNS = ["channel", "cluster", "start", "end", "extent", "sign", "p", "p_muscle", "p_muscle_corrected",
               "significant"]


def _finite(da, name: str) -> xr.DataArray:
    """``da`` if it is a DataArray without NaN or infinite samples."""
    if not isinstance(da, xr.DataArray):
        raise DataFormatError(f"{name}: expected an xarray DataArray, got {type(da).__name__}")
    bad = ~np.isfinite(da.values)
    if bad.any():
        where = ""
        if "channel" in da.dims:
            axes = tuple(i for i, d in enumerate(da.dims) if d != "channel")
            where = f" in channels {[str(c) for c in da.channel.values[bad.any(axis=axes)]]}"
        raise DataFormatError(f"{name}: {int(bad.sum())} NaN or infinite samples{where}; drop or fill them first")
    return da


def _curves(da, name: str, observations: tuple[str, ...] = OBSERVATION_DIMS) -> xr.DataArray:
    """``da`` checked to be finite ``(phase, channel)`` curves with at most one dim of ``observations``."""
    _finite(da, name)
    extra = [d for d in da.dims if d not in ("phase", "channel")]
    if "phase" not in da.dims or "channel" not in da.dims or len(extra) > 1 or not set(extra) <= set(observations):
        shapes = " or ".join(["(phase, channel)"] + [f"({d}, phase, channel)" for d in observations])
        raise DataFormatError(f"{name}: expected dims {shapes}, got {da.dims}")
    return da


def _observation_dim(da: xr.DataArray, name: str) -> str:
    """The dim of ``da`` that counts cycles or subjects."""
    found = [d for d in da.dims if d in OBSERVATION_DIMS]
    if not found:
        raise DataFormatError(f"{name}: needs several cycles or subjects (dim 'cycle' or 'subject'), got {da.dims}")
    return found[0]


def _mean_cycle(da: xr.DataArray) -> xr.DataArray:
    """The mean over cycles (dim ``cycle``), if there is one."""
    return da.mean("cycle", keep_attrs=True) if "cycle" in da.dims else da


def _grid(values: np.ndarray) -> str:
    """Short description of a coordinate grid for error messages."""
    return f"{values.size} points {values[0]:g} to {values[-1]:g}" if values.size else "0 points"


def _conform(other: xr.DataArray, ref: xr.DataArray, names: tuple[str, str], grid_dims=("phase",)) -> xr.DataArray:
    """``other`` reordered to ``ref``'s labels along their shared dims.

    Along ``grid_dims`` the coordinates must be equal; along the other dims (``channel``...)
    they must hold the same labels, in any order. Observation dims (cycles, subjects) are
    independent samples on each side and are left alone.
    """
    for dim in [d for d in ref.dims if d in other.dims and d not in OBSERVATION_DIMS]:
        a = ref[dim].values if dim in ref.coords else None
        b = other[dim].values if dim in other.coords else None
        if dim in grid_dims:
            same = ref.sizes[dim] == other.sizes[dim] and (
                a is None or b is None or np.allclose(a.astype(float), b.astype(float)))
            if not same:
                shown = [_grid(v) if v is not None else f"{n} points" for v, n in
                         ((b, other.sizes[dim]), (a, ref.sizes[dim]))]
                raise DataFormatError(
                    f"mismatched {dim} grids: {names[0]} has {shown[0]}, {names[1]} has {shown[1]}; "
                    "time-normalise both the same way (segment_cycles n_points/split)")
        elif a is not None and b is not None:
            missing, extra = sorted(set(map(str, a)) - set(map(str, b))), sorted(set(map(str, b)) - set(map(str, a)))
            if missing or extra:
                error = ChannelNotFoundError if dim == "channel" else DataFormatError
                raise error(f"mismatched {dim} labels: {names[0]} lacks {missing} and has extra {extra} "
                            f"compared with {names[1]}")
            other = other.sel({dim: a})
        elif ref.sizes[dim] != other.sizes[dim]:
            raise DataFormatError(f"mismatched {dim} sizes: {names[0]} {other.sizes[dim]}, {names[1]} {ref.sizes[dim]}")
    return other


def _pair(a, b, dim: str) -> tuple[xr.DataArray, xr.DataArray]:
    """``a`` and ``b`` checked (finite, both with ``dim``) and ``b`` conformed to ``a``."""
    for da, name in ((a, "a"), (b, "b")):
        _finite(da, name)
        if dim not in da.dims:
            raise DataFormatError(f"{name}: no dim {dim!r} to compare along (dims {da.dims})")
    return a, _conform(b, a, ("b", "a"), grid_dims=(dim,))


def pearson(a: xr.DataArray, b: xr.DataArray, dim: str = "phase") -> xr.DataArray:
    """Pearson r (-1 to 1, unitless) between ``a`` and ``b`` along ``dim``, broadcast over all other dims.

    A curve without variance gives NaN.
    """
    a, b = _pair(a, b, dim)
    da, db = a - a.mean(dim), b - b.mean(dim)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (da * db).sum(dim) / np.sqrt((da**2).sum(dim) * (db**2).sum(dim))
    r = r.clip(-1.0, 1.0).rename("r")
    r.attrs = {"units": "1", "long_name": f"Pearson correlation over {dim}"}
    return r


def fisher_mean(r: xr.DataArray, dim: str = "channel") -> xr.DataArray:
    """Mean of correlations over ``dim`` on Fisher's z scale, ``tanh(mean(arctanh(r)))`` (NaN skipped)."""
    with np.errstate(divide="ignore"):
        out = np.tanh(np.arctanh(r).mean(dim, skipna=True))
    out.attrs = {"units": "1", "long_name": f"Fisher-z mean of Pearson r over {dim}"}
    return out


def simulation_vs_subjects(sim_cycles: xr.DataArray, human: xr.DataArray) -> xr.Dataset:
    """Pearson r per muscle between the simulated mean cycle and each person's mean cycle.

    ``human`` is ``(subject, phase, channel)``, or ``(cycle, phase, channel)`` / ``(phase, channel)``
    for one person (labelled by ``attrs["subject"]``, else ``"human"``). Returns ``r``
    (subject, channel), ``r_subject`` (Fisher-z mean over muscles) and ``r_channel`` (Fisher-z mean
    over subjects).
    """
    sim = _mean_cycle(_curves(sim_cycles, "simulation", ("cycle",)))
    hum = _curves(human, "human")
    if "subject" not in hum.dims:
        hum = _mean_cycle(hum).expand_dims(subject=[str(human.attrs.get("subject", "human"))])
    r = pearson(sim, hum).transpose("subject", "channel")
    return xr.Dataset(
        {"r": r, "r_subject": fisher_mean(r, "channel"), "r_channel": fisher_mean(r, "subject")},
        attrs={"description": "Pearson r of simulated vs human mean gait cycles"},
    )


def human_baseline(human: xr.DataArray) -> xr.Dataset:
    """How alike people are: per-muscle Pearson r of every pair of subjects and of each subject
    against the mean of the others (leave-one-out), from ``(subject, phase, channel)`` mean cycles.

    Returns ``r_pairs`` (pair, channel; coords ``subject_a``, ``subject_b``), ``r_loo`` (subject,
    channel) and their medians over pairs / subjects, ``median_pairs`` and ``median_loo`` (channel).
    """
    hum = _curves(human, "human")
    n = hum.sizes.get("subject", 1)
    if n < 2 or "cycle" in hum.dims:
        raise DataFormatError(f"human_baseline needs >= 2 subjects as (subject, phase, channel), got {dict(hum.sizes)}")
    names = hum["subject"].values
    first, second = np.triu_indices(n, 1)
    pick = [hum.isel(subject=xr.DataArray(idx, dims="pair")).drop_vars("subject", errors="ignore")
            for idx in (first, second)]
    pairs = pearson(*pick).transpose("pair", "channel").assign_coords(
        pair=np.arange(first.size), subject_a=("pair", names[first]), subject_b=("pair", names[second]))
    others = (hum.sum("subject") - hum) / (n - 1)
    loo = pearson(hum, others).transpose("subject", "channel")
    medians = {"median_pairs": pairs.median("pair"), "median_loo": loo.median("subject")}
    for key, label in (("median_pairs", "every pair of subjects"), ("median_loo", "each subject vs the others' mean")):
        medians[key].attrs = {"units": "1", "long_name": f"median Pearson r over {label}"}
    return xr.Dataset({"r_pairs": pairs, "r_loo": loo, **medians},
                      attrs={"description": "human-to-human Pearson r of mean gait cycles"})


def _bootstrap_means(da: xr.DataArray, dim: str, n_boot: int, rng: np.random.Generator) -> xr.DataArray:
    """Means over ``dim`` of ``n_boot`` resamples (with replacement) of ``da``'s entries along ``dim``."""
    da = da.transpose(dim, "phase", "channel")
    n = da.sizes[dim]
    draws = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n)
    means = (counts @ da.values.reshape(n, -1) / n).reshape(n_boot, *da.shape[1:])
    return xr.DataArray(means, dims=("boot", "phase", "channel"),
                        coords={"phase": da["phase"], "channel": da["channel"]})


def bootstrap_ci(sim_cycles: xr.DataArray, human_cycles: xr.DataArray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> xr.Dataset:
    """Percentile bootstrap confidence interval of r between the simulated and the human mean cycle.

    ``r`` is the per-muscle Pearson r of the mean of the simulated cycles with the mean of
    ``human_cycles`` (its cycles, or its subjects for ``(subject, phase, channel)``). Each of the
    ``n_boot`` resamples draws simulated cycles and human cycles/subjects with replacement
    (``numpy.random.default_rng(seed)``: the same seed gives the same interval). Returns ``r``,
    ``lower`` and ``upper`` per channel. Resampled means are noisier than the observed ones, so the
    bootstrap r is biased low: when r is near 1 the interval can lie wholly below the estimate.
    """
    if int(n_boot) < 1 or not 0.0 < level < 1.0:
        raise ProcessingError(f"bootstrap needs n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    sim = _curves(sim_cycles, "simulation", ("cycle",))
    _observation_dim(sim, "simulation")
    hum = _curves(human_cycles, "human")
    obs = _observation_dim(hum, "human")
    hum = _conform(hum, sim, ("human", "simulation"))
    rng = np.random.default_rng(seed)
    boot = pearson(_bootstrap_means(sim, "cycle", int(n_boot), rng), _bootstrap_means(hum, obs, int(n_boot), rng))
    with warnings.catch_warnings():  # a muscle never active has no r in any resample: its bounds stay NaN
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        bounds = boot.quantile([(1 - level) / 2, (1 + level) / 2], dim="boot").drop_vars("quantile")
    out = xr.Dataset({"r": pearson(sim.mean("cycle"), hum.mean(obs)),
                      "lower": bounds.isel(quantile=0), "upper": bounds.isel(quantile=1)},
                     attrs={"level": level, "n_boot": int(n_boot), "seed": seed, "method": "percentile bootstrap",
                            "resampled": f"simulated cycles and human {obs}s"})
    for key in ("lower", "upper"):
        out[key].attrs = {"units": "1", "long_name": f"{key} {100 * level:g} % bound of Pearson r"}
    return out


def _cycle_points(phase: np.ndarray) -> int:
    """How many samples of an even phase grid (%) make one cycle; a repeated 100 % end point is left out."""
    step = np.diff(phase.astype(float))
    if step.size < 2 or step[0] <= 0 or not np.allclose(step, step[0]):
        raise DataFormatError(f"phase grid ({_grid(phase)} %) is not evenly spaced; cannot shift it circularly")
    span = phase[-1] - phase[0]
    if np.isclose(span + step[0], 100.0):
        return phase.size
    if np.isclose(span, 100.0):
        return phase.size - 1
    raise DataFormatError(f"phase grid ({_grid(phase)} %) does not cover one whole gait cycle of 100 %")


def _circular_correlation(sim: np.ndarray, human: np.ndarray) -> np.ndarray:
    """Pearson r of ``sim`` shifted circularly by every lag with ``human`` (last axis), lags -n//2 .. n - n//2 - 1."""
    n = sim.shape[-1]
    sim = sim - sim.mean(-1, keepdims=True)
    human = human - human.mean(-1, keepdims=True)
    cross = np.fft.irfft(np.fft.rfft(sim) * np.conj(np.fft.rfft(human)), n)  # sum_p sim[p + lag] human[p]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cross / np.sqrt((sim**2).sum(-1, keepdims=True) * (human**2).sum(-1, keepdims=True))
    return np.roll(np.clip(r, -1.0, 1.0), n // 2, axis=-1)


def lag_scan(sim_mean: xr.DataArray, human_mean: xr.DataArray) -> xr.Dataset:
    """Pearson r between the circularly shifted simulated mean cycle and the human mean cycle at every lag.

    ``r(lag) = corr(sim(phase + lag), human(phase))`` with ``lag`` in % of the gait cycle from
    -50 % to just under +50 %, one grid step apart. A positive lag means the simulation is late:
    its pattern occurs ``lag`` % after the human's. Cycles are averaged first; a ``subject`` dim
    of ``human_mean`` is scanned subject by subject. The phase grid must be even and cover one
    cycle (a repeated 100 % end point is dropped). Returns ``r`` (lag, ...), ``best_lag`` (%),
    ``r_best`` and ``r_zero`` (r without shift).
    """
    sim = _mean_cycle(_curves(sim_mean, "simulation", ("cycle",)))
    hum = _conform(_mean_cycle(_curves(human_mean, "human")), sim, ("human", "simulation"))
    n = _cycle_points(sim["phase"].values)
    sim, hum = sim.isel(phase=slice(0, n)), hum.isel(phase=slice(0, n))
    r = xr.apply_ufunc(_circular_correlation, sim, hum, input_core_dims=[["phase"], ["phase"]],
                       output_core_dims=[["lag"]])
    lags = (np.arange(n) - n // 2) * 100.0 / n
    r = r.assign_coords(lag=("lag", lags, {"units": "%", "long_name": "shift of the simulation",
                                           "sign": "positive: simulation late"}))
    r = r.transpose("lag", ...).rename("r")
    r.attrs = {"units": "1", "long_name": "Pearson r of sim(phase + lag) with human(phase)"}
    best = r.fillna(-np.inf).idxmax("lag").where(r.notnull().any("lag"))
    best.attrs = {"units": "%", "long_name": "lag of highest r", "sign": "positive: simulation late"}
    r_best = r.max("lag")
    r_best.attrs = {"units": "1", "long_name": "Pearson r at the best lag"}
    return xr.Dataset({"r": r, "best_lag": best, "r_best": r_best, "r_zero": r.sel(lag=0.0, drop=True)})


def _normalised(x: xr.DataArray, method: str, dim: str) -> xr.DataArray:
    """``x`` divided by its peak (``"peak"``) or scaled to 0-1 (``"minmax"``) along ``dim``."""
    if method not in NORMALISATIONS:
        raise ProcessingError(f"unknown normalisation {method!r}; choose one of {NORMALISATIONS}")
    low = x.min(dim) if method == "minmax" else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x - low) / (x.max(dim) - low)


def normalised_rmse(a: xr.DataArray, b: xr.DataArray, method: str = "peak", dim: str = "phase") -> xr.DataArray:
    """Root-mean-square difference along ``dim`` after normalising each curve on its own.

    ``"peak"`` divides by the curve's maximum (keeps baseline offsets, the error is a fraction of
    the peak); ``"minmax"`` maps each curve to 0-1 (ignores offsets and gains).
    """
    a, b = _pair(a, b, dim)
    out = np.sqrt(((_normalised(a, method, dim) - _normalised(b, method, dim)) ** 2).mean(dim)).rename("rmse")
    out.attrs = {"units": "1", "long_name": f"RMSE of {method}-normalised curves"}
    return out


def cosine_similarity(a: xr.DataArray, b: xr.DataArray, dim: str = "phase") -> xr.DataArray:
    """Cosine of the angle between the raw curves along ``dim`` (gain-invariant, unlike r not offset-invariant)."""
    a, b = _pair(a, b, dim)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ((a * b).sum(dim) / np.sqrt((a**2).sum(dim) * (b**2).sum(dim))).rename("cosine")
    out.attrs = {"units": "1", "long_name": "cosine similarity"}
    return out


def onoff_agreement(a: xr.DataArray, b: xr.DataArray, threshold: float = 0.3, dim: str = "phase") -> xr.DataArray:
    """Fraction of ``dim`` samples (0-1) where both curves are on or both off.

    A curve is on where it is at least ``min + threshold * (max - min)`` of its own range.
    """
    if not 0.0 < threshold < 1.0:
        raise ProcessingError(f"on/off threshold is a fraction of each curve's range (0 to 1), got {threshold}")
    a, b = _pair(a, b, dim)
    out = ((_normalised(a, "minmax", dim) >= threshold) == (_normalised(b, "minmax", dim) >= threshold)).mean(dim)
    out = out.rename("onoff")
    out.attrs = {"units": "1", "long_name": "on/off agreement", "threshold": f"{threshold:g} of each curve's range"}
    return out


def amplitude_metrics(sim: xr.DataArray, human: xr.DataArray, normalise: str = "peak",
                      threshold: float = 0.3) -> xr.Dataset:
    """``rmse`` (see :func:`normalised_rmse`), ``cosine`` and ``onoff`` (see :func:`onoff_agreement`)
    between the simulated and human mean cycles, per channel (and subject)."""
    sim = _mean_cycle(_curves(sim, "simulation", ("cycle",)))
    hum = _mean_cycle(_curves(human, "human"))
    return xr.Dataset({"rmse": normalised_rmse(sim, hum, normalise), "cosine": cosine_similarity(sim, hum),
                       "onoff": onoff_agreement(sim, hum, threshold)})


class SpmResult(NamedTuple):
    """Outcome of :func:`spm_test`."""

    clusters: pd.DataFrame
    t: xr.DataArray


def spm_test(sim_cycles: xr.DataArray, human_cycles: xr.DataArray, alpha: float = 0.05, *,
             method: str = "holm", equal_var: bool = False) -> SpmResult:
    """SPM1D two-sample t-test (two-tailed, random field theory) of simulated vs human cycles, per muscle.

    The human observations are its cycles, or its subjects for ``(subject, phase, channel)``.
    ``clusters`` has one row per supra-threshold cluster at ``alpha`` of a muscle's SPM{t}:
    ``start``/``end``/``extent`` (% of cycle, interpolated, not wrapped around 100 %), ``sign``
    (+1: simulation higher), cluster ``p``; ``p_muscle`` is the RFT probability of the muscle's
    peak |t| (a p-value for "differs somewhere in the cycle"), ``p_muscle_corrected`` the same
    corrected across muscles with statsmodels ``multipletests(method)``; ``significant`` means
    ``p < alpha`` and ``p_muscle_corrected < alpha``. ``t`` holds the t curves (phase, channel)
    with the threshold ``t_critical`` and the muscle p-values as channel coordinates.
    """
    try:
        import spm1d
        from statsmodels.stats.multitest import multipletests
    except ImportError as err:
        raise ProcessingError(f"spm_test needs spm1d and statsmodels ({err}); pip install spm1d statsmodels") from err

    sim = _curves(sim_cycles, "simulation", ("cycle",))
    _observation_dim(sim, "simulation")
    hum = _curves(human_cycles, "human")
    obs = _observation_dim(hum, "human")
    hum = _conform(hum, sim, ("human", "simulation"))
    phase = sim["phase"].values.astype(float)
    nodes = np.arange(phase.size)
    curves, rows, stats = [], [], []
    for channel in sim["channel"].values:
        groups = [sim.sel(channel=channel).transpose("cycle", "phase").values,
                  hum.sel(channel=channel).transpose(obs, "phase").values]
        flat = [name for name, g in zip(("simulated", "human"), groups) if np.any(g.std(axis=0) == 0)]
        if flat:
            raise ProcessingError(f"SPM t-test impossible for {channel}: the {' and '.join(flat)} cycles do not "
                                  "vary at some phases (e.g. a deterministic or periodic controller)")
        t = spm1d.stats.ttest2(*groups, equal_var=equal_var)
        inference = t.inference(alpha, two_tailed=True)
        p_peak = 2 * spm1d.rft1d.t.sf_resels(np.abs(t.z).max(), t.df[1], t.resels, withBonf=True, nNodes=t.Q)
        curves.append(t.z)
        stats.append((inference.zstar, min(1.0, float(p_peak)), float(t.df[1]), t.fwhm * np.mean(np.diff(phase))))
        for k, cluster in enumerate(inference.clusters):
            start, end = np.interp(cluster.endpoints, nodes, phase)
            rows.append({"channel": str(channel), "cluster": k, "start": start, "end": end, "extent": end - start,
                         "sign": cluster.csign, "p": float(cluster.P)})
    t_critical, p_muscle, df, fwhm = map(np.array, zip(*stats))
    try:
        p_corrected = multipletests(p_muscle, alpha=alpha, method=method)[1]
    except ValueError as err:
        raise ProcessingError(f"multiple-comparison correction {method!r} failed: {err}") from err
    per_muscle = pd.DataFrame({"p_muscle": p_muscle, "p_muscle_corrected": p_corrected},
                              index=[str(c) for c in sim["channel"].values])
    table = pd.DataFrame(rows, columns=SPM_COLUMNS[:7]).join(per_muscle, on="channel")
    table["significant"] = (table["p"] < alpha) & (table["p_muscle_corrected"] < alpha)
    table.attrs = {"alpha": alpha, "correction": method, "units": {"start": "%", "end": "%", "extent": "%"}}
    curves = xr.DataArray(
        np.stack(curves, axis=1), dims=("phase", "channel"), name="t",
        coords={"phase": sim["phase"], "channel": sim["channel"], "t_critical": ("channel", t_critical),
                "p_muscle": ("channel", p_muscle), "p_muscle_corrected": ("channel", p_corrected),
                "df": ("channel", df), "fwhm": ("channel", fwhm, {"units": "%"})},
        attrs={"units": "1", "long_name": "SPM{t}, simulation minus human", "alpha": alpha, "correction": method,
               "test": f"two-sample t, two-tailed, {'equal' if equal_var else 'unequal'} variances"},
    )
    return SpmResult(table[SPM_COLUMNS], curves)
