"""The motion library's clips, built from the real datasets: periods, speeds, floor, splits."""

import numpy as np
import pytest

from kinesis_neuro import model as mdl
from kinesis_neuro import motion, motion_check
from kinesis_neuro import motion_library as ml
from kinesis_neuro.envs.reference import walking_reference
from kinesis_neuro.errors import KinesisNeuroError

DURATION = 3.0  # s: short periodic clips keep the tests fast
PERIOD_S = {"walk": (0.95, 1.3), "run": (0.6, 0.85)}  # stride periods (s); the CMU run strides in 0.83 s
SPEED_M_S = {"walk": (0.9, 1.8), "run": (2.3, 4.5)}
IN_SPLITS = sorted({name for names in ml.SPLITS.values() for name in names})


@pytest.fixture(scope="module")
def myolegs():
    return mdl.load_model()


@pytest.fixture(scope="module")
def clips(myolegs, data_dir):
    return {name: ml.reference_motion(name, duration=DURATION, model=myolegs) for name in IN_SPLITS}


def _root_speed(reference: motion.Motion) -> float:
    """Net horizontal root displacement over the motion's duration (m/s)."""
    root = reference.coordinates.sel(coordinate=["pelvis_tx", "pelvis_tz"]).transpose("time", "coordinate").values
    return float(np.linalg.norm(root[-1] - root[0]) / reference.duration)


def test_every_clip_in_a_split_builds_with_plausible_periods_and_speeds(clips, myolegs):
    for name, reference in clips.items():
        spec = ml.CLIPS[name]
        assert spec.kind in ml.KINDS and spec.construction in ml.CONSTRUCTIONS, name
        assert reference.attrs["clip"] == name and reference.attrs["periodic"] == spec.periodic
        qpos = reference.qpos(myolegs, reference.time[::20])
        assert np.all(np.isfinite(qpos)), name
        if not spec.periodic:
            assert spec.kind == "text-to-motion" and reference.duration > 2.0
            continue
        period = reference.attrs["stride_period_s"]
        assert PERIOD_S[spec.kind][0] < period < PERIOD_S[spec.kind][1], (name, period)
        assert reference.duration >= DURATION
        speed = _root_speed(reference)
        assert SPEED_M_S[spec.kind][0] < speed < SPEED_M_S[spec.kind][1], (name, speed)
        if spec.speed_m_s:  # the speed the source states, up to MyoLegs' legs swung by the subject's angles
            assert abs(speed / spec.speed_m_s - 1) < 0.25, (name, speed, spec.speed_m_s)  # hamner-run: 3.9 vs 3.3
        # periodic: one stride later the legs are where they were, the root a stride length further
        t = reference.time[0] + 0.2
        a, b = (reference.coordinate_values([s]).isel(time=0) for s in (t, t + period))
        legs = [c for c in a.coordinate.values if not str(c).startswith("pelvis_t")]
        assert np.abs(np.rad2deg(b.sel(coordinate=legs) - a.sel(coordinate=legs))).max() < 1.0, name
        assert float(b.sel(coordinate="pelvis_tx") - a.sel(coordinate="pelvis_tx")) > 0.5 * speed * period


def test_the_feet_are_on_the_floor(clips, myolegs):
    for name, reference in clips.items():
        stride = reference.attrs.get("stride_period_s", reference.duration)
        heights = motion_check.foot_heights(myolegs, reference, reference.time[reference.time < stride][::5])
        lower = heights.min("side")
        assert float(lower.min()) < 0.01 and float(lower.quantile(0.1)) < 0.03, name  # a foot reaches the floor
        assert float(lower.min()) > -0.06, name  # ... without sinking in deeply


def test_moco_walk_is_the_imitation_environments_walk_and_its_mirror_image(clips, myolegs):
    walk = clips["moco-walk"]
    expected = walking_reference("moco-walk", grf="moco-walk/grf_walk.mot", duration=DURATION)
    np.testing.assert_array_equal(walk.coordinates.values, expected.coordinates.values)
    np.testing.assert_array_equal(walk.time, expected.time)
    assert walk.attrs["stride_period_s"] == expected.attrs["stride_period_s"]
    mirrored = clips["moco-walk-mirror"]
    np.testing.assert_array_equal(mirrored.coordinates.values, motion.mirror(walk.coordinates).values)
    assert mirrored.attrs["stride_period_s"] == walk.attrs["stride_period_s"]
    knees = mirrored.coordinates.sel(coordinate="knee_angle_l").values
    np.testing.assert_array_equal(knees, walk.coordinates.sel(coordinate="knee_angle_r").values)
    # the mirror image walks on the other side of the path, as far and as fast
    assert np.sign(mirrored.coordinates.sel(coordinate="pelvis_tz").mean()) == -np.sign(walk.coordinates.sel(coordinate="pelvis_tz").mean())
    assert _root_speed(mirrored) == pytest.approx(_root_speed(walk))


def test_splits_hold_out_a_walk_and_a_run_and_text_to_motion_is_one_off():
    assert set(ml.SPLITS) == {"train", "held_out", "text_to_motion"}
    train, held_out = set(ml.clip_names("train")), set(ml.clip_names("held_out"))
    assert not train & held_out
    assert {ml.CLIPS[n].kind for n in held_out} >= {"walk", "run"}
    assert {ml.CLIPS[n].kind for n in train} == {"walk", "run"}
    assert all(ml.CLIPS[n].kind == "text-to-motion" and not ml.CLIPS[n].periodic for n in ml.clip_names("text_to_motion"))
    assert all(n in ml.CLIPS for n in IN_SPLITS)
    held_sources = {ml.CLIPS[n].source for n in held_out}
    assert not held_sources & {ml.CLIPS[n].source for n in train}  # no held-out trial trains under another name


def test_unknown_clip_or_split_names_the_known_ones():
    with pytest.raises(KinesisNeuroError, match="known clips: moco-walk, moco-walk-mirror"):
        ml.reference_motion("moco-run", duration=5.0)
    with pytest.raises(KinesisNeuroError, match="train, held_out, text_to_motion"):
        ml.clip_names("test")
    with pytest.raises(KinesisNeuroError, match="duration"):
        ml.reference_motion("moco-walk", duration=0.0)
