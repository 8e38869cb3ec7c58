"""Muscle ablation sweeps: conditions, silencing in MuJoCo, dask sweep, resume after interruption, determinism."""

import numpy as np
import pytest

from kinesis_neuro.envs import ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.redundancy.ablation import INTACT, METRICS, conditions, sweep

MUSCLE = "soleus_r"


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_conditions_cover_muscles_and_groups(data_dir):
    muscles = conditions("muscles")
    assert muscles[0].name == INTACT and len(muscles) == 81
    assert all(c.ablate == (c.name,) and not c.weaken for c in muscles[1:])
    groups = conditions("groups", factor=0.5)
    assert groups[0].name == INTACT and "quadriceps_rx0.5" in [c.name for c in groups]
    assert all(c.weaken == {c.name[:-4]: 0.5} and not c.ablate for c in groups[1:])
    assert [c.name for c in conditions([MUSCLE, "quadriceps_l"])] == [INTACT, MUSCLE, "quadriceps_l"]


def test_ablated_muscle_produces_no_force(data_dir):
    env = MyoLegsImitationEnv(ImitationConfig(episode_seconds=1.0, ablate=(MUSCLE,)))
    i = env.muscles.index(MUSCLE)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(rng.uniform(-1, 1, env.model.nu))
        assert env.data.actuator_force[i] == 0.0 and env.data.act[i] == 0.0
    assert np.count_nonzero(env.data.actuator_force) > 40


def test_sweep_resumes_and_is_deterministic(policy_dir, scheduler, tmp_path):
    chosen = conditions([MUSCLE, "vasmed_l"])
    first = sweep(policy_dir, chosen, episodes=2, scheduler=scheduler, out=tmp_path, progress=False)
    assert dict(first.metrics.sizes) == {"condition": 3, "episode": 2, "metric": len(METRICS)}
    assert dict(first.compensation.sizes) == {"condition": 3, "muscle": 80}
    assert first.computed.all()
    assert float(np.abs(first.compensation.sel(condition=INTACT)).max()) == 0.0
    intact = first.activation.sel(condition=INTACT, muscle=MUSCLE).mean("episode")
    assert float(intact) > 0
    assert float(first.compensation.sel(condition=MUSCLE, muscle=MUSCLE)) == pytest.approx(-float(intact))
    assert (first.metrics.sel(condition=INTACT, metric="joint_rmse_rad") == 0).all()
    for name in ("ablation.nc", "summary.csv", "metric_per_condition.png", "compensation_heatmap.png"):
        assert (tmp_path / name).stat().st_size > 0

    partial = sorted((tmp_path / "partial").iterdir())
    assert len(partial) == 3
    next(p for p in partial if p.name.startswith(MUSCLE)).unlink()
    resumed = sweep(policy_dir, chosen, episodes=2, scheduler=scheduler, out=tmp_path, progress=False)
    assert list(resumed.condition[resumed.computed].values) == [MUSCLE]
    assert len(list((tmp_path / "partial").iterdir())) == 3
    np.testing.assert_array_equal(resumed.metrics, first.metrics)

    single = sweep(policy_dir, chosen, episodes=2, n_workers=1, progress=False)
    np.testing.assert_array_equal(single.metrics, first.metrics)
    np.testing.assert_array_equal(single.activation, first.activation)


def test_batched_episodes_are_the_single_environment_episodes(policy_dir, monkeypatch):
    """A condition's episodes, two at a time in a vectorised environment (slots reused by later episodes), give
    bit for bit what one MyoLegsImitationEnv gives running them one after another."""
    from kinesis_neuro import model as mdl
    from kinesis_neuro import policies
    from kinesis_neuro.redundancy import ablation

    monkeypatch.setattr(ablation, "BATCH", 2)
    condition = ablation.Condition("mixed", (MUSCLE,), {"tibant_l": 0.5})
    result = ablation.run_condition(policy_dir, condition, episodes=3, seed=5, episode_seconds=0.5)
    policy = policies.load(policy_dir)
    env = policy.make_env(episode_seconds=0.5, ablate=(MUSCLE,), weaken={"tibant_l": 0.5})
    joints = mdl.joint_table(env.model).loc[list(mdl.LEG_JOINTS)].qpos_index.to_numpy()
    for k in range(3):
        obs, _ = env.reset(seed=5 + k)
        errors, act, force, q, done = [], [], [], [], False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs))
            done = terminated or truncated
            errors.append(info["tracking_error"])
            act.append(env.data.act.copy())
            force.append(np.maximum(-env.data.actuator_force, 0.0).sum())
            q.append(env.data.qpos[joints].copy())
        assert result["fell"][k] == float(terminated)
        assert result["duration_s"][k] == len(errors) / env.config.control_rate
        assert result["tracking_error_m"][k] == float(np.mean(errors))
        assert result["effort_act2"][k] == float(np.mean(np.sum(np.asarray(act) ** 2, axis=1)))
        assert result["muscle_force_n"][k] == float(np.mean(force))
        np.testing.assert_array_equal(result["activation"][k], np.mean(act, axis=0))
        assert result["activation"][k][env.muscles.index(MUSCLE)] == 0.0
    assert len(set(result["duration_s"])) > 1  # episodes of different lengths shared the batch
