"""The main job, end to end: a trained policy and the static-optimisation baseline against human EMG.

Check that the datasets are at hand, roll the policy out (seeded episodes from random phases of the
walk it imitates), run static optimisation on the same periodic walk, compare both with the EMG
(per-muscle r with bootstrap CIs, timing, curve statistics), and write recordings, figures and
``summary.json`` to one folder.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pandas as pd

from kinesis_neuro import storage
from kinesis_neuro.errors import ProcessingError, require_positive

CONTROLLERS = ("policy", "static optimisation")
METRICS = "metrics.json"


def main_job(policy_dir, *, emg: str = "moco-walk", grf: str = "moco-walk/grf_walk.mot", episodes: int = 10,
             seed: int = 0, periodic: int = 4, n_boot: int = 1000, out="out/main", data_dir=None,
             progress: bool = True, start_noise: float = 0.0, noise_seed: int = 0) -> dict:
    """Run the whole comparison for the policy in ``policy_dir``; returns the ``summary.json`` content.

    ``emg``: dataset or EMG file; ``grf``: ground reaction forces of the walk the policy imitates (for
    static optimisation); ``periodic``: strides of the static-optimisation walk; ``n_boot``: bootstrap
    resamples of the r confidence intervals. A controller without a complete gait cycle (a policy that
    does not walk yet) is reported in ``notes`` instead of compared. ``start_noise``, ``noise_seed``: perturb
    the rollouts' start states (see :func:`kinesis_neuro.rollout.rollout`).
    """
    from tqdm.auto import tqdm

    from kinesis_neuro import compare, datasets, plots, policies
    from kinesis_neuro.rollout import rollout
    from kinesis_neuro.simulate import static_optimisation_recording

    out = Path(out)
    require_positive(episodes=episodes, periodic=periodic, n_boot=n_boot)
    policy = policies.load(policy_dir)
    motion = policy.env_config.get("motion", "moco-walk")
    needed = {str(spec).split("/")[0] for spec in (motion, grf, emg) if datasets.is_dataset_spec(spec)}
    for name in sorted(needed):  # fail before any work when a dataset is missing
        datasets.fetch_all(name, data_dir=data_dir)
    human = compare.human_cycles(emg, data_dir=data_dir)  # a bad EMG source fails before the rollouts
    bar = tqdm(total=4, desc="main job", unit="stage", disable=not progress)
    try:
        with storage.output_folder(out, protect=[policy_dir]) as staging:
            bar.set_postfix_str("policy rollouts")
            overrides = {"data_dir": str(data_dir)} if data_dir else {}
            if policy.env_config.get("clips"):  # a motion-library policy imitates the walk compared here alone
                overrides["clips"] = ()
            evaluation, recording = rollout(policy, episodes=episodes, seed=seed, progress=False,
                                            start_noise=start_noise, noise_seed=noise_seed, **overrides)
            recording.save(staging / "policy.nc")
            storage.write_csv(evaluation, staging / "policy_episodes.csv")
            bar.update()
            bar.set_postfix_str("static optimisation")
            baseline = static_optimisation_recording(motion, grf, periodic=periodic, data_dir=data_dir,
                                                     progress=False)
            baseline.save(staging / "static-opt.nc")
            bar.update()
            bar.set_postfix_str("comparisons")
            comparisons, results, notes = {}, {}, {}
            for label, rec in zip(CONTROLLERS, (recording, baseline)):
                try:
                    comparisons[label] = compare.compare(rec, human, n_boot=n_boot, seed=seed)
                except ProcessingError as err:
                    notes[label] = str(err)
                    continue
                results[label] = compare.write_outputs(comparisons[label], staging / label.replace(" ", "-"))
            if not comparisons:
                raise ProcessingError(f"no controller could be compared with {emg}: {notes}")
            bar.update()
            bar.set_postfix_str("figures")
            plots.plot_controllers(comparisons, staging / "figures")
            bar.update()
            summary = {
                "policy": str(policy.source), "emg": str(emg), "motion": str(motion),
                "evaluation": {"episodes": len(evaluation), "seed": seed,
                               "full_episodes": int((~evaluation.terminated_early).sum()),
                               "mean_duration_s": float(evaluation.duration_s.mean()),
                               "mean_tracking_error_m": float(evaluation.tracking_error_m.mean())},
                "controllers": {label: {"median_r": r["median_r"], "mean_r_fisher": r["mean_r_fisher"],
                                        "undefined_r": r["undefined_r"], "cycles": r["cycles"],
                                        "r": {ch: m["r"] for ch, m in r["muscles"].items()},
                                        "best_lag_pct": {ch: m["best_lag_pct"] for ch, m in r["muscles"].items()}}
                                for label, r in results.items()},
                "notes": notes,
            }
            storage.write_json(summary, staging / "summary.json")
    finally:
        bar.close()
    return summary


def muscle_table(summary: dict) -> pd.DataFrame:
    """Per-muscle Pearson r of every compared controller (columns), from a :func:`main_job` summary."""
    table = pd.DataFrame({label: c["r"] for label, c in summary["controllers"].items()})
    table.index.name = "muscle"
    table.loc["median"] = [c["median_r"] for c in summary["controllers"].values()]
    return table


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.machine())


def write_policy_metrics(summary: dict, policy_dir) -> Path:
    """Write ``metrics.json`` into ``policy_dir``: training, evaluation and EMG correlation of its policy.

    ``summary`` is the :func:`main_job` result for that policy; the training numbers come from the
    folder's ``policy.json`` and training log. The ``spread`` section of an existing file (how far the
    numbers move under tiny start-state perturbations, and the tolerances the tests use; written by
    ``benchmarks/metric_spread.py --write``) is kept: rerun that benchmark for a new policy.
    """
    from kinesis_neuro.policies import CONFIG
    from kinesis_neuro.train import LOG, training_summary

    policy_dir = Path(policy_dir)
    exported = json.loads((policy_dir / CONFIG).read_text())
    if "policy" not in summary["controllers"]:
        raise ProcessingError(f"{policy_dir}: the policy was not compared with EMG ({summary['notes']}); "
                              "metrics need a policy that walks whole gait cycles")
    metrics = {
        "training": {**training_summary(policy_dir / LOG, exported["update"]), "seed": exported["seed"]},
        "evaluation": summary["evaluation"],
        "emg_correlation": {"emg": summary["emg"], "motion": summary["motion"],
                            **{label: {"median_r": c["median_r"], "r": c["r"], "undefined_r": c["undefined_r"]}
                               for label, c in summary["controllers"].items()}},
        "evaluated_on": {"cpu": _cpu_name(), "cores": os.cpu_count(), "system": platform.platform()},
    }
    if (policy_dir / METRICS).exists() and "spread" in (old := json.loads((policy_dir / METRICS).read_text())):
        metrics["spread"] = old["spread"]
    return storage.write_json(metrics, policy_dir / METRICS)
