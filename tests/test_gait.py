import numpy as np
import pandas as pd
import pytest

from kinesis_neuro import emg, gait
from kinesis_neuro.errors import DataFormatError, ProcessingError
from kinesis_neuro.io.common import emg_array


@pytest.fixture(scope="module")
def moco_events(data_dir):
    return gait.events_from_grf(emg.read("moco-walk/grf_walk.mot"))


def test_moco_walk_events_from_grf(moco_events):
    def times(event, side):
        return moco_events[(moco_events.event == event) & (moco_events.side == side)].time.to_numpy()

    # heel strikes: left ~0.836 s and right ~1.41 s as seen in the force plates
    np.testing.assert_allclose(times("heel_strike", "right"), [0.2668, 1.4112], atol=2e-3)
    np.testing.assert_allclose(times("heel_strike", "left"), [0.8355], atol=2e-3)
    np.testing.assert_allclose(times("toe_off", "right"), [1.0363, 2.1807], atol=2e-3)
    np.testing.assert_allclose(times("toe_off", "left"), [1.6019], atol=2e-3)
    # the vertical force really crosses 20 N there
    grf = emg.read("moco-walk/grf_walk.mot")
    f = grf.sel(channel="ground_force_r_vy").interp(time=times("heel_strike", "right")).values
    np.testing.assert_allclose(f, 20.0, atol=1.0)


def test_hysteresis_and_debounce_on_noisy_force():
    fs = 1000.0
    t = np.arange(3000) / fs
    force = np.where((t % 1.0) < 0.6, 700.0, 0.0) + np.random.default_rng(0).normal(0, 3, t.size)
    force[1500:1503] = 0.0  # a 3 ms dropout inside a contact is not a toe-off
    force[2800:2802] = 300.0  # a 2 ms spike in swing is not a heel strike
    ev = gait.events_from_force(force, t, side="right")
    strikes = ev[ev.event == "heel_strike"].time.to_numpy()
    offs = ev[ev.event == "toe_off"].time.to_numpy()
    np.testing.assert_allclose(strikes, [1.0, 2.0], atol=2e-3)
    np.testing.assert_allclose(offs, [0.6, 1.6, 2.6], atol=2e-3)


def test_events_from_contact_signal():
    t = np.arange(10) * 0.1
    contact = np.array([0, 1, 1, 0, 0, 1, 1, 1, 0, 0], bool)
    ev = gait.events_from_contact(contact, t, side="left")
    assert list(ev.event) == ["heel_strike", "toe_off", "heel_strike", "toe_off"]
    np.testing.assert_allclose(ev.time, [0.1, 0.3, 0.5, 0.8])


def test_contact_chatter_is_not_a_gait_event():
    t = np.arange(40) * 0.02  # 50 Hz
    contact = np.zeros(40, bool)
    contact[5:25] = True  # stance 0.1-0.5 s
    contact[12] = False  # a 20 ms lift mid-stance
    contact[33] = True  # and a 20 ms scuff in swing
    ev = gait.events_from_contact(contact, t, side="right")
    assert list(ev.event) == ["heel_strike", "toe_off"]
    np.testing.assert_allclose(ev.time, [0.1, 0.5])
    assert len(gait.events_from_contact(contact, t, min_duration=0.0)) == 6


def test_a_contact_split_by_a_one_sample_gap_stays_one_contact():
    """Two 0.07 s halves of a 0.15 s contact with a one-sample gap between them: the gap closes (shortest run
    first) and the contact stays, where judging the runs in order of time dropped the first half and then the
    rest (an AMP running clip lost its heel strikes that way)."""
    time = np.arange(100) / 100
    contact = np.zeros(100, bool)
    contact[20:27] = contact[28:35] = True
    events = gait.events_from_contact(contact, time, side="right", min_duration=0.1)
    assert events.event.tolist() == ["heel_strike", "toe_off"]
    np.testing.assert_allclose(events.time, [0.20, 0.35])


def test_event_table_validation():
    with pytest.raises(DataFormatError, match="lacks columns"):
        gait.events_from_table(pd.DataFrame({"time": [1.0]}))
    table = gait.events_from_table(pd.DataFrame({"time": [2.0, 1.0, 1.5], "event": ["toe_off", "heel_strike", "x"],
                                                 "side": ["Right", "R", "right"]}))
    assert list(table.event) == ["heel_strike", "toe_off"] and list(table.side) == ["right", "right"]


def _ramp(duration=5.0, fs=100.0):
    t = np.arange(int(duration * fs) + 1) / fs
    return emg_array(np.c_[t, 2 * t], t, ["a", "b"], source="ramp", units="1", sampling_rate=fs)


def _events(strikes, offs, side="right"):
    return pd.DataFrame({"time": list(strikes) + list(offs), "event": ["heel_strike"] * len(strikes)
                         + ["toe_off"] * len(offs), "side": side}).sort_values("time")


def test_segment_cycles_101_points_and_coords():
    da = _ramp()
    cycles = gait.segment_cycles(da, _events([0.5, 1.5, 2.5], [1.1, 2.1]), n_points=101)
    assert cycles.dims == ("cycle", "phase", "channel") and cycles.shape == (2, 101, 2)
    np.testing.assert_allclose(cycles.phase, np.linspace(0, 100, 101))
    np.testing.assert_allclose(cycles.sel(channel="a").values[:, [0, -1]], [[0.5, 1.5], [1.5, 2.5]])
    np.testing.assert_allclose(cycles.cycle_start, [0.5, 1.5])
    np.testing.assert_allclose(cycles.stance_percent, [60.0, 60.0])
    assert cycles.attrs["side"] == "right" and emg.history(cycles)[-1]["step"] == "segment_cycles"


def test_segment_cycles_stance_swing_split():
    cycles = gait.segment_cycles(_ramp(), _events([0.5, 1.5], [1.1]), split=(100, 100))
    assert cycles.shape == (1, 200, 2)
    a = cycles.sel(channel="a").values[0]
    assert a[0] == pytest.approx(0.5) and a[100] == pytest.approx(1.1)  # swing starts at toe-off
    np.testing.assert_allclose(np.diff(a[:100]), 0.006)  # 0.6 s of stance over 100 points
    np.testing.assert_allclose(np.diff(a[100:]), 0.004)


def test_outlier_cycles_rejected():
    strikes = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.4]
    da = _ramp(duration=8.0)
    cycles = gait.segment_cycles(da, _events(strikes, []), n_points=11)
    assert cycles.sizes["cycle"] == 7 and 7.0 not in cycles.cycle_start.values
    assert emg.history(cycles)[-1]["rejected_cycle_starts"] == [7.0]
    assert gait.segment_cycles(da, _events(strikes, []), outlier_sd=None).sizes["cycle"] == 8


def test_segment_needs_two_heel_strikes():
    with pytest.raises(ProcessingError, match="need 2 heel strikes of the left side"):
        gait.segment_cycles(_ramp(), _events([0.5, 1.5], [], side="right"), side="left")


def test_moco_walk_right_cycle(data_dir, moco_events):
    cycles = gait.segment_cycles(emg.read("moco-walk"), moco_events, side="right")
    assert cycles.sizes["cycle"] == 1 and cycles.sizes["phase"] == 101
    assert cycles.stance_percent.item() == pytest.approx(100 * (1.0363 - 0.2668) / (1.4112 - 0.2668), abs=0.3)
