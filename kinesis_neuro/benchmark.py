"""``kinesis-neuro benchmark``: how well controllers agree with every registered EMG dataset that suits their motion.

Each controller (a recording ``.nc``, another tool's activation file, or a policy folder rolled out here; any
number of each) is compared (:func:`kinesis_neuro.compare.compare_any`) with:

=================  =========================================================================================
``moco-walk``      the subject the walks were made from: mean gait cycles, or a time series over the window
                   both cover when the controller has no complete cycle (an OpenSim result of part of the trial)
``musclesynergies`` 15 people walking on a treadmill (SYNS, 100 + 100 points per cycle), with the person-to-
                   person ceiling: human-human r of every pair of people per muscle; a controller's muscle is
                   *within the human range* when its r (median over people) reaches the lower quartile of the
                   human-human r of that muscle (inside or above KINESIS's human boxes)
``falisse2019``    another walking subject, 11 time-normalised cycles (cycles recorded in every channel)
``rajagopal-run``  treadmill running: running controllers only
``schwartz2008``   normative mean ± 1 SD of 83 children at the speed group nearest the controller's
                   non-dimensional speed (:func:`kinesis_neuro.cycle_tables.nondimensional_speed`)
user files         any ``--emg`` file, with its own mapping, side and events
=================  =========================================================================================

Whether a controller walks or runs comes from its gait events (mean stance above or below 50 % of the cycle),
else from its motion's name. A dataset that does not suit it, or that cannot be compared (missing offline, no
reader, no gait cycle), is listed with a note rather than dropped. Per muscle and summarised: median r,
Fisher-z mean r, the share of muscles within the human range (SYNS) or of phases within ±1 SD (normative).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro.errors import KinesisNeuroError, ProcessingError
from kinesis_neuro.record import Recording

CEILING = ("a muscle is within the human range when the controller's r (median over people) reaches the lower "
           "quartile of the human-human r of that muscle over every pair of people")
WALKING, RUNNING = "walking", "running"


@dataclass(frozen=True)
class Target:
    """One EMG dataset of the benchmark."""

    name: str
    emg: str
    gait: str
    description: str
    options: dict = field(default_factory=dict)
    side: str = "right"
    needs: str = ""  # a reader module the dataset needs (skipped with a note when it is missing)


TARGETS = (
    Target("moco-walk", "moco-walk", WALKING, "the walk's own subject: 10 right-leg envelopes, one overground trial"),
    Target("musclesynergies", "musclesynergies/SYNS.RData", WALKING,
           "15 people on a treadmill (SYNS), one mean cycle each, 100 stance + 100 swing points",
           {"split": (100, 100)}),
    Target("falisse2019", "falisse2019/ExperimentalData.mat", WALKING,
           "another walking subject: time-normalised cycles recorded in every channel",
           needs="kinesis_neuro.io.matlab"),
    Target("rajagopal-run", "rajagopal-run", RUNNING, "treadmill running ~3.5 m/s, 11 right-leg envelopes",
           needs="kinesis_neuro.io.matlab"),
    Target("schwartz2008", "schwartz2008", WALKING,
           "normative mean ± 1 SD of 83 children, speed group nearest the controller's non-dimensional speed"),
)


def gait_of(recording: Recording) -> tuple[str, str]:
    """(``walking``, ``running`` or ``unknown``, how it was decided): mean stance share of the recording's complete
    gait cycles (above 50 %: walking), else its motion's name."""
    events = recording.events()
    shares = []
    for side in ("right", "left"):
        own = events[events.side == side]
        strikes = np.sort(own[own.event == "heel_strike"].time.to_numpy(float))
        offs = np.sort(own[own.event == "toe_off"].time.to_numpy(float))
        for start, end in itertools.pairwise(strikes):
            inside = offs[(offs > start) & (offs < end)]
            if inside.size == 1:
                shares.append((inside[0] - start) / (end - start))
    if shares:
        share = float(np.median(shares))
        how = f"median stance {100 * share:.0f} % of {len(shares)} gait cycle(s)"
        return (WALKING if share > 0.5 else RUNNING), how
    motion = str(recording.data.attrs.get("motion", "")).lower()
    for word, kind in (("run", RUNNING), ("walk", WALKING)):
        if word in motion:
            return kind, f"motion {recording.data.attrs.get('motion')!r} (no complete gait cycle with a toe-off)"
    return "unknown", "no complete gait cycle with a toe-off, and the motion's name does not say"


def controller_label(recording: Recording, taken=()) -> str:
    """A short label: the controller attribute up to its first parenthesis (``static optimisation``), the file's
    name added when two controllers would share it."""
    attrs = recording.data.attrs
    label = str(attrs.get("controller", "controller")).split(" (")[0].strip() or "controller"
    if str(attrs.get("controller", "")).startswith("policy "):
        label = f"policy {Path(str(attrs['controller'])[7:].split(' (')[0]).name}"
    if "periodic walk" in str(attrs.get("motion", "")):
        label += " (periodic walk)"
    if label in taken:
        label = f"{label} ({Path(str(recording.source)).name})"
    return label


# the clips a motion-library policy is rolled out on: the walk of the moco-walk EMG and the run of rajagopal-run's
LIBRARY_CLIPS = ("moco-walk", "rajagopal-run")


def rollout_policies(policy_dirs, *, episodes: int = 5, seed: int = 0, data_dir=None) -> dict[str, Recording]:
    """Recordings of seeded rollouts of every policy folder (label ``policy <folder name>``); a motion-library
    policy (trained on clips) once on each of :data:`LIBRARY_CLIPS` (label ``policy <folder name> (<clip>)``)."""
    from kinesis_neuro import policies
    from kinesis_neuro.rollout import rollout

    out = {}
    for path in policy_dirs:
        policy = policies.load(path)
        overrides = {"data_dir": str(data_dir)} if data_dir else {}
        label = f"policy {Path(str(path)).resolve().name}"
        runs = [(f"{label} ({clip})", {"clips": (clip,)}) for clip in LIBRARY_CLIPS] \
            if policy.env_config.get("clips") else [(label, {})]
        for name, clips in runs:
            _, recording = rollout(policy, episodes=episodes, seed=seed, progress=False, **overrides, **clips)
            out[name if name not in out else f"{name} #{len(out)}"] = recording
    return out


def _available(target: Target) -> str | None:
    """Why ``target`` cannot be compared here (a reader missing), or None."""
    import importlib.util

    if target.needs and importlib.util.find_spec(target.needs) is None:
        return f"skipped: its reader ({target.needs}) is not in this kinesis-neuro yet"
    return None


def _human_range(ds: xr.Dataset) -> dict | None:
    """Per channel: the controller's median r over people, the lower quartile and median of the human-human r,
    and whether the controller is within the human range (SYNS-like comparisons with several people)."""
    if "human_r_pairs" not in ds:
        return None
    out = {}
    for ch in map(str, ds.channel.values):
        pairs = ds.human_r_pairs.sel(channel=ch).values
        r = float(np.median(ds.r_subject_channel.sel(channel=ch).values))
        q1 = float(np.quantile(pairs, 0.25))
        out[ch] = {"r_median_over_people": r, "human_r_q1": q1, "human_r_median": float(np.median(pairs)),
                   "within_human_range": bool(np.isfinite(r) and r >= q1)}
    return out


def _row(label: str, target: Target, ds: xr.Dataset) -> tuple[dict, dict]:
    from kinesis_neuro import compare

    result = compare.summarise(ds)
    ceiling = _human_range(ds)
    muscles = {ch: {"r": m["r"]} for ch, m in result["muscles"].items()}
    if ceiling:
        for ch, c in ceiling.items():
            muscles[ch].update(c)
    for ch, m in result["muscles"].items():
        for key in ("share_within_sd", "best_lag_pct", "best_lag_ms", "r_at_best_lag"):
            if key in m:
                muscles[ch][key] = m[key]
    within = (float(np.mean([c["within_human_range"] for c in ceiling.values()])) if ceiling else None)
    row = {"controller": label, "dataset": target.name, "comparison": result["comparison"],
           "muscles": len(result["muscles"]), "median_r": result["median_r"], "mean_r_fisher": result["mean_r_fisher"],
           "share_within_human_range": within, "share_within_sd": result.get("median_share_within_sd"),
           "note": ("; ".join(filter(None, [f"no r (never active): {', '.join(result['undefined_r'])}"
                                             if result["undefined_r"] else "",
                                             result.get("reason", "").replace(f"{ds.attrs.get('recording')}: ", "")])))}
    if ceiling:
        row["median_r_over_people"] = float(np.median([c["r_median_over_people"] for c in ceiling.values()]))
    return row, muscles


def benchmark(controllers: dict[str, Recording], *, user_emg=(), side: str = "right", mapping_table=None,
              events=None, emg_format: str | None = None, gait: str | None = None, datasets=None, n_boot: int = 1000,
              seed: int = 0, data_dir=None) -> tuple[dict, dict]:
    """Compare every controller (label -> Recording) with every registered dataset that suits its gait and with
    every ``user_emg`` file (compared on ``side`` with ``mapping_table``, ``events`` and ``emg_format``).
    ``gait`` overrides the walking/running decision for all controllers; ``datasets`` limits the registered
    datasets to those names. Returns the ``benchmark.json`` content and the comparison Datasets keyed by
    ``(controller, dataset)``."""
    from kinesis_neuro import compare

    if not controllers:
        raise KinesisNeuroError("benchmark needs at least one controller (--recording or --policy)")
    names = [t.name for t in TARGETS]
    unknown = sorted(set(datasets or ()) - set(names))
    if unknown:
        raise KinesisNeuroError(f"unknown benchmark dataset(s) {unknown}; choose from {names}")
    targets = [t for t in TARGETS if datasets is None or t.name in datasets]
    targets += [Target(Path(str(p)).name, str(p), "any", "user EMG file", {"preset": emg_format, "events": events},
                       side=side) for p in user_emg]
    kinds = {}
    for label, rec in controllers.items():
        kinds[label] = (gait, "given (--gait)") if gait else gait_of(rec)
    rows, muscles, comparisons = [], {}, {}
    for target in targets:
        for label, rec in controllers.items():
            kind, how = kinds[label]
            skip = _available(target)
            if skip is None and target.gait == RUNNING and kind != RUNNING:
                skip = f"skipped: running data; the controller is {kind} ({how})"
            if skip is None and target.gait == WALKING and kind == RUNNING:
                skip = f"skipped: walking data; the controller runs ({how})"
            if skip:
                rows.append({"controller": label, "dataset": target.name, "comparison": "skipped", "note": skip})
                continue
            try:
                ds = compare.compare_any(rec, target.emg, side=target.side, mapping_table=mapping_table,
                                         n_boot=n_boot, seed=seed, synergies=False, data_dir=data_dir,
                                         **{k: v for k, v in target.options.items() if v is not None})
            except KinesisNeuroError as err:
                rows.append({"controller": label, "dataset": target.name, "comparison": "not compared",
                             "note": f"not compared: {str(err).replace(f'{rec.source}: ', '')}"})
                continue
            comparisons[label, target.name] = ds
            row, per_muscle = _row(label, target, ds)
            rows.append(row)
            muscles.setdefault(label, {})[target.name] = per_muscle
    agreement = {}
    labels = list(controllers)
    for i, first in enumerate(labels):
        for second in labels[i + 1:]:
            try:
                both = compare.activation_agreement(controllers[first], controllers[second])
            except ProcessingError:  # another time axis (rollouts, periodic walks): nothing to line up
                continue
            agreement[f"{first} vs {second}"] = {
                "window_s": list(both.attrs["window_s"]), "samples": both.attrs["samples"],
                "median_r": float(both.r.median()), "r": {m: float(v) for m, v in both.r.items()},
                "rmse": {m: float(v) for m, v in both.rmse.items()}}
    result = {
        "controllers": {label: {"source": str(rec.source), "controller": str(rec.data.attrs.get("controller", "")),
                                "motion": str(rec.data.attrs.get("motion", "")), "gait": kinds[label][0],
                                "gait_from": kinds[label][1]} for label, rec in controllers.items()},
        "datasets": {t.name: {"emg": t.emg, "gait": t.gait, "description": t.description, "side": t.side}
                     for t in targets},
        "rows": rows, "muscles": muscles, "human_range": CEILING, "agreement": agreement,
        "settings": {"n_boot": n_boot, "seed": seed, "side_of_user_emg": side},
    }
    return result, comparisons


def table(result: dict) -> pd.DataFrame:
    """The benchmark as one table: a row per (controller, dataset)."""
    columns = ["controller", "dataset", "muscles", "median_r", "mean_r_fisher", "share_within_human_range",
               "share_within_sd", "comparison", "note"]
    frame = pd.DataFrame(result["rows"]).reindex(columns=columns)
    return frame.set_index(["controller", "dataset"])


def muscle_table(result: dict) -> pd.DataFrame:
    """Per-muscle r of every (controller, dataset), with the human range where there is one."""
    rows = [{"controller": c, "dataset": d, "channel": ch, **values}
            for c, per_dataset in result["muscles"].items() for d, per_channel in per_dataset.items()
            for ch, values in per_channel.items()]
    return pd.DataFrame(rows).set_index(["controller", "dataset", "channel"]) if rows else pd.DataFrame()


def agreement_table(result: dict) -> pd.DataFrame:
    """Per-muscle r (and RMSE) between the activations of every pair of controllers of the same trial."""
    frame = pd.DataFrame({pair: a["r"] for pair, a in result["agreement"].items()})
    frame.index.name = "muscle"
    return frame


def panels(result: dict, comparisons: dict) -> dict[str, dict]:
    """The data of :func:`kinesis_neuro.plots.plot_benchmark`: per dataset, per muscle, human-human r (several
    people) and each controller's r (over people, or one value)."""
    out = {}
    for name in result["datasets"]:
        pairs = [(label, ds) for (label, dataset), ds in comparisons.items() if dataset == name]
        if not pairs:
            continue
        channels = [str(c) for c in pairs[0][1].channel.values]
        human = None
        controllers = {}
        for label, ds in pairs:
            if "human_r_pairs" in ds and human is None:
                human = {ch: ds.human_r_pairs.sel(channel=ch).values for ch in channels}
            if "r_subject_channel" in ds and ds.sizes.get("subject", 1) > 1:
                controllers[label] = {ch: ds.r_subject_channel.sel(channel=ch).values for ch in channels}
            else:
                controllers[label] = {ch: float(ds.r.sel(channel=ch)) for ch in channels}
        kinds = sorted({ds.attrs.get("comparison_kind", "cycles") for _, ds in pairs})
        out[name] = {"title": f"{name}: {result['datasets'][name]['description']} ({', '.join(kinds)})",
                     "channels": channels, "human": human, "controllers": controllers}
    return out


def write_outputs(result: dict, comparisons: dict, out_dir, protect=()) -> list[str]:
    """``benchmark.json`` (last), ``benchmark.csv``, ``benchmark_muscles.csv`` and ``figures/`` (``benchmark``: every
    dataset; ``<dataset>/emg_correlation*``: KINESIS's figure for each dataset with gait-cycle comparisons, all
    controllers side by side) in ``out_dir``. Returns the names written."""
    from kinesis_neuro import plots, storage

    written = []
    with storage.output_folder(out_dir, protect=protect, last=("benchmark.json",)) as out:
        storage.write_csv(table(result), out / "benchmark.csv")
        storage.write_csv(muscle_table(result), out / "benchmark_muscles.csv")
        written += ["benchmark.csv", "benchmark_muscles.csv"]
        if result["agreement"]:
            storage.write_csv(agreement_table(result), out / "agreement.csv")
            written.append("agreement.csv")
        plots.plot_benchmark(panels(result, comparisons), out / "figures")
        written.append("figures/benchmark.png")
        for name in result["datasets"]:
            cycles = {label: ds for (label, dataset), ds in comparisons.items()
                      if dataset == name and ds.attrs.get("comparison_kind") == "cycles"}
            if cycles:
                plots.plot_controllers(cycles, out / "figures" / name)
                written.append(f"figures/{name}/emg_correlation.png")
        storage.write_json(result, out / "benchmark.json")
        written.append("benchmark.json")
    return written


def _short(comparison: str) -> str:
    if comparison.startswith("time series over"):
        return "time series " + comparison.split()[3]
    if comparison.startswith("mean gait cycle") and "normative" in comparison:
        return "normative mean ± SD"
    return comparison.split(" (")[0]


def format_table(result: dict) -> str:
    """The benchmark table as text (numbers to 3 decimals), then each distinct note once with the rows it
    concerns, and the agreement of controllers of the same trial."""
    frame = table(result)
    shown = frame[["median_r", "mean_r_fisher", "share_within_human_range", "share_within_sd", "muscles"]].copy()
    shown.columns = ["median r", "Fisher mean r", "within human range", "within ±1 SD", "muscles"]
    shown["muscles"] = [f"{m:.0f}" if np.isfinite(m) else "-" for m in frame["muscles"].astype(float)]
    shown["comparison"] = [_short(c) if isinstance(c, str) else "" for c in frame["comparison"]]
    text = shown.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-")
    grouped: dict[str, list[str]] = {}
    for (controller, dataset), note in frame["note"].items():
        if isinstance(note, str) and note:
            grouped.setdefault(note, []).append(f"{controller} / {dataset}")
    notes = [f"  {', '.join(rows)}: {note}" for note, rows in grouped.items()]
    lines = [f"  {pair}: median r {a['median_r']:.3f} over {len(a['r'])} muscles, {a['window_s'][0]:.2f}-"
             f"{a['window_s'][1]:.2f} s" for pair, a in result.get("agreement", {}).items()]
    return (text + ("\nnotes:\n" + "\n".join(notes) if notes else "")
            + ("\nactivations of controllers of the same trial, frame by frame (agreement.csv):\n" + "\n".join(lines)
               if lines else ""))
