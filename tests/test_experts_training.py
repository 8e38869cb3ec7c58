"""KINESIS' mixture of experts with the trainer: a gate trained over frozen experts (warm critic, exact resume
without the expert folders), exported as one policy folder, and the choice of the next expert's clips."""

import copy
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from kinesis_neuro import policies
from kinesis_neuro.cli import main
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.experts import (
    MixtureOfExperts,
    gate_examples,
    next_expert_clips,
    plateaued,
    should_start_next_expert,
    success_curve,
)
from kinesis_neuro.train import CHECKPOINT, LOG, PPOConfig, Trainer, load_checkpoint
from test_train import assert_same_checkpoint

CLIPS = ("moco-walk", "falisse2019-run-mean")
ENV = {"clips": CLIPS, "episode_seconds": 1.0}  # the observation of conftest's policy_dir (no toe contacts)


def _config(total_steps: int, experts) -> PPOConfig:
    return PPOConfig(total_steps=total_steps, workers=1, num_envs=8, rollout_steps=256, hidden=(32, 32),
                     gate_hidden=(16,), checkpoint_every=1, experts=tuple(str(e) for e in experts), env=ENV)


@pytest.fixture(scope="module")
def second_expert(policy_dir, tmp_path_factory):
    """The recipe's second expert: a run from the first expert's weights on the clip it fails (the run)."""
    run = tmp_path_factory.mktemp("expert2")
    trainer = Trainer(PPOConfig(total_steps=256, workers=1, num_envs=8, rollout_steps=256, hidden=(32, 32),
                                init_from=str(policy_dir), env={**ENV, "clips": CLIPS[1:]}), run)
    trainer.run(progress=False)
    trainer.close()
    return run


@pytest.fixture(scope="module")
def gate_run(policy_dir, second_expert, tmp_path_factory):
    """A gate over the two experts, trained for 4 updates; and the agent's weights before training."""
    run = tmp_path_factory.mktemp("gate") / "run"
    trainer = Trainer(_config(1024, [policy_dir, second_expert]), run)
    start = copy.deepcopy(trainer.agent.state_dict())
    trainer.run(progress=False)
    trainer.close()
    return run, start


class StopsAfterTwoUpdates(Trainer):
    """Stops as Ctrl-C would during the second update (the batch after it is being collected)."""

    def _mine(self, finished):
        self.stop_requested = self.update == 2
        return super()._mine(finished)


def test_a_gate_trains_over_frozen_experts(policy_dir, second_expert, gate_run):
    run, start = gate_run
    first, second = policies.load(policy_dir).agent, load_checkpoint(second_expert / CHECKPOINT)["agent"]
    # the experts are the folders' policies; the critic and its return normaliser start as the first expert's
    assert torch.equal(start["experts.0.actor.0.weight"], first.actor[0].weight)
    assert torch.equal(start["experts.1.actor.2.weight"], second["actor.2.weight"])
    first_run = load_checkpoint(policy_dir / CHECKPOINT)
    assert all(torch.equal(v, first_run["agent"][k]) for k, v in start.items() if k.startswith("critic."))
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)  # tensors and plain data only
    assert float(ckpt["value_norm"]["count"]) == pytest.approx(float(first_run["value_norm"]["count"]) + 4 * 256)
    assert ckpt["update"] == 4 and ckpt["expert_hidden"] == [[32, 32], [32, 32]]
    end = ckpt["agent"]
    experts = [k for k in start if k.startswith("experts.")]
    assert experts and all(torch.equal(end[k], start[k]) for k in experts)  # frozen, bit for bit
    for key in ("gate.0.weight", "gate.2.bias", "log_std", "critic.0.weight"):
        assert not torch.equal(end[key], start[key]), key  # trained
    log = pd.read_csv(run / LOG)
    assert len(log) == 4 and np.isfinite(log["policy_loss"]).all() and (log["kl"] > 0).all()


def test_the_gate_starts_choosing_the_expert_trained_on_each_clip(policy_dir, second_expert, tmp_path):
    """The first expert learnt moco-walk (its one motion), the second the run: a new gate picks them apart on
    episodes it was not fitted on; without the warm start it starts near the experts' average."""
    warm = Trainer(_config(1024, [policy_dir, second_expert]), tmp_path / "warm")
    cold = Trainer(dataclasses.replace(_config(1024, [policy_dir, second_expert]), gate_warm_start=False),
                   tmp_path / "cold")
    for trainer in (warm, cold):
        trainer.close()
    assert warm.gate_start["clips"] == {"moco-walk": 0, "falisse2019-run-mean": 1}
    assert warm.gate_start["samples"] > 0 and warm.gate_start["accuracy"] >= 0.95
    assert cold.gate_start is None
    observations, labels = gate_examples(warm.agent, warm.gate_start["clips"], ENV, seed=100)  # other episodes
    assert set(labels) == {0, 1}
    with torch.no_grad():
        chosen = warm.agent.gate_weights(torch.as_tensor(observations))
        untrained = cold.agent.gate_weights(torch.as_tensor(observations))
    assert (chosen.argmax(-1).numpy() == labels).mean() >= 0.9
    assert chosen.max(-1).values.mean() > 0.8 and untrained.max(-1).values.max() < 0.6


def test_a_stopped_gate_run_resumes_exactly_without_its_expert_folders(policy_dir, second_expert, gate_run,
                                                                        tmp_path):
    copied = shutil.copytree(second_expert, tmp_path / "expert2")
    stopped = StopsAfterTwoUpdates(_config(10**6, [policy_dir, copied]), tmp_path / "run")
    stopped.run(progress=False)
    stopped.close()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["update"] == 2
    shutil.rmtree(copied)  # the checkpoint holds the experts
    resumed = Trainer(PPOConfig(total_steps=1024), tmp_path / "run", resume=True)
    resumed.run(progress=False)
    resumed.close()
    straight, _ = gate_run
    a, b = pd.read_csv(tmp_path / "run" / LOG), pd.read_csv(straight / LOG)
    columns = [c for c in a.columns if c.startswith(("policy_loss", "value_loss", "kl", "episode_return",
                                                     "failure_rate", "action_std"))]
    pd.testing.assert_frame_equal(a[columns], b[columns])
    ours, theirs = load_checkpoint(tmp_path / "run" / CHECKPOINT), load_checkpoint(straight / CHECKPOINT)
    assert_same_checkpoint({k: v for k, v in ours.items() if k != "config"}, {k: v for k, v in theirs.items() if k != "config"})


def test_a_gate_run_exports_a_mixture_folder_that_rolls_out(gate_run, policy_dir, second_expert, tmp_path):
    from kinesis_neuro.experts import checkpoint_mixture
    from kinesis_neuro.rollout import rollout

    run, _ = gate_run
    assert main(["export-policy", str(run), "--out", str(tmp_path / "policy")]) == 0
    policy = policies.load(tmp_path / "policy")
    assert isinstance(policy.agent, MixtureOfExperts) and policy.agent.num_experts == 2
    written = json.loads((tmp_path / "policy" / policies.CONFIG).read_text())
    assert written["update"] == 4 and written["expert_sources"] == [str(policy_dir), str(second_expert)]
    trained = checkpoint_mixture(load_checkpoint(run / CHECKPOINT), run / CHECKPOINT)
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(16, trained.norm.mean.shape[0])),
                          dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(policy.agent.distribution(obs).mean, trained.distribution(obs).mean)
    metrics, recording = rollout(policy, episodes=2, seed=0, progress=False, episode_seconds=0.5)
    assert len(metrics) == 2 and recording.data.sizes["time"] > 2
    assert np.isfinite(metrics["tracking_error_m"]).all()


def test_the_next_expert_trains_on_the_clips_the_run_fails(gate_run, policy_dir, second_expert, capsys):
    run, _ = gate_run
    rates = dict(zip(CLIPS, load_checkpoint(run / CHECKPOINT)["clip_sampler"]["rates"]))
    assert next_expert_clips(run) == tuple(c for c in CLIPS if rates[c] >= 0.5)
    assert next_expert_clips(run, threshold=0.0) == CLIPS
    assert next_expert_clips(run, CLIPS[1:], threshold=0.0) == CLIPS[1:]
    with pytest.raises(KinesisNeuroError, match="not clips of the run"):
        next_expert_clips(run, ["hamner-run"])
    with pytest.raises(KinesisNeuroError, match="no clip failure rates"):
        next_expert_clips(policy_dir)  # a run of one motion
    # the plateau of the success rate (mean over clips of 1 - failure rate) of the 4 logged updates
    log = pd.read_csv(run / LOG)
    curve = 1 - log[[f"failure_rate:{c}" for c in CLIPS]].mean(axis=1).to_numpy()
    np.testing.assert_array_equal(success_curve(run), curve)
    assert should_start_next_expert(run, window=2, min_gain=0.0) == plateaued(curve, 2, 0.0)
    assert should_start_next_expert(run, window=2, min_gain=1.0)  # a rate cannot gain a whole 1 over 2 updates
    assert not should_start_next_expert(run, window=3)  # too few updates to tell
    assert main(["experts", "next", "--run", str(run), "--window", "2", "--threshold", "0"]) == 0
    out = capsys.readouterr().out
    assert f"failed clips (failure rate >= 0): {', '.join(CLIPS)}" in out
    # the gate's last expert starts the next; then a gate over all three
    assert f"--init-from {second_expert} --out {run}-expert3" in out
    assert f"--experts {policy_dir},{second_expert},{run}-expert3" in out
    assert "episode_seconds" in out  # the run's setting no train option gives
    assert main(["experts", "next", "--run", str(policy_dir)]) == 2


def test_experts_that_are_missing_or_do_not_fit_are_refused(policy_dir, gate_run, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--clips", ",".join(CLIPS), "--steps", "256", "--workers", "1", "--num-envs", "8",
            "--out", str(out)]
    assert main([*base, "--experts", f"{policy_dir},{tmp_path / 'nope'}"]) == 2
    assert f"expert {tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    assert main([*base, "--experts", str(gate_run[0])]) == 2  # a gate run is not one expert
    assert "a mixture of experts; experts are single policies" in capsys.readouterr().err
    assert main([*base, "--experts", str(policy_dir), "--init-from", str(policy_dir)]) == 2
    assert "init_from must be None when experts are given" in capsys.readouterr().err
    assert main([*base, "--kinesis", "--experts", str(policy_dir)]) == 2  # toe contacts: a longer observation
    assert f"expert {policy_dir}: observations of" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
