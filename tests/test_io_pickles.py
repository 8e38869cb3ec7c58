"""Pickled NumPy motions: read the real files, and never run the code a hostile pickle names."""

import os
import pickle

import numpy as np
import pytest

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.pickles import load_pickle, read_mdm, read_skeleton_motion


def test_mdm_results(data_dir):
    run = read_mdm(data_dir / "t2m-samples" / "mdm_running_in_circle.npy")
    assert run["positions"].shape == (1, 196, 22, 3) and run["lengths"].tolist() == [196] and run["fps"] == 20.0
    assert run["text"] == ["A person is running in circle"] and run["joints"][:3] == ["pelvis", "left_hip", "right_hip"]
    pelvis_height = run["positions"][0, :, 0, 1]  # y up, m
    assert 0.7 < np.median(pelvis_height) < 1.2
    walk = read_mdm(data_dir / "t2m-samples" / "mdm_walk_pick_up_toolbox.npy")
    assert walk["positions"].shape == (3, 60, 22, 3) and len(walk["text"]) == 3


def test_skeleton_motions(data_dir):
    walk = read_skeleton_motion(data_dir / "t2m-samples" / "amp_cmu_07_01_walk.npy")
    assert walk["rotation"].shape == (154, 15, 4) and walk["fps"] == 60.0 and walk["quaternion_order"] == "xyzw"
    np.testing.assert_allclose(np.linalg.norm(walk["rotation"], axis=2), 1.0, atol=1e-5)
    assert walk["bodies"][0] == "pelvis" and walk["parents"][0] == -1 and walk["offsets"].shape == (15, 3)
    assert walk["global_velocity"].shape == (154, 15, 3) and 0.5 < walk["root_translation"][0, 2] < 1.2  # z up
    run = read_skeleton_motion(data_dir / "t2m-samples" / "amp_cmu_09_11_run.npy")
    assert run["rotation"].shape[0] == 82


class _Hostile:
    """Unpickling calls ``call(*args)``."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _as_npy(path, obj):
    np.save(path, np.array(obj, dtype=object), allow_pickle=True)
    return path


@pytest.mark.parametrize(("call", "forbidden"), [(os.system, "posix.system"), (open, "io.open"),
                                                  (exec, "builtins.exec")])
@pytest.mark.parametrize("wrap", ["npy", "raw"])
def test_hostile_pickle_runs_nothing(tmp_path, call, forbidden, wrap):
    marker = tmp_path / "marker"
    args = {os.system: (f"touch {marker}",), open: (str(marker), "w"), exec: (f"open({str(marker)!r}, 'w')",)}[call]
    payload = {"motion": np.zeros((1, 22, 3, 4), np.float32), "text": ["x"], "lengths": np.array([4]),
               "extra": _Hostile(call, *args)}
    path = tmp_path / "results.npy"
    if wrap == "npy":
        _as_npy(path, payload)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataFormatError, match=f"calls {forbidden}, which is not allowed") as err:
        read_mdm(path)
    assert str(path) in str(err.value) and not marker.exists()


def test_corrupt_and_unexpected_files(data_dir, tmp_path):
    raw = (data_dir / "t2m-samples" / "amp_cmu_07_01_walk.npy").read_bytes()
    cut = tmp_path / "cut.npy"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="cut.npy: not a readable pickle"):
        read_skeleton_motion(cut)
    header = tmp_path / "header.npy"
    header.write_bytes(raw[:20])
    with pytest.raises(DataFormatError, match="header.npy: corrupt .npy header"):
        load_pickle(header)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(DataFormatError, match="a plain float64 array"):
        load_pickle(plain)
    other = _as_npy(tmp_path / "other.npy", {"rotation": np.zeros(3)})
    with pytest.raises(DataFormatError, match=r"expected a SkeletonMotion dict with \['rotation'"):
        read_skeleton_motion(other)
    with pytest.raises(DataFormatError, match="expected an MDM result dict"):
        read_mdm(data_dir / "t2m-samples" / "amp_cmu_09_11_run.npy")
    unnormal = load_pickle(data_dir / "t2m-samples" / "amp_cmu_09_11_run.npy")
    unnormal["rotation"]["arr"] = unnormal["rotation"]["arr"] * 2
    with pytest.raises(DataFormatError, match="not unit quaternions"):
        read_skeleton_motion(_as_npy(tmp_path / "scaled.npy", unnormal))
    mdm = load_pickle(data_dir / "t2m-samples" / "mdm_running_in_circle.npy")
    mdm["motion"][0, 3, 1, 10] = np.nan
    with pytest.raises(DataFormatError, match="motion holds 1 NaN/infinite values"):
        read_mdm(_as_npy(tmp_path / "nan.npy", mdm))
