"""The PPO update (KL-adaptive actor learning rate, critic on normalised returns, bound penalty, annealing) and
warm starts from the bundled policy."""

import copy
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from kinesis_neuro import policies
from kinesis_neuro.cli import main
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.train import (
    CHECKPOINT,
    ActorCritic,
    NumpyActor,
    PPOConfig,
    RunningNorm,
    Trainer,
    load_checkpoint,
    warm_start_state,
)

BUNDLED = Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk"  # obs 459, 80 muscles, hidden 512, 256


def make_learner(n_obs: int = 12, n_act: int = 4, update: int = 0, **settings) -> Trainer:
    """A Trainer's learner alone (networks, optimisers, normalisers; no workers, no run folder), seeded, that has
    collected one batch of 64 samples."""
    torch.manual_seed(0)
    trainer = Trainer.__new__(Trainer)
    trainer.config = PPOConfig(**{"hidden": (16, 16), "workers": 1, "rollout_steps": 64, "num_envs": 1, **settings})
    trainer._build_learner(n_obs, n_act)
    trainer.update, trainer.global_step = update, 64
    trainer._mirror = (torch.arange(n_obs), torch.ones(n_obs), torch.arange(n_act))
    return trainer


def make_batch(learner: Trainer, seed: int = 1, returns_mean: float = 0.0) -> dict:
    """64 samples acted by ``learner``'s policy, random advantages and returns."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(64, 12, generator=g)
    with torch.no_grad():
        dist = learner.agent.distribution(obs)
        actions = dist.mean + dist.stddev * torch.randn(64, 4, generator=g)
        logprobs = dist.log_prob(actions).sum(-1)
    returns = returns_mean + 10 * torch.randn(64, generator=g)
    return {"obs": obs, "actions": actions, "logprobs": logprobs, "advantages": torch.randn(64, generator=g),
            "returns": returns, "values": returns + torch.randn(64, generator=g),
            "policy_version": torch.full((64,), learner.update, dtype=torch.int64)}


def test_a_stale_batch_is_weighted_by_the_proximal_over_the_behaviour_policy():
    """A batch one update old is learned with ratios against the policy at the start of the update and each
    advantage weighted by pi_proximal / pi_behaviour: behaviour log-probabilities log 2 below the proximal ones
    give weights of 2; equal ones give exactly the on-policy update."""
    def learner(update):
        return make_learner(update=update, epochs=2, minibatches=2)

    obs, actions = torch.randn(64, 12), torch.randn(64, 4)
    with torch.no_grad():
        proximal = learner(0).agent.distribution(obs).log_prob(actions).sum(-1)
    batch = {"obs": obs, "actions": actions, "logprobs": proximal, "advantages": torch.randn(64),
             "returns": torch.randn(64), "values": torch.randn(64),
             "policy_version": torch.zeros(64, dtype=torch.int64)}
    fresh, stale = learner(0).learn(batch), learner(1).learn(batch)
    assert fresh == stale and stale["importance_weight"] == 1.0
    doubled = learner(1).learn({**batch, "logprobs": proximal - np.log(2.0)})
    assert doubled["importance_weight"] == pytest.approx(2.0)


def test_the_logged_kl_is_that_of_the_whole_batch_and_steers_the_learning_rate():
    """The KL and clip fraction of the update are those of the whole batch between the policy before and after
    it; a KL above twice target_kl divides the actor's learning rate by 1.5, one below half of it multiplies it
    by 1.5, never beyond [lr_min, lr_max]."""
    learner = make_learner(learning_rate=1e-3, epochs=3, kl_stop=None)
    before = copy.deepcopy(learner.agent)
    batch = make_batch(learner)
    stats = learner.learn(batch)
    with torch.no_grad():
        z = before.norm(batch["obs"])  # the normalisation the update used (the normaliser moves after it)
        old = torch.distributions.Normal(before.actor(z), before.log_std.exp())
        new = torch.distributions.Normal(learner.agent.actor(z), learner.agent.log_std.exp())
        kl = torch.distributions.kl_divergence(old, new).sum(-1).mean().item()
        ratio = (new.log_prob(batch["actions"]).sum(-1) - batch["logprobs"]).exp()
    assert stats["kl"] == pytest.approx(kl, rel=1e-4) and stats["kl"] > 0
    assert stats["clip_fraction"] == pytest.approx(((ratio - 1).abs() > 0.2).float().mean().item())
    assert stats["epochs"] == 3 and stats["actor_lr"] == 1e-3

    def next_lr(**settings):
        learner = make_learner(**settings)
        learner.learn(make_batch(learner))
        return learner.actor_lr

    assert next_lr(learning_rate=1e-3, target_kl=1e-9) == pytest.approx(1e-3 / 1.5)  # too far: slower
    assert next_lr(learning_rate=1e-4, target_kl=10.0) == pytest.approx(1.5e-4)  # too timid: faster
    assert next_lr(learning_rate=1e-4, lr_min=1e-4, target_kl=1e-9) == 1e-4  # within the bounds
    assert next_lr(learning_rate=1e-3, lr_max=1e-3, target_kl=10.0) == 1e-3
    assert next_lr(learning_rate=1e-3, target_kl=None) == 1e-3  # not adapted


def test_the_critic_trains_every_epoch_after_the_actor_stops():
    """kl_stop ends the actor's epochs after the first; the critic still takes every epoch's steps."""
    learner = make_learner(learning_rate=1e-3, epochs=4, minibatches=2, kl_stop=1e-12)
    stats = learner.learn(make_batch(learner))
    steps = {name: {int(s["step"]) for s in optimiser.state.values()}
             for name, optimiser in (("actor", learner.actor_optimizer), ("critic", learner.critic_optimizer))}
    assert stats["epochs"] == 1 and stats["kl"] > 1e-12
    assert steps == {"actor": {2}, "critic": {8}}


def test_the_return_normaliser_keeps_the_critics_values_and_its_targets_are_normalised():
    """Returns around 57 (the bundled walk's): the critic's values in return units are the same before and after
    the normaliser takes in a batch (its last layer rescaled), and its targets have mean 0 and std 1."""
    learner = make_learner()
    obs, returns = torch.randn(64, 12), 57 + 10 * torch.randn(64)
    for _ in range(3):
        with torch.no_grad():
            values = learner.value(obs)
        targets = learner._normalise_returns(returns)
        with torch.no_grad():
            np.testing.assert_allclose(learner.value(obs).numpy(), values.numpy(), rtol=1e-5, atol=1e-5)
        returns = returns + 20  # the returns grow as the policy learns
    assert learner.value_norm.mean.item() == pytest.approx((57 + 57 + 20 + 57 + 40) / 3, abs=1.0)
    assert targets.mean().item() == pytest.approx(1.0, abs=0.2)  # the newest batch: above the running mean
    first = make_learner()
    targets = first._normalise_returns(returns)  # one batch: its own mean and std
    assert targets.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert targets.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)


def test_the_bound_penalty_pulls_action_means_into_range():
    """With zero advantages only the penalty moves the actor: means beyond [-1, 1] come back; without it
    (bound_coef 0) nothing changes."""
    def learned(bound_coef):
        learner = make_learner(bound_coef=bound_coef, learning_rate=1e-2, lr_max=1e-2, kl_stop=None)
        with torch.no_grad():
            learner.agent.actor[-1].bias.fill_(1.5)
        batch = {**make_batch(learner), "advantages": torch.zeros(64)}
        with torch.no_grad():
            z = learner.agent.norm(batch["obs"])  # before the update moves the normaliser
            start = learner.agent.actor(z)
        stats = learner.learn(batch)
        with torch.no_grad():
            return start, learner.agent.actor(z), stats

    start, end, stats = learned(0.0)
    assert stats["outside_fraction"] == 1.0 and torch.equal(end, start)
    start, end, stats = learned(1.0)
    excess = [(means.abs() - 1).clamp(min=0).mean().item() for means in (start, end)]
    assert excess[1] < 0.8 * excess[0], excess


@pytest.mark.parametrize("schedule, factor", [("constant", 1.0), ("linear", 0.75),
                                              ("cosine", 0.5 * (1 + math.cos(math.pi / 4)))])
def test_learning_rates_anneal_over_total_steps(schedule, factor):
    """A quarter through total_steps (64 of 256 samples before this batch) both learning rates are scaled."""
    learner = make_learner(lr_schedule=schedule, total_steps=256, target_kl=None)
    learner.global_step = 128
    stats = learner.learn(make_batch(learner))
    assert stats["actor_lr"] == pytest.approx(1e-4 * factor)
    assert learner.critic_optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * factor)


def test_init_log_std_per_muscle():
    learner = make_learner(init_log_std=[-1.0, -2.0, -1.5, -1.0])
    assert learner.agent.log_std.tolist() == [-1.0, -2.0, -1.5, -1.0]
    with pytest.raises(KinesisNeuroError, match="init_log_std has 3 values for 4 actions"):
        make_learner(init_log_std=[-1.0, -2.0, -1.5])


def test_warm_start_pads_an_observation_that_gained_entries_at_its_end(tmp_path):
    """The bundled policy (459 observations) into a network of 461 (toe contacts appended): the action means,
    log-std and values are those of the bundled networks whatever the new entries hold; from the policy folder
    (critic from its checkpoint.pt) and from a run folder alike."""
    bundled = policies.load(BUNDLED).agent
    ckpt = load_checkpoint(BUNDLED / CHECKPOINT)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(BUNDLED / CHECKPOINT, run)
    obs = np.random.default_rng(0).normal(0, 1, (8, 461)).astype(np.float32) + bundled.norm.mean.numpy().mean()
    obs[:, :459] = bundled.norm.mean.numpy() + np.sqrt(bundled.norm.var.numpy()) * obs[:, :459]
    critic = ActorCritic(459, 80, (512, 256))
    critic.load_state_dict(ckpt["agent"])
    for source in (BUNDLED, run):
        agent, value_norm = ActorCritic(461, 80, (512, 256)), RunningNorm(1)
        warm_start_state(source, agent, value_norm)
        np.testing.assert_allclose(NumpyActor(agent)(obs), NumpyActor(bundled)(obs[:, :459]), rtol=1e-5, atol=1e-6)
        assert torch.equal(agent.log_std, bundled.log_std) and agent.norm.count == bundled.norm.count
        with torch.no_grad():
            np.testing.assert_allclose(agent.value(torch.as_tensor(obs)), critic.value(torch.as_tensor(obs[:, :459])),
                                       rtol=1e-5, atol=1e-5)
        assert torch.equal(value_norm.var, torch.ones(1))  # the bundled critic predicts unnormalised returns


def test_warm_start_refuses_networks_that_do_not_fit(tmp_path):
    def error(agent, source=BUNDLED) -> str:
        with pytest.raises(KinesisNeuroError) as err:
            warm_start_state(source, agent, RunningNorm(1))
        return str(err.value)

    assert "observations of 459 entries, this run's have 400" in error(ActorCritic(400, 80, (512, 256)))
    message = error(ActorCritic(459, 80, (64, 64)))
    assert "(459 observations, hidden [64, 64])" in message and "actor.0.weight has shape (512, 459), this run's " \
                                                                 "(64, 459)" in message
    assert "log_std has shape (80,), this run's (79,)" in error(ActorCritic(459, 79, (512, 256)))
    assert "neither a training run folder" in error(ActorCritic(459, 80, (512, 256)), tmp_path)


def test_training_warm_starts_from_the_bundled_policy_with_toe_contacts(data_dir, tmp_path, capsys):
    """A run of an environment that observes toe contacts (461 entries) starts from the bundled policy: at
    update 0 it acts as the bundled policy; it trains, and its checkpoint records where it started from."""
    config = PPOConfig(total_steps=128, workers=1, num_envs=4, rollout_steps=128, minibatches=2, epochs=2,
                       init_from=str(BUNDLED), env={"toe_contact": True, "episode_seconds": 0.5})
    trainer = Trainer(config, tmp_path / "run")
    try:
        assert trainer.workers.n_obs == 461
        weights = trainer.agent.state_dict()
        bundled = policies.load(BUNDLED).agent.state_dict()
        assert torch.equal(weights["actor.0.weight"][:, :459], bundled["actor.0.weight"])
        assert not weights["actor.0.weight"][:, 459:].any() and not weights["critic.0.weight"][:, 459:].any()
        assert torch.equal(weights["log_std"], bundled["log_std"])
        history = trainer.run(progress=False)
    finally:
        trainer.close()
    assert history[-1]["episode_length"] > 10  # the bundled policy walks (a fresh one falls within ~6 steps)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert ckpt["update"] == 1 and ckpt["config"]["init_from"] == str(BUNDLED)
    argv = ["train", "--out", str(tmp_path / "run"), "--resume", "--init-from", str(BUNDLED), "--no-progress"]
    assert main(argv) == 2 and "give one of them" in capsys.readouterr().err
