import json

import numpy as np
import pandas as pd
import pytest

from kinesis_neuro import compare, storage
from kinesis_neuro.cli import main
from kinesis_neuro.errors import ChannelNotFoundError, KinesisNeuroError, ProcessingError
from kinesis_neuro.record import Recording
from kinesis_neuro.simulate import static_optimisation_recording


@pytest.fixture(scope="module")
def periodic_recording(data_dir, tmp_path_factory):
    rec = static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=3, progress=False)
    path = tmp_path_factory.mktemp("rec") / "static-opt.nc"
    rec.save(path)
    return path


def test_compare_cli_writes_every_output(periodic_recording, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--recording", str(periodic_recording), "--emg", "moco-walk", "--bootstrap", "200",
                 "--out", str(out)]) == 0
    assert "median r" in capsys.readouterr().out
    for name in ("summary.json", "correlation.csv", "comparison.nc"):
        assert (out / name).stat().st_size > 0
    for figure in ("cycles_overlay", "r_boxplot", "per_subject", "lag_curves", "synergies"):
        assert (out / f"{figure}.png").stat().st_size > 5000 and (out / f"{figure}.svg").exists()
    result = json.loads((out / "summary.json").read_text())
    ds = storage.load(out / "comparison.nc")
    assert set(result["muscles"]) == {str(c) for c in ds.channel.values}
    for name, values in result["muscles"].items():  # summary values recomputed from comparison.nc
        assert values["r"] == pytest.approx(float(ds.r.sel(channel=name)))
        assert values["best_lag_pct"] == pytest.approx(float(ds.best_lag.sel(channel=name)))
        assert values["rmse"] == pytest.approx(float(ds.rmse.sel(channel=name)))
        r = np.corrcoef(ds.sim_cycles.sel(channel=name).mean("sim_cycle"),
                        ds.human_cycles.sel(channel=name).mean("human_cycle"))[0, 1]
        assert values["r"] == pytest.approx(r, abs=1e-9)
    assert result["median_r"] == pytest.approx(float(np.median(ds.r)))
    table = pd.read_csv(out / "correlation.csv", index_col=0)
    assert table.loc["soleus", "r"] == pytest.approx(result["muscles"]["soleus"]["r"])
    assert result["synergies"]["sim_rank"] >= 1 and len(result["synergies"]["matched_cosine"]) >= 1


def test_compare_against_fifteen_people(periodic_recording):
    human = compare.human_cycles("musclesynergies/SYNS.RData", split=(100, 100))
    ds = compare.compare(Recording.load(periodic_recording), human, n_boot=100, synergies=False)
    result = compare.summary(ds)
    assert ds.sizes["subject"] == 15 and ds.sizes["pair"] == 105
    baseline = result["human_baseline"]["median_r_pairs"]
    assert 0.4 < baseline["SO"] < 0.9 and set(baseline) == set(result["muscles"])
    assert "spm_note" in ds.attrs  # identical periodic cycles: no variance for SPM, said so


def test_a_muscle_never_activated_has_no_r_and_leaves_the_median_to_the_others(periodic_recording, tmp_path):
    rec = Recording.load(periodic_recording)
    data = rec.data.copy()
    silent = data.muscle.isin(["vaslat_r", "vaslat_l"])
    data["activation"] = data.activation.where(~silent, 0.0)
    human = compare.human_cycles("moco-walk")
    ds = compare.compare(Recording(data, source="silenced vastus lateralis"), human, n_boot=50, synergies=False)
    result = compare.write_outputs(ds, tmp_path)
    assert result["undefined_r"] == ["vastus_lateralis"]
    defined = ds.r.drop_sel(channel="vastus_lateralis")
    assert result["median_r"] == pytest.approx(float(np.median(defined)))
    assert np.isfinite(result["mean_r_fisher"])

    def no_nan(name):
        raise AssertionError(f"summary.json holds {name}: not strict JSON")

    written = json.loads((tmp_path / "summary.json").read_text(), parse_constant=no_nan)
    assert written["muscles"]["vastus_lateralis"]["r"] is None


def test_human_cycles_need_the_stance_swing_grid_for_syns(data_dir):
    with pytest.raises(ProcessingError, match="100 stance \\+ 100 swing"):
        compare.human_cycles("musclesynergies/SYNS.RData", n_points=101)


def test_bad_inputs(periodic_recording, data_dir):
    rec = Recording.load(periodic_recording)
    no_events = Recording(rec.data.drop_dims(["heel_strike", "toe_off"]).assign(
        heel_strike_time=("heel_strike", np.zeros(0)), toe_off_time=("toe_off", np.zeros(0))).assign_coords(
        heel_strike_side=("heel_strike", np.array([], dtype=str)), toe_off_side=("toe_off", np.array([], dtype=str))))
    human = compare.human_cycles("moco-walk")
    with pytest.raises(ProcessingError, match="heel strike"):
        compare.compare(no_events, human)
    with pytest.raises(ProcessingError, match="EMG of the right leg"):
        compare.human_cycles("moco-walk", side="left")
    unmapped = human.assign_coords(channel=[*human.channel.values[:-1], "deltoid"])
    with pytest.raises(ChannelNotFoundError, match="deltoid"):
        compare.compare(rec, unmapped)



def test_emg_without_a_complete_cycle(tmp_path):
    path = tmp_path / "short.csv"
    pd.DataFrame({"time": np.arange(200) / 100, "soleus": np.abs(np.sin(np.arange(200) / 10))}).to_csv(path, index=False)
    events = pd.DataFrame({"time": [0.5, 1.2], "event": ["heel_strike", "toe_off"], "side": ["right", "right"]})
    with pytest.raises(KinesisNeuroError, match="need 2 heel strikes"):
        compare.human_cycles(path, events=events, preset="processed")


def test_synergies_cli(periodic_recording, tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["synergies", "--emg", "musclesynergies/SYNS.RData", "--phase-points", "100,100",
                 "--recording", str(periodic_recording), "--out", str(out)]) == 0
    result = json.loads((out / "synergies.json").read_text())
    assert 1 <= result["human_rank"] <= 10 and 1 <= result["sim_rank"] <= 10
    assert len(result["matched_cosine"]) == min(result["human_rank"], result["sim_rank"])
    assert storage.load(out / "synergies_human.nc")["weights"].sizes["channel"] == 13


def test_figures_are_the_same_files_when_redrawn(periodic_recording, tmp_path):
    from kinesis_neuro import plots

    ds = compare.compare(Recording.load(periodic_recording), compare.human_cycles("moco-walk"), n_boot=50,
                         synergies=False)
    first, second = plots.plot_comparison(ds, tmp_path / "a"), plots.plot_comparison(ds, tmp_path / "b")
    assert any(p.suffix == ".svg" for p in first)
    for a, b in zip(first, second):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
