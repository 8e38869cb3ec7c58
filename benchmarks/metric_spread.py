"""Spread of a policy's evaluation metrics when its rollouts' start states move by a tiny amount.

Usage: python benchmarks/metric_spread.py [--policy policies/myolegs-walk] [--runs 8] [--noise 1e-9]
       [--n-boot 10] [--csv runs.csv] [--write]

10-s muscle rollouts are chaotic: another CPU rounds a few last bits differently and the walk, its tracking
error and its activation cycles drift apart (~1e-3 in r). This reruns the main job's evaluation (the
policy's metrics.json settings: episodes, seed; EMG and motion) once as is and ``--runs`` times with
Gaussian noise of std ``--noise`` (m, rad, m/s, rad/s) added to every start qpos/qvel, noise seeds 1..runs,
and prints per metric: the value metrics.json states, the unperturbed value on this machine, min, max and
std over all runs, the largest distance to the stated value and the tolerance
``max(3 max|run - stated|, 4 std, 1e-6)`` (rounded up to 2 significant digits). Full episodes (a count)
may fall short of the stated count by at most the largest shortfall seen. ``--write`` stores this as the
``spread`` section of the policy's metrics.json, which tests/test_pipeline.py asserts against.
Static optimisation is not a rollout (the start noise does not reach it); its spread shows that it is
deterministic here and how far this CPU is from the one that wrote metrics.json.
"""

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kinesis_neuro.pipeline import CONTROLLERS, METRICS, _cpu_name, main_job
from kinesis_neuro.storage import write_json

FACTOR, STDS, FLOOR = 3.0, 4.0, 1e-6


def flat_metrics(evaluation: dict, controllers: dict) -> dict[str, float]:
    """One value per metric name: evaluation numbers, then each controller's median r and per-muscle r."""
    out = {"mean_tracking_error_m": evaluation["mean_tracking_error_m"], "full_episodes": evaluation["full_episodes"]}
    for label in CONTROLLERS:
        out[f"{label} median_r"] = controllers[label]["median_r"]
        out.update({f"{label} r {muscle}": r for muscle, r in controllers[label]["r"].items()})
    return out


def round_up(x: float) -> float:
    """``x`` rounded up to 2 significant digits."""
    digits = 1 - math.floor(math.log10(x))
    return round(math.ceil(x * 10.0**digits - 1e-9) / 10.0**digits, digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default=str(Path(__file__).resolve().parents[1] / "policies" / "myolegs-walk"))
    parser.add_argument("--runs", type=int, default=8, help="perturbed runs (noise seeds 1..runs)")
    parser.add_argument("--noise", type=float, default=1e-9, help="start-state noise std (state units)")
    parser.add_argument("--n-boot", type=int, default=10, help="bootstrap resamples (the r values do not use them)")
    parser.add_argument("--csv", help="also write every run's values to this CSV")
    parser.add_argument("--write", action="store_true", help="store the spread in the policy's metrics.json")
    args = parser.parse_args()
    path = Path(args.policy) / METRICS
    stated_json = json.loads(path.read_text())
    ev = stated_json["evaluation"]
    stated = flat_metrics(ev, stated_json["emg_correlation"])
    runs = {}
    for noise_seed in range(args.runs + 1):
        noise = args.noise if noise_seed else 0.0
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            summary = main_job(args.policy, emg=stated_json["emg_correlation"]["emg"], episodes=ev["episodes"],
                               seed=ev["seed"], n_boot=args.n_boot, out=tmp, progress=False, start_noise=noise,
                               noise_seed=noise_seed)
        runs[f"noise {noise:g} seed {noise_seed}"] = flat_metrics(summary["evaluation"], summary["controllers"])
        print(f"run {noise_seed}: start noise {noise:g}, {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(runs)
    if args.csv:
        table.to_csv(args.csv, index_label="metric")
    values = table.to_numpy(dtype=float)
    reference = np.array([stated[m] for m in table.index])
    diff = values - reference[:, None]  # std of the differences: exactly 0 where every run gives one value
    distance = np.abs(diff).max(axis=1)
    result = pd.DataFrame({"stated": reference, "unperturbed": values[:, 0], "min": values.min(axis=1),
                           "max": values.max(axis=1), "std": diff.std(axis=1, ddof=1), "max_abs_diff": distance},
                          index=table.index)
    result["tolerance"] = [round_up(max(FACTOR * d, STDS * s, FLOOR)) for d, s in zip(distance, result["std"])]
    full = table.index.get_loc("full_episodes")
    result.loc["full_episodes", "tolerance"] = reference[full] - values[full].min()
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(result)
    print(f"{args.runs} runs with start noise {args.noise:g} + 1 unperturbed on {_cpu_name()}; stated values from "
          f"{stated_json['evaluated_on']['cpu']}")
    if args.write:
        stated_json["spread"] = {
            "start_noise": args.noise, "noise_seeds": list(range(1, args.runs + 1)), "unperturbed_runs": 1,
            "measured_on": _cpu_name(),
            "rule": f"tolerance = max({FACTOR:g} max|run - stated|, {STDS:g} std, {FLOOR:g}) over all runs, rounded "
                    "up to 2 significant digits; full_episodes: at most the largest shortfall seen",
            "command": "python benchmarks/metric_spread.py --write",
            "metrics": {m: {k: float(v) for k, v in row.items() if k != "stated"} for m, row in result.iterrows()},
        }
        write_json(stated_json, path)
        print(f"wrote the spread into {path}")


if __name__ == "__main__":
    main()
