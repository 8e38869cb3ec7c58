"""Wall time of a sweep over all 80 single-muscle ablations on a LocalCluster with 1 vs 2 workers.

Usage: python benchmarks/ablation_sweep.py [--policy DIR] [--episode-seconds 2.0] [--episodes 8]

Episodes run to ``--episode-seconds`` whatever the policy does (no early termination), so the work per
condition is that of a policy that walks through the whole short episode; without ``--policy`` a tiny
policy is trained for a moment. Goal: time(2 workers) / time(1 worker) <= 0.6.
"""

import argparse
import math
import os
import tempfile
import time

import numpy as np

from kinesis_neuro import policies
from kinesis_neuro.envs import ImitationConfig
from kinesis_neuro.redundancy.ablation import conditions, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", help="policy folder (default: train a tiny one)")
    parser.add_argument("--episode-seconds", type=float, default=2.0)
    parser.add_argument("--episodes", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        policy = args.policy
        if policy is None:
            from kinesis_neuro.train import PPOConfig, Trainer

            trainer = Trainer(PPOConfig(total_steps=512, workers=1, rollout_steps=512, hidden=(64, 64),
                                        env={"episode_seconds": args.episode_seconds}), tmp)
            trainer.run(progress=False)
            trainer.close()
            policy = policies.export(tmp)
        chosen = conditions("muscles")
        times, results = {}, {}
        for workers in (1, 2):
            start = time.perf_counter()
            results[workers] = sweep(policy, chosen, episodes=args.episodes, episode_seconds=args.episode_seconds,
                                     env={"termination_distance": math.inf}, n_workers=workers, progress=False)
            times[workers] = time.perf_counter() - start
            steps = results[workers].metrics.sel(metric="duration_s").sum().item() * ImitationConfig().control_rate
            print(f"{workers} worker(s): {times[workers]:.1f} s for {len(chosen)} conditions x {args.episodes} "
                  f"episode(s) of {args.episode_seconds} s ({steps:.0f} control steps)", flush=True)
        same = np.array_equal(results[1].metrics.values, results[2].metrics.values)
        print(f"ratio 2 workers / 1 worker: {times[2] / times[1]:.2f} (goal <= 0.6); identical results: {same}; "
              f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
