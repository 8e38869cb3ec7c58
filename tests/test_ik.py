"""Marker inverse kinematics onto MyoLegs, on the real marker files (moco-walk, rajagopal-run, C3D labs)."""

import json

import numpy as np
import pytest

from kinesis_neuro import ik, markers, motion
from kinesis_neuro import model as mdl
from kinesis_neuro.errors import DataFormatError

FLEXION = [f"{j}_{s}" for s in ("r", "l") for j in ("hip_flexion", "knee_angle", "ankle_angle")]


@pytest.fixture(scope="module")
def myolegs():
    return mdl.load_model()


@pytest.fixture(scope="module")
def walk_markers(data_dir):
    return markers.read_markers("moco-walk/markers_walk.trc")


@pytest.fixture(scope="module")
def walk_subject(walk_markers, myolegs):
    return ik.calibrate(walk_markers, model=myolegs)


@pytest.fixture(scope="module")
def walk_ik(walk_markers, walk_subject, myolegs):
    """OpenSim's window of the trial (0.45-1.80 s), solved in the lab frame OpenSim used."""
    return ik.inverse_kinematics(walk_markers.sel(time=slice(0.44, 1.81)), subject=walk_subject,
                                 align_heading=False, model=myolegs)


def test_marker_set_aliases_and_weights(data_dir):
    marker_set = markers.read_marker_set()
    assert len(marker_set) == 65
    assert marker_set["R.ASIS"].body == "pelvis" and marker_set["R.ASIS"].location == (0.013, 0.03, 0.128)
    assert marker_set["R.Knee"].fixed and not marker_set["R.TH1"].fixed  # anatomical vs tracking
    aliases, extra = markers.alias_table()
    assert aliases["RASI"] == "R.ASIS" and aliases["LTB2"] == "L.SH2" and aliases["LANK"] == "L.Ankle"
    assert extra["LTHI"].body == "femur_l" and extra["LTHI"].location[2] < 0  # mirrored to the left side
    weights = markers.default_weights(["R.ASIS", "R.TH1", "R.Knee", "S2"])
    # IK set-up (RASI 100, RTH1 50), scale set-up's placement task (RLFC 50), named by neither (1)
    assert weights == {"R.ASIS": 100.0, "R.TH1": 50.0, "R.Knee": 50.0, "S2": markers.DEFAULT_WEIGHT}


def test_read_markers_trc_and_c3d(walk_markers):
    assert walk_markers.dims == ("time", "marker", "axis") and walk_markers.sizes["marker"] == 41
    assert walk_markers.attrs["units"] == "m" and 0.9 < float(walk_markers.sel(marker="R.ASIS", axis="y")[0]) < 1.1
    c3d = markers.read_markers("gaitextract-walk/example1_walking.c3d")
    assert c3d.sizes["time"] == 454 and c3d.attrs["sampling_rate"] == 120.0
    assert np.isnan(c3d.sel(marker="LASI").values).any()  # gaps stay gaps


def test_coordinates_from_qpos_inverts_motion_qpos(data_dir, myolegs):
    walk = motion.from_opensim("moco-walk")
    qpos = walk.qpos(myolegs)
    back = motion.coordinates_from_qpos(myolegs, qpos, walk.time)
    names = [c for c in back.coordinates.coordinate.values if c in walk.coordinates.coordinate.values]
    np.testing.assert_allclose(back.coordinates.sel(coordinate=names), walk.coordinates.sel(coordinate=names),
                               atol=1e-9)
    np.testing.assert_allclose(back.qpos(myolegs), qpos, atol=1e-9)


def test_analytic_jacobians_match_finite_differences(walk_markers, myolegs):
    marker_set = markers.read_marker_set()
    _, defs, _ = markers.resolve(walk_markers, marker_set)
    chain = ik._Chain(mdl.load_model(), list(defs.values()))
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 0.3, 3), rng.normal(0, 0.5, 3), rng.uniform(0.1, 0.5, 14)]
    scales = np.array([1.1, 0.9, 1.05, 0.95, 1.1, 1.2])
    chain.set_geometry(scales, chain.loc)
    h = 1e-6
    numeric = np.column_stack([(chain.positions(x + h * e).ravel() - chain.positions(x - h * e).ravel()) / (2 * h)
                               for e in np.eye(20)])
    np.testing.assert_allclose(chain.jacobian(x), numeric, atol=1e-7)
    d_scale, _ = chain.geometry_jacobian(x)
    loc = chain.loc.copy()
    numeric = []
    for e in np.eye(6):
        chain.set_geometry(scales + h * e, loc)
        plus = chain.positions(x).ravel().copy()
        chain.set_geometry(scales - h * e, loc)
        numeric.append((plus - chain.positions(x).ravel()) / (2 * h))
    np.testing.assert_allclose(d_scale, np.column_stack(numeric), atol=1e-7)


def test_moco_walk_matches_opensim_ik(data_dir, walk_ik, walk_subject):
    walk, residuals = walk_ik
    table = motion.compare(walk, motion.from_opensim("moco-walk", filter_hz=None))
    flexion = table.loc[FLEXION]
    assert (flexion.rmse <= 5.0).all() and (flexion.r >= 0.95).all(), flexion
    assert (table.loc[["knee_angle_r", "knee_angle_l", "ankle_angle_r", "ankle_angle_l"], "rmse"] < 3.0).all()
    assert residuals.attrs["rms_m"] < 0.025 and residuals.attrs["max_m"] < 0.06
    # the subject is larger than MyoLegs; the tracking clusters were placed, the anatomical markers scaled
    assert walk_subject.scale_factors["shank"] > 1.05 and walk_subject.attrs["calibration_rms_m"] < 0.025


def test_ik_output_is_a_motion_with_residuals(walk_ik, myolegs):
    walk, residuals = walk_ik
    qpos = walk.qpos(myolegs)
    assert mdl.coupling_residual(myolegs, qpos) < 1e-12  # knee translations and patella follow the knee angle
    assert set(walk.attrs["locked"]) == set(ik.DEFAULT_LOCKED)
    assert np.all(walk.coordinates.sel(coordinate=list(ik.DEFAULT_LOCKED)).values == 0.0)
    assert walk.attrs["weakly_determined"] == []
    assert residuals.residual.dims == ("time", "marker") and residuals.residual.attrs["units"] == "m"
    assert residuals.sizes["marker"] == 29 and "R.Shoulder" in walk.attrs["dropped_markers"]
    assert json.loads(residuals.attrs["marker_weights"])["R.ASIS"] == 100.0
    assert set(json.loads(residuals.attrs["scale_factors"])) == set(ik.SCALES)
    assert residuals.attrs["max_m"] == pytest.approx(float(residuals.residual.max()))
    assert walk.to_dataset(myolegs).sizes["time"] == residuals.sizes["time"]  # every attr serialisable


def test_lab_frame_z_up_and_heading(walk_markers, walk_subject, myolegs):
    """The same markers in a z-up lab, walking along -y: the joint angles do not change, the heading is undone."""
    part = walk_markers.sel(time=slice(0.44, 0.8))
    lab = part.copy(data=part.values @ np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T)
    turned, _ = ik.inverse_kinematics(lab, subject=walk_subject, filter_hz=None, model=myolegs)
    straight, _ = ik.inverse_kinematics(part, subject=walk_subject, filter_hz=None, align_heading=False, model=myolegs)
    joints = list(mdl.LEG_JOINTS)
    np.testing.assert_allclose(turned.coordinates.sel(coordinate=joints), straight.coordinates.sel(coordinate=joints),
                               atol=1e-4)
    heading = np.rad2deg(turned.coordinates.sel(coordinate="pelvis_rotation").mean())
    assert abs(heading) < 5.0 and turned.attrs["lab_to_ground"][1] == [0.0, 0.0, 1.0]


def test_running_trial_calibrated_on_its_static_trial(data_dir, myolegs):
    run = markers.read_markers("rajagopal-run/motion_capture_run.trc").isel(time=slice(0, 80))
    result, residuals = ik.inverse_kinematics(run, subject="rajagopal-run/static_run.trc", model=myolegs)
    assert residuals.attrs["rms_m"] < 0.03
    knee = np.rad2deg(result.coordinates.sel(coordinate="knee_angle_r"))
    assert knee.max() - knee.min() > 60  # a running stride bends the knee far
    assert result.attrs["calibration"]["source"].endswith("static_run.trc")


def test_plug_in_gait_c3d_with_gaps(data_dir, myolegs):
    """Vicon Plug-in Gait: wands, no heel, PiG's own joint centres; frames without a pelvis are trimmed."""
    trial = markers.read_markers("c3d-gait-emg/Vicon_analysis.c3d").sel(time=slice(1.8, 4.0))
    result, residuals = ik.inverse_kinematics(trial, model=myolegs)
    assert residuals.attrs["rms_m"] < 0.03
    assert result.time[0] > trial.time.values[0]  # the subject enters the capture volume later
    sd = result.attrs["coordinate_sd_for_1cm_noise"]  # one wand per segment: rotations the least determined
    assert sd["hip_rotation_r"] > sd["hip_adduction_r"] and sd["ankle_angle_r"] > sd["knee_angle_r"]
    assert "R_HJC" in residuals.marker.values  # PiG's hip joint centre output, mapped by alias


def test_too_few_markers_is_a_one_line_error(walk_markers):
    feet = [m for m in walk_markers.marker.values if str(m).startswith("L.") and any(
        k in str(m) for k in ("Heel", "Toe", "MT5"))]
    with pytest.raises(DataFormatError, match=r"foot_l has 0 of 1 \(none; lacks e\.g\. L\.Toe") as err:
        ik.inverse_kinematics(walk_markers.drop_sel(marker=feet))
    assert "\n" not in str(err.value)
    pelvis = walk_markers.sel(marker=["R.ASIS", "L.ASIS", "R.Knee", "L.Knee"])
    with pytest.raises(DataFormatError, match=r"pelvis has 2 of 3 .*shank_r has 0 of 1"):
        ik.inverse_kinematics(pelvis)
