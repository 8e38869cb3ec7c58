"""Joint-position retargeting onto MyoLegs (kinesis_neuro.retarget) on the real t2m-samples motions."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinesis_neuro import model as mdl
from kinesis_neuro import motion_check, retarget


@pytest.fixture(scope="module")
def myolegs():
    return mdl.load_model()


@pytest.fixture(scope="module")
def toolbox(data_dir, myolegs):
    """MDM sample 1 of "the person walked forward and is picking up his toolbox" (60 frames, 20 fps)."""
    centres = retarget.from_mdm("t2m-samples/mdm_walk_pick_up_toolbox.npy", 1)
    return centres, *retarget.retarget(centres, model=myolegs)


@pytest.fixture(scope="module")
def amp_run(data_dir, myolegs):
    centres = retarget.from_skeleton_motion("t2m-samples/amp_cmu_09_11_run.npy")
    return centres, *retarget.retarget(centres, model=myolegs)


def test_amp_forward_kinematics_keeps_the_skeleton(data_dir):
    from kinesis_neuro.io.pickles import read_skeleton_motion

    skeleton = read_skeleton_motion(retarget._dataset_path("t2m-samples/amp_cmu_07_01_walk.npy", None))
    position, orientation = retarget.forward_kinematics(skeleton)
    np.testing.assert_allclose(position[:, 0], skeleton["root_translation"])
    index = skeleton["bodies"].index
    for child, parent in (("right_shin", "right_thigh"), ("left_foot", "left_shin")):
        bone = np.linalg.norm(position[:, index(child)] - position[:, index(parent)], axis=1)
        np.testing.assert_allclose(bone, np.linalg.norm(skeleton["offsets"][index(child)]), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(orientation, axis=2), 1.0, atol=1e-9)
    assert np.all(position[:, index("pelvis"), 2] > position[:, index("right_foot"), 2] + 0.5)  # z up


def test_mdm_walk_is_on_the_floor_facing_forward(toolbox, myolegs):
    _centres, walk, residuals = toolbox
    attrs = walk.attrs
    assert 0.9 < attrs["scale"] < 1.1 and residuals.attrs["rms_m"] < 0.03
    assert attrs["knee_forward_m"] > 0.05  # knees bend forward
    start = walk.coordinates.sel(coordinate="pelvis_rotation").values[walk.time <= 0.5]
    assert abs(np.rad2deg(start.mean())) < 5  # faces +x at the start
    tx = walk.coordinates.sel(coordinate="pelvis_tx").values
    assert tx[-1] - tx[0] > 0.8  # walked forward along +x
    assert attrs["foot_frame"]["how"].startswith("calibrated on")
    assert attrs["root_path_error_rms_m"] < 0.15
    read = retarget.as_read(walk)
    report = motion_check.check_kinematics(myolegs, read)["summary"]
    assert report["passed"], report
    assert report["penetration_max_m"] <= motion_check.FLOOR_TOLERANCE
    assert set(residuals.marker.values) == set(retarget.POINTS)


def test_amp_run_retarget(amp_run, myolegs):
    _centres, run, residuals = amp_run
    knee = np.rad2deg(run.coordinates.sel(coordinate="knee_angle_r").values)
    assert knee.max() > 60 and knee.min() >= -0.5  # running bends the knee far, never backwards
    tx = run.coordinates.sel(coordinate="pelvis_tx").values
    assert 3.5 < tx[-1] - tx[0] < 5.5  # ~3.3 m/s for 1.35 s
    assert run.attrs["root_path_error_rms_m"] < 0.1 and residuals.attrs["rms_m"] < 0.05
    assert run.attrs["pelvis_frame"]["how"] == "the source's pelvis frame"
    assert motion_check.check_kinematics(myolegs, retarget.as_read(run))["summary"]["passed"]


def test_heading_and_up_axis_conventions(toolbox, myolegs):
    """The same joint centres turned about the vertical and given z-up give the same joint angles."""
    centres, _walk, _ = toolbox
    yaw = Rotation.from_rotvec([0.0, 1.2, 0.0]).as_matrix()
    turned = retarget.JointCentres(centres.time, {k: v @ yaw.T for k, v in centres.points.items()}, centres.attrs)
    aligned, _ = retarget.align(turned)
    original, _ = retarget.align(centres)
    for name in retarget.POINTS:
        np.testing.assert_allclose(aligned.points[name], original.points[name], atol=1e-9)
    z_up = (retarget.HUMANML3D_TO_GROUND.T @ retarget.Z_UP_TO_GROUND)  # the same person in a z-up frame
    assert np.allclose(z_up @ z_up.T, np.eye(3)) and np.isclose(np.linalg.det(z_up), 1.0)


def test_floor_tilt_is_levelled(data_dir):
    """CMU 07_01 climbs about 1 deg from step to step; the retargeting levels it."""
    centres = retarget.from_skeleton_motion("t2m-samples/amp_cmu_07_01_walk.npy")
    _, info = retarget.align(centres)
    assert 0.5 < info["floor_tilt_deg"] < 2.0
    mdm = retarget.from_mdm("t2m-samples/mdm_running_in_circle.npy")
    assert retarget.align(mdm)[1]["floor_tilt_deg"] < 0.5


def test_foot_locking_holds_planted_points(toolbox):
    centres, _walk, _ = toolbox
    aligned, _ = retarget.align(centres)
    locked, info = retarget.lock_feet(aligned.points, aligned.time)
    assert all(0.2 < v["planted_fraction"] <= 1.0 for v in info.values())
    assert all(v["max_shift_m"] < 0.3 for v in info.values())
    np.testing.assert_allclose(locked["hip_r"], aligned.points["hip_r"])  # only ankles and toes move
    np.testing.assert_allclose(locked["toe_l"][:, 1], aligned.points["toe_l"][:, 1])  # heights kept


def test_bad_sources_are_one_line_errors(data_dir):
    from kinesis_neuro.errors import KinesisNeuroError

    with pytest.raises(KinesisNeuroError, match=r"--sample 3 does not exist; the file holds 3 sample\(s\) \(0-2\)"):
        retarget.from_mdm("t2m-samples/mdm_walk_pick_up_toolbox.npy", 3)
    centres = retarget.from_mdm("t2m-samples/mdm_walk_pick_up_toolbox.npy", 0)
    short = retarget.JointCentres(centres.time[:3], {k: v[:3] for k, v in centres.points.items()}, centres.attrs)
    with pytest.raises(KinesisNeuroError, match="3 frames; at least 4"):
        retarget.retarget(short)
