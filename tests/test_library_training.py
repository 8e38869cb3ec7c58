"""Training on a motion library: clip sampling by failure (hard-negative mining), checkpointed, and the
per-clip evaluation of a policy."""

import numpy as np
import pandas as pd
import pytest
import torch

from kinesis_neuro import evaluate, policies
from kinesis_neuro.cli import main
from kinesis_neuro.envs.imitation import KINESIS_SETTINGS
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.train import CHECKPOINT, LOG, PPOConfig, Trainer

CLIPS = ("moco-walk", "falisse2019-run-mean")


def _config(total_steps: int) -> PPOConfig:
    return PPOConfig(total_steps=total_steps, workers=1, num_envs=8, rollout_steps=256, hidden=(16, 16),
                     checkpoint_every=1, env={**KINESIS_SETTINGS, "clips": CLIPS, "episode_seconds": 1.0})


class StopsAfterTwoUpdates(Trainer):
    """Stops as Ctrl-C would during the second update (the batch after it is being collected)."""

    def _mine(self, finished):
        self.stop_requested = self.update == 2
        return super()._mine(finished)


def test_mining_updates_clip_weights_and_a_stopped_run_resumes_exactly(data_dir, tmp_path):
    trainer = StopsAfterTwoUpdates(_config(10**6), tmp_path / "run")
    np.testing.assert_allclose(trainer.clip_weights, [0.5, 0.5])  # no episode yet: every clip counts as failed
    trainer.run(progress=False)
    trainer.close()
    log = pd.read_csv(tmp_path / "run" / LOG)
    rates = log[[f"failure_rate:{c}" for c in CLIPS]].to_numpy()
    weights = log[[f"clip_weight:{c}" for c in CLIPS]].to_numpy()
    assert len(log) == 2 and np.all((rates >= 0) & (rates <= 1))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    # the weights follow the rates: the clip failing more often is sampled at least as often
    assert np.all((weights[:, 0] >= weights[:, 1]) == (rates[:, 0] >= rates[:, 1]))
    saved = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["clip_sampler"]
    np.testing.assert_allclose(saved["rates"], rates[-1])
    # resumed, the sampler goes on from the checkpoint: the run repeats one that never stopped, exactly
    resumed = Trainer(_config(1024), tmp_path / "run", resume=True)
    np.testing.assert_allclose(resumed.clip_weights, weights[-1])
    resumed.run(progress=False)
    resumed.close()
    straight = Trainer(_config(1024), tmp_path / "straight")
    straight.run(progress=False)
    straight.close()
    a, b = pd.read_csv(tmp_path / "run" / LOG), pd.read_csv(tmp_path / "straight" / LOG)
    columns = [c for c in a.columns if c.startswith(("failure_rate", "clip_weight", "episode_return"))]
    assert len(a) == 4
    pd.testing.assert_frame_equal(a[columns], b[columns])


def test_without_clips_or_with_mining_off_no_weights_are_sent(data_dir, tmp_path):
    config = _config(256)
    config.hard_negative_mining = False
    trainer = Trainer(config, tmp_path / "run")
    try:
        assert trainer.clip_weights is None and trainer.sampler is None
    finally:
        trainer.close()


def test_train_cli_builds_a_library_run(data_dir, tmp_path, monkeypatch):
    seen = {}

    class Recorder(Trainer):  # the real trainer, stopped before it trains: the CLI's settings are what we check
        def __init__(self, config, out, **kwargs):
            seen["config"] = config
            raise KinesisNeuroError("stop here")

    monkeypatch.setattr("kinesis_neuro.train.Trainer", Recorder)
    assert main(["train", "--clips", "moco-walk,hamner-run", "--kinesis", "--termination", "mean",
                 "--out", str(tmp_path / "run")]) == 2
    env = seen["config"].env
    assert env["clips"] == ("moco-walk", "hamner-run") and env["termination"] == "mean"
    assert env["activation_dynamics"] and env["toe_contact"] and seen["config"].hard_negative_mining
    assert main(["train", "--clips", "no-such-clip", "--out", str(tmp_path / "run")]) == 2


def test_evaluate_reports_every_clip(data_dir):
    policy = policies.load("policies/myolegs-walk")
    table = evaluate.evaluate(policy, clips=["moco-walk", "falisse2019-run-mean"], episodes=2, episode_seconds=2.0,
                              progress=False)
    assert list(table.index) == ["moco-walk", "falisse2019-run-mean"]
    assert table.loc["moco-walk", "split"] == "train" and table.loc["falisse2019-run-mean", "kind"] == "run"
    # the walking policy walks its own clip for the whole episode and falls in the run at once
    assert table.loc["moco-walk", "completed"] == 1.0 and table.loc["moco-walk", "mean_duration_s"] == 2.0
    assert table.loc["moco-walk", "tracking_error_m"] < 0.06
    assert table.loc["falisse2019-run-mean", "completed"] == 0.0
    summary = evaluate.summary(table)
    assert summary.loc["train", "clips"] == 2 and summary.loc["train", "completed_target"] == 0.9
    with pytest.raises(KinesisNeuroError, match="unknown clips"):
        evaluate.evaluate(policy, clips=["nope"], progress=False)
    with pytest.raises(KinesisNeuroError, match="unknown splits"):
        evaluate.evaluate(policy, splits=["test"], progress=False)
