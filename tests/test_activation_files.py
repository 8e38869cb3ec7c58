"""Other tools' activations (OpenSim SO / CMC / Moco, CSV) as recordings, compared like our own."""

import json

import numpy as np
import pandas as pd
import pytest

from kinesis_neuro import activation_files as af
from kinesis_neuro import compare
from kinesis_neuro.cli import main
from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.simulate import static_optimisation_recording

SO = "opensim-results/so_activation.sto"
MOCO = "opensim-results/moco_inverse_solution.sto"


@pytest.fixture(scope="module")
def our_static_optimisation(data_dir):
    """kinesis-neuro's static optimisation of the moco-walk trial itself (0.45-1.80 s, the trial's time axis)."""
    return static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", progress=False)


def test_opensim_static_optimisation_compares_like_opensim_itself(data_dir):
    rec = af.load_recording(SO)
    assert rec.data.sizes["muscle"] == 80
    assert rec.data.attrs["source_format"] == "OpenSim static optimisation activations"
    ignored = json.loads(rec.data.attrs["ignored_columns"])
    assert len(ignored["reserves"]) == 10 and len(ignored["residuals"]) == 6 and "lumbar_ext" in str(ignored)
    assert json.loads(rec.data.attrs["unknown_columns"]) == []
    assert rec.data.attrs["motion"] == "moco-walk"  # the card's derived_from; events from its GRF
    ds = compare.compare_any(rec, "moco-walk")
    result = compare.summarise(ds)
    assert result["comparison"] == "time series over 0.48-1.61 s (no complete gait cycle)"
    # PROVENANCE.md: OpenSim's own check gives median r 0.584 (gastrocnemius and medial hamstrings differ a little:
    # it correlated gasmed_r / semimem_r alone, the package mapping averages both heads / both muscles)
    assert result["median_r"] == pytest.approx(0.584, abs=0.002)
    assert result["muscles"]["soleus"]["r"] == pytest.approx(0.684, abs=0.002)
    assert result["muscles"]["soleus"]["best_lag_ms"] == pytest.approx(53, abs=2)


def test_moco_solution_and_agreement_with_our_static_optimisation(data_dir, our_static_optimisation):
    moco = af.load_recording(MOCO)
    ignored = json.loads(moco.data.attrs["ignored_columns"])
    assert {"controls", "multipliers", "actuators and coordinates (joints, lumbar, arms)"} <= set(ignored)
    assert moco.data.attrs["pelvis_speed_m_s"] == pytest.approx(1.26, abs=0.02)
    result = compare.summarise(compare.compare_any(moco, "moco-walk"))
    assert result["median_r"] == pytest.approx(0.588, abs=0.01)  # OpenSim's check (1 ms grid): 0.581
    both = compare.activation_agreement(af.load_recording(SO), our_static_optimisation)
    assert both.attrs["window_s"] == (0.48, 1.61) and len(both) == 80
    assert both.r.median() > 0.85 and both.loc["soleus_r", "r"] > 0.95 and both.loc["gasmed_r", "r"] > 0.95


def test_gait2392_names_unknown_columns_and_a_user_name_table(tmp_path):
    t = np.arange(0, 1, 0.01)
    table = pd.DataFrame({"time": t, "glut_med1_r": 0.2 + 0.1 * np.sin(t), "bifemlh_r": 0.3, "add_mag3_r": 0.1,
                          "med_gas_l": 0.4, "soleus_l": 0.5, "pect_r": 0.1, "mystery_r": 0.2,
                          "hip_flexion_r_reserve": 3.0, "lumbar_ext": -0.5, "FX": 10.0})
    path = tmp_path / "gait2392_so.csv"
    table.to_csv(path, index=False)
    with pytest.warns(UserWarning, match="mystery_r"):
        rec = af.load_recording(path)
    muscles = set(map(str, rec.data.muscle.values))
    assert muscles == {"glmed1_r", "bflh_r", "addmagDist_r", "addmagIsch_r", "gasmed_l", "soleus_l"}
    attrs = rec.data.attrs
    assert json.loads(attrs["unknown_columns"]) == ["mystery_r"]
    assert json.loads(attrs["muscles_without_counterpart"]) == ["pect_r"]
    assert json.loads(attrs["renamed_muscles"])["add_mag3_r"] == ["addmagDist_r", "addmagIsch_r"]
    assert set(json.loads(attrs["ignored_columns"])) == {"reserves", "residuals",
                                                          "actuators and coordinates (joints, lumbar, arms)"}
    names = tmp_path / "names.csv"
    names.write_text("name,myolegs,note\nmystery,tibant,a lab's own label\n")
    rec = af.load_recording(path, muscle_names=names)
    assert "tibant_r" in set(map(str, rec.data.muscle.values))
    names.write_text("name,myolegs\nmystery_r,tibant\n")
    with pytest.raises(DataFormatError, match="side suffix"):
        af.load_recording(path, muscle_names=names)


def test_cmc_states_uneven_time_and_refusals(tmp_path):
    t = np.r_[0.0, 0.004, 0.01, 0.013, 0.02, 0.026, 0.03]
    lines = ["walk_states", "version=1", f"nRows={t.size}", "nColumns=5", "inDegrees=no", "endheader",
             "time\tsoleus_r.activation\tsoleus_r.fiber_length\thip_flexion_r\thip_flexion_r_u"]
    lines += [f"{v}\t{0.1 + v}\t0.05\t0.2\t0.1" for v in t]
    path = tmp_path / "anything.sto"  # recognised by content, not by its name
    path.write_text("\n".join(lines) + "\n")
    rec = af.load_recording(path, events="right:0.005,0.025")
    assert rec.data.attrs["source_format"] == "OpenSim CMC states (OpenSim 3)"
    assert "resampled" in rec.data.attrs and list(map(str, rec.data.muscle.values)) == ["soleus_r"]
    assert list(rec.events().time) == [0.005, 0.025]
    path.write_text("\n".join(lines[:-1] + [f"{t[-1]}\t1.5\t0.05\t0.2\t0.1"]) + "\n")
    with pytest.raises(DataFormatError, match="activations lie in 0-1"):
        af.load_recording(path)
    empty = tmp_path / "coordinates.csv"
    pd.DataFrame({"time": t, "hip_flexion_r": 0.1, "knee_angle_r": 0.2}).to_csv(empty, index=False)
    with pytest.raises(DataFormatError, match="no muscle activation columns"):
        af.load_recording(empty)


def test_events_given_as_times():
    events = af.parse_events("right:0.61,1.72;left:1.15;right_toe_off:1.0")
    assert list(zip(events.time, events.event, events.side)) == [
        (0.61, "heel_strike", "right"), (1.0, "toe_off", "right"), (1.15, "heel_strike", "left"),
        (1.72, "heel_strike", "right")]
    for bad in ("right:0.6,x", "right:", "right:0.6;up:1"):
        with pytest.raises(DataFormatError):
            af.parse_events(bad)


def test_compare_and_export_take_activation_files_from_the_cli(data_dir, tmp_path, capsys):
    assert main(["compare", "--recording", SO, "--emg", "moco-walk", "--out", str(tmp_path / "so")]) == 0
    printed = capsys.readouterr().out
    assert "time series over 0.48-1.61 s (no complete gait cycle)" in printed and "median r 0.584" in printed
    summary = json.loads((tmp_path / "so" / "summary.json").read_text())
    assert summary["comparison_kind"] == "time series" and (tmp_path / "so" / "timeseries_overlay.png").exists()
    # a colleague's CSV: time + MyoLegs muscles, 2 complete cycles of a periodic walk, heel strikes given
    rec = static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=2, progress=False)
    act = rec.data.activation.isel(time=slice(None, None, 5))
    path = tmp_path / "rollouts.csv"
    pd.DataFrame(act.values, columns=[str(m) for m in act.muscle.values]).assign(time=act.time.values).to_csv(
        path, index=False)
    strikes = rec.events().query("event == 'heel_strike' and side == 'right'").time
    spec = "right:" + ",".join(f"{v:.3f}" for v in strikes)
    assert main(["export", "--recording", str(path), "--recording-events", spec, "--out", str(tmp_path / "s.nc")]) == 0
    from kinesis_neuro import storage

    study = storage.load(tmp_path / "s.nc")
    assert study.activation.sizes["cycle"] == len(strikes) - 1 and "registration" in study.attrs
    with pytest.raises(DataFormatError, match="time series comparison"):
        from kinesis_neuro.export import load_comparison

        load_comparison(tmp_path / "so" / "comparison.nc")
