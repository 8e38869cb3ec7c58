"""Hard-negative mining over the clips of a motion library (KINESIS, Simos et al. 2025).

KINESIS evaluates its policy on every clip, keeps the clips it fails (an episode that terminates early,
i.e. the tracking error exceeded the termination distance) and trains the next expert on those alone.
:class:`ClipSampler` keeps that choice (:meth:`ClipSampler.failed_clips`) and softens it for sampling during
training: every clip keeps an exponential moving average of its episodes' failures, and clips are drawn
with probability ``p_c ∝ floor + rate_c ** power``, so clips the policy fails come up more often while
mastered clips keep a floor. Nothing here draws random numbers on its own: :meth:`ClipSampler.sample`
takes the caller's generator, so a run repeats exactly.
"""

from __future__ import annotations

import math

import numpy as np

from kinesis_neuro.errors import DataFormatError, KinesisNeuroError


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


class ClipSampler:
    """Per-clip failure rates of ``n_clips`` clips and the sampling probabilities they give.

    Failure rate of clip ``c``: an exponential moving average of its episodes' outcomes (1 failed, 0 not),
    ``rate <- decay * rate + (1 - decay) * failed`` at each episode on that clip after its first (which sets
    the rate), so it weighs an episode ``k`` episodes ago by ``decay ** k`` (``decay`` 0.8: about the last 5
    episodes count). A clip never tried has rate 1: it counts as failed (not mastered). Tracking errors (m),
    when given, are averaged the same way (NaN until the first).

    Probabilities ``p_c = (floor + rate_c ** power) / sum``: every clip keeps at least
    ``floor / (n_clips * (floor + 1))``; ``power`` > 1 concentrates sampling on the hardest clips.
    """

    def __init__(self, n_clips: int, *, decay: float = 0.8, floor: float = 0.1, power: float = 1.0):
        if not _is_int(n_clips) or n_clips < 1:
            raise KinesisNeuroError(f"n_clips must be an integer >= 1, got {n_clips!r}")
        self._settings(decay, floor, power)
        self.rates = np.ones(n_clips)
        self.errors = np.full(n_clips, np.nan)
        self.episodes = np.zeros(n_clips, dtype=np.int64)

    def _settings(self, decay, floor, power) -> None:
        for name, value, ok, expected in (("decay", decay, _is_number(decay) and 0 <= decay < 1, "in [0, 1)"),
                                          ("floor", floor, _is_number(floor) and floor > 0, "> 0"),
                                          ("power", power, _is_number(power) and power > 0, "> 0")):
            if not ok:
                raise KinesisNeuroError(f"clip sampler setting {name} must be a number {expected}, got {value!r}")
        self.decay, self.floor, self.power = float(decay), float(floor), float(power)

    @property
    def n_clips(self) -> int:
        return len(self.rates)

    def update(self, clips, failed, tracking_error=None) -> None:
        """Record finished episodes: ``clips[i]`` (clip index) ended failed (``failed[i]``, bool) with mean
        tracking error ``tracking_error[i]`` (m; optional). Episodes count in the order given."""
        clips, failed = np.atleast_1d(np.asarray(clips)), np.atleast_1d(np.asarray(failed))
        if clips.ndim != 1 or not (np.issubdtype(clips.dtype, np.integer) or clips.size == 0):
            raise KinesisNeuroError(f"clips must be clip indices (integers), got {clips.dtype} of shape {clips.shape}")
        if clips.size and (clips.min() < 0 or clips.max() >= self.n_clips):
            bad = clips[(clips < 0) | (clips >= self.n_clips)][0]
            raise KinesisNeuroError(f"clip index {bad} out of range: the library has {self.n_clips} clips")
        if failed.shape != clips.shape or failed.dtype != np.bool_ and failed.size:
            raise KinesisNeuroError(f"failed must be one bool per episode ({clips.size}), got {failed.dtype} "
                                    f"of shape {failed.shape}")
        if tracking_error is not None:
            tracking_error = np.atleast_1d(np.asarray(tracking_error, dtype=float))
            if tracking_error.shape != clips.shape or not np.all(np.isfinite(tracking_error) & (tracking_error >= 0)):
                raise KinesisNeuroError(f"tracking_error must be one finite number >= 0 (m) per episode "
                                        f"({clips.size}), got shape {tracking_error.shape}")
        a = self.decay
        for i, (c, f) in enumerate(zip(clips, failed)):
            self.rates[c] = a * self.rates[c] + (1 - a) * float(f) if self.episodes[c] else float(f)
            if tracking_error is not None:
                e = tracking_error[i]
                self.errors[c] = e if np.isnan(self.errors[c]) else a * self.errors[c] + (1 - a) * e
            self.episodes[c] += 1

    def probabilities(self) -> np.ndarray:
        """Sampling probability of every clip (sums to 1)."""
        weights = self.floor + self.rates ** self.power
        return weights / weights.sum()

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` clip indices drawn with :meth:`probabilities` from the caller's generator ``rng``."""
        return rng.choice(self.n_clips, size=size, p=self.probabilities())

    def failed_clips(self, threshold: float = 0.5, max_error: float | None = None) -> np.ndarray:
        """Indices of the clips a new expert should train on (KINESIS' negative mining): failure rate at or
        above ``threshold``, or (with ``max_error``, m) mean tracking error above ``max_error``."""
        if not (_is_number(threshold) and 0 <= threshold <= 1):
            raise KinesisNeuroError(f"threshold must be a failure rate in [0, 1], got {threshold!r}")
        if max_error is not None and not (_is_number(max_error) and max_error >= 0):
            raise KinesisNeuroError(f"max_error must be None or a number >= 0 (m), got {max_error!r}")
        hard = self.rates >= threshold
        if max_error is not None:
            hard |= self.errors > max_error  # NaN (no error recorded) compares False
        return np.flatnonzero(hard)

    def state_dict(self) -> dict:
        """Settings and per-clip state as plain data (lists and numbers; NaN errors as None), for checkpoints."""
        return {"decay": self.decay, "floor": self.floor, "power": self.power, "rates": self.rates.tolist(),
                "errors": [None if np.isnan(e) else float(e) for e in self.errors],
                "episodes": self.episodes.tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (for the same number of clips); a ``DataFormatError`` names what does not fit."""
        if not isinstance(state, dict):
            raise DataFormatError(f"clip sampler state must be a dict, got {type(state).__name__}")
        missing = [k for k in ("decay", "floor", "power", "rates", "errors", "episodes") if k not in state]
        if missing:
            raise DataFormatError(f"clip sampler state lacks {', '.join(missing)}")
        arrays = {}
        for key in ("rates", "errors", "episodes"):
            value = state[key]
            if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != self.n_clips:
                raise DataFormatError(f"clip sampler state: {key} must hold one value per clip ({self.n_clips})")
            try:
                arrays[key] = np.array([np.nan if v is None else v for v in value], dtype=float)
            except (TypeError, ValueError) as err:
                raise DataFormatError(f"clip sampler state: {key} must hold numbers ({err})") from err
        rates, errors, episodes = arrays["rates"], arrays["errors"], arrays["episodes"]
        if not np.all((rates >= 0) & (rates <= 1)):
            raise DataFormatError("clip sampler state: rates must lie in [0, 1]")
        if not np.all(np.isnan(errors) | (errors >= 0)) or np.isinf(errors).any():
            raise DataFormatError("clip sampler state: errors must be finite numbers >= 0 or None")
        if not np.all((episodes >= 0) & (episodes == np.round(episodes))):
            raise DataFormatError("clip sampler state: episodes must be counts (integers >= 0)")
        try:
            self._settings(state["decay"], state["floor"], state["power"])
        except KinesisNeuroError as err:
            raise DataFormatError(f"clip sampler state: {err}") from err
        self.rates, self.errors, self.episodes = rates, errors, episodes.astype(np.int64)
