"""What each KINESIS-aligned environment setting does to EMG agreement, effort and tracking, measured side by side.

    python benchmarks/env_changes.py [--updates 200] [--out runs/env-changes] [--only SLUG ...]

Every variant fine-tunes the bundled ``policies/myolegs-walk`` (``--init-from``: actor, critic, normaliser) for
``--updates`` PPO updates of 2 workers x 2048 steps on ``moco-walk`` with one environment setting changed (the
first row changes none: the control, the same PPO on the old environment), then is rolled out for 10 seeded
10-s episodes in that environment and compared with the moco-walk subject's EMG, as the pipeline does. Static
optimisation on the same walk is computed once. Printed as a markdown table (and ``table.csv`` in ``--out``):

- ``median r``: Pearson r of the mean right-leg activation cycle vs the EMG envelope cycle, median over the 10
  EMG channels; ``full``: episodes of 10 s without early termination; ``error``: mean tracked-body distance (m);
- ``effort``: mean over time of the summed squared activation of the 80 muscles, and its ratio to static
  optimisation's; ``< 0.01`` / ``>= 0.95``: share of activation samples near zero / near saturation (bang-bang);
- ``silent``: EMG-mapped muscles whose mean activation stays below 0.01.

Runs are resumable: a variant whose run folder already reached ``--updates`` is not trained again.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kinesis_neuro import compare, mapping, policies  # noqa: E402
from kinesis_neuro.envs.imitation import KINESIS_SETTINGS  # noqa: E402
from kinesis_neuro.errors import ProcessingError  # noqa: E402
from kinesis_neuro.rollout import rollout  # noqa: E402
from kinesis_neuro.simulate import static_optimisation_recording  # noqa: E402
from kinesis_neuro.train import CHECKPOINT, PPOConfig, Trainer, load_checkpoint  # noqa: E402

START = "policies/myolegs-walk"
VARIANTS = {  # slug: (label, environment settings changed)
    "old": ("old environment (control)", {}),
    "kernel-mean": ("kernels averaged over x/y/z", {"kernel_average": "mean"}),
    "effort": ("L1+L2 effort over substeps", {"effort": "l1-l2"}),
    "activation-dynamics": ("activation dynamics kept", {"activation_dynamics": True}),
    "termination-any": ("any body > 0.15 m terminates", {"termination": "any"}),
    "toe-contact": ("toe contacts observed", {"toe_contact": True}),
    "kinesis": ("all of them (KINESIS settings)", dict(KINESIS_SETTINGS)),
}


def fine_tune(slug: str, settings: dict, updates: int, out: Path) -> Path:
    """The variant's run folder after ``updates`` updates from the bundled policy (resumed if interrupted)."""
    run = out / slug
    config = PPOConfig(total_steps=updates * 2 * 2048, workers=2, num_envs=16, rollout_steps=2048, seed=0,
                       checkpoint_every=10, init_from=START,
                       env={"motion": "moco-walk", "control_mode": "target-length", **settings})
    if (run / CHECKPOINT).exists():
        if load_checkpoint(run / CHECKPOINT)["update"] >= updates:
            return run
        trainer = Trainer(config, run, resume=True)
    else:
        trainer = Trainer(config, run, overwrite=True)
    try:
        trainer.run(progress=True)
    finally:
        trainer.close()
    return run


def activation_statistics(recording, muscles: list[str]) -> dict:
    """Effort (mean over time of the summed squared activation), bang-bang shares and silent EMG muscles."""
    act = recording.data["activation"]
    a = act.values
    mean = act.mean("time")
    return {"effort": float((a ** 2).sum(axis=1).mean()), "near_zero": float((a < 0.01).mean()),
            "saturated": float((a >= 0.95).mean()),
            "silent": ", ".join(m for m in muscles if float(mean.sel(muscle=m)) < 0.01) or "-"}


def median_r(recording, human) -> float:
    """Median over the EMG channels of the Pearson r of mean gait cycles (as the pipeline reports it)."""
    return compare.summary(compare.compare(recording, human, n_boot=1, synergies=False))["median_r"]


def markdown(table: pd.DataFrame) -> str:
    """The table as markdown rows (numbers to 3 decimals)."""
    cells = [[str(table.index.name)] + list(table.columns)]
    cells += [[str(i)] + [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for i, row in table.iterrows()]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "---|" * len(cells[0]), *lines[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--out", default="runs/env-changes")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="these variants only")
    args = parser.parse_args()
    out = Path(args.out)
    human = compare.human_cycles("moco-walk")
    emg_muscles = sorted({m for channel in human.channel.values for m in mapping.muscles_for(str(channel))})
    baseline = static_optimisation_recording("moco-walk", periodic=4, progress=False)
    so = activation_statistics(baseline, emg_muscles)
    so_r = median_r(baseline, human)
    rows = [{"variant": "static optimisation (same walk)", "updates": "-", "median r": so_r, "full": "-",
             "error (m)": np.nan, **so, "effort / SO": 1.0}]

    def row(label: str, updates, policy) -> dict:
        episodes, recording = rollout(policy, episodes=10, seed=0, progress=False)
        try:
            r = median_r(recording, human)
        except ProcessingError as err:  # no complete gait cycle: reported, not hidden
            print(f"{label}: not compared ({err})")
            r = np.nan
        stats = activation_statistics(recording, emg_muscles)
        return {"variant": label, "updates": updates, "median r": r,
                "full": f"{int((~episodes.terminated_early).sum())}/10",
                "error (m)": float(episodes.tracking_error_m.mean()), **stats,
                "effort / SO": stats["effort"] / so["effort"]}

    rows.append(row("bundled policy, not fine-tuned", 0, policies.load(START)))
    for slug in args.only or VARIANTS:
        label, settings = VARIANTS[slug]
        run = fine_tune(slug, settings, args.updates, out)
        rows.append(row(label, args.updates, policies.load(policies.export(run, out / f"{slug}-policy"))))
        table = pd.DataFrame(rows).set_index("variant")
        table.to_csv(out / "table.csv")
        print(markdown(table), flush=True)


if __name__ == "__main__":
    main()
