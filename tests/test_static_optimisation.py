"""Static optimisation on the real MyoLegs model: MuJoCo-consistent force/torque maps and the per-frame solver."""

import mujoco
import numpy as np
import pytest
from scipy.optimize import lsq_linear

import kinesis_neuro.static_optimisation as static_optimisation_module
from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.model import LEG_JOINTS, apply_couplings, coupling_jacobian, joint_table, load_model
from kinesis_neuro.static_optimisation import (
    muscle_state, solve_frame, static_optimisation, torque_map,
)

KNEE_R = LEG_JOINTS.index("knee_angle_r")
POSE = dict(hip_flexion_r=0.35, knee_angle_r=0.5, ankle_angle_r=0.1, hip_flexion_l=-0.15, knee_angle_l=0.1,
            ankle_angle_l=-0.1)  # mid-swing right, mid-stance left (rad)


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def joints(model):
    return joint_table(model)


def _pose(model, joints, angles):
    qpos = model.qpos0.copy()
    for name, value in angles.items():
        qpos[joints.loc[name, "qpos_index"]] = value
    return apply_couplings(model, qpos)


def _random_pose(model, joints, rng):
    return _pose(model, joints, {j: rng.uniform(joints.loc[j, "range_min"], joints.loc[j, "range_max"])
                                 for j in LEG_JOINTS})


@pytest.fixture(scope="module")
def frame(model, joints):
    """Torque map at a walking-like pose and torques made by known, sparse activations."""
    rng = np.random.default_rng(3)
    A, b0 = torque_map(model, mujoco.MjData(model), _pose(model, joints, POSE), np.zeros(model.nv))
    a_true = rng.uniform(0, 0.4, model.nu) * (rng.uniform(size=model.nu) < 0.5)
    return A, b0, a_true


def test_gain_bias_and_torque_map_reproduce_mujoco(model, joints):
    rng = np.random.default_rng(0)
    data = mujoco.MjData(model)
    for _ in range(3):
        qpos, qvel, act = _random_pose(model, joints, rng), rng.normal(0, 1, model.nv), rng.uniform(0, 1, model.nu)
        A, b0 = torque_map(model, data, qpos, qvel)
        data.act[:] = act
        state = muscle_state(model, data)
        mujoco.mj_forward(model, data)
        force = data.actuator_force
        np.testing.assert_allclose(state["gain"] * act + state["bias"], force, rtol=0, atol=1e-8 * abs(force).max())
        assert np.all(state["gain"] <= 0) and np.all(state["bias"] <= 0)
        for i in range(model.nu):  # against MuJoCo's muscle curves directly
            args = (data.actuator_velocity[i], model.actuator_lengthrange[i], model.actuator_acc0[i])
            gain = mujoco.mju_muscleGain(data.actuator_length[i], *args, model.actuator_gainprm[i, :9])
            assert state["gain"][i] == pytest.approx(gain, rel=1e-8, abs=1e-8 * abs(force).max())
        np.testing.assert_allclose(state["velocity"], data.actuator_velocity, rtol=1e-10, atol=1e-12)
        G = coupling_jacobian(model, qpos)
        projected = (G.T @ data.qfrc_actuator)[6:]
        np.testing.assert_allclose(A @ act + b0, projected, rtol=0, atol=1e-8 * abs(projected).max())


def test_known_activations_recovered_with_minimum_effort(frame):
    A, b0, a_true = frame
    solution = solve_frame(A, A @ a_true)
    assert np.abs(solution.residual).max() <= 1e-3
    assert np.abs(A @ solution.activation - A @ a_true).max() <= 1e-3
    assert np.sum(solution.activation ** 2) <= np.sum(a_true ** 2)
    assert solution.activation.min() >= 0 and solution.activation.max() <= 1
    assert np.all(solution.reserve == 0)


def test_near_maximal_torque_needs_the_bounded_solver(frame, monkeypatch):
    A, _, _ = frame
    calls = []
    monkeypatch.setattr(static_optimisation_module, "lsq_linear",
                        lambda *args, **kwargs: calls.append(1) or lsq_linear(*args, **kwargs))
    tau = A @ np.full(A.shape[1], 0.95)  # unbounded NNLS would exceed 1 here
    solution = solve_frame(A, tau)
    assert calls == [1]
    assert np.abs(solution.residual).max() <= 1e-3
    assert solution.activation.max() <= 1 and np.sum(solution.activation == 1) > 0


def test_infeasible_torque_reports_residual_or_uses_reserves(frame):
    A, _, a_true = frame
    tau = A @ a_true
    tau[KNEE_R] += 5000.0
    without = solve_frame(A, tau)
    assert without.residual[KNEE_R] > 1000 and np.all(without.reserve == 0)
    assert without.activation.min() >= 0 and without.activation.max() <= 1
    with_reserves = solve_frame(A, tau, reserves=1e4)
    assert np.abs(with_reserves.residual).max() <= 1e-3
    assert with_reserves.reserve[KNEE_R] > 1000
    np.testing.assert_allclose(A @ with_reserves.activation + with_reserves.reserve, tau, atol=1e-3)


def test_exponent_three(frame):
    A, _, a_true = frame
    cubic, square = solve_frame(A, A @ a_true, exponent=3), solve_frame(A, A @ a_true)
    assert np.abs(cubic.residual).max() <= 1e-3
    assert cubic.activation.min() >= 0 and cubic.activation.max() <= 1
    assert np.sum(cubic.activation ** 3) <= np.sum(square.activation ** 3) + 1e-9
    assert np.sum(cubic.activation ** 3) <= np.sum(a_true ** 3)


def test_bad_arguments_raise(model, frame):
    A, _, a_true = frame
    with pytest.raises(ProcessingError):
        solve_frame(A, A @ a_true, exponent=0.5)
    with pytest.raises(ProcessingError):
        solve_frame(A, A @ a_true, reserves=-1.0)
    with pytest.raises(ProcessingError):
        static_optimisation(model, np.zeros((3, model.nq)), np.zeros((3, model.nv)), np.zeros((3, 13)),
                            np.arange(3.0), progress=False)


def test_static_optimisation_trajectory(model, joints):
    T, rng = 20, np.random.default_rng(4)
    time = np.arange(T) * 0.01
    phase = 2 * np.pi * time / 1.1
    qpos = np.array([_pose(model, joints, dict(
        hip_flexion_r=0.2 + 0.4 * np.sin(p), knee_angle_r=0.6 + 0.5 * np.sin(p + 1),
        hip_flexion_l=0.2 - 0.4 * np.sin(p), knee_angle_l=0.6 - 0.5 * np.sin(p + 1))) for p in phase])
    qvel = np.zeros((T, model.nv))
    qvel[:, 6:] = np.gradient(qpos[:, 7:], time, axis=0)  # hinge/slide joints: qvel = dq/dt
    data, a_true = mujoco.MjData(model), rng.uniform(0, 0.3, (T, model.nu))
    torques = np.array([A @ a + b0 for A, b0, a in
                        ((*torque_map(model, data, q, v), a) for q, v, a in zip(qpos, qvel, a_true))])
    result = static_optimisation(model, qpos, qvel, torques, time, progress=False)
    assert result.activation.dims == ("time", "muscle") and result.residual.dims == ("time", "joint")
    assert list(result.joint.values) == list(LEG_JOINTS) and result.sizes["muscle"] == model.nu
    assert result.force.attrs["units"] == "N" and result.residual.attrs["units"] == "N m"
    assert result.attrs["exponent"] == 2 and "nnls" in result.attrs["method"]
    assert float(abs(result.residual).max()) <= 1e-3
    assert float(result.activation.min()) >= 0 and float(result.activation.max()) <= 1
    assert np.all((result.activation ** 2).sum("muscle").values <= (a_true ** 2).sum(axis=1))
    k = 7  # MuJoCo itself, at that frame's activations, gives the reported force, length and velocity
    data.qpos[:], data.qvel[:], data.act[:] = qpos[k], qvel[k], result.activation[k].values
    mujoco.mj_forward(model, data)
    np.testing.assert_allclose(result.force[k], -data.actuator_force, atol=1e-8 * abs(data.actuator_force).max())
    np.testing.assert_allclose(result.length[k], data.actuator_length, rtol=1e-12)
    np.testing.assert_allclose(result.velocity[k], data.actuator_velocity, rtol=1e-10, atol=1e-12)
