"""Reference motions for imitation: a real walking trial turned into a long periodic walk."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from kinesis_neuro import emg, motion
from kinesis_neuro import model as mdl
from kinesis_neuro.motion_check import foot_heights
from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.simulate import half_cycle_from_events

TRACKED_BODIES = ("pelvis", "femur_r", "tibia_r", "calcn_r", "toes_r", "femur_l", "tibia_l", "calcn_l", "toes_l")


def walking_reference(source: str = "moco-walk", *, grf: str | None = "moco-walk/grf_walk.mot",
                      half_cycle: tuple[float, float] | None = None, duration: float = 12.0,
                      blend: float = 0.1, on_floor: bool = True, model: mujoco.MjModel | None = None,
                      data_dir=None) -> motion.Motion:
    """A periodic walk at least ``duration`` s long from OpenSim coordinates.

    The half cycle from a heel strike of one foot to the next heel strike of the other (from
    ``grf`` events, or given as ``half_cycle`` in s) is mirrored into one symmetric stride and
    repeated with the root carried forward. With ``on_floor`` the walk is moved down (or up) so the
    lower foot touches the floor: the median over the stride of the lower foot's lowest point is
    put at floor level (subjects whose legs are longer than MyoLegs' otherwise hover in stance).
    """
    trial = motion.from_opensim(source, data_dir=data_dir)
    if half_cycle is None:
        if grf is None:
            raise ProcessingError("give half_cycle=(start, stop) in s, or a GRF file to find heel strikes in")
        half_cycle = half_cycle_from_events(emg.read_events(grf, data_dir=data_dir), trial)
    stride = motion.mirrored_stride(trial, *half_cycle, blend=blend)
    if on_floor:
        stride = stride.raised(-float(foot_heights(model or mdl.load_model(), stride).min("side").median()))
    walk = motion.periodic(stride, max(2, math.ceil(duration / stride.duration) + 1), blend=blend)
    walk.attrs.update(half_cycle_s=list(half_cycle), source=str(source))
    return walk


class ReferenceTable:
    """Reference states and tracked-body kinematics tabulated at the simulation rate.

    A table holds one clip or several end to end (:meth:`concatenate`): clip ``c`` is rows
    ``offsets[c]`` to ``offsets[c] + lengths[c]``, its stride period (its duration if it is not periodic) is
    ``periods[c]`` s and ``periodic[c]`` says whether it repeats a stride. ``time`` is each clip's own time (s).
    """

    def __init__(self, model: mujoco.MjModel, reference: motion.Motion, rate: float):
        self.rate = rate
        self.time = reference.time[0] + np.arange(int(reference.duration * rate)) / rate
        self.qpos, self.qvel, _ = reference.states(model, self.time)
        self.bodies = np.array([model.body(b).id for b in TRACKED_BODIES])
        data = mujoco.MjData(model)
        n = len(self.time)
        self.xpos = np.zeros((n, len(self.bodies), 3))
        self.xmat = np.zeros((n, len(self.bodies), 3, 3))
        self.xvel = np.zeros((n, len(self.bodies), 3))
        for i in range(n):
            data.qpos[:], data.qvel[:] = self.qpos[i], self.qvel[i]
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            mujoco.mj_comVel(model, data)
            self.xpos[i] = data.xpos[self.bodies]
            self.xmat[i] = data.xmat[self.bodies].reshape(-1, 3, 3)
            self.xvel[i] = body_linear_velocity(model, data, self.bodies)
        self.period = float(reference.attrs.get("stride_period_s", reference.duration))
        self.offsets, self.lengths = np.array([0]), np.array([n])
        self.periods = np.array([self.period])
        self.periodic = np.array([bool(reference.attrs.get("periodic", "stride_period_s" in reference.attrs))])

    @classmethod
    def concatenate(cls, tables: list[ReferenceTable]) -> ReferenceTable:
        """One table holding ``tables`` (each one clip) end to end, in that order."""
        if not tables or len({t.rate for t in tables}) != 1:
            raise ProcessingError("concatenate one or more reference tables of one rate")
        out = cls.__new__(cls)
        out.rate, out.bodies = tables[0].rate, tables[0].bodies
        for name in ("time", "qpos", "qvel", "xpos", "xmat", "xvel", "lengths", "periods", "periodic"):
            setattr(out, name, np.concatenate([getattr(t, name) for t in tables]))
        out.offsets = np.concatenate([[0], np.cumsum(out.lengths)[:-1]])
        out.period = float(out.periods[0])
        return out


_NEXT, _PREVIOUS = np.array([1, 2, 0]), np.array([2, 0, 1])  # cyclic shifts: a cross product (np.cross is slow)


def body_linear_velocity(model: mujoco.MjModel, data: mujoco.MjData, bodies: np.ndarray) -> np.ndarray:
    """World-frame linear velocity (m/s) of body origins from MuJoCo's com-based ``cvel``."""
    cvel = data.cvel[bodies]
    r = data.xpos[bodies] - data.subtree_com[model.body_rootid[bodies]]
    return cvel[:, 3:] + cvel[:, _NEXT] * r[:, _PREVIOUS] - cvel[:, _PREVIOUS] * r[:, _NEXT]  # v + w x r
