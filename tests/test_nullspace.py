"""Muscle redundancy on a hand-built 2-joint, 4-muscle arm and a smoke test on MyoLegs walking."""

import mujoco
import numpy as np
import pytest
import xarray as xr

from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.model import LEG_JOINTS, load_model
from kinesis_neuro.record import Recording
from kinesis_neuro.redundancy.nullspace import (
    _null_perturbation,
    activation_torque_map,
    effort_optimality,
    feasible_ranges,
    perturbation_test,
    recording_states,
    subspaces,
    variability_decomposition,
)

# Shoulder j1 spanned by m0 (joint flexor), m1 (joint extensor) and m2 (spatial tendon over a site
# path); elbow j2 spanned by m3 alone (joint transmission), so m3's activation is fixed by the elbow torque.
ARM = """
<mujoco>
  <compiler autolimits="true"/>
  <worldbody>
    <site name="anchor" pos="0.1 0 0.1"/>
    <body name="upper">
      <joint name="j1" type="hinge" axis="0 1 0" range="-1 1"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.3" size="0.03" mass="2"/>
      <site name="insertion" pos="0.03 0 -0.15"/>
      <body name="lower" pos="0 0 -0.3">
        <joint name="j2" type="hinge" axis="0 1 0" range="-1 1"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.3" size="0.025" mass="1"/>
      </body>
    </body>
  </worldbody>
  <tendon>
    <spatial name="path"><site site="anchor"/><site site="insertion"/></spatial>
  </tendon>
  <actuator>
    <muscle name="m0" joint="j1" gear="0.05" force="300" lengthrange="-0.05 0.05"/>
    <muscle name="m1" joint="j1" gear="-0.04" force="400" lengthrange="-0.04 0.04"/>
    <muscle name="m2" tendon="path" force="200"/>
    <muscle name="m3" joint="j2" gear="0.03" force="250" lengthrange="-0.03 0.03"/>
  </actuator>
</mujoco>
"""


@pytest.fixture(scope="module")
def arm():
    return mujoco.MjModel.from_xml_string(ARM)


@pytest.fixture(scope="module")
def states(arm):
    rng = np.random.default_rng(1)
    return rng.uniform(-0.8, 0.8, (6, arm.nq)), rng.normal(0, 1, (6, arm.nv))


@pytest.fixture(scope="module")
def maps(arm, states):
    return activation_torque_map(arm, *states)


def test_map_matches_mujoco_and_null_space_is_orthogonal(arm, states, maps):
    assert list(maps.joint.values) == ["j1", "j2"] and list(maps.muscle.values) == ["m0", "m1", "m2", "m3"]
    assert np.all(maps["rank"] == 2) and np.all(maps.null_dim == 2)
    data = mujoco.MjData(arm)
    act = np.random.default_rng(2).uniform(0, 1, arm.nu)
    for t, (qpos, qvel) in enumerate(zip(*states)):
        A, N = maps.A.values[t], maps.null_basis.values[t]
        data.qpos[:], data.qvel[:], data.act[:] = qpos, qvel, act
        mujoco.mj_forward(arm, data)
        assert np.allclose(A @ act + maps.b0.values[t], data.qfrc_actuator, rtol=1e-9, atol=1e-9)
        assert np.abs(A @ N).max() < 1e-9
        assert np.allclose(N.T @ N, np.eye(2), atol=1e-12)
        row_space = np.linalg.qr(A.T)[0]
        assert np.abs(row_space.T @ N).max() < 1e-9
        assert A[1, :3] == pytest.approx([0, 0, 0]) and A[0, 3] == 0  # m3 alone spans j2


def test_subspaces_of_rank_deficient_map():
    rank, row, null = subspaces(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))
    assert rank == 1 and row.shape == (3, 1) and null.shape == (3, 2)


def test_null_perturbation_keeps_torques_random_one_does_not(arm, states, maps):
    act = np.tile([0.0, 0.02, 0.5, 0.97], (len(maps.time), 1))  # bounds bind: clipping is exercised
    result = perturbation_test(maps, act, norm=0.1, seed=3)
    assert result.converged.all()
    assert result.null_norm.min() > 0.01
    assert result.null_torque_change.max() < 1e-6
    assert result.random_torque_change.min() > 1e3 * result.null_torque_change.max()
    assert result.random_torque_change.min() > 0.1  # N m
    # the same step through MuJoCo itself: inside [0, 1] and no torque change
    data, rng = mujoco.MjData(arm), np.random.default_rng(4)
    for t, (qpos, qvel) in enumerate(zip(*states)):
        d, converged, _ = _null_perturbation(maps.null_basis.values[t], act[t], 0.1, rng, 1000)
        assert converged and np.all(act[t] + d >= -1e-12) and np.all(act[t] + d <= 1 + 1e-12)
        torques = []
        for a in (act[t], act[t] + d):
            data.qpos[:], data.qvel[:], data.act[:] = qpos, qvel, a
            mujoco.mj_forward(arm, data)
            torques.append(data.qfrc_actuator.copy())
        assert np.abs(torques[1] - torques[0]).max() < 1e-6
    with pytest.raises(ProcessingError, match="norm"):
        perturbation_test(maps, act, norm=0.8)


def test_feasible_range_of_the_lone_elbow_muscle_is_a_point(maps):
    act = np.array([0.3, 0.2, 0.4, 0.35])
    tau = maps.A.values @ act
    ranges = feasible_ranges(maps.A, tau, maps.muscle.values)
    assert ranges.feasible.all()
    assert np.allclose(ranges.lower.sel(muscle="m3"), 0.35, atol=1e-7)
    assert np.allclose(ranges.upper.sel(muscle="m3"), 0.35, atol=1e-7)
    assert ranges.obligatory.sel(muscle="m3").all()
    width = (ranges.upper - ranges.lower).sel(muscle=["m0", "m1", "m2"])
    assert width.min() > 0.05
    assert np.all(ranges.lower.values - 1e-7 <= act) and np.all(act <= ranges.upper.values + 1e-7)
    impossible = feasible_ranges(maps.A.values[:1], 10 * np.abs(tau[:1]) + 1e3, maps.muscle.values)
    assert not impossible.feasible.any() and impossible.lower.isnull().all()


def test_variability_in_the_null_space_only_gives_positive_synergy_index(maps):
    rng = np.random.default_rng(5)
    A = maps.A.isel(time=slice(0, 4)).rename(time="phase")
    mean = np.array([0.3, 0.3, 0.4, 0.5])
    cycles = np.stack([[mean + maps.null_basis.values[p] @ rng.normal(0, 0.05, 2) for p in range(4)]
                       for _ in range(12)])
    cycles = xr.DataArray(cycles, dims=("cycle", "phase", "channel"),
                          coords=dict(phase=[0.0, 25.0, 50.0, 75.0], channel=list(maps.muscle.values)))
    ucm = variability_decomposition(cycles, A)
    assert np.all(ucm.n_task == 2) and np.all(ucm.n_null == 2)
    assert np.all(ucm.v_task < 1e-20) and np.all(ucm.v_null > 1e-4)
    assert np.all(ucm.delta_v > 1.9)  # the maximum, nu / n_null = 2
    noisy = variability_decomposition(cycles + rng.normal(0, 0.05, cycles.shape), A)
    assert np.all(noisy.delta_v < ucm.delta_v)
    with pytest.raises(ProcessingError, match="at least 2 cycles"):
        variability_decomposition(cycles.isel(cycle=[0]), A)
    with pytest.raises(ProcessingError, match="do not vary"):
        variability_decomposition(cycles.isel(cycle=[0, 0, 0]), A)


def test_effort_optimality_of_a_wasteful_pattern(arm, states, maps):
    qpos, qvel = states
    wasteful = np.tile([0.6, 0.6, 0.2, 0.3], (len(qpos), 1))  # co-contraction of m0 and m1
    recording = Recording.from_arrays(np.arange(len(qpos)) * 0.01, ["m0", "m1", "m2", "m3"], ["j1", "j2"],
                                      activation=wasteful, angle=qpos, angular_velocity=qvel,
                                      attrs=dict(motion="test", controller="test"))
    rebuilt = recording_states(arm, recording)
    assert np.allclose(rebuilt[0], qpos) and np.allclose(rebuilt[1], qvel)
    result = effort_optimality(arm, recording)
    assert np.all(result.excess_effort > 0.1) and np.all(result.residual < 1e-6)
    optimal = result.optimal_activation.values
    assert np.allclose(np.einsum("tjm,tm->tj", maps.A.values, optimal),
                       np.einsum("tjm,tm->tj", maps.A.values, wasteful), atol=1e-6)
    again = effort_optimality(arm, recording.data.assign(activation=(("time", "muscle"), optimal,
                                                                      recording.data.activation.attrs)))
    assert np.abs(again.excess_effort).max() < 1e-8


@pytest.fixture(scope="module")
def walk(data_dir):
    from kinesis_neuro.simulate import static_optimisation_recording

    return static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=3, progress=False)


def test_myolegs_static_optimisation_walk(walk):
    model = load_model()
    optimality = effort_optimality(model, walk)
    assert np.abs(optimality.excess_effort).max() < 1e-6
    assert optimality.distance.max() < 1e-3
    frames = slice(0, None, 100)
    qpos, qvel = recording_states(model, walk.data.isel(time=frames))
    maps = activation_torque_map(model, qpos, qvel, walk.data.time.values[frames])
    assert list(maps.joint.values) == list(LEG_JOINTS)
    assert np.all(maps["rank"] <= 14) and np.all(maps.null_dim == 80 - maps["rank"])
    act = walk.data.activation.isel(time=frames).values
    torque = walk.data.torque.isel(time=frames).sel(joint=list(LEG_JOINTS)).values
    assert np.abs(np.einsum("tjm,tm->tj", maps.A.values, act) + maps.b0.values - torque).max() < 1e-3
    perturbed = perturbation_test(maps, act)
    assert perturbed.converged.all() and perturbed.null_torque_change.max() < 1e-6
    assert perturbed.random_torque_change.min() > 0.1  # N m
    ranges = feasible_ranges(maps.A.isel(time=slice(0, None, 3)), torque[::3] - maps.b0.values[::3],
                             maps.muscle.values)
    assert ranges.feasible.all()
    assert np.all(ranges.lower.values - 1e-6 <= act[::3]) and np.all(act[::3] <= ranges.upper.values + 1e-6)


def test_nullspace_cli_on_static_optimisation(data_dir, tmp_path):
    import json

    from kinesis_neuro.cli import main
    from kinesis_neuro.simulate import static_optimisation_recording

    path = tmp_path / "so.nc"
    static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", progress=False).save(path)
    assert main(["nullspace", "--recording", str(path), "--step", "50", "--feasible-every", "500",
                 "--out", str(tmp_path / "ns")]) == 0
    summary = json.loads((tmp_path / "ns" / "summary.json").read_text())
    assert summary["rank_median"] == 14 and summary["null_dim_median"] == 66
    assert summary["null_torque_change_max_n_m"] < 1e-6 < summary["random_torque_change_median_n_m"]
    assert abs(summary["excess_effort_mean"]) < 1e-4  # static optimisation is already effort-optimal
    assert "delta_v_note" in summary  # the trial holds no complete gait cycle: no UCM decomposition
    assert {p.name for p in (tmp_path / "ns").glob("*.png")} == {"nullspace_dimensions.png", "feasible_ranges.png",
                                                                "effort.png"}
