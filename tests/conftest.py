"""Tests read the real datasets from ../shared/datasets (never the network)."""

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATA_DIR = Path(os.environ.get("KINESIS_NEURO_DATA") or SHARED)
os.environ["KINESIS_NEURO_DATA"] = str(DATA_DIR)
os.environ["KINESIS_NEURO_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "moco-walk").is_dir():
        pytest.fail(f"the real datasets are expected in {DATA_DIR} (set KINESIS_NEURO_DATA); see README")
    return DATA_DIR
