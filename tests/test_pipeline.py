"""The main job end to end: rollouts, static optimisation, comparison with EMG, figures, summary."""

import json

import pytest

from kinesis_neuro.cli import main


def test_main_job_writes_summary_figures_and_recordings(policy_dir, tmp_path, capsys):
    out = tmp_path / "main"
    assert main(["pipeline", "--policy", str(policy_dir), "--episodes", "2", "--bootstrap", "50",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluation"]["episodes"] == 2
    baseline = summary["controllers"]["static optimisation"]
    assert baseline["median_r"] == pytest.approx(0.565, abs=0.01)  # as `compare` on the same periodic walk
    assert set(baseline["r"]) == {"soleus", "gastrocnemius", "tibialis_anterior", "medial_hamstrings",
                                  "biceps_femoris", "vastus_lateralis", "vastus_medius", "rectus_femoris",
                                  "gluteus_maximus", "gluteus_medius"}
    assert "complete simulated gait cycle" in summary["notes"]["policy"]  # an untrained policy falls at once
    assert (out / "figures" / "emg_correlation.png").stat().st_size > 0
    assert (out / "policy.nc").exists() and (out / "static-opt.nc").exists()
    printed = capsys.readouterr().out
    assert "soleus" in printed and "median" in printed and "policy not compared" in printed


def test_main_job_says_how_to_get_missing_data(policy_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KINESIS_NEURO_CACHE", str(tmp_path / "cache"))
    assert main(["--data-dir", str(tmp_path / "empty"), "pipeline", "--policy", str(policy_dir),
                 "--out", str(tmp_path / "main")]) == 2
    err = capsys.readouterr().err
    assert "not available offline" in err and "KINESIS_NEURO_DATA" in err and "datasets fetch" in err
    assert not (tmp_path / "main").exists()  # nothing started
