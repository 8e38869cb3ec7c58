"""Closed-loop null-space perturbations during policy rollouts."""

import numpy as np
import pytest

from kinesis_neuro import policies
from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.redundancy.perturbation import closed_loop_perturbation


@pytest.fixture(scope="module")
def policy(policy_dir):
    return policies.load(policy_dir)


def test_null_offsets_leave_torques_unchanged_and_random_ones_do_not(policy):
    ds = closed_loop_perturbation(policy, episodes=2, norm=0.05, seed=3, progress=False)
    null, random = ds.sel(perturbation="null"), ds.sel(perturbation="random")
    # measured over 3 tiny policies (training seeds 0-2) x seeds 0-5: null <= 1.1e-15, random 2.26-2.98 N m,
    # applied norm 0.038-0.041, deviations >= 1e-4; episodes fall within 0.3 s, before rounding differences grow
    assert (null.torque_change < 1e-6).all()
    assert (random.torque_change > 1.0).all()  # N m
    assert (ds.applied_norm > 0.02).all() and (ds.applied_norm <= 0.05 + 1e-12).all()
    assert (ds.joint_deviation > 0.0).all() and (ds.body_deviation > 0.0).all()
    assert ds.attrs["joint_deviation_ratio"] == pytest.approx(
        float(null.joint_deviation.mean() / random.joint_deviation.mean()))
    assert ds.joint_deviation.attrs["units"] == "rad" and ds.body_deviation.attrs["units"] == "m"
    again = closed_loop_perturbation(policy, episodes=2, norm=0.05, seed=3, progress=False)
    np.testing.assert_array_equal(ds.joint_deviation.values, again.joint_deviation.values)


def test_bad_norm_is_refused(policy):
    with pytest.raises(ProcessingError, match="norm"):
        closed_loop_perturbation(policy, episodes=1, norm=0.9, progress=False)


def test_nullspace_cli_perturbs_a_policy_in_closed_loop(policy_dir, tmp_path):
    import json

    import xarray as xr

    from kinesis_neuro.cli import main

    assert main(["nullspace", "--policy", str(policy_dir), "--episodes", "2", "--perturbation-seconds", "1",
                 "--step", "2", "--feasible-every", "10", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    closed = summary["closed_loop_perturbation"]
    assert closed["torque_change_null"] < 1e-6 < closed["torque_change_random"]
    assert summary["null_dim_median"] >= 60  # 80 muscles, 14 leg joints
    assert (tmp_path / "perturbation.png").stat().st_size > 0
    with xr.open_dataset(tmp_path / "closed_loop_perturbation.nc") as ds:
        assert ds.sizes == {"episode": 2, "perturbation": 2}


def test_batched_runs_are_the_single_environment_runs(policy):
    """Unperturbed, null and random runs, four at a time in a vectorised environment (slots reused, runs of
    different lengths), are bit for bit the runs of one MyoLegsImitationEnv, the offsets drawn included."""
    from kinesis_neuro.envs import ImitationConfig, MyoLegsImitationEnv
    from kinesis_neuro.envs.vector import MyoLegsVectorEnv
    from kinesis_neuro.redundancy.nullspace import _JointMap
    from kinesis_neuro.redundancy.perturbation import KINDS, _Offsets, _run, _run_batched

    config = ImitationConfig(**{**policy.env_config, "episode_seconds": 1.0})
    single = MyoLegsImitationEnv(config)
    joints = _JointMap(single.model)

    def runs():
        return [(3 + k, None if j is None else _Offsets(KINDS[j], 0.05, np.random.default_rng([3, k, j]), joints))
                for k in range(2) for j in (None, 0, 1)]

    together, alone = runs(), runs()
    batched = _run_batched(MyoLegsVectorEnv(4, config, autoreset=False, backend="numpy"), policy, together, joints)
    for run, (seed, offsets), (_, reference_offsets) in zip(batched, together, alone):
        reference = _run(single, policy, seed, joints, reference_offsets)
        assert (run["fell"], run["duration"]) == (reference["fell"], reference["duration"])
        np.testing.assert_array_equal(run["angles"], reference["angles"])
        np.testing.assert_array_equal(run["bodies"], reference["bodies"])
        if offsets is not None:
            assert (offsets.torque_change, offsets.size) == (reference_offsets.torque_change, reference_offsets.size)
            assert len(offsets.size) == len(run["angles"])  # one offset per step
    assert len({run["duration"] for run in batched}) > 1
