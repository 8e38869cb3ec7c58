from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from kinesis_neuro.envs import ENV_ID, ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.errors import KinesisNeuroError


@pytest.fixture(scope="module")
def env(data_dir):
    return MyoLegsImitationEnv(ImitationConfig())


def test_gymnasium_api(env):
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (459,) and env.action_space.shape == (80,)
    assert env.frame_skip == 5 and env.model.opt.timestep == pytest.approx(1 / 150)
    made = gym.make(ENV_ID, muscle_observations=False, episode_seconds=2.0)
    assert made.observation_space.shape == (459 - 240,)
    made.close()


def test_reset_is_on_the_reference_and_seeded(env):
    obs_a, info = env.reset(seed=3)
    assert info["tracking_error"] == 0.0
    np.testing.assert_allclose(env.data.qpos, env.reference.qpos[env._start])
    start = env._start
    obs_b, _ = env.reset(seed=3)
    assert env._start == start and np.array_equal(obs_a, obs_b)


def test_start_noise_moves_the_start_state_by_its_std_and_is_seeded(env):
    env.reset(seed=3, options={"start": 20, "start_noise": 1e-9, "noise_seed": 7})
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    offsets = np.concatenate([qpos - env.reference.qpos[20], qvel - env.reference.qvel[20]])
    assert 0.5e-9 < offsets.std() < 2e-9 and np.abs(offsets).max() < 1e-8
    env.reset(seed=3, options={"start": 20, "start_noise": 1e-9, "noise_seed": 7})
    assert np.array_equal(env.data.qpos, qpos) and np.array_equal(env.data.qvel, qvel)
    env.reset(seed=3, options={"start": 20, "start_noise": 1e-9, "noise_seed": 8})
    assert not np.array_equal(env.data.qpos, qpos)
    env.reset(seed=3, options={"start": 20, "start_noise": 0.0})
    assert np.array_equal(env.data.qpos, env.reference.qpos[20])
    assert np.array_equal(env.data.qvel, env.reference.qvel[20])
    with pytest.raises(KinesisNeuroError, match="start_noise"):
        env.reset(options={"start_noise": -1e-9})


def test_reward_and_termination_on_hand_built_states(env):
    env.reset(seed=0, options={"start": 10})
    _, _, reward, terms = env._reward()  # exactly on the reference (step 0), muscles at rest
    assert reward == pytest.approx(0.6 + 0.2 + 0.1 * terms["upright"] + 0.1, abs=1e-6)
    assert terms["position"] == pytest.approx(1.0) and terms["velocity"] == pytest.approx(1.0)
    env.data.qpos[2] -= 0.1  # whole body 10 cm too low: every tracked body 0.1 m off
    mujoco.mj_forward(env.model, env.data)
    env._sense()
    distance, _, reward, terms = env._reward()
    assert distance == pytest.approx(0.1, abs=1e-9)
    assert terms["position"] == pytest.approx(np.exp(-200 * 0.01), rel=1e-6)
    env.data.qpos[2] -= 0.1
    env.data.act[:] = 0.5
    mujoco.mj_forward(env.model, env.data)
    env._sense()
    distance, _, _, terms = env._reward()
    assert distance > env.config.termination_distance
    assert terms["energy"] == pytest.approx(np.exp(-0.05 * 80 * 0.25))


def test_target_length_gives_zero_activation_when_target_is_longer(env):
    env.reset(seed=1)
    mujoco.mj_step1(env.model, env.data)
    longer = env.data.actuator_length + 0.05
    assert np.all(env._target_length_activation(longer) == 0.0)
    shorter = env.data.actuator_length - 0.05
    assert np.mean(env._target_length_activation(shorter) > 0.0) > 0.9  # a few are already pulled passively


def test_ablation_zeroes_force_and_weakness_scales_it(data_dir):
    env = MyoLegsImitationEnv(ImitationConfig(ablate=("soleus_r", "quadriceps_l"), weaken={"tibant_r": 0.5}))
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.ones(80, dtype=np.float32) * -1.0)  # shortest targets: every muscle pulls hard
    idx = [env.muscles.index(m) for m in ("soleus_r", "vaslat_l", "vasmed_l", "vasint_l", "recfem_l")]
    assert np.all(env.data.actuator_force[idx] == 0.0) and np.all(env.data.act[idx] == 0.0)
    assert env.data.actuator_force[env.muscles.index("soleus_l")] < -10.0
    t = env.muscles.index("tibant_r")
    assert env.model.actuator_gainprm[t, 2] == pytest.approx(0.5 * env._f_max[t])
    with pytest.raises(KinesisNeuroError, match="unknown muscle or group 'soleus'"):
        env.set_ablation(["soleus"])


def test_state_round_trip_is_exact(env):
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(2):
        env.step(rng.uniform(-1, 1, 80))
    saved = env.state
    actions = rng.uniform(-1, 1, (3, 80))
    first = [env.step(a)[0] for a in actions]
    env.state = saved
    second = [env.step(a)[0] for a in actions]
    np.testing.assert_array_equal(np.array(first), np.array(second))


def test_direct_mode(data_dir):
    env = MyoLegsImitationEnv(ImitationConfig(control_mode="direct", episode_seconds=1.0))
    env.reset(seed=0)
    env.step(np.full(80, 1.0))
    assert np.all(env.data.ctrl == 1.0) and np.all(env.data.act > 0.2)


def test_reference_walk_puts_the_lower_foot_on_the_floor(env, data_dir):
    from kinesis_neuro.envs.reference import walking_reference
    from kinesis_neuro.motion_check import foot_heights

    lower = foot_heights(env.model, walking_reference(duration=3.0)).min("side")
    assert abs(float(lower.median())) < 1e-3  # m
    hovering = foot_heights(env.model, walking_reference(duration=3.0, on_floor=False)).min("side")
    assert float(hovering.median()) > 0.03  # the subject's longer legs lift MyoLegs' stance foot ~5 cm


def test_target_lengths_span_from_kinesis_strongest_command_to_slack(env):
    env.reset(seed=1)
    mujoco.mj_step1(env.model, env.data)
    np.testing.assert_allclose(env.target_length(-np.ones(80)), 0.0)  # m: KINESIS's action -1
    np.testing.assert_allclose(env.target_length(np.zeros(80)), env.model.actuator_lengthrange.mean(axis=1))
    assert np.all(env._target_length_activation(env.target_length(np.ones(80))) == 0.0)  # twice mid-range: slack
    strongest = env._target_length_activation(env.target_length(-np.ones(80)))
    for action in (-0.5, 0.0, 0.5):
        assert np.all(strongest >= env._target_length_activation(env.target_length(np.full(80, action))))
    assert np.median(strongest) > 0.9


def test_mirror_maps_turn_a_reference_state_into_the_one_half_a_stride_later(env):
    """The reference stride is one half cycle and its left-right mirror image, so the mirrored observation at a
    phase is (up to the quarter sample between 0.575 s and the 150-Hz grid) the observation half a stride later."""
    obs_index, obs_sign, action_index = env.mirror_maps()
    assert sorted(obs_index) == list(range(env.observation_space.shape[0]))
    assert np.array_equal(action_index[action_index], np.arange(env.model.nu))  # an involution
    assert [env.muscles[i] for i in action_index[:2]] == ["addbrev_l", "addlong_l"]
    half_stride = int(round(env.reference.period * env.config.sim_rate / 2))
    now, _ = env.reset(options={"start": 50})
    later, _ = env.reset(options={"start": 50 + half_stride})
    assert np.abs(later - now).max() > 1.0
    assert np.abs(later - now[obs_index] * obs_sign).max() < 0.1


def test_foot_contact_lasts_until_the_toes_leave_the_ground(data_dir):
    """Gait events come from hindfoot or toe contact: the bundled walking policy's stance lasts about 60 %
    of its gait cycle, as in human walking (hindfoot contact alone ends at heel-off, ~40 %)."""
    from kinesis_neuro import compare, policies
    from kinesis_neuro.rollout import rollout

    policy = policies.load(Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk")
    _, recording = rollout(policy, episodes=1, seed=0, progress=False, episode_seconds=5.0)
    stance = compare.simulated_cycles(recording, ["soleus"]).stance_percent  # as the comparisons cut them
    # 3 cycles and stance 59.6-61.2 % in 9 runs with start noise 1e-9 (as another CPU's rounding)
    assert stance.sizes["cycle"] >= 3 and 50 < float(stance.mean()) < 70
