"""Model-based baseline: a real walking trial -> MyoLegs muscle activations by static optimisation."""

from __future__ import annotations

import time as clock

import numpy as np

from kinesis_neuro import activation, dynamics, emg, motion
from kinesis_neuro import model as mdl
from kinesis_neuro.record import Recording
from kinesis_neuro.static_optimisation import static_optimisation


def static_optimisation_recording(source: str = "moco-walk", grf: str | None = "moco-walk/grf_walk.mot", *,
                                  exponent: float = 2.0, reserves=None, mass_ratio: float = 1.0,
                                  filter_hz: float | None = 6.0, data_dir=None,
                                  progress: bool = True) -> Recording:
    """Inverse dynamics with the measured GRF, then static optimisation at every coordinate frame.

    Activations come from the optimisation; excitations are the inputs that make MuJoCo's
    activation dynamics produce them. Contacts and gait events come from the GRF.
    """
    started = clock.time()
    model = mdl.load_model()
    walk = motion.from_opensim(source, filter_hz=filter_hz, data_dir=data_dir)
    loads = dynamics.grf_from_opensim(grf, data_dir=data_dir) if grf else None
    torques = dynamics.inverse_dynamics(model, walk, loads, mass_ratio=mass_ratio)
    qpos, qvel, _ = walk.states(model)
    solution = static_optimisation(model, qpos, qvel, torques.torque.values, walk.time, exponent=exponent,
                                   reserves=reserves, progress=progress)
    act = solution.activation.values
    table = mdl.muscle_table(model)
    excitation = activation.excitation_from_activation(act, walk.time, table.tau_activation.values,
                                                       table.tau_deactivation.values)
    joints = mdl.joint_table(model).loc[list(mdl.LEG_JOINTS)]
    contact, events = None, None
    if loads is not None:
        contact = (loads.force.sel(axis="z").interp(time=walk.time) > 0).transpose("time", "side").values
        events = emg.read_events(grf, data_dir=data_dir)
        events = events[(events.time >= walk.time[0]) & (events.time <= walk.time[-1])]
    return Recording.from_arrays(
        walk.time, mdl.muscle_names(model), list(mdl.LEG_JOINTS),
        activation=act, excitation=excitation, force=solution.force.values,
        length=solution.length.values, velocity=solution.velocity.values,
        angle=qpos[:, joints.qpos_index.values], angular_velocity=qvel[:, joints.dof_index.values],
        torque=torques.torque.values, contact=contact,
        root_residual_force=torques.residual_force.values, root_residual_moment=torques.residual_moment.values,
        events=events,
        attrs={"motion": str(source), "grf": str(grf or "none"),
               "controller": f"static optimisation (minimise sum a^{exponent:g}, 0 <= a <= 1)",
               "max_leg_residual_n_m": float(np.abs(solution.residual.values).max()),
               "reserves_used": int(bool(np.abs(solution.reserve.values).max() > 0)),
               "mass_ratio": mass_ratio, "coordinate_filter_hz": filter_hz or 0.0,
               "wall_time_s": clock.time() - started},
    )
