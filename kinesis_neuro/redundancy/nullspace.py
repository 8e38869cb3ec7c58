"""Null space of the activation-to-torque map and what it says about muscle redundancy.

At a state (``qpos``, ``qvel``) the torque about the independent joints is affine in the muscle
activations, ``tau = A @ a + b0`` (N m; ``A = G^T R^T diag(gain)`` with the coupling Jacobian ``G``,
moment arms ``R`` and the muscle gains of :func:`kinesis_neuro.static_optimisation.muscle_state`).
Activation changes inside the null space of ``A`` leave the torques unchanged: they are the
redundant, "self-motion" directions. This module gives the maps and their null spaces, the
uncontrolled-manifold (UCM) split of cycle-to-cycle variability, an open-loop null-space
perturbation check, the excess effort of an activation pattern over the minimum-sum-a^2 one and the
feasible activation range of every muscle (linear programs).

The independent joints are ``LEG_JOINTS`` for MyoLegs (knee/patella couplings applied); for any
other model they are all its hinge and slide joints, uncoupled.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np
import xarray as xr
from scipy.optimize import linprog

from kinesis_neuro.errors import DataFormatError, KinesisNeuroError, ProcessingError, require_positive
from kinesis_neuro.model import LEG_JOINTS, Couplings, muscle_names
from kinesis_neuro.record import Recording
from kinesis_neuro.static_optimisation import _leg_map, muscle_state, solve_frame

ZERO_VARIANCE = 1e-16  # per-dimension activation variance (1) below which a phase counts as invariant
BOX_TOLERANCE = 1e-12  # allowed excursion (1) of a null-space perturbation outside [0, 1]
OBLIGATORY_LEVEL = 1e-6  # lowest feasible activation (1) above which a muscle is obligatory


class _JointMap:
    """Independent joints of a model: names, coupling of ``qpos`` and the Jacobian ``G`` (nv x (6 + n)).

    ``_leg_map`` uses the columns after the first six (MyoLegs' root); other models get six zero
    columns there and one identity column per hinge/slide joint.
    """

    def __init__(self, model: mujoco.MjModel):
        names = [model.joint(j).name for j in range(model.njnt)]
        if set(LEG_JOINTS) <= set(names):
            couplings = Couplings(model)
            self.names = list(LEG_JOINTS)
            self.qpos_index = np.array([model.joint(n).qposadr[0] for n in LEG_JOINTS])
            self.apply: Callable[[np.ndarray], np.ndarray] = couplings.apply
            self.jacobian: Callable[[np.ndarray], np.ndarray] = couplings.jacobian
            return
        slide_hinge = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        joints = [j for j in range(model.njnt) if model.jnt_type[j] in slide_hinge]
        if not joints:
            raise ProcessingError("the model has neither the MyoLegs leg joints nor any hinge or slide joint")
        self.names = [names[j] for j in joints]
        self.qpos_index = model.jnt_qposadr[joints]
        G = np.zeros((model.nv, 6 + len(joints)))
        G[model.jnt_dofadr[joints], 6 + np.arange(len(joints))] = 1.0
        self.apply = lambda qpos: np.array(qpos, dtype=float, copy=True)
        self.jacobian = lambda qpos: G


def _maps(model: mujoco.MjModel, qpos, qvel) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Joint names, ``A`` (T x n x nu, N m per unit activation) and ``b0`` (T x n, N m) per frame."""
    qpos, qvel = np.atleast_2d(np.asarray(qpos, dtype=float)), np.atleast_2d(np.asarray(qvel, dtype=float))
    if qpos.shape[1] != model.nq or qvel.shape != (len(qpos), model.nv):
        raise ProcessingError(f"qpos must be T x {model.nq} and qvel T x {model.nv}, got {qpos.shape} and "
                              f"{qvel.shape}")
    joints = _JointMap(model)
    qpos = joints.apply(qpos)
    data = mujoco.MjData(model)
    A = np.empty((len(qpos), len(joints.names), model.nu))
    b0 = np.empty((len(qpos), len(joints.names)))
    for t in range(len(qpos)):
        data.qpos[:], data.qvel[:] = qpos[t], qvel[t]
        A[t], b0[t] = _leg_map(muscle_state(model, data), joints.jacobian(qpos[t]))
    return joints.names, A, b0


def subspaces(A: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(rank, row basis (nu x rank), null basis (nu x (nu - rank)))`` of one map ``A`` by SVD.

    Both bases are orthonormal; the rank counts singular values above ``max(s) * max(A.shape) * eps``.
    """
    _, s, vt = np.linalg.svd(np.asarray(A, dtype=float), full_matrices=True)
    rank = int(np.sum(s > s.max(initial=0.0) * max(A.shape) * np.finfo(float).eps)) if s.size else 0
    return rank, vt[:rank].T, vt[rank:].T


def activation_torque_map(model: mujoco.MjModel, qpos, qvel, time=None) -> xr.Dataset:
    """Per-frame activation-to-torque map and its null space.

    ``qpos`` (T x nq, rad/m), ``qvel`` (T x nv, rad/s, m/s), ``time`` (T,) s (default: frame index).
    Returns ``A`` (time, joint, muscle; N m per unit activation), ``b0`` (time, joint; N m, torque at
    zero activation), ``rank``, ``null_dim`` (= nu - rank) and ``null_basis`` (time, muscle,
    null_dim; orthonormal columns, NaN-padded where a frame's null space is smaller). Read the rank
    as ``maps["rank"]``: ``maps.rank`` is xarray's ``Dataset.rank`` method.
    """
    names, A, b0 = _maps(model, qpos, qvel)
    ranks, bases = zip(*[(r, n) for r, _, n in map(subspaces, A)])
    width = max(b.shape[1] for b in bases)
    null_basis = np.full((len(A), model.nu, width), np.nan)
    for t, basis in enumerate(bases):
        null_basis[t, :, :basis.shape[1]] = basis
    time = np.arange(len(A), dtype=float) if time is None else np.asarray(time, dtype=float)
    return xr.Dataset(
        dict(A=(("time", "joint", "muscle"), A, dict(units="N m", description="torque per unit activation")),
             b0=(("time", "joint"), b0, dict(units="N m", description="torque at zero activation (passive)")),
             rank=("time", np.array(ranks), dict(units="1", description="numerical rank of A")),
             null_dim=("time", model.nu - np.array(ranks), dict(units="1", description="nu - rank")),
             null_basis=(("time", "muscle", "null_dim"), null_basis,
                         dict(units="1", description="orthonormal null-space basis of A (NaN padding)"))),
        coords=dict(time=("time", time, dict(units="s")), joint=names, muscle=muscle_names(model)))


def recording_states(model: mujoco.MjModel, recording: Recording | xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(qpos (T x nq), qvel (T x nv))`` rebuilt from a recording's independent joint angles and velocities.

    Other coordinates (root) stay at ``model.qpos0`` and rest; coupled ones follow the couplings.
    """
    ds = recording.data if isinstance(recording, Recording) else recording
    joints = _JointMap(model)
    missing = [v for v in ("angle", "angular_velocity") if v not in ds]
    missing += [j for j in joints.names if j not in ds["joint"].values]
    if missing:
        raise DataFormatError(f"the recording lacks {missing}, needed to rebuild the model state")
    angle = ds["angle"].sel(joint=joints.names).transpose("time", "joint").values
    velocity = ds["angular_velocity"].sel(joint=joints.names).transpose("time", "joint").values
    qpos = np.tile(model.qpos0, (len(angle), 1))
    qpos[:, joints.qpos_index] = angle
    qpos = joints.apply(qpos)
    qvel = np.stack([joints.jacobian(q)[:, 6:] @ v for q, v in zip(qpos, velocity)])
    return qpos, qvel


def _model_activation(model: mujoco.MjModel, ds: xr.Dataset) -> np.ndarray:
    names = muscle_names(model)
    missing = [m for m in names if m not in ds["muscle"].values]
    if missing:
        raise DataFormatError(f"the recording lacks the activation of muscles {missing}")
    return ds["activation"].sel(muscle=names).transpose("time", "muscle").values


def _cube(x, dims: tuple[str, str, str], name: str) -> tuple[np.ndarray, xr.DataArray | None]:
    """A 3-D array in ``dims`` order (a DataArray's ``channel`` dimension read as ``muscle``)."""
    if isinstance(x, xr.DataArray):
        if "channel" in x.dims and "muscle" not in x.dims:
            x = x.rename(channel="muscle")
        if set(x.dims) != set(dims):
            raise ProcessingError(f"{name} must have dims {dims}, got {x.dims}")
        x = x.transpose(*dims)
        return x.values.astype(float), x
    values = np.asarray(x, dtype=float)
    if values.ndim != 3:
        raise ProcessingError(f"{name} must be 3-D {dims}, got shape {values.shape}")
    return values, None


def variability_decomposition(activation_cycles, A_cycles) -> xr.Dataset:
    """UCM split of cycle-to-cycle activation variability into task (row space) and null space of ``A``.

    ``activation_cycles`` (cycle, phase, muscle; units 1, e.g. from ``gait.segment_cycles``) and
    ``A_cycles`` (phase, joint, muscle; N m, the map at the mean state of each phase). At each phase
    the deviations from the across-cycle mean are projected on orthonormal bases of the row space
    (``n_task`` = rank) and null space (``n_null`` = nu - rank); variances (sum of squared
    projections / (cycles - 1)) per dimension are ``v_task``, ``v_null`` and ``v_total`` (units 1,
    activation squared), and ``delta_v = (v_null - v_task) / v_total`` (> 0: variability mostly leaves
    the torques alone). ``delta_v`` is NaN where one subspace is empty.
    """
    X, xa = _cube(activation_cycles, ("cycle", "phase", "muscle"), "activation_cycles")
    A, aa = _cube(A_cycles, ("phase", "joint", "muscle"), "A_cycles")
    if X.shape[1:] != (A.shape[0], A.shape[2]):
        raise ProcessingError(f"activation_cycles {X.shape} (cycle, phase, muscle) and A_cycles {A.shape} (phase, "
                              "joint, muscle) disagree in phases or muscles")
    if xa is not None and aa is not None and "muscle" in xa.coords and "muscle" in aa.coords \
            and list(xa.muscle.values) != list(aa.muscle.values):
        raise ProcessingError("activation_cycles and A_cycles list different muscles (or orders)")
    n_cycles, n_phase, nu = X.shape
    if n_cycles < 2:
        raise ProcessingError(f"variability needs at least 2 cycles, got {n_cycles}")
    deviation = X - X.mean(axis=0)
    n_task = np.empty(n_phase, int)
    total_var, task_var, null_var = np.empty(n_phase), np.empty(n_phase), np.empty(n_phase)
    for p in range(n_phase):
        n_task[p], row, null = subspaces(A[p])
        task_var[p] = np.sum((deviation[:, p] @ row) ** 2) / (n_cycles - 1)
        null_var[p] = np.sum((deviation[:, p] @ null) ** 2) / (n_cycles - 1)
        total_var[p] = np.sum(deviation[:, p] ** 2) / (n_cycles - 1)
    v_total = total_var / nu
    if np.any(v_total <= ZERO_VARIANCE):
        raise ProcessingError(f"activations do not vary across cycles at {int(np.sum(v_total <= ZERO_VARIANCE))} "
                              f"of {n_phase} phases (variance per dimension <= {ZERO_VARIANCE:g}): no UCM split")
    n_null = nu - n_task
    with np.errstate(invalid="ignore", divide="ignore"):
        v_task = np.where(n_task > 0, task_var / n_task, np.nan)
        v_null = np.where(n_null > 0, null_var / n_null, np.nan)
    phase = xa.phase.values if xa is not None and "phase" in xa.coords else np.arange(n_phase)
    per_dim = dict(units="1", description="activation variance per dimension")
    return xr.Dataset(
        dict(v_task=("phase", v_task, per_dim), v_null=("phase", v_null, per_dim), v_total=("phase", v_total, per_dim),
             n_task=("phase", n_task, dict(units="1", description="rank of A")),
             n_null=("phase", n_null, dict(units="1", description="null-space dimension")),
             delta_v=("phase", (v_null - v_task) / v_total,
                      dict(units="1", description="UCM synergy index (v_null - v_task) / v_total"))),
        coords=dict(phase=phase), attrs=dict(cycles=n_cycles))


def _null_perturbation(N: np.ndarray, a: np.ndarray, norm: float, rng, max_iterations: int):
    """A null-space step of norm ``norm`` kept inside the box by alternating projections."""
    if N.shape[1] == 0:
        return np.zeros_like(a), True, 0
    d = N @ (N.T @ rng.standard_normal(len(a)))
    d *= norm / np.linalg.norm(d)
    for iteration in range(max_iterations + 1):
        box = np.clip(a + d, 0.0, 1.0) - a
        if np.abs(box - d).max() <= BOX_TOLERANCE:
            return d, True, iteration
        d = N @ (N.T @ box)
    return d, False, max_iterations


def _random_perturbation(a: np.ndarray, size: float, rng) -> np.ndarray:
    """Random magnitudes of norm ``size``, each sign flipped where ``a + r`` would leave [0, 1]."""
    r = rng.standard_normal(len(a))
    r *= size / np.linalg.norm(r)
    return np.where((a + r < 0) | (a + r > 1), -r, r)


def perturbation_test(maps: xr.Dataset, activation, *, norm: float = 0.05, seed: int = 0,
                      max_iterations: int = 10000) -> xr.Dataset:
    """Open-loop check that null-space activation changes leave the torques alone, frame by frame.

    ``maps`` from :func:`activation_torque_map`; ``activation`` (time x muscle, in [0, 1]) the
    recorded activations at its frames. Null-space step: a random direction projected on the null
    basis ``N`` and scaled to ``norm`` (Euclidean, units 1), then alternately clipped so that
    ``a + d`` lies in [0, 1] and re-projected (``d <- N N^T d``) until it leaves the box by at most
    ``BOX_TOLERANCE`` (alternating projections between the null space and the box, which meet at
    ``d = 0``; ``converged`` is False where ``max_iterations`` rounds did not suffice). The last
    operation is a projection, so ``A @ d`` is zero to round-off; clipping may leave its norm
    (``null_norm``) below ``norm``. Random step: random magnitudes of the same norm,
    signs random except where they would leave [0, 1] (flipped, which keeps ``a + d`` inside as
    ``norm <= 0.5``). Returns the torque changes ``|A d|`` (N m) of both, their norms and a
    ``converged`` flag per frame.
    """
    if not 0 < norm <= 0.5:
        raise ProcessingError(f"norm must lie in (0, 0.5], got {norm}")
    act = activation.transpose("time", "muscle").values if isinstance(activation, xr.DataArray) \
        else np.asarray(activation, dtype=float)
    A = maps["A"].values
    if act.shape != (A.shape[0], A.shape[2]):
        raise ProcessingError(f"activation must be time x muscle {(A.shape[0], A.shape[2])}, got {act.shape}")
    rng = np.random.default_rng(seed)
    out = {k: np.empty(len(A)) for k in ("null_torque_change", "random_torque_change", "null_norm")}
    converged, iterations = np.empty(len(A), bool), np.empty(len(A), int)
    for t, (At, a) in enumerate(zip(A, act)):
        N = maps["null_basis"].values[t, :, :int(maps["null_dim"].values[t])]
        d, converged[t], iterations[t] = _null_perturbation(N, a, norm, rng, max_iterations)
        size = np.linalg.norm(d)
        r = _random_perturbation(a, size, rng)
        out["null_torque_change"][t], out["random_torque_change"][t] = np.linalg.norm(At @ d), np.linalg.norm(At @ r)
        out["null_norm"][t] = size
    torque = dict(units="N m", description="Euclidean norm of the joint torque change")
    return xr.Dataset(
        dict(null_torque_change=("time", out["null_torque_change"], torque),
             random_torque_change=("time", out["random_torque_change"], torque),
             null_norm=("time", out["null_norm"], dict(units="1", description="norm of both perturbations")),
             converged=("time", converged, dict(description="null step inside [0, 1] to BOX_TOLERANCE")),
             iterations=("time", iterations, dict(units="1", description="clip/project rounds"))),
        coords=dict(time=maps["time"]), attrs=dict(requested_norm=norm, seed=seed))


def effort_optimality(model: mujoco.MjModel, recording: Recording | xr.Dataset, A=None) -> xr.Dataset:
    """Recorded activations vs the minimum-sum-a^2 ones producing the same joint torques, per frame.

    The torques ``A @ a_recorded`` at the recorded states are re-solved by
    :func:`~kinesis_neuro.static_optimisation.solve_frame`. Returns ``distance`` (Euclidean, units
    1), ``excess_effort`` (sum a^2 recorded - optimal, units 1; >= 0 up to solver tolerance),
    ``effort_recorded``, ``effort_optimal``, ``residual`` (N m, torque the optimum misses) and
    ``optimal_activation`` (time, muscle). ``A`` (time x joint x muscle): the maps at the recording's
    frames when already computed (e.g. ``activation_torque_map(...)["A"].values``).
    """
    ds = recording.data if isinstance(recording, Recording) else recording
    act = _model_activation(model, ds)
    if A is None:
        A = _maps(model, *recording_states(model, ds))[1]
    optimal, residual = np.empty_like(act), np.empty(len(act))
    for t in range(len(act)):
        solution = solve_frame(A[t], A[t] @ act[t])
        optimal[t], residual[t] = solution.activation, np.linalg.norm(solution.residual)
    effort, best = np.sum(act ** 2, axis=1), np.sum(optimal ** 2, axis=1)
    one = dict(units="1")
    return xr.Dataset(
        dict(distance=("time", np.linalg.norm(act - optimal, axis=1), one | dict(description="|a_rec - a_opt|")),
             excess_effort=("time", effort - best, one | dict(description="sum a_rec^2 - sum a_opt^2")),
             effort_recorded=("time", effort, one), effort_optimal=("time", best, one),
             residual=("time", residual, dict(units="N m", description="torque missed by the optimum")),
             optimal_activation=(("time", "muscle"), optimal, one)),
        coords=dict(time=ds["time"].values, muscle=muscle_names(model)))


def feasible_ranges(A, tau, muscles) -> xr.Dataset:
    """Lowest and highest activation of each muscle compatible with ``A @ a = tau``, ``0 <= a <= 1``.

    ``A`` (frame, joint, muscle; N m per unit activation; a DataArray's first dimension, e.g. time or
    phase, names the frames), ``tau`` (frame, joint; N m, the torque the activations must produce,
    i.e. minus ``b0``), ``muscles`` the names. Two linear programs (HiGHS; equations scaled to unit
    row norm) per frame and muscle; frames where a program has no solution get NaN and ``feasible``
    False. ``obligatory`` marks muscles whose lowest
    feasible activation exceeds ``OBLIGATORY_LEVEL``.
    """
    dim = A.dims[0] if isinstance(A, xr.DataArray) else "frame"
    coord = A[dim].values if isinstance(A, xr.DataArray) and dim in A.coords else None
    if isinstance(A, xr.DataArray):
        A = A.transpose(dim, "joint", "muscle")
    A, tau, muscles = np.asarray(A, dtype=float), np.asarray(tau, dtype=float), list(muscles)
    if A.ndim != 3 or tau.shape != A.shape[:2] or A.shape[2] != len(muscles):
        raise ProcessingError(f"A must be frame x joint x muscle and tau frame x joint with {len(muscles)} muscles; "
                              f"got {A.shape} and {tau.shape}")
    n_frames, _, nu = A.shape
    lower, upper = np.full((n_frames, nu), np.nan), np.full((n_frames, nu), np.nan)
    feasible = np.zeros(n_frames, bool)
    for f in range(n_frames):
        scale = np.linalg.norm(A[f], axis=1)
        keep = scale > 0
        if np.any(np.abs(tau[f, ~keep]) > 0):  # a joint no muscle spans needs zero torque
            continue
        rows, rhs = A[f, keep] / scale[keep, None], tau[f, keep] / scale[keep]
        bounds = np.zeros(2 * nu)
        for k in range(2 * nu):
            cost = np.zeros(nu)
            cost[k % nu] = 1.0 if k < nu else -1.0
            result = linprog(cost, A_eq=rows, b_eq=rhs, bounds=(0.0, 1.0), method="highs")
            if result.status != 0:
                break
            bounds[k] = result.fun
        else:
            lower[f], upper[f], feasible[f] = np.clip(bounds[:nu], 0, 1), np.clip(-bounds[nu:], 0, 1), True
    coords = {"muscle": muscles} | ({dim: coord} if coord is not None else {})
    one = dict(units="1")
    return xr.Dataset(
        dict(lower=((dim, "muscle"), lower, one | dict(description="lowest feasible activation")),
             upper=((dim, "muscle"), upper, one | dict(description="highest feasible activation")),
             feasible=(dim, feasible, dict(description="A a = tau has a solution in [0, 1]")),
             obligatory=((dim, "muscle"), lower > OBLIGATORY_LEVEL,
                         dict(description=f"lowest feasible activation > {OBLIGATORY_LEVEL:g}"))),
        coords=coords)


def analyse(recording: Recording, *, step: int = 10, feasible_every: int = 100, n_phase: int = 51,
            norm: float = 0.05, seed: int = 0, model: mujoco.MjModel | None = None) -> tuple[xr.Dataset, dict]:
    """Null-space analyses of a MyoLegs recording on every ``step``-th frame: maps and their rank,
    the open-loop perturbation test, effort optimality, feasible ranges (every ``feasible_every``-th
    frame) and, when the recording has varying gait cycles, the UCM decomposition over ``n_phase``
    phase points. Returns the results as one Dataset and a summary dict."""
    from kinesis_neuro import gait

    require_positive(step=step, feasible_every=feasible_every, n_phase=n_phase, norm=norm)
    from kinesis_neuro import model as mdl

    model = model or mdl.load_model()
    qpos, qvel = recording_states(model, recording)
    frames = np.arange(0, qpos.shape[0], step)
    time = recording.data.time.values[frames]
    maps = activation_torque_map(model, qpos[frames], qvel[frames], time=time)
    activation = _model_activation(model, recording.data)
    perturbed = perturbation_test(maps, activation[frames], norm=norm, seed=seed)
    effort = effort_optimality(model, recording.data.isel(time=frames), A=maps["A"].values)
    every = frames[:: max(1, feasible_every // step)]
    sub = maps.sel(time=recording.data.time.values[every])
    a_sub = activation[every]
    tau = np.einsum("tjm,tm->tj", sub["A"].values, a_sub)
    feasible = feasible_ranges(sub["A"], tau, list(sub.muscle.values))
    summary = {
        "frames": int(frames.size), "rank_median": float(np.median(maps["rank"].values)),
        "null_dim_median": float(np.median(maps["null_dim"].values)),
        "null_torque_change_max_n_m": float(perturbed.null_torque_change.max()),
        "random_torque_change_median_n_m": float(perturbed.random_torque_change.median()),
        "excess_effort_mean": float(effort.excess_effort.mean()),
        "obligatory_fraction": float(feasible.obligatory.mean()),
    }
    results = {"rank": maps["rank"], "null_dim": maps["null_dim"],
               "null_torque_change": perturbed.null_torque_change,
               "random_torque_change": perturbed.random_torque_change,
               "excess_effort": effort.excess_effort, "effort_distance": effort.distance,
               "feasible_lower": feasible.lower.rename(time="feasible_time"),
               "feasible_upper": feasible.upper.rename(time="feasible_time")}
    try:
        events = recording.events()
        state = xr.DataArray(np.concatenate([qpos, qvel], axis=1), dims=("time", "channel"),
                             coords={"time": recording.data.time.values,
                                     "channel": [f"q{i}" for i in range(model.nq)] + [f"v{i}" for i in range(model.nv)]},
                             attrs={"sampling_rate": recording.data.attrs["sampling_rate"]})
        act = recording.data.activation.rename(muscle="channel").transpose("time", "channel")
        act.attrs = {"sampling_rate": recording.data.attrs["sampling_rate"]}
        act_cycles = recording.within_one_episode(gait.segment_cycles(act, events, n_points=n_phase, outlier_sd=None))
        state_cycles = recording.within_one_episode(gait.segment_cycles(state, events, n_points=n_phase,
                                                                         outlier_sd=None))
        if act_cycles.sizes["cycle"] < 2:
            raise ProcessingError(f"{act_cycles.sizes['cycle']} complete gait cycle(s) within one episode; the "
                                  "variability decomposition needs at least 2")
        mean_state = state_cycles.mean("cycle").values
        phase_maps = activation_torque_map(model, mean_state[:, : model.nq], mean_state[:, model.nq:],
                                           time=act_cycles.phase.values)
        ucm = variability_decomposition(act_cycles, phase_maps["A"].rename(time="phase"))
        results["delta_v"] = ucm.delta_v
        summary.update(delta_v_mean=float(ucm.delta_v.mean()), delta_v_min=float(ucm.delta_v.min()),
                       delta_v_max=float(ucm.delta_v.max()))
    except KinesisNeuroError as err:
        summary["delta_v_note"] = str(err)
    return xr.Dataset(results, attrs={k: v for k, v in summary.items() if not isinstance(v, str)}), summary


def write_figures(results: xr.Dataset, out, closed_loop: xr.Dataset | None = None) -> list:
    """Figures (PNG) of :func:`analyse` results in ``out``: ``nullspace_dimensions`` (rank and null-space
    dimension over time, the UCM index over the gait cycle when present), ``feasible_ranges`` (lowest and
    highest feasible activation per muscle and frame), ``effort`` (excess effort over the minimum) and, with
    a :func:`~kinesis_neuro.redundancy.perturbation.closed_loop_perturbation` result, ``perturbation``."""
    from pathlib import Path

    from matplotlib.figure import Figure

    from kinesis_neuro.storage import savefig

    out = Path(out)
    paths = []

    def save(fig, name):
        paths.append(savefig(fig, out / f"{name}.png", dpi=110))

    panels = 2 if "delta_v" in results else 1
    fig = Figure(figsize=(5.0 * panels, 3.0), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    axes[0].plot(results.time, results["rank"], label="rank of A (task dimensions)")
    axes[0].plot(results.time, results["null_dim"], label="null-space dimension")
    axes[0].set_xlabel("time (s)")
    axes[0].legend(fontsize=7, frameon=False)
    if "delta_v" in results:
        axes[1].plot(results.phase, results.delta_v)
        axes[1].axhline(0, color="0.6", lw=0.8)
        axes[1].set_xlabel("gait cycle (%)")
        axes[1].set_ylabel("ΔV (> 0: variability in the null space)")
    save(fig, "nullspace_dimensions")

    fig = Figure(figsize=(max(8.0, 0.11 * results.sizes["muscle"] + 2), 5.0), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, name, label in ((axes[0], "feasible_lower", "lowest feasible activation (> 0: obligatory)"),
                            (axes[1], "feasible_upper", "highest feasible activation")):
        image = ax.imshow(results[name].transpose("feasible_time", "muscle").values, aspect="auto",
                          cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel("frame")
        ax.set_title(label, fontsize=9)
        fig.colorbar(image, ax=ax)
    axes[1].set_xticks(range(results.sizes["muscle"]), results.muscle.values, rotation=90, fontsize=5)
    save(fig, "feasible_ranges")

    fig = Figure(figsize=(5.0, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(results.time, results.excess_effort)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Σa² recorded − Σa² minimum")
    ax.set_title("excess effort over static optimisation at the same torques", fontsize=9)
    save(fig, "effort")

    if closed_loop is not None:
        fig = Figure(figsize=(7.0, 3.0), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, name, label in zip(axes, ("joint_deviation", "body_deviation"),
                                   ("joint-angle RMSE (rad)", "mean body distance (m)")):
            values = closed_loop[name].transpose("episode", "perturbation").values
            ax.bar(range(values.shape[1]), values.mean(axis=0), color=["C2", "C3"], alpha=0.6)
            for row in values:
                ax.plot(range(values.shape[1]), row, "o-", color="0.4", ms=3, lw=0.6)
            ax.set_xticks(range(values.shape[1]), [f"{p} offsets" for p in closed_loop.perturbation.values])
            ax.set_ylabel(label, fontsize=8)
        fig.suptitle(f"deviation from the unperturbed run under activation offsets of norm {closed_loop.attrs['norm']}"
                     f"\nnull / random = {closed_loop.attrs['joint_deviation_ratio']:.2f} (joints), "
                     f"{closed_loop.attrs['body_deviation_ratio']:.2f} (bodies)", fontsize=9)
        save(fig, "perturbation")
    return paths
