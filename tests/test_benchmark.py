"""kinesis-neuro benchmark: every controller against every registered EMG dataset that suits its motion."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kinesis_neuro import benchmark, compare
from kinesis_neuro.cli import main
from kinesis_neuro.record import Recording
from kinesis_neuro.simulate import static_optimisation_recording

BUNDLED = Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk"


def test_benchmark_of_static_optimisation_an_opensim_result_and_two_policies(data_dir, policy_dir, tmp_path, capsys):
    so = tmp_path / "static-opt.nc"
    static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=2, progress=False).save(so)
    # the user's own EMG in % of the gait cycle (made from real data: the moco-walk subject's right cycle)
    human = compare.human_cycles("moco-walk").mean("cycle")
    norms = tmp_path / "lab_norms.csv"
    pd.DataFrame({"gait_cycle_percent": human.phase.values, "soleus": human.sel(channel="soleus").values,
                  "tibialis_anterior": human.sel(channel="tibialis_anterior").values}).to_csv(norms, index=False)
    out = tmp_path / "bench"
    assert main(["benchmark", "--recording", str(so), "opensim-results/so_activation.sto",
                 "--policy", str(BUNDLED), str(policy_dir), "--episodes", "1", "--emg", str(norms),
                 "--bootstrap", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "median r" in printed and "within human range" in printed and "outputs in" in printed
    result = json.loads((out / "benchmark.json").read_text())
    rows = {(r["controller"], r["dataset"]): r for r in result["rows"]}
    controllers = list(result["controllers"])
    assert len(controllers) == 4 and len(rows) == 4 * 6  # 5 registered datasets + the user's table
    so_label, opensim, policy, tiny = controllers
    assert so_label == "static optimisation (periodic walk)" and opensim == "OpenSim static optimisation"
    assert policy == "policy myolegs-walk"
    syns = rows[so_label, "musclesynergies"]
    assert syns["muscles"] == 13 and 0 <= syns["share_within_human_range"] <= 1
    per_muscle = result["muscles"][so_label]["musclesynergies"]["SO"]
    assert per_muscle["human_r_q1"] < per_muscle["human_r_median"] and "within_human_range" in per_muscle
    assert rows[opensim, "moco-walk"]["comparison"] == "time series over 0.48-1.61 s (no complete gait cycle)"
    assert rows[opensim, "moco-walk"]["median_r"] == pytest.approx(0.584, abs=0.002)
    assert all(rows[c, "rajagopal-run"]["note"].startswith("skipped: running data") for c in controllers)
    assert rows[so_label, "schwartz2008"]["share_within_sd"] is not None
    assert np.isfinite(rows[policy, "moco-walk"]["median_r"]) and rows[policy, "falisse2019"]["muscles"] == 14
    assert rows[tiny, "moco-walk"]["comparison"] == "not compared"  # a policy that falls at once
    assert rows[so_label, "lab_norms.csv"]["comparison"].startswith("mean gait cycle")
    assert (out / "figures" / "benchmark.png").stat().st_size > 20_000
    assert (out / "figures" / "musclesynergies" / "emg_correlation.png").exists()
    table = pd.read_csv(out / "benchmark.csv", index_col=[0, 1])
    assert table.loc[(so_label, "musclesynergies"), "median_r"] == pytest.approx(syns["median_r"])


def test_walking_or_running_from_the_gait_events():
    t = np.arange(0, 3, 0.01)

    def recording(stance: float, motion: str) -> Recording:
        strikes = np.arange(0.1, 2.9, 0.7)
        events = pd.DataFrame({"time": np.r_[strikes, strikes[:-1] + stance * 0.7],
                               "event": ["heel_strike"] * strikes.size + ["toe_off"] * (strikes.size - 1),
                               "side": "right"})
        return Recording.from_arrays(t, ["soleus_r"], activation=np.full((t.size, 1), 0.2), events=events,
                                     attrs={"motion": motion, "controller": "test"})

    assert benchmark.gait_of(recording(0.35, "moco-walk"))[0] == "running"  # the events win over the name
    assert benchmark.gait_of(recording(0.62, "something"))[0] == "walking"
    no_events = Recording.from_arrays(t, ["soleus_r"], activation=np.full((t.size, 1), 0.2),
                                      attrs={"motion": "hamner-run", "controller": "test"})
    assert benchmark.gait_of(no_events) == ("running", "motion 'hamner-run' (no complete gait cycle with a toe-off)")
