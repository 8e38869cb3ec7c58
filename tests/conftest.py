"""Tests read the real datasets from ../shared/datasets (never the network)."""

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATA_DIR = Path(os.environ.get("KINESIS_NEURO_DATA") or SHARED)
os.environ["KINESIS_NEURO_DATA"] = str(DATA_DIR)
os.environ["KINESIS_NEURO_OFFLINE"] = "1"
# one BLAS/torch thread per test process: pytest -n 2 on a 2-core machine would oversubscribe it otherwise
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "moco-walk").is_dir():
        pytest.fail(f"the real datasets are expected in {DATA_DIR} (set KINESIS_NEURO_DATA); see README")
    return DATA_DIR


@pytest.fixture(scope="session")
def policy_dir(data_dir, tmp_path_factory) -> Path:
    """A tiny policy trained for one short update (1 s episodes): a real policy folder that falls at once."""
    from kinesis_neuro import policies
    from kinesis_neuro.train import PPOConfig, Trainer

    run = tmp_path_factory.mktemp("policy")
    trainer = Trainer(PPOConfig(total_steps=256, workers=1, rollout_steps=256, hidden=(32, 32),
                                env={"episode_seconds": 1.0}), run)
    trainer.run(progress=False)
    trainer.close()
    return policies.export(run)
