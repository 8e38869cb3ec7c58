"""Static optimisation: per-frame muscle activations that produce given leg joint torques.

MuJoCo's muscle force is affine in activation, ``force = gain * act + bias`` (N, negative when
pulling; ``gain`` and ``bias`` depend on length and velocity), and generalised actuator forces are
``qfrc_actuator = moment.T @ force``. Projected onto the 14 independent leg joints with the
coupling Jacobian ``G``, the leg torque (N m) is ``A @ act + b0``. Each frame minimises
``sum(act ** exponent)`` with ``0 <= act <= 1`` subject to ``A @ act = tau - b0``, optionally with
per-joint reserve torque generators that keep infeasible frames solvable.
"""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np
import xarray as xr
from scipy.optimize import lsq_linear, minimize, nnls
from tqdm.auto import tqdm

from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.model import LEG_JOINTS, Couplings, coupling_jacobian, muscle_names

TORQUE_WEIGHT = 1e4  # sqrt of the weight of the torque equations against the activation penalty (1/(N m))
BOUND_TOLERANCE = 1e-9  # activations above 1 + this send a frame to the bounded solver
VARIABLES = {  # name: (second dimension, units, description)
    "activation": ("muscle", "1", "muscle activation (MuJoCo act), in [0, 1]"),
    "force": ("muscle", "N", "muscle tension, positive when pulling (-actuator_force)"),
    "length": ("muscle", "m", "actuator (musculotendon) length"),
    "velocity": ("muscle", "m/s", "actuator lengthening velocity"),
    "residual": ("joint", "N m", "requested minus produced (muscles and reserves) leg joint torque"),
    "reserve": ("joint", "N m", "torque of the reserve actuators"),
}


class FrameSolution(NamedTuple):
    activation: np.ndarray  # (nu,), in [0, 1]
    residual: np.ndarray  # (14,) N m, requested minus produced (muscles + reserves) torque
    reserve: np.ndarray  # (14,) N m, torque of the reserve actuators (zeros without reserves)


def _check_muscles(model: mujoco.MjModel) -> None:
    muscle = (model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_MUSCLE)) & (
        model.actuator_biastype == int(mujoco.mjtBias.mjBIAS_MUSCLE)) & (
        model.actuator_dyntype == int(mujoco.mjtDyn.mjDYN_MUSCLE)) & ~model.actuator_actearly.astype(bool)
    if not muscle.all():
        raise ProcessingError("static optimisation needs muscle actuators only (muscle gain, bias and dynamics, "
                              "actearly off)")


def muscle_state(model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, np.ndarray]:
    """Muscle quantities at ``data.qpos``/``data.qvel`` (runs MuJoCo's position stages and actuation).

    Returns ``gain`` (N per unit activation), ``bias`` (N), with actuator force = gain * act + bias
    (N, negative when pulling), the dense ``moment`` (nu x nv, m or m/rad), ``length`` (m) and
    ``velocity`` (m/s). ``data.act`` is left as it was; gain and bias come from MuJoCo's own
    actuation at activation 0 and 1.
    """
    _check_muscles(model)
    for stage in (mujoco.mj_kinematics, mujoco.mj_comPos, mujoco.mj_tendon, mujoco.mj_transmission):
        stage(model, data)
    moment = np.zeros((model.nu, model.nv))
    mujoco.mju_sparse2dense(moment, data.actuator_moment, data.moment_rownnz, data.moment_rowadr,
                            data.moment_colind)
    data.actuator_velocity[:] = moment @ data.qvel  # as mj_fwdVelocity
    gain, bias = gain_and_bias(model, data)
    return dict(gain=gain, bias=bias, moment=moment, length=data.actuator_length.copy(),
                velocity=data.actuator_velocity.copy())


def gain_and_bias(model: mujoco.MjModel, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
    """``(gain, bias)`` (N) with muscle force = gain * act + bias at the current length and velocity
    (position and velocity stages already computed), from MuJoCo's own actuation at activation 0 and 1."""
    bias = _actuator_force(model, data, 0.0)
    return _actuator_force(model, data, 1.0) - bias, bias


def _actuator_force(model: mujoco.MjModel, data: mujoco.MjData, activation: float) -> np.ndarray:
    """MuJoCo's actuator force (N) with every activation set to ``activation``; ``data.act`` is restored."""
    act = data.act.copy()
    data.act[:] = activation
    mujoco.mj_fwdActuation(model, data)
    data.act[:] = act
    return data.actuator_force.copy()


def _leg_map(state: dict[str, np.ndarray], G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b0)`` from a muscle state and coupling Jacobian: leg torque = A @ act + b0 (N m)."""
    projection = G[:, 6:].T @ state["moment"].T
    return projection * state["gain"], projection @ state["bias"]


def torque_map(model: mujoco.MjModel, data: mujoco.MjData, qpos: np.ndarray,
               qvel: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(A (14 x nu), b0 (14,))``: torque on ``LEG_JOINTS`` (N m) = A @ act + b0 at ``qpos``.

    ``qvel`` (default: ``data.qvel``) sets the muscle velocities of the force-velocity curve.
    """
    data.qpos[:] = qpos
    if qvel is not None:
        data.qvel[:] = qvel
    return _leg_map(muscle_state(model, data), coupling_jacobian(model, data.qpos))


def _reserve_columns(reserves, n_joints: int) -> np.ndarray:
    """Reserve torque per unit control (N m), one positive and one negative column per joint."""
    if reserves is None:
        return np.zeros((n_joints, 0))
    limit = np.broadcast_to(np.asarray(reserves, dtype=float), (n_joints,))
    if np.any(limit <= 0):
        raise ProcessingError("reserve torques must be positive (N m)")
    return np.hstack([np.diag(limit), -np.diag(limit)])


def _least_squares(X: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Minimise ``|w (X x - tau)|^2 + |x|^2`` over ``0 <= x <= 1``: NNLS, bounded solver if needed."""
    M = np.vstack([TORQUE_WEIGHT * X, np.eye(X.shape[1])])
    rhs = np.concatenate([TORQUE_WEIGHT * tau, np.zeros(X.shape[1])])
    x = nnls(M, rhs, maxiter=50 * X.shape[1])[0]
    if x.max(initial=0.0) > 1 + BOUND_TOLERANCE:
        x = lsq_linear(M, rhs, bounds=(0.0, 1.0), method="bvls").x
    return np.clip(x, 0.0, 1.0)  # bvls may step 1e-16 outside


def _min_power(X: np.ndarray, target: np.ndarray, x0: np.ndarray, exponent: float) -> np.ndarray:
    """Minimise ``sum(x ** exponent)`` over ``0 <= x <= 1`` with ``X x = target`` (SLSQP from ``x0``)."""
    scale = 1.0 / np.maximum(np.linalg.norm(X, axis=1), 1e-12)  # rows of unit norm
    Xs, ts = X * scale[:, None], target * scale
    result = minimize(lambda x: np.sum(x ** exponent), x0, jac=lambda x: exponent * x ** (exponent - 1),
                      method="SLSQP", bounds=[(0.0, 1.0)] * len(x0),
                      constraints=[dict(type="eq", fun=lambda x: Xs @ x - ts, jac=lambda x: Xs)],
                      options=dict(ftol=1e-10, maxiter=500))
    return np.clip(result.x, 0.0, 1.0)


def solve_frame(A: np.ndarray, tau: np.ndarray, exponent: float = 2, reserves=None) -> FrameSolution:
    """Activations minimising ``sum(a ** exponent)`` with ``0 <= a <= 1`` and ``A @ a = tau`` (N m).

    ``reserves``: maximum torque (N m, scalar or per joint) of ideal reserve actuators whose
    control (in [-1, 1]) is penalised like an activation. Infeasible torques give the least-squares
    compromise and a non-zero ``residual``; nothing is raised.
    """
    if exponent < 1:
        raise ProcessingError(f"exponent must be >= 1, got {exponent}")
    A, tau = np.asarray(A, dtype=float), np.asarray(tau, dtype=float)
    R = _reserve_columns(reserves, A.shape[0])
    X = np.hstack([A, R])
    x = _least_squares(X, tau)
    if exponent != 2:
        x = _min_power(X, X @ x, x, exponent)
    reserve = R @ x[A.shape[1]:]
    return FrameSolution(x[:A.shape[1]], tau - X @ x, reserve)


def _check_inputs(model, qpos, qvel, torques, time):
    arrays = [np.asarray(v, dtype=float) for v in (qpos, qvel, torques, time)]
    T = arrays[3].size
    expected = [(T, model.nq), (T, model.nv), (T, len(LEG_JOINTS)), (T,)]
    for name, array, shape in zip(("qpos", "qvel", "torques", "time"), arrays, expected):
        if array.shape != shape:
            raise ProcessingError(f"{name} must have shape {shape}, got {array.shape}")
    return arrays


def _dataset(model, time, out, exponent, reserves) -> xr.Dataset:
    data_vars = {name: (("time", dim), out[name], dict(units=units, description=description))
                 for name, (dim, units, description) in VARIABLES.items()}
    coords = dict(time=("time", time, dict(units="s")), muscle=muscle_names(model), joint=list(LEG_JOINTS))
    method = "nnls, scipy lsq_linear (bvls) when bounds bind" + ("" if exponent == 2 else ", then SLSQP")
    limits = np.zeros(len(LEG_JOINTS)) if reserves is None else np.broadcast_to(reserves, (len(LEG_JOINTS),))
    return xr.Dataset(data_vars, coords=coords, attrs=dict(
        method=f"static optimisation: {method}", exponent=float(exponent),
        reserves=np.asarray(limits, dtype=float), reserves_units="N m (0: no reserve)"))


def static_optimisation(model: mujoco.MjModel, qpos, qvel, torques, time, *, exponent: float = 2,
                        reserves=None, progress: bool = True) -> xr.Dataset:
    """Per-frame static optimisation of the muscle activations producing leg joint ``torques``.

    ``qpos`` (T x nq; couplings are re-applied), ``qvel`` (T x nv), ``torques`` (T x 14, N m, the
    moments the muscles must produce about ``LEG_JOINTS``), ``time`` (T,) s. Returns a Dataset with
    ``activation``, ``force`` (N, tension), ``length`` (m), ``velocity`` (m/s) over time x muscle
    and ``residual``, ``reserve`` (N m) over time x joint.
    """
    qpos, qvel, torques, time = _check_inputs(model, qpos, qvel, torques, time)
    couplings = Couplings(model)
    qpos = couplings.apply(qpos)
    data = mujoco.MjData(model)
    size = dict(muscle=model.nu, joint=len(LEG_JOINTS))
    out = {name: np.empty((len(time), size[dim])) for name, (dim, _, _) in VARIABLES.items()}
    for t in tqdm(range(len(time)), desc="static optimisation", unit="frame", disable=not progress):
        data.qpos[:], data.qvel[:] = qpos[t], qvel[t]
        state = muscle_state(model, data)
        A, b0 = _leg_map(state, couplings.jacobian(qpos[t]))
        solution = solve_frame(A, torques[t] - b0, exponent, reserves)
        out["activation"][t], out["residual"][t], out["reserve"][t] = solution
        out["force"][t] = 0.0 - (state["gain"] * solution.activation + state["bias"])  # no -0.0
        out["length"][t], out["velocity"][t] = state["length"], state["velocity"]
    return _dataset(model, time, out, exponent, reserves)
