"""Muscle synergies: agreement with musclesyneRgies on its 15 SYNS people, and unit tests on synthetic EMG."""

import numpy as np
import pytest
import xarray as xr

from kinesis_neuro.errors import ChannelNotFoundError, DataFormatError, KinesisNeuroError, ProcessingError
from kinesis_neuro.gait import split_phase
from kinesis_neuro.io.rdata import read_syns
from kinesis_neuro.synergies import SynergyModel, centre_of_activity, cross_fit, fwhm, match, r2_linearity_rank

PHASE = split_phase((100, 100))  # musclesyneRgies' grid: 0, 0.5, ..., 99.5 % of the gait cycle
CHANNELS = ["ME", "MA", "RF", "VL", "ST", "TA", "GM", "SO"]


# --- musclesyneRgies' own results -----------------------------------------------------------------

@pytest.fixture(scope="module")
def syns(data_dir):
    return read_syns(data_dir / "musclesynergies" / "SYNS.RData")


@pytest.fixture(scope="module")
def syns_models(syns):
    """One model per person, fitted like synsNMF (ranks 1-10, 5 restarts, R2-linearity rule)."""
    return {str(s): SynergyModel(random_state=0).fit(syns["V"].sel(subject=s)) for s in syns["V"].subject.values}


def test_syns_rank_matches_package(syns, syns_models):
    shipped = {s: int(syns["rank"].sel(subject=s)) for s in syns_models}
    hits = sum(model.rank_ == shipped[s] for s, model in syns_models.items())
    assert len(syns_models) == 15
    assert hits >= 14, {s: (m.rank_, shipped[s]) for s, m in syns_models.items()}


def test_syns_r2_at_shipped_rank(syns, syns_models):
    for s, model in syns_models.items():
        rank = int(syns["rank"].sel(subject=s))
        assert model.ranks_[rank - 1] == rank
        assert abs(model.r2_curve_[rank - 1] - float(syns["R2"].sel(subject=s))) <= 0.005, s


def test_syns_weights_match_package(syns, syns_models):
    cosines = []
    for s, model in syns_models.items():
        rank = int(syns["rank"].sel(subject=s))
        if model.rank_ != rank:  # compare like with like
            model = SynergyModel(rank=rank, random_state=0).fit(syns["V"].sel(subject=s))
        cosines.append(match(model.to_dataset().weights, syns["M"][s]).cosine.mean())
    assert np.mean(cosines) >= 0.98, np.round(cosines, 3)


# --- synthetic synergies ------------------------------------------------------------------------

def bump(centre: float, width: float, phase=PHASE) -> np.ndarray:
    """Gaussian activation (sd ``width`` %) centred at ``centre`` % of the cycle, wrapping around 100 %."""
    distance = (phase - centre + 50.0) % 100.0 - 50.0
    return np.exp(-0.5 * (distance / width) ** 2)


@pytest.fixture(scope="module")
def truth():
    """4 synergies over 8 muscles: sparse unit-norm weights, one burst each (phase x synergy)."""
    weights = np.array([
        [0.9, 0.1, 0.0, 0.0], [0.6, 0.0, 0.2, 0.0], [0.0, 0.8, 0.0, 0.1], [0.1, 0.7, 0.0, 0.0],
        [0.0, 0.0, 0.9, 0.3], [0.0, 0.2, 0.0, 0.9], [0.3, 0.0, 0.5, 0.0], [0.0, 0.0, 0.1, 0.6],
    ])
    weights /= np.linalg.norm(weights, axis=0)
    patterns = np.stack([bump(5, 6), bump(30, 8), bump(55, 7), bump(85, 6)], axis=1) * [1.0, 0.6, 0.8, 1.2]
    return weights, patterns


def test_recovers_known_synergies(truth):
    weights, patterns = truth
    model = SynergyModel(rank=4).fit(patterns @ weights.T)
    paired = match(weights, model.weights_)
    assert paired.cosine.min() > 0.99
    recovered = model.patterns_[:, paired.index_b]
    cosine = np.sum(recovered * patterns, axis=0) / np.linalg.norm(recovered, axis=0) / np.linalg.norm(patterns, axis=0)
    assert cosine.min() > 0.99
    assert model.r2_ > 0.999 and model.vaf_ > 0.999


def test_weights_have_unit_norm_and_patterns_carry_the_scale(truth):
    weights, patterns = truth
    X = 3.0 * patterns @ weights.T
    model = SynergyModel(rank=3, restarts=2).fit(X)
    np.testing.assert_allclose(np.linalg.norm(model.weights_, axis=0), 1.0)
    assert model.weights_.shape == (8, 3) and model.patterns_.shape == (200, 3)
    assert model.weights_.min() >= 0 and model.patterns_.min() >= 0
    reconstruction = model.patterns_ @ model.weights_.T
    assert model.r2_ == pytest.approx(1 - np.sum((X - reconstruction) ** 2) / np.sum((X - X.mean()) ** 2))


def test_rank_rules_choose_the_generating_rank(truth):
    weights, patterns = truth
    rng = np.random.default_rng(1)
    X = patterns @ weights.T + rng.uniform(0, 0.01, (200, 8))
    r2_model = SynergyModel(max_rank=7, random_state=1).fit(X)
    vaf_model = SynergyModel(max_rank=7, rank_rule="vaf", random_state=1).fit(X)
    assert r2_model.rank_ == 4 and vaf_model.rank_ == 4
    np.testing.assert_array_equal(r2_model.ranks_, np.arange(1, 8))
    assert np.all(np.diff(r2_model.r2_curve_) > -1e-3) and len(r2_model.vaf_curve_) == 7
    assert vaf_model.vaf_ >= 0.90 and vaf_model.vaf_per_muscle_.min() >= 0.75


def test_r2_linearity_rule_on_known_curves():
    assert r2_linearity_rank(0.5 + 0.05 * np.arange(10)) == 1  # a straight line from rank 1
    kinked = np.array([0.30, 0.60, 0.74, 0.80, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96])
    assert r2_linearity_rank(kinked) == 5  # linear from rank 5; from rank 4 the residual is 1.2e-4
    assert r2_linearity_rank(kinked, mse_min=2e-4) == 4
    zigzag = 0.05 * np.arange(10) + 0.02 * (-1) ** np.arange(10)
    assert r2_linearity_rank(zigzag) == 9  # never linear: max rank - 1
    assert r2_linearity_rank([0.7, 0.9]) == 1


def test_transform_and_cross_fit_reproduce_data_made_from_the_weights(truth):
    weights, patterns = truth
    X = patterns @ weights.T
    model = SynergyModel(rank=4).fit(X)
    coefficients = model.transform(X)
    assert coefficients.shape == (200, 4) and coefficients.min() >= 0
    assert 1 - np.sum((X - coefficients @ model.weights_.T) ** 2) / np.sum(X**2) > 0.999
    fit = cross_fit(weights, X)
    assert fit.vaf == pytest.approx(1.0, abs=1e-9) and fit.r2 == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(fit.vaf_per_muscle, 1.0, atol=1e-9)
    np.testing.assert_allclose(fit.patterns, patterns, atol=1e-8)
    other = cross_fit(weights[:, :2], X)  # two synergies cannot explain all four bursts
    assert other.vaf < 0.9


def test_xarray_in_and_out(truth):
    weights, patterns = truth
    cycles = np.stack([patterns @ weights.T * (1 + 0.1 * c) for c in range(3)])
    X = xr.DataArray(cycles, dims=("cycle", "phase", "channel"),
                     coords={"cycle": [0, 1, 2], "phase": PHASE, "channel": CHANNELS})
    model = SynergyModel(rank=4, restarts=2)
    out = model.fit_transform(X)
    assert out.dims == ("cycle", "phase", "synergy") and list(out.synergy.values) == ["Syn1", "Syn2", "Syn3", "Syn4"]
    assert model.patterns_.shape == (600, 4) and model.channels_ == CHANNELS
    ds = model.to_dataset()
    assert ds.weights.dims == ("channel", "synergy") and list(ds.channel.values) == CHANNELS
    assert ds.patterns.dims == ("cycle", "phase", "synergy") and ds.attrs["rank"] == 4
    reordered = X.isel(channel=slice(None, None, -1)).transpose("channel", "cycle", "phase")
    xr.testing.assert_allclose(model.transform(reordered), model.transform(X))  # matched by channel name
    human = xr.DataArray(weights, dims=("channel", "synergy"), coords={"channel": CHANNELS})
    assert cross_fit(human, reordered).vaf == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ChannelNotFoundError):
        model.transform(X.sel(channel=CHANNELS[:-1]))


def test_match_pairs_permuted_and_scaled_synergies(truth):
    weights, _ = truth
    order = [2, 0, 3, 1]
    paired = match(weights, 5.0 * weights[:, order])
    np.testing.assert_array_equal(np.array(order)[paired.index_b], paired.index_a)
    np.testing.assert_allclose(paired.cosine, 1.0)
    assert paired.similarity.shape == (4, 4)
    assert len(match(weights, weights[:, :3]).cosine) == 3


def test_centre_of_activity_and_fwhm_of_gaussian_bumps():
    patterns = np.stack([bump(30, 5), bump(98, 5), bump(20, 5) + bump(60, 5)], axis=1)
    coa = centre_of_activity(patterns, PHASE)
    assert coa[0] == pytest.approx(30.0, abs=0.05)
    assert coa[1] == pytest.approx(98.0, abs=0.05)  # circular: wraps around the end of the cycle
    assert coa[2] == pytest.approx(40.0, abs=0.05)
    width = fwhm(patterns, PHASE)
    half = 2 * np.sqrt(2 * np.log(2))  # FWHM of a Gaussian in standard deviations
    assert width[0] == pytest.approx(half * 5, abs=0.5)  # one sample = 0.5 %
    assert width[1] == pytest.approx(half * 5, abs=0.5)
    assert width[2] == pytest.approx(2 * half * 5, abs=1.0)  # two bursts add up
    da = xr.DataArray(patterns, dims=("phase", "synergy"), coords={"phase": PHASE, "synergy": ["a", "b", "c"]})
    assert list(centre_of_activity(da).synergy.values) == ["a", "b", "c"]
    np.testing.assert_allclose(fwhm(da).values, width)
    assert centre_of_activity(bump(42, 5), PHASE) == pytest.approx(42.0, abs=0.05)
    assert np.isnan(fwhm(np.ones(200), PHASE))


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("X, message", [
    (-np.ones((50, 4)), "negative"),
    (np.where(np.eye(50, 4) > 0, np.nan, 1.0), "NaN"),
    (np.ones((1, 4)), "at least 2 samples"),
    (np.ones(50), "samples x muscles"),
    (np.full((50, 4), 0.3), "constant"),
    (xr.DataArray(np.ones((50, 4)), dims=("phase", "muscle")), "'channel' dimension"),
])
def test_bad_emg_is_refused(X, message):
    with pytest.raises(DataFormatError, match=message):
        SynergyModel(rank=1).fit(X)


def test_bad_parameters_are_refused(truth):
    weights, patterns = truth
    X = patterns @ weights.T
    with pytest.raises(ProcessingError, match="rank 9"):
        SynergyModel(rank=9).fit(X)  # more synergies than muscles
    with pytest.raises(ProcessingError, match="rank_rule"):
        SynergyModel(rank_rule="elbow").fit(X)
    with pytest.raises(ProcessingError, match="not fitted"):
        SynergyModel().transform(X)
    with pytest.raises(DataFormatError, match="muscles"):
        cross_fit(weights, X[:, :5])
    with pytest.raises(DataFormatError, match="phase"):
        centre_of_activity(np.ones((10, 2)), np.arange(20))
    with pytest.raises(KinesisNeuroError):
        cross_fit(-weights, X)
