import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import gaussian_filter1d

from kinesis_neuro import metrics
from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError, KinesisNeuroError, ProcessingError
from kinesis_neuro.io.rdata import read_syns


@pytest.fixture(scope="module")
def syns_v(data_dir):
    """Mean gait cycle of 15 people, 13 muscles, 200 points (musclesyneRgies SYNS)."""
    return read_syns(data_dir / "musclesynergies" / "SYNS.RData")["V"]


@pytest.fixture(scope="module")
def sim_cycles(syns_v):
    """200 noisy 'simulated' cycles scattered around the mean of the first 3 SYNS subjects."""
    noise = gaussian_filter1d(np.random.default_rng(1).normal(0, 0.3, (200, *syns_v.shape[1:])), 4, axis=1,
                              mode="wrap")
    cycles = syns_v.isel(subject=slice(0, 3)).mean("subject") + xr.DataArray(noise, dims=("cycle", "phase", "channel"))
    return cycles.clip(0, None).transpose("cycle", "phase", "channel")


def smooth_groups(amplitudes, n=20, seed=0):
    """Two groups of smooth unit-SD noise cycles on a 101-point grid; the second has a bump at 50 %
    of height ``amplitudes[k]`` in channel ``k``."""
    rng = np.random.default_rng(seed)
    phase = np.linspace(0, 100, 101)
    coords = {"phase": phase, "channel": [f"c{k}" for k in range(len(amplitudes))]}

    def noise():
        x = gaussian_filter1d(rng.normal(size=(n, phase.size, len(amplitudes))), 5, axis=1)
        return x / x.std()

    bump = np.exp(-0.5 * ((phase - 50) / 8) ** 2)[:, None] * np.asarray(amplitudes, float)
    dims = ("cycle", "phase", "channel")
    return xr.DataArray(noise(), dims=dims, coords=coords), xr.DataArray(noise() + bump, dims=dims, coords=coords)


def test_pearson_of_a_signal_with_itself_is_one(syns_v):
    r = metrics.pearson(syns_v, syns_v)
    assert r.dims == ("subject", "channel") and r.attrs["units"] == "1"
    np.testing.assert_allclose(r, 1.0, atol=1e-12)
    np.testing.assert_allclose(metrics.pearson(syns_v, 3 * syns_v + 2), 1.0, atol=1e-12)
    np.testing.assert_allclose(metrics.pearson(syns_v, -syns_v), -1.0, atol=1e-12)


def test_pearson_is_vectorised_and_aligns_channels(syns_v):
    reordered = syns_v.isel(channel=slice(None, None, -1))
    r = metrics.pearson(syns_v.isel(subject=0), reordered)  # one curve set against all subjects
    assert r.dims == ("channel", "subject") and list(r.channel.values) == list(syns_v.channel.values)
    for s, ch in [(3, "TA"), (14, "GM"), (0, "RF")]:
        expected = np.corrcoef(syns_v.isel(subject=0).sel(channel=ch), syns_v.isel(subject=s).sel(channel=ch))[0, 1]
        assert float(r.sel(channel=ch).isel(subject=s)) == pytest.approx(expected, abs=1e-12)


def test_fisher_mean_against_plain_mean_by_hand():
    r = xr.DataArray([0.9, 0.5], dims="channel")
    # tanh((atanh 0.9 + atanh 0.5) / 2) = tanh(ln(57) / 4) = (sqrt(57) - 1) / (sqrt(57) + 1)
    assert float(metrics.fisher_mean(r)) == pytest.approx((57**0.5 - 1) / (57**0.5 + 1), abs=1e-12)
    assert float(metrics.fisher_mean(r)) == pytest.approx(0.76608, abs=1e-5)
    assert float(r.mean()) == pytest.approx(0.7)  # the plain mean is lower: z stretches high r
    assert float(metrics.fisher_mean(xr.DataArray([1.0, 0.2, np.nan], dims="channel"))) == 1.0


def test_simulation_vs_subjects(sim_cycles, syns_v):
    out = metrics.simulation_vs_subjects(sim_cycles, syns_v)
    assert out.r.dims == ("subject", "channel") and out.r.shape == (15, 13)
    mean = sim_cycles.mean("cycle")
    expected = np.corrcoef(mean.sel(channel="SO"), syns_v.isel(subject=4).sel(channel="SO"))[0, 1]
    assert float(out.r.isel(subject=4).sel(channel="SO")) == pytest.approx(expected, abs=1e-12)
    xr.testing.assert_allclose(out.r_subject, metrics.fisher_mean(out.r, "channel"))
    assert out.r_subject.dims == ("subject",) and out.r_channel.dims == ("channel",)
    # one person given as cycles becomes a single subject
    one = metrics.simulation_vs_subjects(sim_cycles, sim_cycles.isel(cycle=slice(0, 50)).assign_attrs(subject="P1"))
    assert list(one.subject.values) == ["P1"] and float(one.r.min()) > 0.9


def test_human_baseline_on_syns(syns_v):
    out = metrics.human_baseline(syns_v)
    assert out.r_pairs.dims == ("pair", "channel") and out.r_pairs.shape == (15 * 14 // 2, 13)
    pair = out.r_pairs.isel(pair=20)
    a, b = (syns_v.sel(subject=str(pair[key].values)) for key in ("subject_a", "subject_b"))
    np.testing.assert_allclose(pair.values, metrics.pearson(a, b).values, atol=1e-12)
    others = syns_v.drop_sel(subject="ID0007_TW_01").mean("subject")
    xr.testing.assert_allclose(out.r_loo.sel(subject="ID0007_TW_01"),
                               metrics.pearson(syns_v.sel(subject="ID0007_TW_01"), others))
    print("\nSYNS human-to-human median r, pairs:", out.median_pairs.to_series().round(2).to_dict())
    print("SYNS human-to-human median r, leave-one-out:", out.median_loo.to_series().round(2).to_dict())
    assert ((out.median_pairs > 0.4) & (out.median_pairs < 0.8)).all()
    assert (out.median_loo > out.median_pairs).all()  # the others' mean is smoother than any one person


@pytest.mark.parametrize("k", [7.0, -12.5, 30.0])
def test_lag_scan_recovers_a_circular_shift(syns_v, k):
    human = syns_v.isel(subject=2)
    late = human.copy(data=np.roll(human.values, int(k * 2), axis=0))  # 200 points: 0.5 % each
    out = metrics.lag_scan(late, human)
    assert out.r.dims == ("lag", "channel") and out.lag.size == 200 and out.lag.attrs["units"] == "%"
    np.testing.assert_allclose(out.best_lag, k)  # positive lag: the simulation is late
    np.testing.assert_allclose(out.r_best, 1.0, atol=1e-9)
    assert (out.r_zero < out.r_best).all()


def test_lag_scan_sign_on_a_grid_with_both_ends():
    phase = np.linspace(0, 100, 101)  # segment_cycles' grid: 100 % repeats 0 %

    def bump(centre):
        return xr.DataArray(np.exp(-0.5 * ((phase - centre) / 5) ** 2)[:, None], dims=("phase", "channel"),
                            coords={"phase": phase, "channel": ["TA"]})

    out = metrics.lag_scan(bump(30), bump(20))
    assert out.lag.size == 100 and float(out.lag.diff("lag")[0]) == 1.0
    assert float(out.best_lag.sel(channel="TA")) == 10.0
    assert float(metrics.lag_scan(bump(20), bump(30)).best_lag.sel(channel="TA")) == -10.0


def test_bootstrap_ci_contains_estimate_and_is_deterministic(sim_cycles, syns_v):
    others = syns_v.isel(subject=slice(3, None))  # people the simulated cycles were not made from
    ci = metrics.bootstrap_ci(sim_cycles, others, n_boot=300, seed=3)
    assert ci.r.dims == ci.lower.dims == ("channel",) and ci.attrs["resampled"] == "simulated cycles and human subjects"
    assert ((ci.lower <= ci.r) & (ci.r <= ci.upper)).all() and (ci.upper - ci.lower > 0).all()
    xr.testing.assert_identical(ci, metrics.bootstrap_ci(sim_cycles, others, n_boot=300, seed=3))
    assert not np.allclose(ci.lower, metrics.bootstrap_ci(sim_cycles, others, n_boot=300, seed=4).lower)
    # one person's cycles (here: other cycles, 5 % later): resample those cycles
    person = sim_cycles.isel(cycle=slice(100, None)).roll(phase=10, roll_coords=False)
    person = metrics.bootstrap_ci(sim_cycles.isel(cycle=slice(0, 100)), person, n_boot=200, level=0.9)
    assert person.attrs["resampled"] == "simulated cycles and human cycles"
    assert ((person.lower <= person.r) & (person.r <= person.upper)).all()


def test_amplitude_metrics_by_hand():
    phase = np.arange(100.0)
    coords = {"phase": phase, "channel": ["x"]}
    bump = 0.2 + np.exp(-0.5 * ((phase - 40) / 6) ** 2)
    curve = xr.DataArray(bump[:, None], dims=("phase", "channel"), coords=coords)
    doubled, offset = 2 * curve, curve + 0.5
    assert metrics.normalised_rmse(curve, doubled).item() == pytest.approx(0, abs=1e-12)
    assert metrics.normalised_rmse(curve, offset, "minmax").item() == pytest.approx(0, abs=1e-12)
    assert metrics.normalised_rmse(curve, offset, "peak").item() > 0.1  # baseline: 1/6 of the peak vs 0.7/1.7
    assert metrics.cosine_similarity(curve, doubled).item() == pytest.approx(1.0)
    assert metrics.cosine_similarity(curve, offset).item() < 0.99
    on_a = xr.DataArray((phase < 40)[:, None] * 1.0, dims=("phase", "channel"), coords=coords)
    on_b = xr.DataArray(((phase >= 20) & (phase < 60))[:, None] * 1.0, dims=("phase", "channel"), coords=coords)
    assert metrics.onoff_agreement(on_a, on_b).item() == pytest.approx(0.6)  # disagree on 0-20 % and 40-60 %
    out = metrics.amplitude_metrics(curve.expand_dims(cycle=3), offset)
    assert set(out.data_vars) == {"rmse", "cosine", "onoff"} and out.onoff.item() == 1.0


def test_spm_finds_a_bump_and_nothing_between_equal_groups():
    sim, human = smooth_groups([0.0, 2.0])
    result = metrics.spm_test(sim, human)
    table = result.clusters
    assert list(table.channel) == ["c1"]  # no cluster for c0, drawn from one distribution
    row = table.iloc[0]
    assert row.start < 50 < row.end and row.extent > 5 and row.sign == -1  # simulation lower than human
    assert row.p < 0.05 and row.significant
    t = result.t
    assert t.dims == ("phase", "channel") and t.attrs["correction"] == "holm"
    null = t.sel(channel="c0")
    assert float(null.p_muscle) > 0.05 and float(np.abs(null).max()) < float(null.t_critical)


def test_spm_holm_correction_across_muscles():
    result = metrics.spm_test(*smooth_groups([0.0, 0.9, 1.1, 1.3, 2.0]))
    p = result.t.p_muscle.values
    order = np.argsort(p)
    holm = np.empty_like(p)
    holm[order] = np.minimum(1, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    np.testing.assert_allclose(result.t.p_muscle_corrected, holm)
    assert (holm > p).any() and set(result.clusters.channel) <= {f"c{k}" for k in range(5)}
    for _, row in result.clusters.iterrows():
        assert row.p_muscle_corrected == pytest.approx(holm[int(row.channel[1])])
        assert row.significant == (row.p < 0.05 and row.p_muscle_corrected < 0.05)
    bonferroni = metrics.spm_test(*smooth_groups([0.0, 0.9, 1.1, 1.3, 2.0]), method="bonferroni")
    np.testing.assert_allclose(bonferroni.t.p_muscle_corrected, np.minimum(1, 5 * p))


def test_bad_input_raises_package_errors(syns_v, sim_cycles):
    with pytest.raises(ChannelNotFoundError, match="lacks"):
        metrics.simulation_vs_subjects(sim_cycles.drop_sel(channel="TA"), syns_v)
    on_101 = sim_cycles.isel(phase=slice(0, 101)).assign_coords(phase=np.linspace(0, 100, 101))
    with pytest.raises(DataFormatError, match="mismatched phase grids"):
        metrics.bootstrap_ci(on_101, syns_v)
    with pytest.raises(DataFormatError, match=">= 2 subjects"):
        metrics.human_baseline(syns_v.isel(subject=[0]))
    with pytest.raises(DataFormatError, match=">= 2 subjects"):
        metrics.human_baseline(sim_cycles)
    nan = syns_v.copy()
    nan[0, 5, 2] = np.nan
    with pytest.raises(DataFormatError, match=r"1 NaN .*\['FL'\]"):
        metrics.lag_scan(sim_cycles, nan)
    with pytest.raises(DataFormatError, match="NaN"):
        metrics.pearson(nan, syns_v)
    with pytest.raises(DataFormatError, match="whole gait cycle"):
        metrics.lag_scan(syns_v.isel(subject=0, phase=slice(0, 100)), syns_v.isel(subject=0, phase=slice(0, 100)))
    with pytest.raises(DataFormatError, match="expected dims"):
        metrics.simulation_vs_subjects(syns_v, syns_v)  # a simulation has cycles, not subjects
    with pytest.raises(ProcessingError):
        metrics.bootstrap_ci(sim_cycles, syns_v, level=95)
    with pytest.raises(ProcessingError):
        metrics.onoff_agreement(syns_v, syns_v, threshold=30)
    with pytest.raises(ProcessingError):
        metrics.normalised_rmse(syns_v, syns_v, method="max")
    with pytest.raises(ProcessingError, match="nonsense"):
        metrics.spm_test(*smooth_groups([0.0], n=5), method="nonsense")
    assert issubclass(ChannelNotFoundError, KinesisNeuroError) and issubclass(DataFormatError, KinesisNeuroError)
