"""Speed of ``compare``: one recording with 200 simulated gait cycles x 80 muscles against the
15 people x 13 muscles of musclesyneRgies' SYNS, on one core.

    KINESIS_NEURO_DATA=../shared/datasets python benchmarks/compare_speed.py

The recording is built from a static-optimisation stride of moco-walk repeated 200 times with
small random variations (seeded), so every cycle is different. Goal: the whole compare < 2 s
(timed after one warm-up call, i.e. without Python's import time).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kinesis_neuro import compare  # noqa: E402
from kinesis_neuro.record import Recording  # noqa: E402
from kinesis_neuro.simulate import static_optimisation_recording  # noqa: E402


def long_recording(n_cycles: int = 200, rate: float = 30.0, seed: int = 0) -> Recording:
    """``n_cycles`` strides sampled at ``rate`` Hz (30 Hz: a policy rollout's control rate)."""
    base = static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", periodic=3, progress=False)
    events = base.events()
    strikes = events[(events.side == "right") & (events.event == "heel_strike")].time.to_numpy()
    one = base.data.activation.sel(time=slice(strikes[0], strikes[1] - 1e-9))
    one = one.interp(time=strikes[0] + np.arange(int((strikes[1] - strikes[0]) * rate)) / rate,
                     kwargs={"fill_value": "extrapolate"})
    period = strikes[1] - strikes[0]
    rng = np.random.default_rng(seed)
    values = np.concatenate([np.clip(one.values * rng.uniform(0.8, 1.2, (1, one.sizes["muscle"])), 0, 1)
                             for _ in range(n_cycles)])
    time_s = np.arange(len(values)) / rate
    stride = one.sizes["time"] / rate
    offsets = {kind: (events[(events.event == kind)].time.to_numpy() - strikes[0]) % period for kind in
               ("heel_strike", "toe_off")}
    rows = [{"time": k * stride + t * stride / period, "event": kind, "side": side}
            for k in range(n_cycles) for kind in offsets
            for t, side in zip(offsets[kind], events[events.event == kind].side)]
    table = pd.DataFrame(rows).query(f"time <= {time_s[-1]}")
    return Recording.from_arrays(time_s, [str(m) for m in one.muscle.values], activation=values, events=table,
                                 attrs={"motion": "moco-walk (repeated stride)", "controller": "benchmark"})


def main() -> None:
    human = compare.human_cycles("musclesynergies/SYNS.RData", split=(100, 100))
    for rate in (30.0, 1000.0):
        recording = long_recording(rate=rate)
        compare.compare(recording, human, synergies=True, n_boot=10)  # warm-up: imports (spm1d, sklearn), caches
        timings = {}
        for synergies in (False, True):
            started = time.perf_counter()
            ds = compare.compare(recording, human, synergies=synergies)
            timings[synergies] = time.perf_counter() - started
        print(f"{ds.attrs['sim_cycles_n']} simulated cycles x 80 muscles recorded at {rate:g} Hz vs 15 subjects x "
              f"13 muscles (one core): without synergies {timings[False]:.2f} s, with synergies "
              f"{timings[True]:.2f} s (goal < 2 s)")


if __name__ == "__main__":
    main()
