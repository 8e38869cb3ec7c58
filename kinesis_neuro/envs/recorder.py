"""Per-step recording of an imitation episode into the :class:`~kinesis_neuro.record.Recording` format."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kinesis_neuro import gait
from kinesis_neuro import model as mdl
from kinesis_neuro.record import Recording


class EpisodeRecorder:
    """Collects muscle, joint and contact state after every control step (off unless attached): the
    excitation the muscles were sent (``d.ctrl``) and their activation (``d.act``; the same values unless
    MuJoCo's activation dynamics run, as in direct mode or with ``activation_dynamics``)."""

    def __init__(self):
        self.rows: dict[str, list] = {}

    def reset(self, env) -> None:
        joints = mdl.joint_table(env.model).loc[list(mdl.LEG_JOINTS)]
        self._qpos, self._dof = joints.qpos_index.values, joints.dof_index.values
        self.rows = {k: [] for k in ("time", "excitation", "activation", "force", "length", "velocity", "angle",
                                     "angular_velocity", "contact", "reference_angle", "tracking_error")}
        self.append(env, tracking_error=0.0)

    def append(self, env, tracking_error: float | None = None) -> None:
        d = env.data
        r = self.rows
        r["time"].append(d.time)
        r["excitation"].append(d.ctrl.copy())
        r["activation"].append(d.act.copy())
        r["force"].append(-d.actuator_force)
        r["length"].append(d.actuator_length.copy())
        r["velocity"].append(d.actuator_velocity.copy())
        r["angle"].append(d.qpos[self._qpos].copy())
        r["angular_velocity"].append(d.qvel[self._dof].copy())
        r["contact"].append(env.foot_contact())
        r["reference_angle"].append(env.reference.qpos[env._ref_index()][self._qpos])
        r["tracking_error"].append(env.last_tracking_error if tracking_error is None else tracking_error)

    def to_recording(self, env, attrs: dict) -> Recording:
        """The episode as a Recording; gait events from the simulated foot contacts."""
        r = {k: np.asarray(v) for k, v in self.rows.items()}
        time = r["time"] - r["time"][0]
        events = [gait.events_from_contact(r["contact"][:, k], time, side) for k, side in enumerate(("right", "left"))]
        recording = Recording.from_arrays(
            time, env.muscles, list(mdl.LEG_JOINTS), activation=r["activation"], excitation=r["excitation"],
            force=np.maximum(r["force"], 0.0), length=r["length"], velocity=r["velocity"], angle=r["angle"],
            angular_velocity=r["angular_velocity"], contact=r["contact"],
            events=gait.events_from_table(pd.concat(events)),
            attrs={**attrs, "reference_stride_s": float(env.reference.periods[env.clip]),
                   "reference_clip": env.clip_names[env.clip]})
        recording.data["reference_angle"] = (("time", "joint"), r["reference_angle"],
                                             {"units": "rad", "long_name": "reference joint angle"})
        recording.data["tracking_error"] = (("time",), r["tracking_error"],
                                            {"units": "m", "long_name": "mean tracked-body distance to the reference"})
        return recording
