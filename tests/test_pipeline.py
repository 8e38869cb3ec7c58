"""The main job end to end: rollouts, static optimisation, comparison with EMG, figures, summary."""

import json
from pathlib import Path

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
    assert "policy" not in summary["controllers"]  # an untrained policy falls at once: no gait cycle to compare
    assert "gait cycle" in summary["notes"]["policy"]
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


BUNDLED = Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk"


def test_bundled_policy_reproduces_its_metrics(data_dir, tmp_path):
    """The main job on the bundled policy gives the evaluation and EMG r its model card states."""
    from kinesis_neuro.pipeline import main_job

    stated = json.loads((BUNDLED / "metrics.json").read_text())
    evaluation = stated["evaluation"]
    assert evaluation["full_episodes"] >= 8 and evaluation["mean_tracking_error_m"] <= 0.06  # the target
    card = (BUNDLED / "MODEL_CARD.md").read_text()  # the card states these numbers
    assert f"{evaluation['full_episodes']} / {evaluation['episodes']}" in card
    assert f"{evaluation['mean_tracking_error_m']:.3f} m" in card
    assert f"{stated['emg_correlation']['policy']['median_r']:.3f}" in card
    summary = main_job(BUNDLED, episodes=evaluation["episodes"], seed=evaluation["seed"], n_boot=50,
                       out=tmp_path, data_dir=data_dir, progress=False)
    assert summary["evaluation"]["full_episodes"] == evaluation["full_episodes"]
    assert summary["evaluation"]["mean_tracking_error_m"] == pytest.approx(evaluation["mean_tracking_error_m"],
                                                                           abs=1e-4)
    for label in ("policy", "static optimisation"):
        assert summary["controllers"][label]["r"] == pytest.approx(stated["emg_correlation"][label]["r"], abs=1e-3)


def test_policy_metrics_sum_training_time_per_update(tmp_path):
    from kinesis_neuro.train import training_summary

    log = tmp_path / "training_log.csv"
    log.write_text("update,global_step,samples_per_s,wall_time_s\n1,4096,1024,10\n2,8192,2048,1000\n"
                   "3,12288,4096,1001\n")
    summary = training_summary(log, update=2)  # the pause between rows 1 and 2 does not count
    assert summary == {"samples": 8192, "updates": 2, "wall_time_h": pytest.approx(6 / 3600),
                       "median_samples_per_s": 1536.0}
