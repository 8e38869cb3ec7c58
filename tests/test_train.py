"""PPO trainer: learning signal, exact resume after a kill, checkpoints that load without running code."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kinesis_neuro import policies
from kinesis_neuro.cli import main
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.train import CHECKPOINT, LOG, PPOConfig, Trainer, load_checkpoint

SMALL = dict(workers=1, num_envs=4, rollout_steps=512, minibatches=4, epochs=4, hidden=(64, 64),
             env={"episode_seconds": 2.0, "muscle_observations": False})
BUNDLED = Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk"


def assert_same_checkpoint(a: dict, b: dict, path: str = "") -> None:
    """Nested checkpoint contents equal exactly (tensors bit for bit)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key, value in a.items():
            assert_same_checkpoint(value, b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_checkpoint(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


def test_short_training_improves_episode_length(data_dir, tmp_path):
    trainer = Trainer(PPOConfig(total_steps=10 * 512, learning_rate=1e-3, init_log_std=-0.5, seed=1, **SMALL),
                      tmp_path)
    try:
        history = trainer.run(progress=False)
    finally:
        trainer.close()
    lengths = [row["episode_length"] for row in history]
    print("mean episode length per update:", np.round(lengths, 2))
    # measured gain 0.45 steps, the same with the initial weights nudged by 1 ulp (rounding as on another CPU:
    # episode lengths are counts of ~6-step episodes); 0.14-0.57 over seeds 1-6 (4 environments per worker, overlap)
    assert np.mean(lengths[-3:]) > lengths[0] + 0.1
    assert np.all(np.isfinite([row["policy_loss"] for row in history]))


@pytest.mark.parametrize("termination_distance, bootstrapped", [(float("inf"), True), (0.0, False)])
def test_time_limit_bootstraps_the_value_and_termination_does_not(data_dir, tmp_path, termination_distance,
                                                                  bootstrapped):
    """With a critic that says V = 5 everywhere and rewards in [0, 1], the return of an episode's last step is
    r + 0.99 * 5 when the 0.2-s time limit cut it, and r alone when early termination ended it (4 environments
    stepped together, each through several episodes). Each ended episode reports whether it terminated and its
    motion clip (the one motion, 0; the clip weights the learner sends reach the environments)."""
    env = {**SMALL["env"], "episode_seconds": 0.2, "termination_distance": termination_distance}
    trainer = Trainer(PPOConfig(total_steps=64, seed=2, **{**SMALL, "rollout_steps": 64, "env": env}), tmp_path)
    try:
        with torch.no_grad():
            trainer.agent.critic[-1].weight.zero_()
            trainer.agent.critic[-1].bias.fill_(5.0)
        trainer.clip_weights = np.array([1.0])
        batch, finished = trainer.collect()
    finally:
        trainer.close()
    assert set(finished["length"]) == ({6} if bootstrapped else {1})
    assert len(finished["length"]) == (4 * (16 // 6) if bootstrapped else 64)
    last_steps = batch["returns"][batch["dones"] == 1]
    assert len(last_steps) == len(finished["length"])
    assert finished["terminated"] == [not bootstrapped] * len(last_steps)
    assert finished["clip"] == [0] * len(last_steps)
    low, high = (0.99 * 5.0, 1.0 + 0.99 * 5.0) if bootstrapped else (0.0, 1.0)
    assert torch.all((last_steps >= low) & (last_steps <= high)), last_steps


def test_killed_run_resumes_exactly(data_dir, tmp_path):
    """A run killed after a checkpoint and resumed computes the same updates as an uninterrupted one with the same
    seed and workers, and ends with the same checkpoint: networks, optimizer, RNGs and environments, bit for bit.
    With overlap (the default) the checkpoint holds the batch the workers collected after it; the killed run
    checkpoints every update, the uninterrupted one only at its end."""
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
    assert load_checkpoint(run / CHECKPOINT)["pending"] is not None  # the next batch, collected meanwhile
    resumed = Trainer(PPOConfig(total_steps=4 * 512), run, resume=True)
    try:
        rows = resumed.run(progress=False)
    finally:
        resumed.close()
    assert [row["update"] for row in rows] == list(range(done + 1, 5))
    for row, expected in zip(rows, uninterrupted[done:]):
        for key in ("policy_loss", "value_loss", "kl", "clip_fraction", "actor_lr", "entropy", "episode_return",
                    "policy_version"):
            assert row[key] == expected[key], key
    assert [row["policy_lag"] for row in uninterrupted] == [0, 1, 1, 1]  # overlap: one update old after the first
    logged = [int(line.split(",")[0]) for line in (run / "training_log.csv").read_text().splitlines()[1:]]
    assert logged == list(range(1, 5))  # each update once, rows after the checkpoint dropped
    ours, theirs = load_checkpoint(run / CHECKPOINT), load_checkpoint(tmp_path / "uninterrupted" / CHECKPOINT)
    assert ours["config"]["checkpoint_every"] == 1 and theirs["config"]["checkpoint_every"] == 10
    assert_same_checkpoint({k: v for k, v in ours.items() if k != "config"},
                           {k: v for k, v in theirs.items() if k != "config"})


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
    assert {"critic_optimizer", "value_norm", "actor_lr"} <= set(ckpt)
    with open(tmp_path / LOG, newline="") as fh:
        row = next(csv.DictReader(fh))
    assert {"kl", "clip_fraction", "explained_variance", "epochs", "actor_lr", "outside_fraction"} <= set(row)
    assert 0 < float(row["kl"]) and 0 <= float(row["outside_fraction"]) <= 1 and int(row["epochs"]) >= 1
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # written atomically (temporary renamed)
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
    from kinesis_neuro.train import save_checkpoint

    save_checkpoint(tmp_path / CHECKPOINT, {"config": {}, "agent": {}, "update": 3, "global_step": 1536, "envs": [],
                                            "obs": torch.zeros(1)})
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


def cli_error(capsys, argv: list[str]) -> str:
    """Run the command line, which must fail with exit code 2 and one line on stderr; that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kinesis-neuro: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_train_never_replaces_an_existing_run_unasked(policy_dir, tmp_path, capsys):
    """Without --resume or --overwrite a run folder is refused; a --resume whose checkpoint fails rewrites nothing."""
    run = shutil.copytree(policy_dir, tmp_path / "run")
    before = files(run)
    err = cli_error(capsys, ["train", "--out", str(run), "--steps", "512", "--no-progress"])
    assert (f"{run} already holds a training run (update 1, 256 samples); continue it with --resume or replace it "
            "with --overwrite") in err
    assert "give one of them" in cli_error(capsys, ["train", "--out", str(run), "--resume", "--overwrite"])
    assert files(run) == before
    (run / CHECKPOINT).write_bytes(b"garbage")
    before = files(run)
    assert "not a kinesis-neuro training checkpoint" in cli_error(capsys, ["train", "--out", str(run), "--resume"])
    assert files(run) == before
    log_only = tmp_path / "log-only"
    log_only.mkdir()
    shutil.copy(run / LOG, log_only)
    with pytest.raises(KinesisNeuroError, match=r"holds a training run \(update 1, 256 samples logged, no checkpoint"):
        Trainer(PPOConfig(total_steps=512), log_only)
    (tmp_path / "file").write_text("x")
    with pytest.raises(KinesisNeuroError, match="exists and is not a folder"):
        Trainer(PPOConfig(total_steps=512), tmp_path / "file")


def test_a_bad_motion_or_setting_fails_before_any_file_is_written(policy_dir, tmp_path, capsys):
    new = tmp_path / "new"
    err = cli_error(capsys, ["train", "--out", str(new), "--motion", "nonexistent", "--workers", "1", "--no-progress"])
    assert "nonexistent: no such file" in err
    assert not new.exists()
    run = shutil.copytree(policy_dir, tmp_path / "run")
    before = files(run)
    cli_error(capsys, ["train", "--out", str(run), "--overwrite", "--motion", "nonexistent", "--workers", "1"])
    assert files(run) == before  # --overwrite replaces a run only once the new one has started
    with pytest.raises(SystemExit) as exit_:  # argparse refuses before anything starts
        main(["train", "--out", str(new), "--checkpoint-every", "0"])
    assert exit_.value.code == 2 and "--checkpoint-every" in capsys.readouterr().err
    with pytest.raises(KinesisNeuroError, match=r"unknown environment settings \['motoin'\]"):
        Trainer(PPOConfig(env={"motoin": "x"}), new)
    assert not new.exists()


@pytest.mark.parametrize("setting, value", [
    ("total_steps", 0), ("workers", 0), ("workers", True), ("rollout_steps", -5), ("epochs", 2.5), ("minibatches", 0),
    ("minibatches", 4096), ("checkpoint_every", 0), ("learning_rate", 0.0), ("gamma", 0.0), ("gamma", 1.01),
    ("gae_lambda", -0.1), ("clip", 0.0), ("max_grad_norm", float("nan")), ("entropy_coef", -1.0),
    ("mirror_coef", float("inf")), ("target_kl", 0.0), ("init_log_std", float("nan")), ("hidden", (64, 0)),
    ("hidden", ()), ("seed", -1), ("env", ["motion"]), ("num_envs", 0), ("rollout_steps", 100), ("overlap", "yes"),
    ("lr_min", 0.0), ("learning_rate", 0.1), ("critic_learning_rate", -1e-3), ("lr_schedule", "exponential"),
    ("kl_stop", -0.1), ("bound_coef", -1.0), ("critic_max_grad_norm", 0.0), ("init_log_std", []),
    ("init_log_std", [-1.0, float("nan")]), ("init_from", ""), ("init_from", 3)])
def test_impossible_ppo_settings_are_refused(setting, value):
    with pytest.raises(KinesisNeuroError, match=f"PPO setting {setting} must be"):
        PPOConfig(**{setting: value})


def test_overwrite_replaces_a_run(policy_dir, tmp_path):
    """The old run's checkpoint and log go once the new run has started; other files (an exported policy) stay."""
    run = shutil.copytree(policy_dir, tmp_path / "run")
    exported = {name: (run / name).read_bytes() for name in ("policy.json", "policy.safetensors")}
    config = PPOConfig(total_steps=2 * 256, workers=1, rollout_steps=256, hidden=(32, 32), seed=3,
                       env={"episode_seconds": 1.0})
    trainer = Trainer(config, run, overwrite=True)
    try:
        assert not (run / CHECKPOINT).exists() and not (run / LOG).exists()
        assert json.loads((run / "config.json").read_text())["seed"] == 3
        trainer.run(progress=False)
    finally:
        trainer.close()
    ckpt = load_checkpoint(run / CHECKPOINT)
    assert ckpt["update"] == 2 and ckpt["config"]["seed"] == 3
    assert [int(line.split(",")[0]) for line in (run / LOG).read_text().splitlines()[1:]] == [1, 2]
    assert {name: (run / name).read_bytes() for name in exported} == exported


def test_gae_is_the_per_step_recursion():
    """The vectorised GAE equals the textbook loop over time and environments (same float32 operations)."""
    from kinesis_neuro.train import gae

    rng = np.random.default_rng(0)
    T, N, gamma, lam = 50, 3, 0.99, 0.95
    rewards, values = rng.random((T, N), dtype=np.float32), rng.random((T, N), dtype=np.float32)
    dones = (rng.random((T, N)) < 0.1).astype(np.float32)
    bootstrap = np.where(dones * (rng.random((T, N)) < 0.5), rng.random((T, N)), 0).astype(np.float32)
    next_value = rng.random(N, dtype=np.float32)
    expected = np.zeros((T, N), np.float32)
    for n in range(N):
        running = np.float32(0)
        for t in reversed(range(T)):
            following = next_value[n] if t == T - 1 else values[t + 1, n]
            delta = rewards[t, n] + gamma * (bootstrap[t, n] + (1 - dones[t, n]) * following) - values[t, n]
            running = delta + gamma * lam * (1 - dones[t, n]) * running
            expected[t, n] = running
    np.testing.assert_array_equal(gae(rewards, values, dones, bootstrap, next_value, gamma, lam), expected)


def test_a_checkpoint_of_the_previous_trainer_resumes_with_one_environment_per_worker(data_dir, tmp_path):
    """The bundled run was trained before vectorised environments (one environment per worker, no overlap): it
    resumes as it was trained, with its environments' states, observations and noise RNGs."""
    run = tmp_path / "run"
    run.mkdir()
    for name in (CHECKPOINT, "config.json", LOG):
        shutil.copy(BUNDLED / name, run)
    old = load_checkpoint(run / CHECKPOINT)
    assert "num_envs" not in old["config"] and old["config"]["target_kl"] == 0.05
    trainer = Trainer(PPOConfig(total_steps=old["global_step"] + 4096), run, resume=True)
    try:
        assert (trainer.config.num_envs, trainer.config.overlap, trainer.update) == (1, False, old["update"])
        assert (trainer.config.kl_stop, trainer.config.target_kl) == (0.05, PPOConfig.target_kl)  # a stop, then
        assert torch.equal(trainer.value_norm.var, torch.ones(1))  # its critic predicts unnormalised returns
        for state, saved in zip(trainer.workers.get_states(), old["workers"]):
            assert np.array_equal(state["envs"][0]["physics"], saved["env"]["physics"].numpy())
            assert np.array_equal(state["obs"][0], saved["obs"].numpy())
            assert state["envs"][0]["episode_length"] == saved["episode_length"]
            assert np.array_equal(state["generator"], saved["generator"].numpy())
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local


def test_training_on_dask_runs_and_resumes_exactly(data_dir, tmp_path, cluster, capsys):
    """Rollout workers as Dask actors on a LocalCluster: a run, and the same run resumed from its first checkpoint
    through ``kinesis-neuro train --resume --scheduler``, give the same updates and the same final checkpoint."""
    settings = {"workers": 2, "num_envs": 2, "rollout_steps": 64, "minibatches": 2, "epochs": 2, "hidden": (32, 32),
                "seed": 5, "checkpoint_every": 1, "env": {"episode_seconds": 0.5, "muscle_observations": False}}
    copy = tmp_path / "resumed"

    class KeepsTheFirstCheckpoint(Trainer):
        def save(self, final=False):
            path = super().save(final)
            if self.update == 1 and not copy.exists():
                copy.mkdir()
                for name in (CHECKPOINT, "config.json", LOG):
                    shutil.copy(self.out / name, copy)
            return path

    trainer = KeepsTheFirstCheckpoint(PPOConfig(total_steps=3 * 128, **settings), tmp_path / "run",
                                      scheduler=cluster.scheduler_address)
    try:
        history = trainer.run(progress=False)
    finally:
        trainer.close()
    assert [row["policy_lag"] for row in history] == [0, 1, 1] and history[-1]["episodes"] > 0
    assert load_checkpoint(copy / CHECKPOINT)["pending"] is not None
    assert main(["train", "--out", str(copy), "--resume", "--steps", str(3 * 128), "--scheduler",
                 cluster.scheduler_address, "--no-progress"]) == 0
    assert "384 steps, 3 updates" in capsys.readouterr().out
    with open(copy / LOG, newline="") as fh:
        logged = list(csv.DictReader(fh))
    for row, expected in zip(logged, history):
        for key in ("update", "policy_loss", "value_loss", "kl", "episode_return"):
            assert float(row[key]) == expected[key], key
    assert_same_checkpoint(load_checkpoint(copy / CHECKPOINT), load_checkpoint(tmp_path / "run" / CHECKPOINT))
