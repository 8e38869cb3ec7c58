"""Model-based baseline: a real walking trial -> MyoLegs muscle activations by static optimisation."""

from __future__ import annotations

import time as clock

import numpy as np
import pandas as pd

from kinesis_neuro import activation, dynamics, emg, gait, motion
from kinesis_neuro import model as mdl
from kinesis_neuro.errors import ProcessingError, require_positive
from kinesis_neuro.record import Recording
from kinesis_neuro.static_optimisation import static_optimisation


def static_optimisation_recording(source: str = "moco-walk", grf: str | None = "moco-walk/grf_walk.mot", *,
                                  exponent: float = 2.0, reserves=None, mass_ratio: float = 1.0,
                                  filter_hz: float | None = 6.0, periodic: int | None = None,
                                  data_dir=None, progress: bool = True) -> Recording:
    """Inverse dynamics with the measured GRF, then static optimisation at every coordinate frame.

    ``grf``: an OpenSim GRF file or a C3D file's force plates (:func:`kinesis_neuro.dynamics.load_grf`); a
    motion written by ``kinesis-neuro motion import`` from a marker trial carries the lab-to-ground rotation
    its inverse kinematics used (provenance), which the GRF are turned by too, so both share one frame.
    Activations come from the optimisation; excitations are the inputs that make MuJoCo's
    activation dynamics produce them. Contacts and gait events come from the GRF. With
    ``periodic=N`` the trial is first turned into N strides of the periodic walk the imitation
    environment uses (half cycle between heel strikes + its mirror image), GRF included, so the
    recording holds complete gait cycles even when the trial has none.
    """
    require_positive(exponent=exponent, reserves=reserves, mass_ratio=mass_ratio, filter_hz=filter_hz,
                     periodic=periodic)
    started = clock.time()
    model = mdl.load_model()
    from kinesis_neuro.io.motion_file import read_provenance

    walk = motion.from_opensim(source, filter_hz=filter_hz, data_dir=data_dir)
    provenance = read_provenance(source)  # a motion written by `motion import`: its lab frame, if from markers
    loads = (dynamics.load_grf(grf, data_dir=data_dir, lab_to_ground=provenance.get("lab_to_ground"))
             if grf else None)
    if loads is not None:
        dynamics.check_coverage(loads, walk.time, f"the motion {source}")
    events = emg.read_events(grf, data_dir=data_dir) if grf else None
    if periodic:
        if loads is None:
            raise ProcessingError("a periodic walk needs the GRF (heel strikes and loads of both feet)")
        half_cycle = half_cycle_from_events(events, walk)
        trial, walk = walk, motion.periodic(motion.mirrored_stride(walk, *half_cycle), periodic)
        loads = dynamics.periodic_grf(loads, trial, half_cycle, walk)
        events = pd.concat([gait.events_from_force(loads.force.sel(side=s, axis="z").values, walk.time, side=s,
                                                   threshold=loads.attrs.get("threshold_n", 20.0), hysteresis=0.0)
                            for s in ("right", "left")]).sort_values("time")
    torques = dynamics.inverse_dynamics(model, walk, loads, mass_ratio=mass_ratio)
    qpos, qvel, _ = walk.states(model)
    solution = static_optimisation(model, qpos, qvel, torques.torque.values, walk.time, exponent=exponent,
                                   reserves=reserves, progress=progress)
    act = solution.activation.values
    table = mdl.muscle_table(model)
    excitation = activation.excitation_from_activation(act, walk.time, table.tau_activation.values,
                                                       table.tau_deactivation.values)
    joints = mdl.joint_table(model).loc[list(mdl.LEG_JOINTS)]
    contact = None
    if loads is not None:
        contact = (loads.force.sel(axis="z").interp(time=walk.time) > 0).transpose("time", "side").values
        events = events[(events.time >= walk.time[0]) & (events.time <= walk.time[-1])]
    return Recording.from_arrays(
        walk.time, mdl.muscle_names(model), list(mdl.LEG_JOINTS),
        activation=act, excitation=excitation, force=solution.force.values,
        length=solution.length.values, velocity=solution.velocity.values,
        angle=qpos[:, joints.qpos_index.values], angular_velocity=qvel[:, joints.dof_index.values],
        torque=torques.torque.values, contact=contact,
        root_residual_force=torques.residual_force.values, root_residual_moment=torques.residual_moment.values,
        events=events,
        attrs={"motion": str(source) + (f" (periodic walk, {periodic} strides)" if periodic else ""),
               **({"motion_import": provenance.get("method", ""), "lab_to_ground": str(provenance["lab_to_ground"])}
                  if provenance.get("lab_to_ground") is not None else {}),
               "grf": str(grf or "none"),
               "controller": f"static optimisation (minimise sum a^{exponent:g}, 0 <= a <= 1)",
               "max_leg_residual_n_m": float(np.abs(solution.residual.values).max()),
               "reserves_used": int(bool(np.abs(solution.reserve.values).max() > 0)),
               "mass_ratio": mass_ratio, "coordinate_filter_hz": filter_hz or 0.0,
               "wall_time_s": clock.time() - started},
    )


def half_cycle_from_events(events: pd.DataFrame, trial: motion.Motion) -> tuple[float, float]:
    """The first heel strike inside the trial and the next heel strike of the other foot (s)."""
    strikes = events[(events.event == "heel_strike") & (events.time > trial.time[0])
                     & (events.time < trial.time[-1])].sort_values("time")
    for (_, a), (_, b) in zip(strikes.iterrows(), strikes.iloc[1:].iterrows()):
        if a.side != b.side:
            return float(a.time), float(b.time)
    raise ProcessingError(f"no heel strikes of both feet inside {trial.time[0]:g}-{trial.time[-1]:g} s: "
                          "cannot build a periodic walk")
