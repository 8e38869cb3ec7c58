"""The MyoLegs musculoskeletal model (from the ``myo-sim`` package) and its muscle and joint tables.

MyoLegs: a free root carrying pelvis and rigid upper body, 7 independent joints per leg (hip
flexion/adduction/rotation, knee, ankle, subtalar, mtp), knee translations/rotations and the
patella coupled to the knee angle by joint-equality polynomials, and 80 muscles (40 per leg).
"""

from __future__ import annotations

import warnings
from importlib import resources

import mujoco
import numpy as np
import pandas as pd

SIDES = ("r", "l")
LEG_JOINT_NAMES = ("hip_flexion", "hip_adduction", "hip_rotation", "knee_angle", "ankle_angle", "subtalar_angle",
                   "mtp_angle")
LEG_JOINTS = tuple(f"{j}_{s}" for s in SIDES for j in LEG_JOINT_NAMES)
ROOT_JOINT = "root"
FLOOR_HEIGHT = 0.0  # m, height of the infinite floor made by load_model(infinite_floor=True)


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warnings as Python warnings (instead of stderr text and a MUJOCO_LOG.TXT in the working folder)."""
    warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)


mujoco.set_mju_user_warning(_mujoco_warning)


def load_spec(*, infinite_floor: bool = True) -> mujoco.MjSpec:
    """The MyoLegs ``MjSpec``; ``infinite_floor`` replaces the finite platform by an infinite plane at z = 0."""
    from myo_sim.build.compose import build_spec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = build_spec("myolegs")
    if infinite_floor:
        for geom in list(spec.worldbody.geoms):
            if geom.name == "floor":
                geom.size = [0.0, 0.0, 0.05]  # zero size: infinite plane
                geom.pos = [0.0, 0.0, FLOOR_HEIGHT]
            else:  # the cylinder platform (top at z = 0.015, radius 1.05 m) and scenery meshes
                spec.delete(geom)
    return spec


def load_model(*, infinite_floor: bool = True, timestep: float | None = None) -> mujoco.MjModel:
    """Compile MyoLegs (timestep 0.002 s unless given)."""
    spec = load_spec(infinite_floor=infinite_floor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = spec.compile()
    if timestep is not None:
        model.opt.timestep = timestep
    return model


def muscle_names(model: mujoco.MjModel) -> list[str]:
    return [model.actuator(i).name for i in range(model.nu)]


def muscle_table(model: mujoco.MjModel) -> pd.DataFrame:
    """One row per muscle actuator: name, side, base name, anatomical name, group,
    max isometric force (N) and optimal fibre length (m, MuJoCo's ``L0``)."""
    with resources.files("kinesis_neuro.data").joinpath("myolegs_muscles.csv").open() as fh:
        info = pd.read_csv(fh).set_index("muscle")
    rows = []
    for i, name in enumerate(muscle_names(model)):
        base, side = name.rsplit("_", 1)
        gain = model.actuator_gainprm[i]
        lrange = model.actuator_lengthrange[i]
        rows.append(dict(
            muscle=name, side={"r": "right", "l": "left"}[side], base=base,
            anatomical_name=info.loc[base, "anatomical_name"], group=info.loc[base, "group"],
            max_isometric_force=float(gain[2]),
            optimal_fibre_length=float((lrange[1] - lrange[0]) / (gain[1] - gain[0])),
            tau_activation=float(model.actuator_dynprm[i][0]), tau_deactivation=float(model.actuator_dynprm[i][1]),
        ))
    table = pd.DataFrame(rows).set_index("muscle")
    table.attrs["units"] = {"max_isometric_force": "N", "optimal_fibre_length": "m", "tau_activation": "s",
                            "tau_deactivation": "s"}
    return table


def muscle_groups(model: mujoco.MjModel) -> dict[str, list[str]]:
    """Muscles per group and side, e.g. ``{"quadriceps_r": [...], "triceps_surae_l": [...]}``."""
    table = muscle_table(model)
    return {f"{g}_{s[0]}": list(rows.index) for (g, s), rows in table.groupby(["group", "side"])}


def couplings(model: mujoco.MjModel) -> pd.DataFrame:
    """Joint-equality couplings: ``dependent - q0 = sum_k c_k (independent - q0)^k`` (k = 0..4)."""
    rows = []
    for i in range(model.neq):
        if model.eq_type[i] != mujoco.mjtEq.mjEQ_JOINT or not model.eq_active0[i]:
            continue
        dep, ind = model.joint(int(model.eq_obj1id[i])), model.joint(int(model.eq_obj2id[i]))
        rows.append(dict(joint=dep.name, independent=ind.name, coefficients=model.eq_data[i][:5].copy(),
                         qpos_index=int(dep.qposadr[0]), dof_index=int(dep.dofadr[0]),
                         independent_qpos_index=int(ind.qposadr[0]), independent_dof_index=int(ind.dofadr[0])))
    return pd.DataFrame(rows).set_index("joint")


def joint_table(model: mujoco.MjModel) -> pd.DataFrame:
    """One row per joint: kind (root/independent/coupled), side, range, qpos and dof index."""
    coupled = couplings(model)
    rows = []
    for j in range(model.njnt):
        joint = model.joint(j)
        name = joint.name
        kind = "root" if name == ROOT_JOINT else "coupled" if name in coupled.index else "independent"
        side = {"r": "right", "l": "left"}.get(name.rsplit("_", 1)[-1], "none")
        limited = bool(model.jnt_limited[j])
        rows.append(dict(joint=name, kind=kind, side=side, type=mujoco.mjtJoint(model.jnt_type[j]).name,
                         qpos_index=int(joint.qposadr[0]), dof_index=int(joint.dofadr[0]),
                         range_min=float(model.jnt_range[j][0]) if limited else -np.inf,
                         range_max=float(model.jnt_range[j][1]) if limited else np.inf,
                         driver=coupled.loc[name, "independent"] if kind == "coupled" else ""))
    return pd.DataFrame(rows).set_index("joint")


class Couplings:
    """The knee/patella coupling polynomials as arrays, for fast per-frame use."""

    def __init__(self, model: mujoco.MjModel):
        table = couplings(model)
        joints = joint_table(model)
        self.qpos0 = model.qpos0.copy()
        self.nv = model.nv
        self.dependent_qpos = table.qpos_index.to_numpy()
        self.dependent_dof = table.dof_index.to_numpy()
        self.driver_qpos = table.independent_qpos_index.to_numpy()
        self.driver_column = np.array([6 + LEG_JOINTS.index(j) for j in table.independent])
        self.coefficients = np.stack(table.coefficients.to_numpy())  # (n, 5)
        self.slopes = np.stack([np.polynomial.polynomial.polyder(c) for c in self.coefficients])
        self.leg_dofs = joints.loc[list(LEG_JOINTS), "dof_index"].to_numpy()

    def _x(self, qpos):
        return qpos[..., self.driver_qpos] - self.qpos0[self.driver_qpos]

    def apply(self, qpos: np.ndarray) -> np.ndarray:
        """``qpos`` (``(..., nq)``) with its coupled coordinates set from the knee angles."""
        qpos = np.array(qpos, dtype=float, copy=True)
        x = self._x(qpos)
        powers = x[..., None] ** np.arange(self.coefficients.shape[1])
        qpos[..., self.dependent_qpos] = self.qpos0[self.dependent_qpos] + (powers * self.coefficients).sum(-1)
        return qpos

    def jacobian(self, qpos: np.ndarray) -> np.ndarray:
        """``G`` (nv x 20): full velocity = G @ (6 root dofs, 14 independent leg joint velocities).

        Generalised forces project onto root + independent joints as ``G.T @ qfrc``.
        """
        G = np.zeros((self.nv, 6 + len(LEG_JOINTS)))
        G[:6, :6] = np.eye(6)
        G[self.leg_dofs, 6 + np.arange(len(LEG_JOINTS))] = 1.0
        x = self._x(qpos)
        powers = x[:, None] ** np.arange(self.slopes.shape[1])
        G[self.dependent_dof, self.driver_column] = (powers * self.slopes).sum(-1)
        return G


def apply_couplings(model: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    """Set the coupled (knee/patella) coordinates of ``qpos`` (``(..., nq)``) from their knee angles."""
    return Couplings(model).apply(qpos)


def coupling_residual(model: mujoco.MjModel, qpos: np.ndarray) -> float:
    """Largest violation of the coupling polynomials in ``qpos`` (rad or m)."""
    return float(np.abs(apply_couplings(model, qpos) - np.asarray(qpos)).max())


def coupling_jacobian(model: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    """``G`` (nv x 20) of :meth:`Couplings.jacobian`; build a :class:`Couplings` once for many frames."""
    return Couplings(model).jacobian(qpos)
