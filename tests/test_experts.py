"""Mixture of frozen experts under a gate (KINESIS): exactness for one expert, gate-weighted means, one policy
folder that loads and rolls out like any policy, the numpy evaluator of rollout workers, plateau detection."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kinesis_neuro import policies
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError
from kinesis_neuro.experts import MixtureOfExperts, NumpyMixture, numpy_policy, plateaued
from kinesis_neuro.train import ActorCritic, NumpyActor

WALK = Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk"


@pytest.fixture(scope="module")
def walk(data_dir):
    return policies.load(WALK)


@pytest.fixture(scope="module")
def states(walk) -> np.ndarray:
    """Observations the walking policy meets: 4 seeded starts, 10 steps each."""
    env, out = walk.make_env(episode_seconds=1.0), []
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        for _ in range(10):
            out.append(obs)
            obs, *_ = env.step(walk.act(obs))
    return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def perturbed(walk) -> ActorCritic:
    """The walking policy with noise on its actor weights and another observation normaliser."""
    agent, g = copy.deepcopy(walk.agent), torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        agent.norm.mean.add_(0.1 * torch.randn(agent.norm.mean.shape, generator=g, dtype=torch.float64))
    return agent


def two_experts(walk, perturbed) -> MixtureOfExperts:
    """Mixture of the walking policy and its perturbed copy with a gate whose weights vary with the state."""
    torch.manual_seed(0)
    mixture = MixtureOfExperts.from_experts([walk.agent, perturbed], gate_hidden=(32,))
    with torch.no_grad():
        mixture.gate[-1].weight.normal_(0.0, 0.5)
    return mixture


def test_a_mixture_of_one_expert_is_that_expert(walk, states):
    mixture = MixtureOfExperts.from_experts([WALK])
    obs = torch.as_tensor(states)
    with torch.no_grad():
        assert torch.equal(mixture.gate_weights(obs), torch.ones(len(states), 1))
        ours, theirs = mixture.distribution(obs), walk.agent.distribution(obs)
    assert torch.equal(ours.mean, theirs.mean) and torch.equal(ours.stddev, theirs.stddev)
    assert np.array_equal(numpy_policy(mixture)(states), NumpyActor(walk.agent)(states))


def test_the_mean_is_the_gate_weighted_sum_of_the_experts_means(walk, perturbed, states):
    mixture = two_experts(walk, perturbed)
    obs = torch.as_tensor(states)
    with torch.no_grad():
        g = mixture.gate_weights(obs)
        experts = [walk.agent.distribution(obs).mean, perturbed.distribution(obs).mean]
        mean = mixture.distribution(obs).mean
    np.testing.assert_allclose(g.sum(-1), 1.0, atol=1e-6)
    assert float(g[:, 0].max() - g[:, 0].min()) > 0.05  # the gate weighs the experts differently by state
    expected = g[:, :1] * experts[0] + g[:, 1:] * experts[1]
    np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-6)
    assert (mean - experts[0]).abs().max() > 0.01 and (mean - experts[1]).abs().max() > 0.01
    # the experts are frozen: only the gate and the log-std learn
    mixture.distribution(obs).log_prob(torch.zeros_like(mean)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in mixture.experts.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*mixture.gate.parameters(), mixture.log_std])
    np.testing.assert_allclose(numpy_policy(mixture)(states), mean, rtol=1e-6, atol=1e-6)


def test_a_mixture_folder_round_trips_as_one_policy(walk, perturbed, states, tmp_path):
    mixture = two_experts(walk, perturbed)
    out = policies.export_mixture(mixture, tmp_path / "moe", walk.env_config, extra={"update": 7, "seed": 0})
    assert sorted(p.name for p in out.iterdir()) == ["policy.json", "policy.safetensors"]
    config = json.loads((out / "policy.json").read_text())
    assert config == {"kind": "mixture", "experts": 2, "hidden": [[512, 256], [512, 256]], "gate_hidden": [32],
                      "env": walk.env_config, "update": 7, "seed": 0}
    policy = policies.load(out)
    assert isinstance(policy.agent, MixtureOfExperts) and policy.env_config == walk.env_config
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for o in states:
        assert np.array_equal(policy.act(o), policies.Policy(mixture, {}, "").act(o))
        assert np.array_equal(policy.act(o, False, g1), policies.Policy(mixture, {}, "").act(o, False, g2))
    evaluator = numpy_policy(policy.agent)
    assert isinstance(evaluator, NumpyMixture)
    with torch.no_grad():
        dist = policy.agent.distribution(torch.as_tensor(states))
    np.testing.assert_allclose(evaluator(states), dist.mean, rtol=1e-6, atol=1e-6)
    action = (dist.mean + dist.stddev).numpy()
    np.testing.assert_allclose(evaluator.log_prob(action, evaluator(states)), dist.log_prob(
        torch.as_tensor(action)).sum(-1), rtol=1e-5)  # torch sums 80 float32 terms
    grown = MixtureOfExperts.from_experts([*policy.agent.experts, walk.agent])  # KINESIS adds experts one by one
    with torch.no_grad():
        assert torch.equal(grown.expert_means(torch.as_tensor(states))[:, :2],
                           mixture.expert_means(torch.as_tensor(states)))
    with pytest.raises(KinesisNeuroError, match="must not replace kind"):
        policies.export_mixture(mixture, tmp_path / "other", walk.env_config, extra={"kind": "x"})


def test_a_single_policy_folder_loads_as_before(walk):
    assert type(walk.agent) is ActorCritic and "kind" not in json.loads((WALK / "policy.json").read_text())
    assert type(numpy_policy(walk.agent)) is NumpyActor


def test_rollout_and_ablation_run_a_mixture_folder_unchanged(walk, perturbed, tmp_path):
    from kinesis_neuro.redundancy.ablation import INTACT, Condition, run_condition
    from kinesis_neuro.rollout import rollout

    one = policies.load(policies.export_mixture(MixtureOfExperts.from_experts([WALK]), tmp_path / "one",
                                                walk.env_config))
    options = {"episodes": 1, "seed": 2, "progress": False, "episode_seconds": 0.5}
    single, _ = rollout(walk, record=False, **options)
    metrics, recording = rollout(one, **options)
    columns = ["duration_s", "terminated_early", "tracking_error_m"]
    assert metrics[columns].equals(single[columns])  # one expert: exactly the policy
    assert recording.data.sizes["time"] == 1 + round(30 * metrics.duration_s.iloc[0])  # start + every step
    folder = policies.export_mixture(two_experts(walk, perturbed), tmp_path / "two", walk.env_config)
    lesion = run_condition(folder, Condition(INTACT), episodes=1, episode_seconds=0.5)
    assert len(lesion["duration_s"]) == 1 and lesion["activation"].shape == (1, 80)


def _small_mixture_folder(tmp_path) -> Path:
    torch.manual_seed(0)
    mixture = MixtureOfExperts.from_experts([ActorCritic(459, 80, (32,)), ActorCritic(459, 80, (16, 8))],
                                            gate_hidden=(8,))
    return policies.export_mixture(mixture, tmp_path / "moe", {"episode_seconds": 1.0})


def _edit(change):
    def corrupt(folder):
        config = json.loads((folder / "policy.json").read_text())
        change(config)
        (folder / "policy.json").write_text(json.dumps(config))
    return corrupt


def _drop(key):
    def corrupt(folder):
        from safetensors.torch import load_file, save_file

        state = load_file(folder / "policy.safetensors")
        state.pop(key)
        save_file(state, folder / "policy.safetensors")
    return corrupt


CORRUPT = {
    "unknown kind": (_edit(lambda c: c.update(kind="committee")), r"kind must be 'mixture' .* got 'committee'"),
    "no gate sizes": (_edit(lambda c: c.pop("gate_hidden")), r"lacks gate_hidden"),
    "expert count": (_edit(lambda c: c.update(experts=3)), r"hidden must hold the layer sizes .* of the 3 experts"),
    "flat hidden": (_edit(lambda c: c.update(hidden=[32, 32])), r"hidden must hold the layer sizes"),
    "bad gate sizes": (_edit(lambda c: c.update(gate_hidden=[0])), r"gate_hidden must be a non-empty list"),
    "other expert sizes": (_edit(lambda c: c.update(hidden=[[32], [16]])),
                           r"experts hidden \[\[32\], \[16\]\].*experts.1.actor.2.bias has shape \(8,\), "
                           r"expected \(80,\)"),
    "expert missing": (_drop("experts.1.actor.0.weight"), r"lacks experts.1.actor.0.weight"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_corrupt_mixture_folder_names_the_file_and_problem(tmp_path, case):
    corrupt, message = CORRUPT[case]
    folder = _small_mixture_folder(tmp_path)
    policies.load(folder)
    corrupt(folder)
    with pytest.raises(DataFormatError, match=message) as err:
        policies.load(folder)
    assert str(folder) in str(err.value)


def test_experts_must_be_single_policies_of_one_size(walk):
    with pytest.raises(KinesisNeuroError, match="at least one expert"):
        MixtureOfExperts.from_experts([])
    with pytest.raises(KinesisNeuroError, match=r"differ in \(observation, action\) sizes"):
        MixtureOfExperts.from_experts([walk.agent, ActorCritic(12, 80, (8,))])
    with pytest.raises(KinesisNeuroError, match="not mixtures"):
        MixtureOfExperts.from_experts([MixtureOfExperts.from_experts([walk.agent])])
    with pytest.raises(KinesisNeuroError, match="takes a MixtureOfExperts"):
        policies.export_mixture(walk.agent, "unused", {})


def test_plateau_of_the_bundled_policys_training_curve():
    """Episode length per update of policies/myolegs-walk (300 steps at most): still rising by tens of steps
    per 200 updates until update 2600, less than 10 steps over the last 200."""
    length = pd.read_csv(WALK / "training_log.csv").episode_length.to_numpy()
    assert not any(plateaued(length[:n], window=200, min_gain=10.0) for n in (1600, 2000, 2400, 2600))
    assert plateaued(length, window=200, min_gain=10.0)


def test_plateau_on_simple_curves():
    rising, flat = np.arange(40.0), np.r_[np.arange(20.0), np.full(20, 19.0)]
    assert not plateaued(rising, window=10, min_gain=5.0) and plateaued(flat, window=10, min_gain=5.0)
    assert not plateaued(flat[:19], window=10, min_gain=5.0)  # too short to tell
    with_gaps = np.r_[flat, np.nan, np.nan]
    assert plateaued(with_gaps, window=10, min_gain=5.0)
    for bad in ({"window": 0}, {"window": 2.5}, {"min_gain": -1.0}, {"min_gain": float("nan")}):
        with pytest.raises(KinesisNeuroError):
            plateaued(rising, **bad)
    with pytest.raises(KinesisNeuroError, match="infinite"):
        plateaued([1.0, np.inf], window=1)
