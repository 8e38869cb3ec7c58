"""Hard-negative mining over motion clips: failed clips are sampled more, every clip keeps a floor, the state
survives a checkpoint, bad input is refused."""

import json

import numpy as np
import pytest

from kinesis_neuro.clip_sampling import ClipSampler
from kinesis_neuro.errors import DataFormatError, KinesisNeuroError


def trained(sampler: ClipSampler, rounds: int = 20) -> ClipSampler:
    """Rounds of one episode per clip: clip 2 always fails, clip 4 fails every other round, the rest never."""
    for r in range(rounds):
        clips = np.arange(sampler.n_clips)
        sampler.update(clips, (clips == 2) | ((clips == 4) & (r % 2 == 0)), tracking_error=0.02 + 0.1 * (clips == 2))
    return sampler


def test_failed_clips_are_sampled_more_and_every_clip_keeps_its_floor():
    sampler = ClipSampler(6, decay=0.8, floor=0.1)
    np.testing.assert_allclose(sampler.probabilities(), 1 / 6)  # untried clips count as failed
    p = trained(sampler).probabilities()
    assert p.sum() == pytest.approx(1.0) and p.argmax() == 2
    assert p[2] > p[4] > p[0] and np.allclose(p[[0, 1, 3, 5]], p[0])
    assert p.min() >= 0.1 / (6 * 1.1)  # the documented floor
    assert sampler.rates[2] == 1.0 and sampler.rates[0] == 0.0 and 0.4 < sampler.rates[4] < 0.6
    sharper = ClipSampler(6, floor=0.1, power=3.0)
    assert trained(sharper).probabilities()[4] < p[4]  # power > 1 concentrates on the hardest clip


def test_the_moving_average_weighs_recent_episodes_more():
    sampler = ClipSampler(2, decay=0.5)
    sampler.update([0, 0, 0], [False, True, True])  # the first episode sets the rate
    assert sampler.rates[0] == pytest.approx((0 * 0.5 + 0.5) * 0.5 + 0.5)  # 0.75
    assert sampler.episodes.tolist() == [3, 0] and np.isnan(sampler.errors).all()


def test_failed_clips_choose_the_training_set_of_a_new_expert():
    sampler = trained(ClipSampler(6))
    assert sampler.failed_clips(0.5).tolist() == [2]
    assert sampler.failed_clips(0.3).tolist() == [2, 4]
    assert sampler.failed_clips(0.9, max_error=0.05).tolist() == [2]  # clip 2 tracks 0.12 m off
    fresh = ClipSampler(3)
    fresh.update([0], [False])
    assert fresh.failed_clips(0.5).tolist() == [1, 2]  # clips never tried are not mastered


def test_sampling_uses_only_the_callers_generator():
    sampler = trained(ClipSampler(6))
    a = sampler.sample(np.random.default_rng(5), 4000)
    b = sampler.sample(np.random.default_rng(5), 4000)
    assert np.array_equal(a, b)
    np.testing.assert_allclose(np.bincount(a, minlength=6) / 4000, sampler.probabilities(), atol=0.03)


def test_state_round_trip_through_json():
    sampler = trained(ClipSampler(6, decay=0.7, floor=0.2, power=2.0))
    state = json.loads(json.dumps(sampler.state_dict()))  # plain data
    restored = ClipSampler(6)
    restored.load_state_dict(state)
    assert np.array_equal(restored.probabilities(), sampler.probabilities())
    for s in (sampler, restored):
        s.update([1, 3], [True, False], [0.3, 0.01])
    assert np.array_equal(restored.probabilities(), sampler.probabilities())
    assert restored.state_dict() == sampler.state_dict()


@pytest.mark.parametrize("clips, failed, error, message", [
    ([6], [True], None, "clip index 6 out of range: the library has 6 clips"),
    ([-1], [True], None, "clip index -1 out of range"),
    ([0.5], [True], None, "clips must be clip indices"),
    ([0, 1], [True], None, "failed must be one bool per episode"),
    ([0], [1], None, "failed must be one bool per episode"),
    ([0], [True], [-0.1], "tracking_error must be one finite number >= 0"),
    ([0], [True], [np.nan], "tracking_error must be one finite number >= 0"),
])
def test_bad_episode_outcomes_are_refused(clips, failed, error, message):
    sampler = ClipSampler(6)
    with pytest.raises(KinesisNeuroError, match=message):
        sampler.update(clips, failed, error)
    assert sampler.episodes.sum() == 0


@pytest.mark.parametrize("settings, message", [
    ({"n_clips": 0}, "n_clips must be an integer >= 1"),
    ({"decay": 1.0}, "decay must be a number in"),
    ({"floor": 0.0}, "floor must be a number > 0"),
    ({"power": -1}, "power must be a number > 0"),
])
def test_impossible_settings_are_refused(settings, message):
    with pytest.raises(KinesisNeuroError, match=message):
        ClipSampler(**{"n_clips": 4, **settings})
    with pytest.raises(KinesisNeuroError, match="threshold must be a failure rate"):
        ClipSampler(4).failed_clips(1.5)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("rates"), "lacks rates"),
    (lambda s: s.update(rates=[0.5] * 5), r"rates must hold one value per clip \(6\)"),
    (lambda s: s.update(rates=[2.0] * 6), r"rates must lie in \[0, 1\]"),
    (lambda s: s.update(errors=["x"] * 6), "errors must hold numbers"),
    (lambda s: s.update(episodes=[1.5] * 6), "episodes must be counts"),
    (lambda s: s.update(decay=2), "decay must be a number in"),
])
def test_a_foreign_state_is_refused_and_leaves_the_sampler_as_it_was(change, message):
    sampler = trained(ClipSampler(6))
    state = sampler.state_dict()
    change(state)
    before = sampler.state_dict()
    with pytest.raises(DataFormatError, match=message):
        sampler.load_state_dict(state)
    assert sampler.state_dict() == before
