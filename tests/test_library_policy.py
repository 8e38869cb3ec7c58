"""The bundled motion-library policy (policies/myolegs-library): a gate over two experts, each folder one
training run (the experts' runs under experts/), trained on the library's training split in the
KINESIS-aligned environment; every command loads it."""

import json
from pathlib import Path

import pandas as pd
import torch

from kinesis_neuro import evaluate, motion_library, policies
from kinesis_neuro.envs.imitation import KINESIS_SETTINGS
from kinesis_neuro.experts import MixtureOfExperts
from kinesis_neuro.train import CHECKPOINT, LOG, load_checkpoint

LIBRARY = Path(__file__).resolve().parents[1] / "policies" / "myolegs-library"
EXPERTS = [LIBRARY / "experts" / "1", LIBRARY / "experts" / "2"]


def assert_is_its_training_run(folder: Path, policy: policies.Policy) -> dict:
    """The folder's exported policy is its checkpoint's (every weight but the critic's) at its log's last update."""
    checkpoint = load_checkpoint(folder / CHECKPOINT)
    exported = json.loads((folder / policies.CONFIG).read_text())
    assert exported["update"] == checkpoint["update"] == int(pd.read_csv(folder / LOG)["update"].iloc[-1])
    weights = policy.agent.state_dict()
    for key, value in checkpoint["agent"].items():
        if not key.startswith("critic."):
            assert torch.equal(weights[key], value), (folder, key)
    return checkpoint


def test_the_bundled_library_policy_is_a_gate_over_its_two_bundled_experts():
    policy = policies.load(LIBRARY)
    env = policy.env_config
    assert tuple(env["clips"]) == motion_library.SPLITS["train"]
    kinesis = {k: v for k, v in KINESIS_SETTINGS.items() if k != "termination"}  # termination: see the card
    assert {k: env[k] for k in kinesis} == kinesis and env["termination"] == "mean"
    assert isinstance(policy.agent, MixtureOfExperts) and policy.agent.num_experts == 2
    checkpoint = assert_is_its_training_run(LIBRARY, policy)
    assert "clip_sampler" in checkpoint and len(checkpoint["clip_sampler"]["rates"]) == len(env["clips"])
    clips = []
    for k, folder in enumerate(EXPERTS):
        expert = policies.load(folder)
        assert_is_its_training_run(folder, expert)
        frozen = policy.agent.experts[k]
        assert torch.equal(frozen.actor[0].weight, expert.agent.actor[0].weight)
        assert torch.equal(frozen.norm.mean, expert.agent.norm.mean)
        clips.append(set(expert.env_config["clips"]))
    # the second expert trained on the clips the first failed, all of them running or the AMP walk
    assert clips[0] == set(env["clips"]) and clips[1] < clips[0]
    assert clips[1] == {"amp-cmu-walk", "hamner-run", "rajagopal-run", "falisse2019-run-mean"}


def test_the_bundled_library_policy_runs_every_kind_of_clip(data_dir):
    policy = policies.load(LIBRARY)
    clips = ["moco-walk", "amp-cmu-run", "mdm-walk-pick-up-toolbox-0"]  # train, held out, text-to-motion
    table = evaluate.evaluate(policy, clips=clips, episodes=2, episode_seconds=2.0, progress=False)
    assert list(table.split) == ["train", "held_out", "text_to_motion"]
    assert (table.mean_duration_s > 0).all() and table.completed.between(0, 1).all()
    # it walks its training walk: 5/5 10-s episodes at 0.05 m in the model card's evaluation (Intel Xeon)
    assert table.loc["moco-walk", "completed"] == 1.0 and table.loc["moco-walk", "tracking_error_m"] < 0.08
