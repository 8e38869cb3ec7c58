"""PPO trainer: learning signal, exact resume after a kill, checkpoints that load without running code."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from kinesis_neuro import policies
from kinesis_neuro.train import CHECKPOINT, PPOConfig, Trainer, load_checkpoint

SMALL = dict(workers=1, rollout_steps=512, minibatches=4, epochs=4, hidden=(64, 64),
             env={"episode_seconds": 2.0, "muscle_observations": False})


def test_short_training_improves_episode_length(data_dir, tmp_path):
    trainer = Trainer(PPOConfig(total_steps=10 * 512, learning_rate=1e-3, init_log_std=-0.5, seed=1, **SMALL),
                      tmp_path)
    try:
        history = trainer.run(progress=False)
    finally:
        trainer.close()
    lengths = [row["episode_length"] for row in history]
    print("mean episode length per update:", np.round(lengths, 2))
    assert np.mean(lengths[-3:]) > lengths[0] + 0.1
    assert np.all(np.isfinite([row["policy_loss"] for row in history]))


@pytest.mark.parametrize("termination_distance, bootstrapped", [(float("inf"), True), (0.0, False)])
def test_time_limit_bootstraps_the_value_and_termination_does_not(data_dir, tmp_path, termination_distance,
                                                                  bootstrapped):
    """With a critic that says V = 5 everywhere and rewards in [0, 1], the return of an episode's last step is
    r + 0.99 * 5 when the 0.2-s time limit cut it, and r alone when early termination ended it."""
    env = {**SMALL["env"], "episode_seconds": 0.2, "termination_distance": termination_distance}
    trainer = Trainer(PPOConfig(total_steps=64, seed=2, **{**SMALL, "rollout_steps": 64, "env": env}), tmp_path)
    try:
        with torch.no_grad():
            trainer.agent.critic[-1].weight.zero_()
            trainer.agent.critic[-1].bias.fill_(5.0)
        batch, finished = trainer.collect()
    finally:
        trainer.close()
    assert set(finished["length"]) == ({6} if bootstrapped else {1})
    last_steps = batch["returns"][torch.as_tensor(np.cumsum(finished["length"]) - 1)]
    low, high = (0.99 * 5.0, 1.0 + 0.99 * 5.0) if bootstrapped else (0.0, 1.0)
    assert torch.all((last_steps >= low) & (last_steps <= high)), last_steps


def test_killed_run_resumes_exactly(data_dir, tmp_path):
    """A run killed after a checkpoint and resumed computes the same next update as an uninterrupted one."""
    small = PPOConfig(total_steps=4 * 512, seed=7, **SMALL)
    reference = Trainer(small, tmp_path / "uninterrupted")
    try:
        uninterrupted = reference.run(progress=False)
    finally:
        reference.close()
    run = tmp_path / "killed"
    # the same run in another process, killed hard (SIGKILL) once a checkpoint exists
    script = ("from kinesis_neuro.train import PPOConfig, Trainer\n"
              f"t = Trainer(PPOConfig(total_steps=10**6, seed=7, checkpoint_every=1, **{SMALL!r}), {str(run)!r})\n"
              "t.run(progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (run / CHECKPOINT).exists():
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / CHECKPOINT).exists(), "no checkpoint was written before the deadline"
    done = int(load_checkpoint(run / CHECKPOINT)["update"])
    assert 1 <= done < 4
    resumed = Trainer(PPOConfig(total_steps=(done + 1) * 512), run, resume=True)
    try:
        next_update = resumed.run(progress=False)[0]
    finally:
        resumed.close()
    expected = uninterrupted[done]
    assert next_update["update"] == expected["update"] == done + 1
    for key in ("policy_loss", "value_loss", "approx_kl", "entropy", "episode_return"):
        assert next_update[key] == pytest.approx(expected[key], abs=1e-6), key
    logged = [int(line.split(",")[0]) for line in (run / "training_log.csv").read_text().splitlines()[1:]]
    assert logged == list(range(1, done + 2))  # each update once, rows after the checkpoint dropped


def test_log_rows_after_the_checkpoint_are_dropped(tmp_path):
    from kinesis_neuro.train import truncate_log

    log = tmp_path / "training_log.csv"
    log.write_text("update,global_step\n" + "".join(f"{u},{512 * u}\n" for u in range(1, 6)))
    truncate_log(log, 3)
    assert log.read_text() == "update,global_step\n1,512\n2,1024\n3,1536\n"


def test_checkpoint_and_policy_load_without_code(data_dir, tmp_path):
    trainer = Trainer(PPOConfig(total_steps=512, **SMALL), tmp_path)
    try:
        trainer.run(progress=False)
    finally:
        trainer.close()
    ckpt = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # plain tensors and data only
    assert ckpt["update"] == 1 and (tmp_path / CHECKPOINT).stat().st_size > 0
    assert not (tmp_path / "checkpoint.tmp").exists()  # written atomically (temporary file renamed)
    policy = policies.load(policies.export(tmp_path))
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)
    assert action.shape == (80,) and np.all(np.abs(action) <= 1)


def test_numpy_rollout_policy_matches_the_torch_networks():
    from kinesis_neuro.train import ActorCritic, NumpyActor

    torch.manual_seed(0)
    agent = ActorCritic(30, 8, hidden=(16, 12))
    agent.norm.update(torch.randn(100, 30) * 3 + 1)
    with torch.no_grad():
        agent.log_std.uniform_(-1.5, 0.0)
        for p in agent.actor.parameters():
            p.normal_(0.0, 0.3)
    obs = np.random.default_rng(1).normal(1.0, 3.0, (5, 30)).astype(np.float32)
    numpy_actor = NumpyActor(agent)
    for o in obs:
        mean = numpy_actor(o)
        with torch.no_grad():
            dist = agent.distribution(torch.as_tensor(o)[None])
            action = dist.mean + dist.stddev
            np.testing.assert_allclose(mean, dist.mean[0].numpy(), rtol=1e-5, atol=1e-6)
            assert numpy_actor.log_prob(action[0].numpy(), mean) == pytest.approx(
                dist.log_prob(action).sum().item(), rel=1e-5)


def test_resuming_a_checkpoint_of_an_older_environment_is_refused(tmp_path):
    from kinesis_neuro.errors import KinesisNeuroError
    from kinesis_neuro.train import save_checkpoint

    save_checkpoint(tmp_path / CHECKPOINT, {"config": {}, "update": 3, "envs": [], "obs": torch.zeros(1)})
    with pytest.raises(KinesisNeuroError, match="older kinesis-neuro"):
        Trainer(PPOConfig(total_steps=10), tmp_path, resume=True)


def test_a_log_of_an_older_version_gains_the_new_columns(tmp_path):
    from kinesis_neuro.train import _add_log_columns

    log = tmp_path / "training_log.csv"
    log.write_text("update,global_step\n1,10\n2,20\n")
    assert _add_log_columns(log, ["update", "global_step", "symmetry_loss"]) == ["update", "global_step",
                                                                                  "symmetry_loss"]
    assert log.read_text().splitlines() == ["update,global_step,symmetry_loss", "1,10,", "2,20,"]
    assert _add_log_columns(log, ["update", "symmetry_loss"]) == ["update", "global_step", "symmetry_loss"]
