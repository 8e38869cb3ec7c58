import json

import numpy as np
import pytest
import xarray as xr

from kinesis_neuro import emg, mapping
from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError, KinesisNeuroError
from kinesis_neuro.model import load_model, muscle_names, muscle_table

# channel names as listed in shared/datasets/README.md
MOCO_WALK = ["soleus", "gastrocnemius", "tibialis_anterior", "medial_hamstrings", "biceps_femoris",
             "vastus_lateralis", "vastus_medius", "rectus_femoris", "gluteus_maximus", "gluteus_medius"]
MUSCLESYNERGIES = ["ME", "MA", "FL", "RF", "VM", "VL", "ST", "BF", "TA", "PL", "GM", "GL", "SO"]
KINESIS = ["Soleus", "Medial Gastrocnemius", "Lateral Gastrocnemius", "Tibialis Anterior", "Semimembranosus",
           "Biceps Femoris", "Vastus Lateralis", "Vastus Medialis", "Rectus Femoris"]


@pytest.fixture(scope="module")
def model():
    return load_model()


def activation_array(muscles, n_time=6, n_trial=2, seed=0):
    """Random activations with dims (time, muscle, trial): muscle in the middle."""
    values = np.random.default_rng(seed).uniform(0, 1, (n_time, len(muscles), n_trial))
    return xr.DataArray(values, dims=("time", "muscle", "trial"),
                        coords={"time": np.arange(n_time) * 0.01, "muscle": muscles}, name="activation",
                        attrs={"units": "1", "sampling_rate": 100.0})


def write(path, text):
    path.write_text(text)
    return path


def test_every_mapped_muscle_exists_in_the_model(model):
    names = set(muscle_names(model))
    table = mapping.load_mapping()
    assert set(mapping.base_muscle_names()) == {n.rsplit("_", 1)[0] for n in names}
    for emg_name in table.index:
        for side in ("right", "left"):
            muscles = mapping.muscles_for(emg_name, side, table)
            assert muscles and set(muscles) <= names, (emg_name, side, muscles)
    assert set(table["convention"]) == {"moco-walk", "musclesynergies", "kinesis", "schwartz2008", "falisse2019",
                                        "rajagopal-run", "gaitextract-walk"}
    assert (table["rule"] == "mean").all() and table.index.is_unique


@pytest.mark.parametrize("names, convention", [(MOCO_WALK, "moco-walk"), (MUSCLESYNERGIES, "musclesynergies"),
                                               (KINESIS, "kinesis")])
def test_every_dataset_channel_is_mapped(names, convention):
    table = mapping.load_mapping()
    assert sorted(table.index[table["convention"] == convention]) == sorted(names)
    for name in names:
        assert mapping.muscles_for(name)


def test_channels_read_from_the_real_files_are_mapped(data_dir):
    table = mapping.load_mapping()
    for dataset in ("moco-walk", "musclesynergies"):
        channels = [str(c) for c in emg.read(dataset).channel.values]
        assert len(channels) == {"moco-walk": 10, "musclesynergies": 13}[dataset]
        assert set(channels) <= set(table.index), dataset
    import warnings

    # the datasets of `kinesis-neuro benchmark` (Falisse et al.'s "Soleus" is the kinesis row)
    for source in ("falisse2019", "rajagopal-run", "schwartz2008", "gaitextract-walk"):
        read = emg.read_normative if source == "schwartz2008" else emg.read
        with warnings.catch_warnings():  # Falisse et al.'s partly recorded cycles are warned about
            warnings.simplefilter("ignore")
            channels = {str(c) for c in read(source).channel.values}
        assert channels <= set(table.index), (source, channels - set(table.index))


def test_documented_choices():
    assert mapping.muscles_for("gastrocnemius") == ["gasmed_r", "gaslat_r"]
    assert mapping.muscles_for("gastrocnemius", side="left") == ["gasmed_l", "gaslat_l"]
    assert mapping.muscles_for("medial_hamstrings") == ["semimem_r", "semiten_r"]
    assert mapping.muscles_for("biceps_femoris") == mapping.muscles_for("BF") == ["bflh_r"]
    assert mapping.muscles_for("gluteus_maximus", "l") == ["glmax1_l", "glmax2_l", "glmax3_l"]
    assert mapping.muscles_for("ME") == ["glmed1_r", "glmed2_r", "glmed3_r"]
    assert mapping.muscles_for("ST") == ["semiten_r"] and mapping.muscles_for("PL") == ["perlong_r"]
    assert mapping.muscles_for("Medial Gastrocnemius") == ["gasmed_r"]
    assert "long head" in mapping.load_mapping().loc["biceps_femoris", "note"]


def test_combination_rules(tmp_path, model):
    path = write(tmp_path / "rules.csv", (
        "emg_name,muscles,rule,weights\n"
        "m_mean,gasmed gaslat soleus,mean,\n"
        "m_max,gasmed gaslat soleus,max,\n"
        "m_sum,gasmed gaslat soleus,sum,\n"
        "m_weighted,gasmed gaslat soleus,weighted,1 1 2\n"
        "m_force,gasmed gaslat soleus,force_weighted,\n"
    ))
    table = mapping.load_mapping(path)
    muscles = ["soleus_r", "gaslat_r", "gasmed_r", "tibant_r"]
    act = activation_array(muscles)
    out = mapping.map_to_channels(act, ["m_mean", "m_max", "m_sum", "m_weighted", "m_force"], mapping=table,
                                  model=model)
    assert out.dims == ("time", "channel", "trial")
    parts = act.sel(muscle=["gasmed_r", "gaslat_r", "soleus_r"]).transpose("time", "trial", "muscle").values
    force = muscle_table(model).loc[["gasmed_r", "gaslat_r", "soleus_r"], "max_isometric_force"].to_numpy()
    expected = {"m_mean": parts.mean(-1), "m_max": parts.max(-1), "m_sum": parts.sum(-1),
                "m_weighted": parts @ np.array([0.25, 0.25, 0.5]), "m_force": parts @ (force / force.sum())}
    for name, values in expected.items():
        np.testing.assert_allclose(out.sel(channel=name).values, values, rtol=1e-12)
    np.testing.assert_array_equal(out.time.values, act.time.values)
    assert out.sel(channel="m_max").muscles.item() == "gasmed_r+gaslat_r+soleus_r"
    assert out.attrs["units"] == "1" and out.attrs["side"] == "right" and out.attrs["sampling_rate"] == 100.0
    used = {c["channel"]: c for c in json.loads(out.attrs["emg_mapping"])["channels"]}
    assert used["m_weighted"]["weights"] == [0.25, 0.25, 0.5] and used["m_max"]["weights"] is None
    assert used["m_force"]["rule"] == "force_weighted" and used["m_mean"]["source"] == str(path)
    assert json.loads(out.attrs["processing"])[-1]["step"] == "map_to_channels"


def test_package_channels_and_nan():
    muscles = [f"{b}_{s}" for s in "rl" for b in mapping.base_muscle_names()]
    act = activation_array(muscles)
    act[2, muscles.index("gaslat_l"), 0] = np.nan
    out = mapping.map_to_channels(act, ["gastrocnemius", "soleus", "ME"], side="left")
    np.testing.assert_allclose(out.sel(channel="soleus").values, act.sel(muscle="soleus_l").values)
    np.testing.assert_allclose(out.sel(channel="ME").values,
                               act.sel(muscle=["glmed1_l", "glmed2_l", "glmed3_l"]).mean("muscle").values)
    gastro = out.sel(channel="gastrocnemius").values
    assert np.isnan(gastro[2, 0]) and np.isfinite(np.delete(gastro.ravel(), 2 * 2)).all()
    single = mapping.map_to_channels(act.isel(trial=0), "TA")
    assert single.dims == ("time", "channel") and list(single.channel.values) == ["TA"]


def test_user_override_file(tmp_path):
    path = write(tmp_path / "mine.csv", (
        "emg_name,muscles,rule,note\n"
        "gastrocnemius,gasmed,max,electrode placed over the medial head\n"
        "quadriceps,vaslat + vasmed + vasint + recfem,sum,\n"
    ))
    table = mapping.load_mapping(path)
    package = mapping.load_mapping()
    assert len(table) == len(package) + 1
    assert table.loc["gastrocnemius", "muscles"] == ("gasmed",) and table.loc["gastrocnemius", "rule"] == "max"
    assert table.loc["quadriceps", "convention"] == "user" and table.loc["quadriceps", "source"] == str(path)
    assert table.loc["soleus"].equals(package.loc["soleus"])
    assert mapping.muscles_for("gastrocnemius", mapping=str(path)) == ["gasmed_r"]
    assert mapping.muscles_for("quadriceps", "left", table) == ["vaslat_l", "vasmed_l", "vasint_l", "recfem_l"]
    act = activation_array(["gasmed_r", "gaslat_r"])
    np.testing.assert_array_equal(mapping.map_to_channels(act, ["gastrocnemius"], mapping=table).values[:, 0],
                                  act.sel(muscle="gasmed_r").values)


@pytest.mark.parametrize("text, message", [
    ("emg_name,muscles\nsoleus,soleus\nmy_calf,gasmed gastroc\n",
     r"mine\.csv, row 2 \(line 3\), EMG channel 'my_calf': unknown MyoLegs muscle 'gastroc'; valid names: addbrev,"),
    ("emg_name,muscles\nmy_calf,gasmed_r\n", r"row 1.*'gasmed_r' \(give base names without the side suffix: 'gasmed'\)"),
    ("emg_name,muscles,rule\nx,soleus,median\n", r"unknown rule 'median'; rules: mean, max, sum, weighted"),
    ("emg_name,muscles,rule\nx,soleus gasmed,weighted\n", r"rule 'weighted' needs 2 weights"),
    ("emg_name,muscles,weights\nx,soleus,2\n", r"weights are only used with rule 'weighted'"),
    ("emg_name,muscles\nx,soleus\nx,gasmed\n", r"listed more than once: \['x'\]"),
    ("emg_name,muscle\nx,soleus\n", r"missing columns \['muscles'\]; unknown columns \['muscle'\]"),
    ("emg_name,muscles\nx,\n", r"row 1.*no muscles"),
])
def test_bad_user_files(tmp_path, text, message):
    path = write(tmp_path / "mine.csv", text)
    with pytest.raises(DataFormatError, match=message) as info:
        mapping.load_mapping(path)
    assert isinstance(info.value, KinesisNeuroError) and str(path) in str(info.value)


def test_unknown_names_and_missing_muscles(tmp_path):
    with pytest.raises(ChannelNotFoundError, match=r"'calf' is not in the muscle mapping.*moco-walk: soleus, "
                                                   r"gastrocnemius.*musclesynergies: ME.*kinesis: Soleus") as info:
        mapping.muscles_for("calf")
    assert isinstance(info.value, KinesisNeuroError)
    with pytest.raises(ChannelNotFoundError, match=r"'GM' needs muscles \['gasmed_r'\] that the activation lacks"):
        mapping.map_to_channels(activation_array(["soleus_r"]), ["SO", "GM"])
    with pytest.raises(KinesisNeuroError, match="side must be 'right' or 'left'"):
        mapping.muscles_for("soleus", side="middle")
    with pytest.raises(DataFormatError, match="no such mapping file"):
        mapping.load_mapping(tmp_path / "absent.csv")
