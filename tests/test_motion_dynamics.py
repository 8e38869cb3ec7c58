import mujoco
import numpy as np
import pytest

from kinesis_neuro import dynamics, emg, motion, motion_check
from kinesis_neuro import model as mdl


@pytest.fixture(scope="module")
def model():
    return mdl.load_model()


@pytest.fixture(scope="module")
def walk(data_dir):
    return motion.from_opensim("moco-walk")


@pytest.fixture(scope="module")
def grf(data_dir):
    return dynamics.grf_from_opensim("moco-walk/grf_walk.mot")


def test_joint_mapping(model, walk):
    qpos, qvel, qacc = walk.states(model)
    assert qpos.shape == (1350, model.nq) and not np.isnan(qpos).any() and not np.isnan(qacc).any()
    assert mdl.coupling_residual(model, qpos) < 1e-9
    joints = mdl.joint_table(model)
    coords = walk.coordinate_values()
    np.testing.assert_allclose(qpos[:, joints.loc["knee_angle_r", "qpos_index"]], coords.sel(coordinate="knee_angle_r"))
    # walking direction is the model's facing direction (-y), at about 1.2 m/s
    assert -1.4 < qvel[:, 1].mean() < -1.0 and abs(qvel[:, 0].mean()) < 0.1
    # pelvis frame = OpenSim pelvis frame: at zero pelvis angles the pelvis faces -y, up is z
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[0]
    mujoco.mj_kinematics(model, data)
    pelvis_x = data.body("pelvis").xmat.reshape(3, 3)[:, 0]
    assert pelvis_x[1] < -0.95


def test_no_edge_transients(model, walk):
    """Filtering with enough padding keeps edge accelerations at the level of the interior."""
    _, _, qacc = walk.states(model)
    legs = np.abs(qacc[:, 6:])
    assert legs[:20].max() < 2 * legs[20:-20].max() and legs[-20:].max() < 2 * legs[20:-20].max()


def test_resample_and_window(model, walk):
    slow = walk.resample(30.0)
    assert slow.attrs["sampling_rate"] == 30.0 and len(slow.time) == int(walk.duration * 30) + 1
    np.testing.assert_allclose(slow.qpos(model)[5], walk.qpos(model, slow.time[5])[0], atol=1e-9)
    part = walk.window(0.8, 1.2)
    assert part.time[0] >= 0.8 and part.time[-1] <= 1.2


def test_stance_slip_and_heel_strikes(model, walk, grf):
    events = emg.read_events("moco-walk/grf_walk.mot")
    report = motion_check.check_motion(model, walk, grf, events)
    for side in ("right", "left"):
        assert report[side]["stance_slip_mean_m_s"] < 0.15
        assert all(abs(e) < 0.08 for e in report[side]["heel_strike_error_s"])
        assert report[side]["penetration_max_m"] < 0.01


def test_inverse_dynamics_matches_opensim(model, walk, grf):
    result = dynamics.inverse_dynamics(model, walk, grf)
    reference = emg.read("moco-walk/id_walk.sto")
    for joint in ("hip_flexion", "knee_angle", "ankle_angle"):
        for side in "rl":
            ours = result.torque.sel(joint=f"{joint}_{side}").values
            theirs = reference.sel(channel=f"{joint}_{side}_moment").interp(time=result.time).values
            assert np.corrcoef(ours, theirs)[0, 1] >= 0.9, (joint, side)
    assert result.torque.attrs["units"] == "N m"


def test_inverse_dynamics_without_grf_needs_root_forces(model, walk, grf):
    """Without the measured GRF the root must carry body weight: residuals tell the difference."""
    with_grf = dynamics.inverse_dynamics(model, walk, grf)
    without = dynamics.inverse_dynamics(model, walk, None)
    weight = model.body_subtreemass[0] * 9.81
    assert float(without.residual_force.sel(axis="z").mean()) == pytest.approx(weight, rel=0.1)
    assert abs(float(with_grf.residual_force.sel(axis="z").mean())) < 0.2 * weight


def test_mirror_swaps_legs_and_negates_lateral(walk):
    coords = walk.coordinate_values()
    mirrored = motion.mirror(coords)
    np.testing.assert_array_equal(mirrored.sel(coordinate="hip_flexion_r"), coords.sel(coordinate="hip_flexion_l"))
    np.testing.assert_array_equal(mirrored.sel(coordinate="pelvis_list"), -coords.sel(coordinate="pelvis_list"))
    np.testing.assert_array_equal(mirrored.sel(coordinate="pelvis_tilt"), coords.sel(coordinate="pelvis_tilt"))


def test_periodic_walk_from_mirrored_half_cycle(model, walk):
    stride = motion.mirrored_stride(walk, 0.8355, 1.4112)
    assert stride.duration == pytest.approx(2 * (1.4112 - 0.8355), abs=2e-3)
    long = motion.periodic(stride, 4)
    assert long.duration == pytest.approx(4 * stride.duration, abs=1e-9)
    legs = [f"{j}_{s}" for s in "rl" for j in ("hip_flexion", "hip_adduction", "hip_rotation", "knee_angle",
                                                 "ankle_angle")]
    raw_seam = np.abs(motion.mirror(walk.coordinate_values(0.8355)).sel(coordinate=legs).values
                      - walk.coordinate_values(1.4112).sel(coordinate=legs).values).max()
    assert raw_seam > 0.1  # mirrored left heel strike differs from the right one by > 0.1 rad somewhere
    step = np.abs(np.diff(long.coordinate_values().sel(coordinate=legs).values, axis=0)).max()
    assert step < 0.2 * raw_seam  # seams smoothed: no jumps (1 ms samples)
    # one stride later every joint angle repeats and the pelvis has moved forward by one stride length
    t = np.array([0.3, 0.6])
    a, b = (long.coordinate_values(x).drop_vars("time") for x in (t, t + stride.duration))
    np.testing.assert_allclose(b.sel(coordinate="knee_angle_r"), a.sel(coordinate="knee_angle_r"), atol=1e-9)
    advance = b.sel(coordinate="pelvis_tx") - a.sel(coordinate="pelvis_tx")
    assert np.allclose(advance, advance[0]) and 1.2 < float(advance[0]) < 1.6
    np.testing.assert_allclose(b.sel(coordinate="pelvis_tz"), a.sel(coordinate="pelvis_tz"), atol=1e-9)
    # half a stride later the legs have swapped
    h = long.coordinate_values(t + stride.duration / 2).drop_vars("time")
    np.testing.assert_allclose(h.sel(coordinate="knee_angle_l"), a.sel(coordinate="knee_angle_r"), atol=0.05)


def test_falisse_trial_feet_and_frame_fit_the_motion(model):
    """gait2392 IK (degrees, knee flexion negative) and numbered GRF plates become a consistent trial: with the
    plates on the feet the IK says (left hip flexed at the 3.195 s strike), ankle moments stay physiological;
    swapped, the far foot's load needs an ankle moment of ~440 N m."""
    walk = motion.from_opensim("falisse2019")
    peaks = []
    for right, left in (("1_ground_force", "ground_force"), ("ground_force", "1_ground_force")):
        grf = dynamics.grf_from_opensim("falisse2019/GRF_gait_1.mat", feet={"right": right, "left": left})
        weight = float(grf.force.sel(axis="z").sum("side").sel(time=slice(3.3, 4.3)).mean())
        result = dynamics.inverse_dynamics(model, walk, grf, mass_ratio=model.body_subtreemass[0] * 9.81 / weight)
        peaks.append(float(np.abs(result.torque.sel(joint=["ankle_angle_r", "ankle_angle_l"])).max()))
        assert float(np.abs(result.residual_force.sel(axis="z")).median()) < 0.15 * weight
    assert peaks[0] < 200 < peaks[1]


@pytest.mark.parametrize("source", ["rajagopal-run/grf_run.mot", "hamner-run/subject02_grf_HiFreq.mot",
                                    "moco-subject05/grf.mot"])
def test_grf_of_other_files_in_the_simulation_layout(grf, source):
    other = dynamics.grf_from_opensim(source)
    assert {k: v.dims for k, v in other.data_vars.items()} == {k: v.dims for k, v in grf.data_vars.items()}
    loaded = other.force.sel(axis="z") > 20
    assert loaded.sel(side="right").any() and loaded.sel(side="left").any()
    assert float(np.abs(other.point).max()) < 100  # unloaded feet's meaningless centres of pressure are held
