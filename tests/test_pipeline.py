"""The main job end to end: rollouts, static optimisation, comparison with EMG, figures, summary."""

import json
from pathlib import Path

import pandas as pd
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


def _metric_values(evaluation: dict, controllers: dict) -> dict[str, float]:
    """Metric name -> value, named as in metrics.json's ``spread`` section (benchmarks/metric_spread.py)."""
    values = {"mean_tracking_error_m": evaluation["mean_tracking_error_m"],
              "full_episodes": evaluation["full_episodes"]}
    for label in ("policy", "static optimisation"):
        values[f"{label} median_r"] = controllers[label]["median_r"]
        values.update({f"{label} r {muscle}": r for muscle, r in controllers[label]["r"].items()})
    return values


def _assert_within_spread(summary: dict, stated: dict) -> None:
    """Every metric within the tolerance metrics.json's ``spread`` section gives it (measured under 1e-9 start
    perturbations: rollouts on another CPU drift apart like that); full episodes at most that many fewer."""
    spread = stated["spread"]["metrics"]
    expected = _metric_values(stated["evaluation"], stated["emg_correlation"])
    got = _metric_values(summary["evaluation"], summary["controllers"])
    assert set(spread) == set(expected) == set(got)
    assert got["full_episodes"] >= expected["full_episodes"] - spread["full_episodes"]["tolerance"]
    off = {name: (got[name], expected[name], spread[name]["tolerance"]) for name in spread
           if name != "full_episodes" and not abs(got[name] - expected[name]) <= spread[name]["tolerance"]}
    assert not off, f"(got, stated, tolerance) out of tolerance: {off}"


def test_bundled_policy_reproduces_its_metrics(data_dir, tmp_path):
    """The main job on the bundled policy gives the evaluation and EMG r its model card states, within the
    spread that tiny start-state perturbations (another CPU's rounding) cause."""
    from kinesis_neuro.pipeline import main_job

    stated = json.loads((BUNDLED / "metrics.json").read_text())
    evaluation = stated["evaluation"]
    assert evaluation["full_episodes"] >= 8 and evaluation["mean_tracking_error_m"] <= 0.06  # the target
    card = (BUNDLED / "MODEL_CARD.md").read_text()  # the card states these numbers and their tolerances
    assert f"{evaluation['full_episodes']} / {evaluation['episodes']}" in card
    assert f"{evaluation['mean_tracking_error_m']:.3f} m" in card
    assert f"{stated['emg_correlation']['policy']['median_r']:.3f}" in card
    assert "benchmarks/metric_spread.py" in card
    for name, spread in stated["spread"]["metrics"].items():
        if name != "full_episodes":
            assert f"± {spread['tolerance']:g}" in card, name
    summary = main_job(BUNDLED, episodes=evaluation["episodes"], seed=evaluation["seed"], n_boot=50,
                       out=tmp_path, data_dir=data_dir, progress=False)
    _assert_within_spread(summary, stated)


def test_bundled_policy_metrics_hold_under_tiny_start_perturbations(data_dir, tmp_path):
    from kinesis_neuro.pipeline import main_job

    stated = json.loads((BUNDLED / "metrics.json").read_text())
    assert stated["spread"]["start_noise"] == 1e-9
    summary = main_job(BUNDLED, episodes=stated["evaluation"]["episodes"], seed=stated["evaluation"]["seed"],
                       n_boot=10, out=tmp_path, data_dir=data_dir, progress=False, start_noise=1e-9, noise_seed=99)
    _assert_within_spread(summary, stated)


def test_rollouts_are_bit_identical_on_one_machine(data_dir):
    """Same seed, same machine: the same numbers to the last bit, perturbed start states included."""
    from kinesis_neuro import policies
    from kinesis_neuro.errors import KinesisNeuroError
    from kinesis_neuro.rollout import rollout

    policy = policies.load(BUNDLED)
    runs = [rollout(policy, episodes=2, seed=4, progress=False, episode_seconds=2.0, start_noise=noise, noise_seed=5)
            for noise in (1e-9, 1e-9, 0.0)]
    pd.testing.assert_frame_equal(runs[0][0], runs[1][0], check_exact=True)
    assert runs[0][1].data.equals(runs[1][1].data)
    assert not runs[0][1].data.equals(runs[2][1].data)  # the 1e-9 noise does reach the rollout
    with pytest.raises(KinesisNeuroError, match="episodes must be at least 1"):
        rollout(policy, episodes=0, progress=False)


def test_policy_metrics_sum_training_time_per_update(tmp_path):
    from kinesis_neuro.train import training_summary

    log = tmp_path / "training_log.csv"
    log.write_text("update,global_step,samples_per_s,wall_time_s\n1,4096,1024,10\n2,8192,2048,1000\n"
                   "3,12288,4096,1001\n")
    summary = training_summary(log, update=2)  # the pause between rows 1 and 2 does not count
    assert summary == {"samples": 8192, "updates": 2, "wall_time_h": pytest.approx(6 / 3600),
                       "median_samples_per_s": 1536.0}
