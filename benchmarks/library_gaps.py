"""The measured causes behind the library policy's missed targets (the model card's "gap" column).

    python benchmarks/library_gaps.py [--policy policies/myolegs-library] [--benchmark out/benchmark]
                                      [--recordings out/main-library]

Three tables, each from inputs anyone can rebuild with the commands in the README:

1. **How fast each clip runs away** (no training involved): per clip of the motion library, the reference's
   mean root speed (m/s) and the mean tracked-body distance (m) one control step (1/30 s) after starting on the
   reference at 10 phases, with every muscle idle (no force) and with the policy acting; training ends an
   episode at 0.15 m.
2. **Timing** (``--benchmark``: the folder of ``kinesis-neuro benchmark``): per controller and EMG dataset, the
   median r at zero lag, at each muscle's best lag, and the median best lag (% of the gait cycle; positive: the
   simulation is late).
3. **Where the effort goes** (``--recordings``: the folder of ``kinesis-neuro pipeline``, its ``policy.nc`` and
   ``static-opt.nc``): effort (mean over time of the summed squared activation of 80 muscles) of both, and the
   muscles that carry the policy's excess.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from env_changes import markdown  # noqa: E402
from kinesis_neuro import motion_library, policies  # noqa: E402
from kinesis_neuro.record import Recording  # noqa: E402

PHASES = 10


def runaway(policy: policies.Policy, splits=("train", "held_out")) -> pd.DataFrame:
    """Per clip of ``splits``: root speed of the reference and the tracking error after one control step,
    muscles idle or driven by the policy (deterministic), averaged over ``PHASES`` start phases of the clip."""
    rows = []
    for split in splits:
        for clip in motion_library.clip_names(split):
            env = policy.make_env(clips=(clip,))
            starts = np.linspace(0, env.n_start_phases[0] - 1, PHASES).astype(int)
            errors = {"idle": [], "policy": []}
            for start in starts:
                for mode, errs in errors.items():
                    obs, _ = env.reset(seed=0, options={"clip": 0, "start": int(start)})
                    action = np.ones(env.action_space.shape) if mode == "idle" else policy.act(obs)  # +1: no force
                    errs.append(env.step(action)[4]["tracking_error"])
            speed = np.linalg.norm(env.reference.qvel[:, :2], axis=1).mean()
            rows.append({"clip": clip, "split": split, "root speed (m/s)": float(speed),
                         "error after 1 step, idle (m)": float(np.mean(errors["idle"])),
                         "error after 1 step, policy (m)": float(np.mean(errors["policy"]))})
    return pd.DataFrame(rows).set_index("clip")


def timing(benchmark_dir: Path) -> pd.DataFrame:
    """Median r at zero lag and at each muscle's best lag, and the median best lag, per controller and dataset."""
    muscles = pd.read_csv(benchmark_dir / "benchmark_muscles.csv").dropna(subset=["best_lag_pct"])
    table = muscles.groupby(["controller", "dataset"]).agg(
        muscles=("r", "size"), **{"median r": ("r", "median"), "median r at best lag": ("r_at_best_lag", "median"),
                                  "median best lag (%)": ("best_lag_pct", "median"),
                                  "muscles late by 0-20 %": ("best_lag_pct", lambda v: int(v.between(0, 20).sum()))})
    return table.reset_index().set_index("controller")


def effort(recordings: Path, top: int = 8) -> tuple[pd.DataFrame, float, float]:
    """The ``top`` muscles by the policy's mean squared activation, with static optimisation's, and both efforts
    (their sums over the muscles)."""
    per = pd.DataFrame({name: (Recording.load(recordings / f"{name}.nc").data["activation"] ** 2).mean("time")
                        .to_series() for name in ("policy", "static-opt")})
    totals = per.sum()
    per["share of policy effort"] = per["policy"] / totals["policy"]
    return per.sort_values("policy", ascending=False).head(top), float(totals["policy"]), float(totals["static-opt"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="policies/myolegs-library")
    parser.add_argument("--benchmark", default="out/benchmark", type=Path)
    parser.add_argument("--recordings", default="out/main-library", type=Path)
    args = parser.parse_args()
    policy = policies.load(args.policy)
    print("## How fast each clip runs away (one control step from the reference)\n")
    print(markdown(runaway(policy)), "\n", flush=True)
    print("## Timing of the simulated activations against EMG\n")
    print(markdown(timing(args.benchmark)), "\n")
    top, policy_effort, so_effort = effort(args.recordings)
    print(f"## Where the effort goes: policy {policy_effort:.2f}, static optimisation {so_effort:.2f} "
          f"({policy_effort / so_effort:.1f} x); the policy's {len(top)} largest\n")
    top.index.name = "muscle"
    print(markdown(top))


if __name__ == "__main__":
    main()
