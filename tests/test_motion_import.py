"""`kinesis-neuro motion import/check/render`: the coordinates file, its provenance, and the commands reading it."""

import json

import numpy as np
import pytest

from kinesis_neuro import dynamics, motion, motion_check
from kinesis_neuro import model as mdl
from kinesis_neuro.cli import main
from kinesis_neuro.io import motion_file


@pytest.fixture(scope="module")
def myolegs():
    return mdl.load_model()


@pytest.fixture(scope="module")
def subject05(data_dir, myolegs, tmp_path_factory):
    """moco-subject05's OpenSim IK imported (placed on the floor) and written."""
    walk, provenance = motion_file.import_motion("moco-subject05/ik_solution.mot", model=myolegs)
    path = motion_file.write_motion(walk, tmp_path_factory.mktemp("import") / "subject05.mot", provenance)
    return walk, provenance, path


@pytest.fixture(scope="module")
def amp_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("amp")
    assert main(["motion", "import", "t2m-samples/amp_cmu_09_11_run.npy", "--out", str(out / "run.mot"),
                 "--render", str(out / "run.png")]) == 0
    return out


def test_written_file_round_trips(subject05):
    walk, provenance, path = subject05
    back = motion.from_opensim(path, filter_hz=None)
    np.testing.assert_allclose(back.time, walk.time, rtol=0, atol=1e-9)
    names = list(motion.MOTION_COORDINATES)
    np.testing.assert_allclose(back.coordinates.sel(coordinate=names).transpose("time", "coordinate").values,
                               walk.coordinates.sel(coordinate=names).transpose("time", "coordinate").values,
                               rtol=0, atol=1e-9)
    header = path.read_text().split("endheader")[0]
    assert "inDegrees=no" in header and "source=moco-subject05/ik_solution.mot" in header
    assert back.attrs["knee_convention"].startswith("rajagopal")
    stored = motion_file.read_provenance(path)
    assert stored["method"].startswith("OpenSim coordinates") and stored["format"] == "opensim"
    assert stored["floor"]["floor_shift_m"] == pytest.approx(provenance["floor"]["floor_shift_m"])
    assert motion_file.read_provenance("moco-walk") == {}


def test_floor_and_ranges_hold_as_the_commands_read_it(subject05, myolegs):
    _walk, provenance, path = subject05
    assert provenance["clipped_to_range_deg"]["knee_angle_r"] > 1  # the file's knee hyperextends past MyoLegs' 0
    report = motion_check.check_kinematics(myolegs, motion.from_opensim(path))["summary"]
    assert report["passed"], report
    assert report["penetration_max_m"] <= motion_check.FLOOR_TOLERANCE
    assert report["range_beyond_deg"] <= motion_check.RANGE_TOLERANCE


def test_imported_motion_simulates_with_its_grf(subject05, tmp_path, capsys):
    _, _, path = subject05
    out = tmp_path / "so.nc"
    assert main(["simulate", "--motion", str(path), "--grf", "moco-subject05/grf.mot", "--out", str(out)]) == 0
    assert "131 frames" in capsys.readouterr().out and out.stat().st_size > 0


def test_import_check_and_render_from_the_command_line(amp_run, tmp_path, capsys):
    mot = amp_run / "run.mot"
    stored = motion_file.read_provenance(mot)
    assert stored["format"] == "skeleton" and stored["check"]["passed"]
    assert stored["skating_correction"]["skating_before_m_s"] > 0 and "root_path_error_rms_m" in stored
    assert (amp_run / "run.png").stat().st_size > 10_000
    report_path = tmp_path / "check.json"
    assert main(["motion", "check", "--motion", str(mot), "--json", str(report_path)]) == 0
    text = capsys.readouterr().out
    assert "joint centre residual RMS" in text and "passed" in text and "heel strikes" in text
    report = json.loads(report_path.read_text())
    assert report["summary"]["passed"] and report["import"]["residual_kind"] == "joint centre"
    assert set(report["joint_ranges"]) == set(mdl.LEG_JOINTS)
    strip = tmp_path / "strip.png"
    assert main(["motion", "render", str(mot), "--out", str(strip), "--frames", "4"]) == 0
    assert strip.stat().st_size > 10_000


def test_imported_motion_builds_an_imitation_reference(amp_run, myolegs):
    from kinesis_neuro.envs.reference import walking_reference
    from kinesis_neuro.simulate import half_cycle_from_events

    mot = str(amp_run / "run.mot")
    events = motion_check.kinematic_events(myolegs, motion.from_opensim(mot))
    half = half_cycle_from_events(events, motion.from_opensim(mot))
    reference = walking_reference(mot, grf=None, half_cycle=half, duration=2.0, model=myolegs)
    assert reference.duration >= 2.0


def _write_trc(markers, path):
    names = [str(m) for m in markers.marker.values]
    values = markers.transpose("time", "marker", "axis").values * 1000.0
    lines = ["PathFileType\t4\t(X/Y/Z)\tsubset.trc",
             "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
             f"100\t100\t{len(values)}\t{len(names)}\tmm\t100\t1\t{len(values)}",
             "Frame#\tTime\t" + "\t".join(f"{n}\t\t" for n in names),
             "\t\t" + "\t".join(f"X{i + 1}\tY{i + 1}\tZ{i + 1}" for i in range(len(names)))]
    for k, (t, row) in enumerate(zip(markers.time.values, values)):
        lines.append(f"{k + 1}\t{t:.4f}\t" + "\t".join(f"{v:.3f}" for v in row.ravel()))
    path.write_text("\n".join(lines) + "\n")


def test_unseen_marker_subset_names_what_it_lacks(data_dir, tmp_path, capsys):
    """Another lab's names (Plug-in Gait pelvis) and no left-foot markers: a one-line message, no traceback."""
    from kinesis_neuro import markers

    trial = markers.read_markers("moco-walk/markers_walk.trc").isel(time=slice(0, 30))
    keep = [m for m in trial.marker.values if not str(m).startswith("L.") or str(m)[2:] in ("TH1", "TH2", "Knee")]
    renamed = trial.sel(marker=keep).assign_coords(marker=[{"R.ASIS": "RASI", "L.ASIS": "LASI", "R.PSIS": "RPSI",
                                                            "L.PSIS": "LPSI"}.get(str(m), str(m)) for m in keep])
    trc = tmp_path / "other_lab.trc"
    _write_trc(renamed, trc)
    assert main(["motion", "import", str(trc), "--out", str(tmp_path / "m.mot")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "too few markers" in err and "shank_l has 0 of 1" in err and "foot_l has 0 of 1" in err
    assert "lacks e.g." in err and not (tmp_path / "m.mot").exists()


@pytest.mark.parametrize("case, args, message", [
    ("extension", ["{tmp}/motion.csv"], "cannot tell the motion format from '.csv'"),
    ("pickle", ["{tmp}/other.npy"], "a pickle holding ['a']; expected an MDM result"),
    ("sample", ["moco-subject05/ik_solution.mot", "--sample", "1"], "--sample picks one of the samples of an MDM"),
    ("static", ["t2m-samples/amp_cmu_09_11_run.npy", "--static", "rajagopal-run/static_run.trc"],
     "--static calibrates marker inverse kinematics"),
    ("mdm-sample", ["t2m-samples/mdm_running_in_circle.npy", "--sample", "2"], "the file holds 1 sample(s)"),
    ("out", ["moco-subject05/ik_solution.mot", "--out", "{tmp}/m.nc"], "must be an OpenSim coordinates file"),
])
def test_import_errors_are_one_line(data_dir, tmp_path, capsys, case, args, message):
    (tmp_path / "motion.csv").write_text("time,x\n0,1\n1,2\n")
    np.save(tmp_path / "other.npy", np.array({"a": np.zeros(3)}, dtype=object), allow_pickle=True)
    argv = ["motion", "import", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "m.mot")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_c3d_and_mot_grf_follow_the_lab_frame(data_dir):
    yaw = np.deg2rad(30.0)
    turn = np.array([[np.cos(yaw), 0.0, -np.sin(yaw)], [0.0, 1.0, 0.0], [np.sin(yaw), 0.0, np.cos(yaw)]])
    plain = dynamics.load_grf("moco-subject05/grf.mot")
    turned = dynamics.load_grf("moco-subject05/grf.mot", lab_to_ground=turn.tolist())
    np.testing.assert_allclose(turned.force.sel(axis="z"), plain.force.sel(axis="z"))
    horizontal = lambda ds: np.linalg.norm(ds.force.sel(axis=["x", "y"]).values, axis=-1)
    np.testing.assert_allclose(horizontal(turned), horizontal(plain), atol=1e-9)
    assert not np.allclose(turned.force.sel(axis="x"), plain.force.sel(axis="x"))
    lab = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # a z-up lab walking along x
    c3d = dynamics.load_grf("gaitextract-walk/example1_walking.c3d", lab_to_ground=lab)
    assert json.loads(c3d.attrs["lab_to_ground"]) == lab.tolist()
    assert float(c3d.force.sel(axis="z").max()) > 500  # body weight pushes up in the world frame
    with pytest.raises(Exception, match="lab_to_ground must be a 3 x 3 rotation"):
        dynamics.load_grf("moco-subject05/grf.mot", lab_to_ground=[[1, 0], [0, 1]])
