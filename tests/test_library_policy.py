"""The bundled motion-library policy (policies/myolegs-library): its files are one training run, it was
trained on the library's training split in the KINESIS-aligned environment, and every command loads it."""

import json
from pathlib import Path

import pandas as pd
import torch

from kinesis_neuro import evaluate, motion_library, policies
from kinesis_neuro.envs.imitation import KINESIS_SETTINGS
from kinesis_neuro.train import CHECKPOINT, LOG, load_checkpoint

LIBRARY = Path(__file__).resolve().parents[1] / "policies" / "myolegs-library"


def test_the_bundled_library_policy_is_its_training_run():
    policy = policies.load(LIBRARY)
    env = policy.env_config
    assert tuple(env["clips"]) == motion_library.SPLITS["train"]
    kinesis = {k: v for k, v in KINESIS_SETTINGS.items() if k != "termination"}  # termination: see the card
    assert {k: env[k] for k in kinesis} == kinesis and env["termination"] == "mean"
    checkpoint = load_checkpoint(LIBRARY / CHECKPOINT)
    exported = json.loads((LIBRARY / policies.CONFIG).read_text())
    assert exported["update"] == checkpoint["update"] == int(pd.read_csv(LIBRARY / LOG)["update"].iloc[-1])
    actor = policy.agent.state_dict()
    for key, value in checkpoint["agent"].items():
        if not key.startswith("critic."):
            assert torch.equal(actor[key], value), key
    assert "clip_sampler" in checkpoint and len(checkpoint["clip_sampler"]["rates"]) == len(env["clips"])


def test_the_bundled_library_policy_runs_every_kind_of_clip(data_dir):
    policy = policies.load(LIBRARY)
    clips = ["moco-walk", "amp-cmu-run", "mdm-walk-pick-up-toolbox-0"]  # train, held out, text-to-motion
    table = evaluate.evaluate(policy, clips=clips, episodes=2, episode_seconds=2.0, progress=False)
    assert list(table.split) == ["train", "held_out", "text_to_motion"]
    assert (table.mean_duration_s > 0).all() and table.completed.between(0, 1).all()
    # it walks its training walk: 5/5 10-s episodes at 0.051 m in the model card's evaluation (Intel Xeon)
    assert table.loc["moco-walk", "completed"] == 1.0 and table.loc["moco-walk", "tracking_error_m"] < 0.08
