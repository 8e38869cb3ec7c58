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


# -- bring your own controller and EMG: windows, registration, normative tables ------------------------------

LEFT_STRIKE, RIGHT_STRIKES = 0.8355, (0.2668, 1.4112)  # moco-walk/grf_walk.mot heel strikes (s)


def _left_leg_user_files(tmp_path):
    """A new user's EMG, made from real data: moco-walk's right-leg envelopes under the user's own channel labels,
    moved by the interval from a right heel strike (0.267 s) to the next left one (0.836 s) so that they follow
    the left leg's gait events as a left leg's EMG would in symmetric walking, and cut to the 1.2 s 0.60-1.80 s,
    which hold one heel strike of each foot: no complete gait cycle of either side. Plus the user's mapping
    CSV for the labels the package does not know."""
    from kinesis_neuro import emg

    signal = emg.read("moco-walk")
    labels = {"soleus": "soleus", "gastrocnemius": "gastrocnemius", "tibialis_anterior": "tibialis_anterior",
              "medial_hamstrings": "hamstrings", "biceps_femoris": "biceps_femoris", "vastus_lateralis": "vastus",
              "rectus_femoris": "rectus_femoris", "gluteus_maximus": "gluteus"}
    t = signal.time.values + (LEFT_STRIKE - RIGHT_STRIKES[0])
    keep = (t >= 0.60) & (t < 1.80)
    table = pd.DataFrame({"time": np.round(t[keep], 6)})
    for old, new in labels.items():
        table[new] = signal.sel(channel=old).values[keep]
    path, mapping = tmp_path / "left_leg_emg.csv", tmp_path / "my_mapping.csv"
    table.to_csv(path, index=False)
    mapping.write_text("emg_name,muscles,note\nhamstrings,semimem semiten,medial hamstrings electrode\n"
                       "vastus,vaslat vasmed vasint,all three vasti\ngluteus,glmax1 glmax2 glmax3,gluteus maximus\n")
    return path, mapping


def test_a_window_without_a_gait_cycle_from_the_cli_with_own_mapping_and_left_side(data_dir, tmp_path, capsys):
    path, mapping = _left_leg_user_files(tmp_path)
    so = tmp_path / "so.nc"
    assert main(["simulate", "--motion", "moco-walk", "--emg", str(path), "--muscle-map", str(mapping),
                 "--side", "left", "--out", str(so)]) == 0
    printed = capsys.readouterr().out
    assert "left leg" in printed and "hamstrings" in printed and "median r: 0.727" in printed
    out = tmp_path / "cmp"
    assert main(["compare", "--recording", str(so), "--emg", str(path), "--muscle-map", str(mapping), "--side", "left",
                 "--events", f"left:{LEFT_STRIKE};right:{RIGHT_STRIKES[1]}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "time series over 0.60-1.80 s (no complete gait cycle)" in printed and "median r 0.727" in printed
    result = json.loads((out / "summary.json").read_text())
    assert result["comparison"] == "time series over 0.60-1.80 s (no complete gait cycle)"
    assert "1 left heel strike" in result["reason"] and result["side"] == "left"
    assert result["muscles"]["vastus"]["muscles"] == "vaslat_l+vasmed_l+vasint_l"
    assert result["median_r_at_best_lag"] > result["median_r"] and result["phase_definition"].startswith("none")
    assert (out / "timeseries_overlay.png").stat().st_size > 5000 and (out / "lag_curves.svg").exists()
    assert main(["compare", "--recording", str(so), "--emg", str(path), "--muscle-map", str(mapping), "--side", "left",
                 "--activation-dynamics", "--out", str(tmp_path / "ad")]) == 0
    assert "EMG: no gait events given" in capsys.readouterr().out
    lagged = json.loads((tmp_path / "ad" / "summary.json").read_text())
    assert lagged["emg_through_activation_dynamics"].startswith("tau_act") and lagged["median_r"] != result["median_r"]


def _emg_as_activations(shift: float, t):
    """A recording whose right-leg activations are the moco-walk EMG ``shift`` s later (every muscle of a channel
    alike), with the trial's GRF gait events."""
    from kinesis_neuro import emg, mapping

    signal = emg.read("moco-walk")
    muscles = {m: str(ch) for ch in signal.channel.values for m in mapping.muscles_for(str(ch), "right")}
    values = np.column_stack([np.interp(t - shift, signal.time.values, signal.sel(channel=ch).values)
                              for ch in muscles.values()]).clip(0, 1)
    events = emg.read_events("moco-walk/grf_walk.mot").query(f"time >= {t[0]} and time <= {t[-1]}")
    return Recording.from_arrays(t, list(muscles), activation=values, events=events,
                                 attrs={"motion": "moco-walk", "controller": f"EMG {1000 * shift:g} ms later"})


def test_lag_scans_recover_a_known_time_shift(data_dir):
    window = _emg_as_activations(0.06, np.arange(0.30, 2.20, 0.001))  # one right heel strike inside: a window
    ds = compare.compare_any(window, "moco-walk")
    assert ds.attrs["comparison_kind"] == "time series"
    assert np.allclose(ds.best_lag.values, 0.06) and np.all(ds.r_at_best_lag.values > 0.999)
    cycles = _emg_as_activations(0.05, np.arange(0.0, 2.39, 0.001))  # both right heel strikes: a gait cycle
    ds = compare.compare_any(cycles, "moco-walk", n_boot=20, synergies=False)
    assert ds.attrs["comparison_kind"] == "cycles"
    expected = 100 * 0.05 / (RIGHT_STRIKES[1] - RIGHT_STRIKES[0])  # 4.4 % of the cycle, on a 1 % grid
    assert np.all(np.abs(ds.best_lag.values - expected) <= 1.0) and np.all(ds.r_at_best_lag.values > 0.98)


def test_mismatched_phase_conventions_are_reported_not_mixed(periodic_recording):
    from kinesis_neuro import registration

    rec = Recording.load(periodic_recording)
    stance_swing = compare.human_cycles("moco-walk", split=(100, 100))  # toe-off at "50 %" of 200 points
    ds = compare.compare(rec, stance_swing, n_boot=10, synergies=False)
    assert ds.attrs["registration"].startswith("stance and swing resampled separately")
    # the same numbers (0, 0.5, ... 99.5 %) said to be an even grid from heel strike to heel strike
    even = stance_swing.assign_attrs(phase_definition="0-100 % from heel strike to next heel strike")
    with pytest.raises(ProcessingError, match="mismatched phase"):
        compare.compare(rec, even, n_boot=10, synergies=False)
    sim = compare.simulated_cycles(rec, list(stance_swing.channel.values), split=(100, 100))
    with pytest.raises(ProcessingError, match="mismatched phase conventions: simulation: stance 0-50 %"):
        registration.check_same(sim, even)
    registered = compare.compare_any(rec, "moco-walk", toe_off_percent=60, n_boot=10, synergies=False)
    assert registered.attrs["registration"].startswith("piecewise-linear time warping: stance")
    assert "toe-off registered at 60 %" in registered.attrs["phase_definition"]
    assert registered.sizes["phase"] == 100 and float(registered.phase[-1]) == 99.0
    assert compare.summarise(registered)["registration"] == registered.attrs["registration"]


def test_a_percent_gait_cycle_table_compares_against_a_recording(periodic_recording, tmp_path, capsys):
    """A table of EMG in % of the gait cycle (mean and SD columns, one muscle without SD), made from real data:
    Falisse et al.'s cycles recorded in every channel, averaged."""
    human = compare.human_cycles("falisse2019")
    table = pd.DataFrame({"% gait cycle": human.phase.values})
    for ch in ("Soleus", "Tibialis-anterior", "Vastus-lateralis"):
        table[f"{ch}_mean"] = human.sel(channel=ch).mean("cycle").values
        table[f"{ch}_sd"] = human.sel(channel=ch).std("cycle").values
    table["Rectus-femoris"] = human.sel(channel="Rectus-femoris").mean("cycle").values
    path = tmp_path / "norms.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "cmp"
    assert main(["compare", "--recording", str(periodic_recording), "--emg", str(path), "--out", str(out)]) == 0
    assert "normative mean ± 1 SD (norms.csv)" in capsys.readouterr().out
    result = json.loads((out / "summary.json").read_text())
    assert result["comparison_kind"] == "normative" and set(result["muscles"]) == {
        "Soleus", "Tibialis-anterior", "Vastus-lateralis", "Rectus-femoris"}
    assert 0 <= result["muscles"]["Soleus"]["share_within_sd"] <= 1
    assert result["muscles"]["Rectus-femoris"]["share_within_sd"] is None  # no SD given: no band
    ds = storage.load(out / "comparison.nc")
    r = np.corrcoef(ds.sim_mean.sel(channel="Soleus"), ds.normative_mean.sel(channel="Soleus"))[0, 1]
    assert result["muscles"]["Soleus"]["r"] == pytest.approx(r)
    assert (out / "normative_overlay.png").stat().st_size > 5000
    schwartz = compare.summarise(compare.compare_any(Recording.load(periodic_recording), "schwartz2008"))
    assert schwartz["speed"]["group"] == "Free" and "1.24 m/s" in schwartz["speed"]["choice"]
    assert len(schwartz["muscles"]) == 5
