"""MuJoCo's muscle activation dynamics: excitation (ctrl) to activation (act) and back.

The rate is MuJoCo's ``mju_muscleDynamics`` (Millard et al. 2013): with excitation ``u`` and
activation ``a`` (both clamped to [0, 1] inside the time constants), ``da/dt = (u - a) / tau`` where
``tau = tau_act * (0.5 + 1.5 a)`` when activating and ``tau_deact / (0.5 + 1.5 a)`` when
deactivating, or a smooth blend of the two over an excitation-difference ``smoothing`` width
(``actuator_dynprm[2]``). Activation is advanced with explicit Euler steps, ``a[k+1] = a[k] +
(t[k+1] - t[k]) * da/dt(u[k], a[k])``, as MuJoCo's Euler and implicit(fast) integrators do.
Time constants are in s (MuJoCo's ``actuator_dynprm[:, 0]`` and ``[:, 1]``).
"""

from __future__ import annotations

import numpy as np

from kinesis_neuro.errors import ProcessingError

MJ_MINVAL = 1e-15  # MuJoCo's mjMINVAL
BISECTION_STEPS = 64


def _sigmoid(x):
    """MuJoCo's quintic ``mju_sigmoid`` (0 below 0, 1 above 1)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (3 * x * (2 * x - 5) + 10)


def _timescale(dctrl, tau_act, tau_deact, smoothing):
    """``mju_muscleDynamicsTimescale``: hard switch on the sign of ``dctrl`` or smooth blend (s)."""
    hard = np.where(dctrl > 0, tau_act, tau_deact)
    smooth = tau_deact + (tau_act - tau_deact) * _sigmoid(dctrl / np.maximum(smoothing, MJ_MINVAL) + 0.5)
    return np.where(smoothing < MJ_MINVAL, hard, smooth)


def activation_rate(excitation, activation, tau_act, tau_deact, smoothing=0.0):
    """``da/dt`` (1/s) exactly as MuJoCo's ``mju_muscleDynamics``; arguments broadcast."""
    activation = np.asarray(activation, dtype=float)
    act = np.clip(activation, 0.0, 1.0)
    dctrl = np.clip(excitation, 0.0, 1.0) - activation
    tau = _timescale(dctrl, tau_act * (0.5 + 1.5 * act), tau_deact / (0.5 + 1.5 * act), smoothing)
    return dctrl / np.maximum(MJ_MINVAL, tau)


def _check(values, time, name):
    values, time = np.asarray(values, dtype=float), np.asarray(time, dtype=float)
    if values.ndim != 2 or time.shape != (values.shape[0],):
        raise ProcessingError(f"{name} must be (T, n) with time (T,); got {values.shape} and {time.shape}")
    if np.any(np.diff(time) <= 0):
        raise ProcessingError("time must be strictly increasing")
    return values, time


def activation_from_excitation(excitation, time, tau_act, tau_deact, a0=None, *, smoothing=0.0) -> np.ndarray:
    """Activation ``(T, n)`` produced by MuJoCo from excitation (ctrl) ``(T, n)`` held over each step.

    ``time`` (s, ``(T,)``) gives the step lengths; ``a0`` is the activation at ``time[0]`` (zeros,
    MuJoCo's reset state, when omitted). The last excitation sample is not used.
    """
    excitation, time = _check(excitation, time, "excitation")
    act = np.empty_like(excitation)
    act[0] = 0.0 if a0 is None else a0
    for k, dt in enumerate(np.diff(time)):
        act[k + 1] = act[k] + activation_rate(excitation[k], act[k], tau_act, tau_deact, smoothing) * dt
    return act


def _excitation_hard(act, rate, tau_act, tau_deact):
    """Excitation giving ``rate`` (1/s) under hard switching: ``u = a + rate * tau``."""
    a = np.clip(act, 0.0, 1.0)
    tau = np.where(rate > 0, tau_act * (0.5 + 1.5 * a), tau_deact / (0.5 + 1.5 * a))
    return act + rate * tau


def _excitation_bisection(act, rate, tau_act, tau_deact, smoothing):
    """Excitation in [0, 1] giving ``rate`` (1/s) under smooth switching (rate increases with excitation)."""
    lo, hi = np.zeros_like(act), np.ones_like(act)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        low = activation_rate(mid, act, tau_act, tau_deact, smoothing) < rate
        lo, hi = np.where(low, mid, lo), np.where(low, hi, mid)
    return 0.5 * (lo + hi)


def excitation_from_activation(activation, time, tau_act, tau_deact, *, smoothing=0.0) -> np.ndarray:
    """Excitation ``(T, n)`` in [0, 1] that makes MuJoCo produce ``activation`` ``(T, n)`` at ``time`` (s).

    Inverse of :func:`activation_from_excitation`; activation changes faster than the dynamics allow
    give a clipped excitation. The last sample repeats the one before it (a single sample: ``u = a``).
    """
    activation, time = _check(activation, time, "activation")
    act, rate = activation[:-1], np.diff(activation, axis=0) / np.diff(time)[:, None]
    if np.all(np.asarray(smoothing) < MJ_MINVAL):
        excitation = _excitation_hard(act, rate, tau_act, tau_deact)
    else:
        excitation = _excitation_bisection(act, rate, tau_act, tau_deact, smoothing)
    last = excitation[-1:] if len(excitation) else activation[-1:]
    return np.clip(np.concatenate([excitation, last]), 0.0, 1.0)
