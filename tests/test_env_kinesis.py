"""KINESIS-aligned environment settings (each changes what it should, the defaults nothing) and motion-library
environments (many clips, one per episode)."""

import math

import mujoco
import numpy as np
import pytest

from kinesis_neuro.envs import KINESIS_SETTINGS, ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.envs.imitation import step_rewards
from kinesis_neuro.envs.recorder import EpisodeRecorder
from kinesis_neuro.envs.vector import MyoLegsVectorEnv
from kinesis_neuro.errors import KinesisNeuroError

# a periodic walk and a one-off text-to-motion clip of 2.95 s (shorter than the 5-s episodes below)
CLIPS = ("moco-walk", "mdm-walk-pick-up-toolbox-0")


@pytest.fixture(scope="module")
def default(data_dir):
    return MyoLegsImitationEnv(ImitationConfig(episode_seconds=2.0))


@pytest.fixture(scope="module")
def kinesis(data_dir):
    return MyoLegsImitationEnv(ImitationConfig.kinesis(episode_seconds=2.0))


@pytest.fixture(scope="module")
def library(data_dir):
    return MyoLegsImitationEnv(ImitationConfig(clips=CLIPS, episode_seconds=5.0, termination_distance=math.inf,
                                               muscle_observations=False))


def _same_state(env, other, start: int = 10):
    """Both environments reset on reference row ``start`` (same positions and velocities)."""
    env.reset(seed=0, options={"start": start})
    other.reset(seed=0, options={"start": start})


def _moved(env, joint: str | None = None, angle: float = 0.0, drop: float = 0.0, sink: float = 0.0):
    """Change the current state by hand (a joint bent by ``angle`` rad, the body ``drop`` m lower and
    moving down ``sink`` m/s faster) and let the environment see it."""
    d = env.data
    if joint:
        d.qpos[env.model.joint(joint).qposadr[0]] += angle
    d.qpos[2] -= drop
    d.qvel[2] -= sink
    mujoco.mj_forward(env.model, d)
    env._sense()


def test_kinesis_settings_come_together_and_the_defaults_differ(data_dir):
    config = ImitationConfig.kinesis(episode_seconds=3.0, termination="mean")
    assert (config.kernel_average, config.effort, config.activation_dynamics, config.toe_contact) == (
        "mean", "l1-l2", True, True)
    assert config.termination == "mean" and config.episode_seconds == 3.0  # overrides win
    assert all(getattr(ImitationConfig(), k) != v for k, v in KINESIS_SETTINGS.items())
    for bad in ({"kernel_average": "median"}, {"effort": "l3"}, {"effort_weighting": "mass"},
                {"termination": "all"}):
        with pytest.raises(KinesisNeuroError, match=next(iter(bad))):
            MyoLegsImitationEnv(**bad)


def test_mean_kernels_are_the_sum_over_three_inside_the_exponent(default, kinesis):
    """Every tracked body 0.1 m too low and 0.5 m/s too fast downwards: squared errors 0.01 m^2 and
    0.25 m^2/s^2 summed over x/y/z, a third of that averaged."""
    _same_state(default, kinesis)
    for env in (default, kinesis):
        _moved(env, drop=0.1, sink=0.5)
    _, _, _, summed = default._reward()
    _, _, _, averaged = kinesis._reward()
    assert summed["position"] == pytest.approx(math.exp(-200 * 0.01), rel=1e-6)
    assert averaged["position"] == pytest.approx(math.exp(-200 * 0.01 / 3), rel=1e-6)
    assert summed["velocity"] == pytest.approx(math.exp(-5 * 0.25), rel=1e-6)
    assert averaged["velocity"] == pytest.approx(math.exp(-5 * 0.25 / 3), rel=1e-6)


def test_any_body_termination_fires_when_one_body_strays_and_the_mean_is_small(default, kinesis):
    """The right knee bent 1 rad more than the reference: the right foot and toes ~0.4 m away, the mean
    over the 9 tracked bodies ~0.1 m. The mean rule (default) goes on, the any-body rule (KINESIS) ends."""
    _same_state(default, kinesis)
    for env in (default, kinesis):
        _moved(env, "knee_angle_r", 1.0)
    mean, farthest, _, _ = kinesis._reward()
    assert mean < 0.15 and farthest > 0.3
    _, _, terminated, _, info = default.step(np.zeros(80))
    assert not terminated and info["tracking_error"] < 0.15
    _, _, terminated, _, info = kinesis.step(np.zeros(80))
    assert terminated and info["tracking_error"] < 0.15


def test_toe_contacts_are_observed_at_the_very_end(default, kinesis):
    """The default observation followed by the toe contacts (right, left): a network trained without them
    is warm-started by padding its first layer; the mirror image swaps them."""
    n = default.observation_space.shape[0]
    assert kinesis.observation_space.shape == (n + 2,)
    seen = set()
    for start in range(0, 170, 10):  # a stride of the reference
        without, _ = default.reset(options={"start": start})
        with_toes, _ = kinesis.reset(options={"start": start})
        assert np.array_equal(with_toes[:n], without)
        toes = with_toes[n:]
        assert np.array_equal(toes, kinesis.data.sensordata[kinesis._toe_sensors] > 0)
        seen.add(tuple(toes))
    assert {(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)} <= seen  # each toe on and off the ground over a stride
    obs_index, obs_sign, _ = kinesis.mirror_maps()
    assert sorted(obs_index) == list(range(n + 2))
    assert obs_index[n:].tolist() == [n + 1, n] and np.all(obs_sign[n:] == 1.0)


def test_activation_dynamics_turn_the_command_into_an_excitation(default, kinesis, data_dir):
    """Default: the computed activation is written into the activation (act == ctrl). With activation
    dynamics it is the excitation: MuJoCo's muscle dynamics integrate the activation towards it, kept in
    [0, 1]; the recorder keeps both."""
    _same_state(default, kinesis)
    default.step(-np.ones(80))
    assert np.array_equal(default.data.act, default.data.ctrl)
    kinesis.recorder = EpisodeRecorder()
    try:
        kinesis.reset(seed=0, options={"start": 10})
        for _ in range(3):
            kinesis.step(-np.ones(80))  # shortest target lengths: most muscles commanded to 1 from rest
        recording = kinesis.recorder.to_recording(kinesis, {"motion": "moco-walk", "controller": "shortest"})
    finally:
        kinesis.recorder = None
    act, ctrl = kinesis.data.act, kinesis.data.ctrl
    assert np.abs(act - ctrl).max() > 0.05 and act.min() >= 0.0 and act.max() <= 1.0
    activation, excitation = recording.data["activation"].values, recording.data["excitation"].values
    assert np.abs(activation - excitation).max() > 0.05 and np.array_equal(activation[-1], act)
    assert recording.data.attrs["reference_clip"] == "moco-walk"
    assert np.all(activation[0] == 0.0) and activation[1:][excitation[1:] == 1.0].mean() > 0.9  # 10-ms rise

    # one substep per control step: the activation moves by exactly MuJoCo's muscle dynamics
    env = MyoLegsImitationEnv(ImitationConfig.kinesis(control_rate=150.0, episode_seconds=0.5))
    env.reset(seed=0, options={"start": 10})
    h, prm = env.model.opt.timestep, env.model.actuator_dynprm
    for action in (-np.ones(80), np.zeros(80), np.ones(80)):
        before = env.data.act.copy()
        env.step(action)
        ctrl = env.data.ctrl
        expected = [min(max(a + h * mujoco.mju_muscleDynamics(u, a, p[:3]), 0.0), 1.0)
                    for u, a, p in zip(ctrl, before, prm)]
        np.testing.assert_allclose(env.data.act, expected, rtol=0, atol=1e-12)
        assert not np.array_equal(env.data.act, ctrl)


def test_l1_l2_effort_averages_the_substeps_and_weights_by_muscle_size(kinesis):
    kinesis.reset(seed=1, options={"start": 30})
    info = kinesis.step(np.full(80, -0.3))[4]
    u = kinesis._substeps  # the excitations of the step's five substeps, the last one is what d.ctrl holds
    assert u.shape == (5, 80) and np.array_equal(u[-1], kinesis.data.ctrl)
    effort = ((np.abs(u) + u * u).mean(axis=1)).mean()
    assert info["reward_effort"] == pytest.approx(math.exp(-3.0 * effort), rel=1e-12)
    assert "reward_energy" not in info
    last_only = (np.abs(u[-1]) + u[-1] ** 2).mean()
    assert abs(last_only - effort) > 1e-3 * effort  # the command changes within a step: averaging matters

    # one muscle fully excited: uniform effort 2/80, force-weighted 2 * its share of the summed max force
    f_max = kinesis._f_max
    big, small = int(np.argmax(f_max)), int(np.argmin(f_max))
    zeros = np.zeros((1, 9, 3))
    for muscle in (big, small):
        u = np.zeros((1, 5, 80))
        u[0, :, muscle] = 1.0
        for share, expected in ((np.full(80, 1 / 80), 2 / 80), (f_max / f_max.sum(), 2 * f_max[muscle] / f_max.sum())):
            _, _, _, terms = step_rewards(kinesis.config, zeros, zeros, [1.0], None, u, share)
            assert terms["effort"][0] == pytest.approx(math.exp(-3.0 * expected), rel=1e-12)
    force = MyoLegsImitationEnv(ImitationConfig.kinesis(effort_weighting="force", episode_seconds=0.5))
    np.testing.assert_allclose(force._effort_share, f_max / f_max.sum())


def test_a_library_resets_into_every_clip_with_its_weights_or_the_one_asked_for(library):
    env = library
    assert env.clip_names == CLIPS and len(env.reference.offsets) == 2
    seen = []
    for seed in range(16):
        _, info = env.reset(seed=seed)
        clip = env.clip
        seen.append(clip)
        start = env._start - env.reference.offsets[clip]
        assert info["clip"] == clip and 0 <= start < env.n_start_phases[clip]
        assert env.reference.time[env.reference.offsets[clip]] <= info["reference_time"]
    assert set(seen) == {0, 1}
    assert env.n_start_phases[1] == 1  # the one-off clip is shorter than an episode: it starts at its beginning
    assert env.reset(options={"clip": "mdm-walk-pick-up-toolbox-0"})[1]["clip"] == 1
    assert env.reset(options={"clip": 0})[1]["clip"] == 0
    env.set_clip_weights([0.0, 2.0])
    assert env.clip_weights.tolist() == [0.0, 1.0]
    assert {env.reset(seed=seed)[1]["clip"] for seed in range(8)} == {1}
    env.set_clip_weights({"moco-walk": 1.0})
    assert {env.reset(seed=seed)[1]["clip"] for seed in range(8)} == {0}
    env.set_clip_weights([1.0, 1.0])
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0], [np.nan, 1.0], {"no-such-clip": 1.0}):
        with pytest.raises(KinesisNeuroError, match="clip"):
            env.set_clip_weights(bad)
    for options in ({"clip": "no-such-clip"}, {"clip": 2}, {"clip": 1, "start": 430}):
        with pytest.raises(KinesisNeuroError, match="clip"):
            env.reset(options=options)


def test_an_episode_ends_with_its_clip(library):
    """The one-off clip (2.95 s) truncates the 5-s episode when its reference, lookahead included, runs out;
    the periodic walk lasts the whole episode."""
    env = library
    lookahead, end = max(env.config.lookahead), env.reference.offsets[1] + env.reference.lengths[1]
    for clip, expected in ((1, (env.reference.lengths[1] - 1) // env.frame_skip - lookahead), (0, env.max_steps)):
        env.reset(seed=0, options={"clip": clip})
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, info = env.step(np.zeros(80))
            steps += 1
            done = terminated or truncated
        assert truncated and not terminated and info["clip"] == clip and steps == expected
        if clip == 1:
            assert steps < env.max_steps and env._ref_index(lookahead) < end


def test_a_vector_library_reports_clips_and_checkpoints_them(library):
    batch = MyoLegsVectorEnv(2, library.config)
    assert batch.clip_names == CLIPS
    batch.set_clip_weights([0.25, 0.75])
    batch.reset(seed=0, options={"clip": 1, "start": 300})  # 23 control steps left in the clip
    saved = batch.state
    assert [s["clip"] for s in saved] == [1, 1] and saved[0]["clip_weights"] == [0.25, 0.75]
    for _ in range(23):
        _, _, terminated, truncated, infos = batch.step(np.zeros((2, 80)))
    assert truncated.all() and not terminated.any() and infos["final_info"]["clip"].tolist() == [1, 1]
    batch.set_clip_weights([1.0, 0.0])
    batch.state = saved
    assert batch.clip_weights.tolist() == [0.25, 0.75] and batch._clip.tolist() == [1, 1]
    assert batch._limit.tolist() == [23, 23]
