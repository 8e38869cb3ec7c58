"""MuJoCo muscle activation dynamics: the rate, forward integration against a MuJoCo rollout, the inverse."""

import mujoco
import numpy as np
import pytest

from kinesis_neuro.activation import activation_from_excitation, activation_rate, excitation_from_activation
from kinesis_neuro.errors import ProcessingError
from kinesis_neuro.model import load_model


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_rate_matches_mju_muscle_dynamics(smoothing):
    rng = np.random.default_rng(0)
    u, a = rng.uniform(-0.3, 1.3, 500), rng.uniform(-0.2, 1.2, 500)
    expected = [mujoco.mju_muscleDynamics(ui, ai, np.array([0.01, 0.04, smoothing])) for ui, ai in zip(u, a)]
    np.testing.assert_allclose(activation_rate(u, a, 0.01, 0.04, smoothing), expected, rtol=1e-12, atol=1e-12)


def test_forward_matches_mujoco_euler_rollout(model):
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    rng = np.random.default_rng(1)
    T, dt = 200, model.opt.timestep
    excitation = rng.uniform(-0.2, 1.2, (T, model.nu))  # out-of-range ctrl is clamped by both
    excitation[50:90], excitation[90:130] = 1.0, 0.0
    a0 = rng.uniform(0, 1, model.nu)
    data = mujoco.MjData(model)
    data.act[:] = a0
    rollout = [data.act.copy()]
    for k in range(T - 1):
        data.ctrl[:] = excitation[k]
        mujoco.mj_step(model, data)
        rollout.append(data.act.copy())
    tau_act, tau_deact = model.actuator_dynprm[:, 0], model.actuator_dynprm[:, 1]
    act = activation_from_excitation(excitation, np.arange(T) * dt, tau_act, tau_deact, a0)
    np.testing.assert_allclose(act, np.array(rollout), rtol=0, atol=1e-9)


def test_default_start_is_mujoco_reset_state():
    act = activation_from_excitation(np.ones((3, 2)), [0.0, 0.002, 0.004], 0.01, 0.04)
    assert np.all(act[0] == 0) and np.all(np.diff(act, axis=0) > 0)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_round_trip(smoothing):
    rng = np.random.default_rng(2)
    time = np.cumsum(rng.uniform(0.001, 0.004, 300))  # uneven steps
    excitation = np.clip(0.5 + 0.5 * np.sin(np.outer(time, [3.0, 11.0, 29.0]) * 2 * np.pi), 0, 1)
    act = activation_from_excitation(excitation, time, 0.01, 0.04, smoothing=smoothing)
    back = excitation_from_activation(act, time, 0.01, 0.04, smoothing=smoothing)
    np.testing.assert_allclose(back[:-1], excitation[:-1], atol=1e-9)
    assert np.array_equal(back[-1], back[-2])


def test_inverse_clips_impossible_changes():
    act = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # full jumps in 2 ms
    excitation = excitation_from_activation(act, [0.0, 0.002, 0.004], 0.01, 0.04)
    np.testing.assert_array_equal(excitation, [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])


def test_bad_time_raises():
    with pytest.raises(ProcessingError):
        activation_from_excitation(np.zeros((3, 2)), [0.0, 0.02, 0.01], 0.01, 0.04)
    with pytest.raises(ProcessingError):
        excitation_from_activation(np.zeros((3, 2)), [0.0, 0.01], 0.01, 0.04)
