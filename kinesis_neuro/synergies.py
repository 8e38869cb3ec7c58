"""Muscle synergies: non-negative matrix factorisation of EMG envelopes, compatible with musclesyneRgies.

EMG ``X`` (samples x muscles, e.g. gait phase x muscle) is factorised as ``X ~ patterns @ weights.T``
with non-negative ``weights`` (muscles x rank, each column of unit Euclidean norm; unitless) and
``patterns`` (samples x rank, in the units of X). As in the R package musclesyneRgies (Santuz et al.
2017, 2019) every rank from 1 to ``max_rank`` is fitted from several random starts, the best
reconstruction (R2 = 1 - SSE / sum((X - mean X)^2)) is kept, and the rank is the first one from which
the R2-vs-rank curve is a straight line. scikit-learn's coordinate-descent NMF is used: it reaches the
same factorisations as the package's multiplicative updates in far fewer iterations (and, unlike them,
needs no replacement of zeros by the smallest positive value, so the data are factorised as given).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment, nnls
from sklearn import config_context
from sklearn.base import BaseEstimator
from sklearn.decomposition import non_negative_factorization
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from kinesis_neuro.errors import DataFormatError, ProcessingError
from kinesis_neuro.io.common import select_channels

RANK_RULES = ("r2_linearity", "vaf")
CYCLE = 100.0  # length of a gait cycle in % (unit of phase, centre of activity and FWHM)


@dataclass(frozen=True)
class _Samples:
    """EMG as a (samples x muscles) matrix plus what is needed to give results the input's shape."""

    values: np.ndarray
    channels: list[str] | None
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    coords: dict

    def wrap(self, matrix: np.ndarray, name: str) -> xr.DataArray | np.ndarray:
        """(samples x rank) as a DataArray with the input's sample dims + ``synergy`` (ndarray if X was)."""
        if self.channels is None:
            return matrix
        return xr.DataArray(
            matrix.reshape(*self.shape, matrix.shape[1]), dims=(*self.dims, "synergy"),
            coords={**self.coords, "synergy": synergy_labels(matrix.shape[1])}, name=name,
        )


def synergy_labels(rank: int) -> list[str]:
    """Synergy names as musclesyneRgies writes them: Syn1, Syn2, ..."""
    return [f"Syn{k + 1}" for k in range(rank)]


def _samples(X, channels: list[str] | None = None) -> _Samples:
    """Check EMG and flatten it to (samples x muscles); a DataArray's non-channel dims become samples."""
    if isinstance(X, xr.DataArray):
        if "channel" not in X.dims:
            raise DataFormatError(f"EMG for synergies needs a 'channel' dimension; it has {X.dims}")
        if channels is not None:
            X = select_channels(X, channels)
        dims = tuple(d for d in X.dims if d != "channel")
        X = X.transpose(*dims, "channel")
        coords = {name: c for name, c in X.coords.items() if set(c.dims) <= set(dims)}
        shape = X.shape[:-1]
        values = X.values.reshape(-1, X.sizes["channel"])
        channel_names = [str(c) for c in X.channel.values]
    else:
        values = np.asarray(X)
        if values.ndim != 2:
            raise DataFormatError(f"EMG for synergies must be (samples x muscles); got shape {values.shape}")
        dims, shape, coords, channel_names = ("sample",), values.shape[:1], {}, None
    if not np.issubdtype(values.dtype, np.number):
        raise DataFormatError(f"EMG for synergies must be numeric, not {values.dtype}")
    values = values.astype(float)
    if not np.all(np.isfinite(values)):
        raise DataFormatError(f"EMG holds {np.count_nonzero(~np.isfinite(values))} NaN or infinite values")
    if np.any(values < 0):
        raise DataFormatError(
            f"EMG holds negative values (min {values.min():.3g}); NMF needs non-negative envelopes"
        )
    if values.shape[0] < 2 or values.shape[1] < 1:
        raise DataFormatError(
            f"synergies need at least 2 samples and 1 muscle; got {values.shape[0]} x {values.shape[1]}"
        )
    if np.ptp(values) == 0:
        raise DataFormatError("EMG is constant; there is nothing to factorise")
    return _Samples(values, channel_names, dims, tuple(shape), coords)


def _weights(weights) -> tuple[np.ndarray, list[str] | None]:
    """Weights (muscles x rank) as an array, with the channel names of a DataArray."""
    if isinstance(weights, xr.DataArray):
        if "channel" not in weights.dims or weights.ndim != 2:
            raise DataFormatError(f"weights must be a (channel, synergy) DataArray; got dims {weights.dims}")
        other = next(d for d in weights.dims if d != "channel")
        return weights.transpose("channel", other).values.astype(float), [str(c) for c in weights.channel.values]
    values = np.asarray(weights, dtype=float)
    if values.ndim != 2:
        raise DataFormatError(f"weights must be (muscles x rank); got shape {values.shape}")
    return values, None


def r2_score(X: np.ndarray, reconstruction: np.ndarray) -> float:
    """musclesyneRgies' R2: 1 - SSE / sum((X - mean X)^2), with the grand mean of X (unitless)."""
    return 1.0 - float(np.sum((X - reconstruction) ** 2) / np.sum((X - X.mean()) ** 2))


def vaf_score(X: np.ndarray, reconstruction: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Variance accounted for, 1 - SSE / sum(X^2) (uncentred; unitless); ``axis=0`` gives one per muscle.

    A muscle that is zero throughout has no variance to account for: its VAF is NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        vaf = 1.0 - np.sum((X - reconstruction) ** 2, axis=axis) / np.sum(X**2, axis=axis)
    return np.where(np.isfinite(vaf), vaf, np.nan) if axis is not None else float(vaf)


def r2_linearity_rank(r2_curve, mse_min: float = 1e-4) -> int:
    """musclesyneRgies' rank: the first rank k (curve index k-1) from which a straight line fitted to
    R2(k..max) leaves a mean squared residual <= ``mse_min``; at most max - 1 (a line through 2 points
    always fits)."""
    curve = np.asarray(r2_curve, dtype=float)
    last = len(curve)
    for k in range(1, last - 1):
        tail = curve[k - 1:]
        x = np.arange(len(tail))
        line = np.polyval(np.polyfit(x, tail, 1), x)
        if np.mean((tail - line) ** 2) <= mse_min:
            return k
    return max(last - 1, 1)


def _nnls_patterns(weights: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Non-negative least-squares activation coefficients (samples x rank) of X ~ coeffs @ weights.T."""
    return np.stack([nnls(weights, row)[0] for row in X])


class SynergyModel(BaseEstimator):
    """Muscle-synergy extraction by NMF with musclesyneRgies' rank selection (scikit-learn style).

    Parameters: ``rank`` (fixed number of synergies; None chooses it), ``max_rank`` (highest rank
    tried, capped at the number of muscles and samples), ``restarts`` (random starts per rank; the best
    R2 is kept), ``rank_rule`` ("r2_linearity": first rank from which the R2 curve is linear, mean
    squared residual <= ``linearity_mse``; "vaf": first rank with total VAF >= ``vaf_total`` and every
    muscle's VAF >= ``vaf_muscle``), ``random_state``, ``max_iter`` and ``tol`` (scikit-learn's
    coordinate-descent NMF: stop when the optimality violation, the size of the projected gradient,
    falls below ``tol`` times its first-iteration value).

    Fitted attributes: ``weights_`` (muscles x rank, unit-norm columns), ``patterns_`` (samples x rank,
    units of X), ``rank_``, ``ranks_`` (ranks fitted), ``r2_curve_`` / ``vaf_curve_`` (best R2 / VAF of
    each of ``ranks_``), ``r2_``, ``vaf_``, ``vaf_per_muscle_`` (at ``rank_``), ``n_iter_``,
    ``channels_`` (muscle names, None for an array), ``n_features_in_``.
    """

    def __init__(self, rank: int | None = None, max_rank: int = 10, restarts: int = 5,
                 rank_rule: str = "r2_linearity", vaf_total: float = 0.90, vaf_muscle: float = 0.75,
                 linearity_mse: float = 1e-4, random_state=0, max_iter: int = 1000, tol: float = 3e-3):
        self.rank = rank
        self.max_rank = max_rank
        self.restarts = restarts
        self.rank_rule = rank_rule
        self.vaf_total = vaf_total
        self.vaf_muscle = vaf_muscle
        self.linearity_mse = linearity_mse
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol

    def _ranks(self, n_samples: int, n_muscles: int) -> list[int]:
        """Ranks to fit; raises ProcessingError for impossible parameters."""
        if self.rank_rule not in RANK_RULES:
            raise ProcessingError(f"unknown rank_rule {self.rank_rule!r}; use one of {RANK_RULES}")
        if int(self.restarts) < 1 or int(self.max_iter) < 1:
            raise ProcessingError(f"restarts and max_iter must be >= 1; got {self.restarts}, {self.max_iter}")
        limit = min(n_samples, n_muscles)
        if self.rank is not None:
            if not 1 <= int(self.rank) <= limit:
                raise ProcessingError(
                    f"rank {self.rank} is impossible for {n_samples} samples x {n_muscles} muscles (1..{limit})"
                )
            return [int(self.rank)]
        if int(self.max_rank) < 1:
            raise ProcessingError(f"max_rank must be >= 1; got {self.max_rank}")
        return list(range(1, min(int(self.max_rank), limit) + 1))

    def _factorise(self, X: np.ndarray, rank: int, random_state: np.random.RandomState
                   ) -> tuple[np.ndarray, np.ndarray, int]:
        """One coordinate-descent NMF from a random start: (patterns, components (rank x muscles), iterations).

        Parameters were checked by ``_ranks`` and X by ``_samples``, so scikit-learn's own (per-call,
        relatively slow) validation is skipped.
        """
        with warnings.catch_warnings(), config_context(skip_parameter_validation=True, assume_finite=True):
            warnings.simplefilter("ignore", ConvergenceWarning)  # judged once, for the chosen solution
            patterns, components, n_iter = non_negative_factorization(
                X, n_components=rank, init="random", solver="cd", beta_loss="frobenius",
                tol=self.tol, max_iter=int(self.max_iter), random_state=random_state,
            )
        return patterns, components, n_iter

    def fit(self, X, y=None) -> SynergyModel:
        """Extract synergies from EMG X: DataArray with a ``channel`` dim or (samples x muscles) array."""
        data = _samples(X)
        V = data.values
        ranks = self._ranks(*V.shape)
        random_state = check_random_state(self.random_state)  # one generator for all starts, drawn in turn
        best = {}
        for rank in ranks:
            starts = [self._factorise(V, rank, random_state) for _ in range(int(self.restarts))]
            best[rank] = max(starts, key=lambda s: r2_score(V, s[0] @ s[1]))
        reconstructions = {rank: p @ c for rank, (p, c, _) in best.items()}
        self.ranks_ = np.array(ranks)
        self.r2_curve_ = np.array([r2_score(V, reconstructions[r]) for r in ranks])
        self.vaf_curve_ = np.array([vaf_score(V, reconstructions[r]) for r in ranks])
        self.rank_ = self._choose_rank(V, reconstructions)
        patterns, components, self.n_iter_ = best[self.rank_]
        if self.n_iter_ >= int(self.max_iter):
            warnings.warn(f"NMF at rank {self.rank_} stopped at max_iter={self.max_iter} before reaching "
                          f"tol={self.tol}; raise max_iter", ConvergenceWarning, stacklevel=2)
        norms = np.linalg.norm(components, axis=1)
        norms[norms == 0] = 1.0  # a synergy that died out stays all zero
        self.weights_ = components.T / norms
        self.patterns_ = patterns * norms
        reconstruction = reconstructions[self.rank_]
        self.r2_ = r2_score(V, reconstruction)
        self.vaf_ = vaf_score(V, reconstruction)
        self.vaf_per_muscle_ = vaf_score(V, reconstruction, axis=0)
        self.channels_ = data.channels
        self.n_features_in_ = V.shape[1]
        self._layout = data
        return self

    def _choose_rank(self, V: np.ndarray, reconstructions: dict[int, np.ndarray]) -> int:
        if len(self.ranks_) == 1:
            return int(self.ranks_[0])
        if self.rank_rule == "r2_linearity":
            return int(self.ranks_[r2_linearity_rank(self.r2_curve_, self.linearity_mse) - 1])
        for rank in self.ranks_:
            per_muscle = vaf_score(V, reconstructions[rank], axis=0)
            if vaf_score(V, reconstructions[rank]) >= self.vaf_total and np.nanmin(per_muscle) >= self.vaf_muscle:
                return int(rank)
        warnings.warn(f"no rank up to {self.ranks_[-1]} reaches VAF {self.vaf_total} overall and "
                      f"{self.vaf_muscle} per muscle; using rank {self.ranks_[-1]}", stacklevel=3)
        return int(self.ranks_[-1])

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise ProcessingError("this SynergyModel is not fitted yet; call fit(X) first")

    def transform(self, X):
        """Activation coefficients (samples x rank, units of X) of new EMG with the fitted weights (NNLS).

        A DataArray's channels are matched to the fitted ones by name; the result keeps its sample dims.
        """
        self._check_fitted()
        data = _samples(X, self.channels_ if isinstance(X, xr.DataArray) else None)
        if data.values.shape[1] != self.n_features_in_:
            raise DataFormatError(
                f"X has {data.values.shape[1]} muscles; the model was fitted on {self.n_features_in_}"
            )
        return data.wrap(_nnls_patterns(self.weights_, data.values), "patterns")

    def fit_transform(self, X, y=None):
        """Fit and return the activation patterns (samples x rank; DataArray with X's dims if X is one)."""
        return self.fit(X)._layout.wrap(self.patterns_, "patterns")

    def to_dataset(self) -> xr.Dataset:
        """The fitted synergies as xarray: ``weights`` (channel, synergy), ``patterns`` (X's sample dims,
        synergy), ``vaf_per_muscle`` (channel), ``r2_curve`` / ``vaf_curve`` (rank)."""
        self._check_fitted()
        channels = self.channels_ if self.channels_ is not None else np.arange(self.n_features_in_)
        patterns = self._layout.wrap(self.patterns_, "patterns")
        if not isinstance(patterns, xr.DataArray):
            patterns = xr.DataArray(self.patterns_, dims=("sample", "synergy"))
        return xr.Dataset(
            {
                "weights": (("channel", "synergy"), self.weights_, {"units": "1", "long_name": "muscle weights"}),
                "patterns": patterns.assign_attrs(long_name="activation patterns"),
                "vaf_per_muscle": ("channel", self.vaf_per_muscle_, {"units": "1"}),
                "r2_curve": ("rank", self.r2_curve_, {"units": "1"}),
                "vaf_curve": ("rank", self.vaf_curve_, {"units": "1"}),
            },
            coords={"channel": channels, "synergy": synergy_labels(self.rank_), "rank": self.ranks_},
            attrs={"rank": self.rank_, "r2": self.r2_, "vaf": self.vaf_, "rank_rule": self.rank_rule,
                   "restarts": int(self.restarts), "solver": "scikit-learn NMF, coordinate descent"},
        )


class SynergyMatch(NamedTuple):
    """Hungarian pairing of two synergy sets: ``weights_a[:, index_a[i]]`` <-> ``weights_b[:, index_b[i]]``
    with cosine similarity ``cosine[i]``; ``similarity`` is the full (rank_a x rank_b) cosine matrix."""

    index_a: np.ndarray
    index_b: np.ndarray
    cosine: np.ndarray
    similarity: np.ndarray


def match(weights_a, weights_b) -> SynergyMatch:
    """Pair the synergies of two weight matrices (muscles x rank) to maximise the summed cosine similarity.

    DataArrays are aligned by channel name (b is put in a's channel order). With unequal ranks,
    min(rank_a, rank_b) pairs are formed.
    """
    a, channels = _weights(weights_a)
    if channels is not None and isinstance(weights_b, xr.DataArray):
        weights_b = select_channels(weights_b, channels)
    b, _ = _weights(weights_b)
    if a.shape[0] != b.shape[0]:
        raise DataFormatError(f"weights have {a.shape[0]} and {b.shape[0]} muscles; they must be equal")
    unit_a = a / np.maximum(np.linalg.norm(a, axis=0), np.finfo(float).tiny)
    unit_b = b / np.maximum(np.linalg.norm(b, axis=0), np.finfo(float).tiny)
    similarity = unit_a.T @ unit_b
    index_a, index_b = linear_sum_assignment(similarity, maximize=True)
    return SynergyMatch(index_a, index_b, similarity[index_a, index_b], similarity)


@dataclass(frozen=True)
class CrossFit:
    """EMG reconstructed from fixed weights: ``patterns`` (samples x rank, units of X; DataArray with X's
    sample dims if X is one), ``vaf`` and ``r2`` (unitless) and ``vaf_per_muscle`` (one per muscle)."""

    patterns: xr.DataArray | np.ndarray
    vaf: float
    r2: float
    vaf_per_muscle: np.ndarray


def cross_fit(weights, X) -> CrossFit:
    """Keep ``weights`` (muscles x rank, e.g. human synergies) fixed and fit non-negative activation
    coefficients to EMG ``X`` by NNLS; report how much of X they account for.

    A (channel, synergy) DataArray of weights picks and orders X's channels by name.
    """
    w, channels = _weights(weights)
    data = _samples(X, channels if isinstance(X, xr.DataArray) else None)
    if data.values.shape[1] != w.shape[0]:
        raise DataFormatError(f"X has {data.values.shape[1]} muscles; the weights have {w.shape[0]}")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise DataFormatError("synergy weights must be finite and non-negative")
    patterns = _nnls_patterns(w, data.values)
    reconstruction = patterns @ w.T
    return CrossFit(
        patterns=data.wrap(patterns, "patterns"),
        vaf=vaf_score(data.values, reconstruction),
        r2=r2_score(data.values, reconstruction),
        vaf_per_muscle=vaf_score(data.values, reconstruction, axis=0),
    )


def _along_phase(func, patterns, phase):
    """Apply ``func(values (phase x n), phase (%), bin widths (%)) -> (n,)`` along the phase axis.

    ``patterns``: array with phase on axis 0 (1-D or phase x synergy), or a DataArray with a ``phase``
    dim whose coordinate is used when ``phase`` is None.
    """
    if isinstance(patterns, xr.DataArray):
        if "phase" not in patterns.dims:
            raise DataFormatError(f"patterns need a 'phase' dimension; they have {patterns.dims}")
        if phase is None:
            phase = patterns.phase.values
        rest = [d for d in patterns.dims if d != "phase"]
        values = patterns.transpose("phase", *rest).values
    else:
        values = np.asarray(patterns, dtype=float)
        rest = None
    if phase is None:
        raise DataFormatError("give the phase (% of the gait cycle) of each sample")
    phase = np.asarray(phase, dtype=float)
    if phase.ndim != 1 or len(phase) != values.shape[0] or len(phase) < 2:
        raise DataFormatError(f"phase must be 1-D with one value per sample ({values.shape[0]}); got {phase.shape}")
    if np.any(np.diff(phase) <= 0) or phase[0] < 0 or phase[-1] > CYCLE:
        raise DataFormatError("phase must increase strictly within 0-100 % of the gait cycle")
    widths = np.diff(np.append(phase, phase[0] + CYCLE))  # each sample's share of the (circular) cycle
    flat = values.reshape(len(phase), -1).astype(float)
    result = func(flat, phase, widths).reshape(values.shape[1:])
    if rest is None:
        return result if result.ndim else float(result)
    kept = patterns.isel(phase=0, drop=True)
    return xr.DataArray(result, dims=rest, coords=kept.coords, attrs={"units": "%"})


def _circular_mean(values: np.ndarray, phase: np.ndarray, widths: np.ndarray) -> np.ndarray:
    angle = 2 * np.pi * phase / CYCLE
    mass = values * widths[:, None]
    direction = np.arctan2(mass.T @ np.sin(angle), mass.T @ np.cos(angle))
    return np.mod(direction, 2 * np.pi) * CYCLE / (2 * np.pi)


def _width_above_half(values: np.ndarray, phase: np.ndarray, widths: np.ndarray) -> np.ndarray:
    low, span = values.min(axis=0), np.ptp(values, axis=0)
    above = (values - low) > 0.5 * span
    return np.where(span > 0, widths @ above, np.nan)


def centre_of_activity(patterns, phase=None):
    """Centre of activity (%, 0-100): circular mean of the gait phase weighted by the activation.

    ``patterns``: phase on axis 0 (1-D or phase x synergy) or a DataArray with a ``phase`` dim;
    ``phase``: % of the gait cycle per sample (default: the DataArray's phase coordinate).
    """
    return _along_phase(_circular_mean, patterns, phase)


def fwhm(patterns, phase=None):
    """Full width at half maximum (% of the gait cycle): total phase where the activation, minus its
    minimum, exceeds half its range (several bursts add up, as in musclesyneRgies); NaN if flat."""
    return _along_phase(_width_above_half, patterns, phase)
