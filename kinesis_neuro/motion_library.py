"""The motion library: named reference clips for imitation (walks, runs, text-to-motion) and their splits.

Every clip is built from a registered dataset on demand (nothing is cached on disk) into a
:class:`~kinesis_neuro.motion.Motion` in MyoLegs coordinates with the feet on the floor:

* cyclic clips (walks, runs) become periodic motions at least ``duration`` s long, with
  ``attrs["stride_period_s"]``: one stride is built (:data:`CONSTRUCTIONS`) and repeated with the root carried
  forward (:func:`kinesis_neuro.motion.periodic`);
* one-off clips (text-to-motion) are the retargeted motion as it is (``attrs["periodic"] = False``).

Sources are read by the project's importers: OpenSim coordinates (:func:`kinesis_neuro.motion.from_opensim`),
marker trials (:func:`kinesis_neuro.ik.inverse_kinematics` on a window around the half cycle), AMP skeleton
motions and MDM joint positions (:func:`kinesis_neuro.io.motion_file.import_motion`: joint-centre retargeting).
Heel strikes come from the GRF where a clip has them, otherwise from the foot kinematics (:func:`_events`).
Treadmill trials (the root stays in place while the belt carries the stance feet back) get the belt's velocity,
measured from MyoLegs' stance feet (:func:`kinesis_neuro.motion_check.belt_velocity`), added to the root, so
every cyclic clip moves overground without its stance feet sliding (this speed may differ from the one the
source states: the subject's angles swing MyoLegs' legs, not the subject's).

Floor: walks are lowered as :func:`kinesis_neuro.envs.reference.walking_reference` does (the median over the
stride of the lower foot's lowest point at floor level: in walking a foot is on the floor at every instant;
on moco-walk and moco-subject05 this is within 2 mm of the median while the GRF load a foot). Runs have
flight phases (both feet in the air for a third of the stride), where that median lies above the floor and
sinks the stance feet in (by 9 and 11 mm on hamner-run and rajagopal-run); runs put the median height of the
feet while loaded (GRF: :func:`kinesis_neuro.motion_check.floor_offset`) at floor level, or without GRF
their median height in stance found from the heights alone (:func:`_stance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import dynamics, emg, gait, motion, motion_check
from kinesis_neuro import model as mdl
from kinesis_neuro.envs.reference import walking_reference
from kinesis_neuro.errors import KinesisNeuroError, ProcessingError, require_positive
from kinesis_neuro.simulate import half_cycle_from_events

KINDS = ("walk", "run", "text-to-motion")
CONSTRUCTIONS = {
    "half-cycle": "half cycle between heel strikes of the two feet + its mirror image, repeated",
    "mirror": "the left-right mirror image of another clip",
    "mean-cycle": "a mean full gait cycle (heel strike to heel strike of one foot), repeated",
    "mean-half-cycle": "a mean half gait cycle + its mirror image, repeated",
    "one-off": "the retargeted motion as it is (not periodic)",
}
BLEND = 0.1  # s: seams of strides smoothed over this (as walking_reference)
RUN_FLOOR_GRF = "median of the feet's lowest points while loaded (GRF) at floor level"
RUN_FLOOR = "median of the feet's lowest points in stance (within 3 cm of their floor level) at floor level"
WALK_FLOOR = "median over the stride of the lower foot's lowest point at floor level"


@dataclass(frozen=True)
class ClipSpec:
    """A clip of the library.

    ``kind``: walk, run or text-to-motion; ``dataset``: registered dataset; ``source``: its file
    (``DATASET/FILE``); ``construction``: how it is built (:data:`CONSTRUCTIONS`); ``description``: short
    text; ``speed_m_s``: the walking or running speed the source states (m/s; ``None``: not stated).
    ``grf``: file whose vertical forces give the heel strikes (``None``: foot kinematics);
    ``window``: the part of a marker trial (s) solved by inverse kinematics; ``static``: its calibration
    trial; ``sample``: the sample of an MDM file; ``treadmill``: the root is carried forward at the belt
    speed; ``mirror_of``: the clip a ``mirror`` clip mirrors."""

    name: str
    kind: str
    dataset: str
    source: str
    construction: str
    description: str
    speed_m_s: float | None = None
    grf: str | None = None
    window: tuple[float, float] | None = None
    static: str | None = None
    sample: int | None = None
    treadmill: bool = False
    mirror_of: str | None = None

    @property
    def periodic(self) -> bool:
        return self.construction != "one-off"


_T2M = "t2m-samples"
CLIPS: dict[str, ClipSpec] = {c.name: c for c in (
    ClipSpec("moco-walk", "walk", "moco-walk", "moco-walk/coordinates.sto", "half-cycle",
             "overground walk of the Rajagopal (2016) subject (OpenSim Moco example), IK + RRA",
             grf="moco-walk/grf_walk.mot"),
    ClipSpec("moco-walk-mirror", "walk", "moco-walk", "moco-walk/coordinates.sto", "mirror",
             "moco-walk with left and right swapped", mirror_of="moco-walk"),
    ClipSpec("moco-subject05", "walk", "moco-subject05", "moco-subject05/ik_solution.mot", "half-cycle",
             "overground walk at free speed of another subject (Moco sandbox, subject05), IK",
             grf="moco-subject05/grf.mot"),
    ClipSpec("falisse2019-walk", "walk", "falisse2019", "falisse2019/IK_gait_1.mat", "half-cycle",
             "overground walking trial of Falisse et al. (2019) subject 1, IK (gait2392)", speed_m_s=1.27,
             grf="falisse2019/GRF_gait_1.mat"),
    ClipSpec("falisse2019-walk-mean", "walk", "falisse2019", "falisse2019/IK_average_walking_FGC.mat", "mean-cycle",
             "mean walking cycle of Falisse et al. (2019) subject 1", speed_m_s=1.32),
    ClipSpec("hamner-run", "run", "hamner-run", "hamner-run/subject02_running_arms_ik.mot", "half-cycle",
             "treadmill run of Hamner et al. (2010) subject 2, IK (gait2392)", speed_m_s=3.3,
             grf="hamner-run/subject02_grf_HiFreq.mot", treadmill=True),
    ClipSpec("rajagopal-run", "run", "rajagopal-run", "rajagopal-run/motion_capture_run.trc", "half-cycle",
             "treadmill run of the Rajagopal (2016) pipeline, marker IK onto MyoLegs", speed_m_s=3.5,
             grf="rajagopal-run/grf_run.mot", window=(0.7, 1.45), static="rajagopal-run/static_run.trc",
             treadmill=True),
    ClipSpec("falisse2019-run-mean", "run", "falisse2019", "falisse2019/IK_average_running_HGC.mat",
             "mean-half-cycle", "mean running half cycle of Falisse et al. (2019) subject 1", speed_m_s=2.8),
    ClipSpec("amp-cmu-walk", "walk", _T2M, f"{_T2M}/amp_cmu_07_01_walk.npy", "half-cycle",
             "CMU 07_01 walk (AMP humanoid), retargeted onto MyoLegs"),
    ClipSpec("amp-cmu-run", "run", _T2M, f"{_T2M}/amp_cmu_09_11_run.npy", "half-cycle",
             "CMU 09_11 run (AMP humanoid), retargeted onto MyoLegs"),
    ClipSpec("mdm-running-in-circle", "text-to-motion", _T2M, f"{_T2M}/mdm_running_in_circle.npy", "one-off",
             "MDM: 'A person is running in circle' (9.8 s), retargeted", sample=0),
    *(ClipSpec(f"mdm-walk-pick-up-toolbox-{k}", "text-to-motion", _T2M, f"{_T2M}/mdm_walk_pick_up_toolbox.npy",
               "one-off", f"MDM: 'the person walked forward and is picking up his toolbox.' (sample {k}, 3 s), "
               "retargeted", sample=k) for k in range(3)),
)}

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("moco-walk", "moco-walk-mirror", "falisse2019-walk", "falisse2019-walk-mean", "amp-cmu-walk",
              "hamner-run", "rajagopal-run", "falisse2019-run-mean"),
    # one walk and one run never trained on: moco-subject05 is another subject (and speed) recorded and
    # processed like moco-walk, so it tests generalisation across subjects; the AMP CMU run comes from another
    # lab and pipeline (mocap retargeted via the AMP humanoid) than the three training runs
    "held_out": ("moco-subject05", "amp-cmu-run"),
    "text_to_motion": ("mdm-running-in-circle", "mdm-walk-pick-up-toolbox-0", "mdm-walk-pick-up-toolbox-1",
                       "mdm-walk-pick-up-toolbox-2"),
}


def clip_names(split: str) -> tuple[str, ...]:
    """The clips of ``split`` (``train``, ``held_out`` or ``text_to_motion``)."""
    if split not in SPLITS:
        raise KinesisNeuroError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return SPLITS[split]


def select(text: str) -> tuple[str, ...]:
    """Clips named by ``text``: a split (``train``, ...) or clip names separated by commas."""
    if text in SPLITS:
        return SPLITS[text]
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in CLIPS]
    if unknown or not names:
        raise KinesisNeuroError(f"unknown clips {unknown or [text]}: give a split ({', '.join(SPLITS)}) or clip "
                                f"names separated by commas ({', '.join(CLIPS)})")
    return names


def reference_motion(name: str, *, duration: float, model: mujoco.MjModel | None = None,
                     data_dir=None) -> motion.Motion:
    """The clip ``name`` (:data:`CLIPS`) as a kinematic reference in MyoLegs coordinates, feet on the floor.

    Cyclic clips: a periodic motion at least ``duration`` s long (attrs ``stride_period_s``, ``periodic``
    True); one-off clips: the whole retargeted motion (``duration`` does not apply; ``periodic`` False).
    attrs also hold ``clip``, ``kind`` and, for cyclic clips, ``half_cycle_s`` and ``floor``."""
    if name not in CLIPS:
        raise KinesisNeuroError(f"unknown clip {name!r}; known clips: {', '.join(CLIPS)}")
    require_positive(duration=duration)
    spec = CLIPS[name]
    model = model or mdl.load_model()
    if spec.construction == "mirror":
        base = reference_motion(spec.mirror_of, duration=duration, model=model, data_dir=data_dir)
        out = motion.Motion(motion.mirror(base.coordinates), {**base.attrs, "mirror_of": spec.mirror_of})
    elif spec.name == "moco-walk":  # the imitation environment's own reference walk, exactly
        out = walking_reference("moco-walk", grf="moco-walk/grf_walk.mot", duration=duration, model=model,
                                data_dir=data_dir)
        out.attrs["floor"] = WALK_FLOOR
    elif spec.periodic:
        out = _cyclic(spec, duration, model, data_dir)
    else:
        out = _read(spec, model, data_dir)
    out.attrs.update(clip=name, kind=spec.kind, periodic=spec.periodic, construction=CONSTRUCTIONS[spec.construction])
    return out


def _read(spec: ClipSpec, model: mujoco.MjModel, data_dir) -> motion.Motion:
    """The clip's source as coordinates: OpenSim files (mean cycles unfiltered: they are smooth averages,
    and a filter's padding would distort their ends), marker IK of ``window`` or retargeted joint positions."""
    from kinesis_neuro import ik, markers
    from kinesis_neuro.io.motion_file import detect_format, import_motion

    fmt = detect_format(spec.source, data_dir=data_dir)
    if fmt == "opensim":
        return motion.from_opensim(spec.source, data_dir=data_dir,
                                   filter_hz=None if spec.construction.startswith("mean") else 6.0)
    if fmt == "markers":
        trial = markers.read_markers(spec.source, data_dir=data_dir)
        if spec.window:
            trial = trial.sel(time=slice(*spec.window))
        found, _ = ik.inverse_kinematics(trial, subject=spec.static, model=model, data_dir=data_dir)
        found.attrs["source"] = spec.source
        return found
    found, _ = import_motion(spec.source, fmt=fmt, sample=spec.sample, data_dir=data_dir, model=model)
    return found


def _carried_by_belt(trial: motion.Motion, model: mujoco.MjModel) -> motion.Motion:
    """A treadmill trial moved overground: the root carried forward against the belt's velocity (measured
    from the stance feet, :func:`kinesis_neuro.motion_check.belt_velocity`)."""
    belt = motion_check.belt_velocity(motion_check.foot_kinematics(model, trial))
    if not np.any(belt):
        raise ProcessingError(f"{trial.attrs.get('source')}: no treadmill belt under the stance feet")
    ground = -np.array([belt[0], belt[1], 0.0]) @ motion.OPENSIM_TO_MUJOCO  # world -> OpenSim ground
    coords = trial.coordinates.copy()
    elapsed = trial.time - trial.time[0]
    for axis, name in ((0, "pelvis_tx"), (2, "pelvis_tz")):
        coords.loc[{"coordinate": name}] = coords.sel(coordinate=name) + ground[axis] * elapsed
    return motion.Motion(coords, {**trial.attrs, "treadmill_belt_speed_m_s": float(np.linalg.norm(belt))})


def _straightened(cycle: motion.Motion) -> motion.Motion:
    """A mean cycle with its sideways drift (``pelvis_tz`` end minus start, an averaging residue) removed
    linearly, so that repeating it walks straight."""
    coords = cycle.coordinates.copy()
    tz = coords.sel(coordinate="pelvis_tz").values
    coords.loc[{"coordinate": "pelvis_tz"}] = tz - (tz[-1] - tz[0]) * (cycle.time - cycle.time[0]) / cycle.duration
    return motion.Motion(coords, {**cycle.attrs, "sideways_drift_removed_m": float(tz[-1] - tz[0])})


def _cyclic(spec: ClipSpec, duration: float, model: mujoco.MjModel, data_dir) -> motion.Motion:
    trial = _read(spec, model, data_dir)
    if spec.treadmill:
        trial = _carried_by_belt(trial, model)
    half_cycle = None
    if spec.construction == "mean-cycle":
        stride = _straightened(trial)
    else:
        if spec.construction == "mean-half-cycle":
            half_cycle = (float(trial.time[0]), float(trial.time[-1]))
        else:
            half_cycle = half_cycle_from_events(_events(spec, trial, model, data_dir), trial)
        stride = motion.mirrored_stride(trial, *half_cycle, blend=BLEND)
    if spec.kind == "run" and spec.grf:
        floor, how = motion_check.floor_offset(model, trial.window(*half_cycle),
                                               dynamics.load_grf(spec.grf, data_dir=data_dir)), RUN_FLOOR_GRF
    elif spec.kind == "run":
        heights = motion_check.foot_heights(model, stride)
        floor, how = float(heights.where(_stance(heights)).median()), RUN_FLOOR
    else:
        floor, how = float(motion_check.foot_heights(model, stride).min("side").median()), WALK_FLOOR
    stride = stride.raised(-floor)
    out = motion.periodic(stride, max(2, math.ceil(duration / stride.duration) + 1), blend=BLEND)
    out.attrs.update(half_cycle_s=list(half_cycle) if half_cycle else None, source=spec.source, floor=how)
    return out


def _events(spec: ClipSpec, trial: motion.Motion, model: mujoco.MjModel, data_dir) -> pd.DataFrame:
    """Gait events of a clip: from its GRF; else walks from :func:`kinesis_neuro.motion_check.kinematic_events`,
    runs from :func:`_stance` (kinematic_contact breaks a running stance into pieces shorter than the 0.1 s
    that gait.events_from_contact keeps: the lowest point of MyoLegs' rigid foot moves up and down faster
    than its 0.2 m/s limit while the foot rolls, and flight leaves the swing foot well above the floor)."""
    if spec.grf:
        return emg.read_events(spec.grf, data_dir=data_dir)
    if spec.kind != "run":
        return motion_check.kinematic_events(model, trial)
    stance = _stance(motion_check.foot_heights(model, trial))
    return pd.concat([gait.events_from_contact(stance.sel(side=side).values, trial.time, side)
                      for side in motion_check.FOOT_SEGMENTS]).sort_values("time").reset_index(drop=True)


def _stance(heights: xr.DataArray) -> xr.DataArray:
    """Feet in stance ``(time, side)`` by height alone: the lowest point (:func:`motion_check.foot_heights`)
    within :data:`motion_check.CONTACT_HEIGHT` of the foot's floor level
    (:data:`motion_check.CONTACT_LEVEL_PERCENTILE` of its heights). For runs, whose swing feet stay high."""
    level = heights.reduce(np.percentile, dim="time", q=motion_check.CONTACT_LEVEL_PERCENTILE)
    return heights < level + motion_check.CONTACT_HEIGHT
