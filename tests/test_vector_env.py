"""Vectorised environments: each environment of a batch is the single environment, bit for bit; both control
backends agree; the Gymnasium vector API; batched evaluation rollouts give the per-episode numbers."""

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from kinesis_neuro.envs import KINESIS_SETTINGS, ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.envs import vector as vec
from kinesis_neuro.envs.vector import MyoLegsVectorEnv
from kinesis_neuro.errors import KinesisNeuroError

SHORT = {"episode_seconds": 0.5, "ablate": ("soleus_r",), "weaken": {"tibant_l": 0.5}}  # silenced muscles: mask zeros
# every KINESIS-aligned setting on, force-weighted effort, a library of a periodic walk and a one-off clip
KINESIS = {**SHORT, **KINESIS_SETTINGS, "effort_weighting": "force",
           "clips": ("moco-walk", "mdm-walk-pick-up-toolbox-0")}
SETTINGS = {"default": SHORT, "kinesis": KINESIS}
SEEDS = [3, 11, 5]
BACKENDS = ["numpy"] + (["c"] if vec.load_kernel() is not None else [])


@pytest.fixture(scope="module", params=list(SETTINGS))
def singles(request, data_dir):
    return request.param, [MyoLegsImitationEnv(ImitationConfig(**SETTINGS[request.param])) for _ in SEEDS]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_environment_of_the_batch_is_the_single_environment(singles, backend):
    """Same seeds and actions: the same observations, rewards, terminations, final observations and infos,
    bit for bit, through episode ends and autoresets (the single environments reset without a seed); with
    the default and with the KINESIS-aligned settings and a motion library."""
    settings, singles = singles
    batch = MyoLegsVectorEnv(len(SEEDS), ImitationConfig(**SETTINGS[settings]), backend=backend)
    assert batch.backend == backend
    rng = np.random.default_rng(0)
    obs, _ = batch.reset(seed=SEEDS)
    assert np.array_equal(obs, np.array([env.reset(seed=s)[0] for env, s in zip(singles, SEEDS)]))
    ended = 0
    for t in range(45):
        actions = rng.uniform(-1, 1, (len(SEEDS), 80)).astype(np.float32) * (1.0 if t % 5 == 0 else 0.3)
        obs, reward, terminated, truncated, infos = batch.step(actions)
        assert bool(infos) == bool((terminated | truncated).any())  # infos only at episode ends
        for i, env in enumerate(singles):
            o, r, te, tr, info = env.step(actions[i])
            assert (reward[i], terminated[i], truncated[i]) == (r, te, tr)
            if te or tr:
                ended += 1
                assert np.array_equal(infos["final_obs"][i], o)
                assert {k: infos["final_info"][k][i] for k in info} == info
                assert infos["episode"]["l"][i] == env._step
                o, _ = env.reset()
            assert np.array_equal(obs[i], o), (t, i)
    assert ended >= 10 and truncated.dtype == bool


@pytest.mark.parametrize("settings", [{}, KINESIS_SETTINGS])
def test_direct_control_is_the_single_environment(data_dir, settings):
    config = ImitationConfig(**{**settings, "control_mode": "direct", "episode_seconds": 0.5,
                                "termination_distance": float("inf")})
    single, batch = MyoLegsImitationEnv(config), MyoLegsVectorEnv(2, config)
    rng = np.random.default_rng(1)
    batch.reset(seed=[7, 8])
    single.reset(seed=8)
    for _ in range(6):
        actions = rng.uniform(-1, 1, (2, 80))
        obs, reward = batch.step(actions)[:2]
        o, r = single.step(actions[1])[:2]
        assert np.array_equal(obs[1], o) and reward[1] == r


@pytest.mark.skipif("c" not in BACKENDS, reason="no C compiler: the numpy backend runs alone")
def test_the_c_kernel_is_built_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KINESIS_NEURO_CACHE", str(tmp_path))
    monkeypatch.setattr(vec, "_kernel_cache", {})
    assert vec.load_kernel() is not None
    built = list(tmp_path.glob("vector_kernel-*"))
    assert len(built) == 1 and built[0].stat().st_size > 0  # no sources or partial files left behind
    monkeypatch.setattr(vec, "_kernel_cache", {})
    stamp = built[0].stat().st_mtime_ns
    assert vec.load_kernel() is not None and built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    monkeypatch.setattr(vec, "_kernel_cache", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    shutil.rmtree(tmp_path)
    monkeypatch.setattr(vec.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert vec.load_kernel() is None  # no compiler: the numpy backend


def test_gymnasium_vector_api_and_autoreset(data_dir):
    batch = MyoLegsVectorEnv(3, episode_seconds=0.2, muscle_observations=False, termination_distance=float("inf"))
    assert isinstance(batch, gym.vector.VectorEnv) and batch.num_envs == 3
    assert batch.single_observation_space.shape == (219,) and batch.observation_space.shape == (3, 219)
    assert batch.single_action_space.shape == (80,) and batch.action_space.shape == (3, 80)
    assert batch.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, infos = batch.reset(seed=10)
    again, _ = batch.reset(seed=[10, 11, 12])  # an int seeds environment i with seed + i
    assert np.array_equal(obs, again) and obs in batch.observation_space
    for step in range(1, 7):
        obs, reward, _, truncated, infos = batch.step(np.zeros((3, 80), np.float32))
        assert reward.shape == (3,) and obs.shape == (3, 219)
        if step < 6:
            assert infos == {}
    assert truncated.all() and list(infos["episode"]["l"]) == [6, 6, 6] and infos["_final_obs"].all()
    assert not np.array_equal(obs, infos["final_obs"][0][None])  # the next episode's first observation
    assert batch.episode_length.tolist() == [0, 0, 0]

    manual = MyoLegsVectorEnv(2, episode_seconds=0.1, muscle_observations=False, autoreset=False,
                              termination_distance=float("inf"))
    assert manual.metadata["autoreset_mode"] == gym.vector.AutoresetMode.DISABLED
    manual.reset(seed=0)
    for _ in range(3):
        manual.step(np.zeros((2, 80)))
    with pytest.raises(KinesisNeuroError, match="reset_mask"):
        manual.step(np.zeros((2, 80)))
    manual.reset(options={"reset_mask": np.array([True, False])})
    assert manual._step.tolist() == [0, 3]
    with pytest.raises(KinesisNeuroError, match="num_envs"):
        MyoLegsVectorEnv(0)


def test_state_round_trip_is_exact(data_dir):
    batch = MyoLegsVectorEnv(2, episode_seconds=0.5)
    rng = np.random.default_rng(2)
    batch.reset(seed=4)
    for _ in range(3):
        batch.step(rng.uniform(-1, 1, (2, 80)))
    saved = batch.state
    actions = rng.uniform(-1, 1, (12, 2, 80))  # through an autoreset (episodes of 15 steps or fewer)
    first = [batch.step(a)[:3] for a in actions]
    batch.state = saved
    second = [batch.step(a)[:3] for a in actions]
    for a, b in zip(first, second):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_batched_evaluation_gives_each_episode_as_alone(data_dir):
    """rollout() runs seeded episodes as one batch; each episode's numbers are those of the single
    environment running it alone (the previous implementation), with and without start noise."""
    from kinesis_neuro import policies
    from kinesis_neuro.rollout import rollout

    policy = policies.load(Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk")
    options = {"seed": 6, "progress": False, "episode_seconds": 1.0, "termination_distance": 0.045}
    metrics, recording = rollout(policy, episodes=3, start_noise=1e-9, noise_seed=2, **options)
    env = policy.make_env(episode_seconds=1.0, termination_distance=0.045)
    for k in range(3):
        obs, _ = env.reset(seed=6 + k, options={"start_noise": 1e-9, "noise_seed": [2, 6 + k]})
        errors, done = [], False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs))
            errors.append(info["tracking_error"])
            done = terminated or truncated
        row = metrics.loc[k]
        assert (row.duration_s, row.terminated_early, row.tracking_error_m) == (len(errors) / 30, terminated,
                                                                             float(np.mean(errors)))
    assert metrics.terminated_early.any() and not metrics.terminated_early.all()  # episodes of unequal length
    one_by_one, alone = rollout(policy, episodes=3, start_noise=1e-9, noise_seed=2, batch=1, **options)
    assert one_by_one.equals(metrics) and alone.data.equals(recording.data)
    assert {k: v for k, v in alone.data.attrs.items() if k != "created"} == {
        k: v for k, v in recording.data.attrs.items() if k != "created"}
