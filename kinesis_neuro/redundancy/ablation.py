"""Virtual lesion studies: silence or weaken muscles under a trained policy and measure what changes.

A *condition* silences (``ablate``) and/or weakens (``weaken``, max isometric force x factor) muscles
or muscle groups. :func:`run_condition` rolls out a policy under one condition (its episodes stepped together in
vectorised environments, each exactly the single-environment episode); :func:`sweep` runs many
conditions in parallel on dask.distributed, saving each finished condition so an interrupted sweep
resumes, and returns an xarray Dataset (with ``out``: a NetCDF file, a statistics table and figures).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import storage
from kinesis_neuro.errors import KinesisNeuroError, require_positive

INTACT = "intact"
BATCH = 32  # episodes of one condition stepped together in one process
METRICS = {  # name: (units, long name)
    "fell": ("1", "episode ended early (tracking error above the termination distance)"),
    "duration_s": ("s", "episode length"),
    "tracking_error_m": ("m", "mean tracked-body distance to the reference"),
    "joint_rmse_rad": ("rad", "leg joint-angle RMSE vs the intact run with the same seed"),
    "effort_act2": ("1", "mean over steps of the sum of squared activations"),
    "muscle_force_n": ("N", "mean over steps of the total muscle force"),
}


@dataclass(frozen=True)
class Condition:
    """One experimental condition: muscles/groups silenced and muscles/groups weakened (factor in [0, 1])."""

    name: str
    ablate: tuple[str, ...] = ()
    weaken: dict[str, float] = field(default_factory=dict)


def conditions(kind="muscles", muscles: list[str] | None = None, factor: float | None = None) -> list[Condition]:
    """The intact control plus one condition per muscle (``kind="muscles"``), per group (``"groups"``) or per
    name in a given list (``kind`` a list of muscle/group names, or ``muscles``). Without ``factor`` each is
    silenced; with it, its max isometric force is multiplied by ``factor``."""
    from kinesis_neuro import model as mdl

    if not isinstance(kind, str):
        names = list(kind)
    elif muscles is not None:
        names = list(muscles)
    elif kind in ("muscles", "groups"):
        model = mdl.load_model()
        names = mdl.muscle_names(model) if kind == "muscles" else sorted(mdl.muscle_groups(model))
    else:
        raise KinesisNeuroError(f"kind must be 'muscles', 'groups' or a list of names, got {kind!r}")
    if factor is not None and not 0.0 <= factor <= 1.0:
        raise KinesisNeuroError(f"weakness factor must be in [0, 1], got {factor}")
    out = [Condition(INTACT)]
    for name in names:
        out.append(Condition(name, (name,)) if factor is None else Condition(f"{name}x{factor:g}", (), {name: factor}))
    return out


# -- one condition -------------------------------------------------------------------------------------
def _overrides(episode_seconds: float | None, env: dict | None) -> tuple:
    """Environment overrides as a hashable, ordered tuple of items."""
    return tuple(sorted({**(env or {}), **({} if episode_seconds is None else {"episode_seconds": episode_seconds})}
                        .items()))


@functools.lru_cache(maxsize=2)
def _session(policy_dir: str, overrides: tuple, slots: int):
    """Policy and ``slots`` vectorised environments, built once per process (building takes seconds)."""
    from kinesis_neuro import model as mdl
    from kinesis_neuro import policies
    from kinesis_neuro.envs import ImitationConfig
    from kinesis_neuro.envs.vector import MyoLegsVectorEnv

    policy = policies.load(policy_dir)
    env = MyoLegsVectorEnv(slots, ImitationConfig(**{**policy.env_config, **dict(overrides)}), autoreset=False)
    joints = mdl.joint_table(env.model).loc[list(mdl.LEG_JOINTS)].qpos_index.to_numpy()
    return policy, env, joints


def _episodes(policy_dir: str, condition: Condition, episodes: int, seed: int,
              overrides: tuple) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    """Per-episode metrics (without the joint RMSE), mean activations (episode x muscle) and joint angles.

    Up to :data:`BATCH` episodes run at once (:func:`kinesis_neuro.rollout.run_episodes`), each exactly as
    alone in a :class:`~kinesis_neuro.envs.imitation.MyoLegsImitationEnv`."""
    from kinesis_neuro.rollout import run_episodes

    policy, env, joints = _session(policy_dir, overrides, min(episodes, BATCH))
    act, force, q = ([[] for _ in range(episodes)] for _ in range(3))

    def on_step(k, view):
        d = view.data
        act[k].append(d.act.copy())
        force[k].append(np.maximum(-d.actuator_force, 0.0).sum())
        q[k].append(d.qpos[joints].copy())

    env.set_ablation(condition.ablate)
    env.set_weakness(condition.weaken)
    try:
        results = run_episodes(policy, env.config, [seed + k for k in range(episodes)], batch=env.num_envs,
                               env=env, on_step=on_step)
    finally:
        env.set_ablation(())
        env.set_weakness({})
    metrics = {k: [] for k in METRICS if k != "joint_rmse_rad"}
    for result, a, f in zip(results, act, force):
        a = np.asarray(a)
        metrics["fell"].append(float(result["terminated"]))
        metrics["duration_s"].append(len(result["tracking_error"]) / env.config.control_rate)
        metrics["tracking_error_m"].append(float(np.mean(result["tracking_error"])))
        metrics["effort_act2"].append(float(np.mean(np.sum(a**2, axis=1))))
        metrics["muscle_force_n"].append(float(np.mean(f)))
    return metrics, np.asarray([np.mean(a, axis=0) for a in act]), [np.asarray(angles) for angles in q]


@functools.lru_cache(maxsize=4)
def _intact_angles(policy_dir: str, episodes: int, seed: int, overrides: tuple) -> list[np.ndarray]:
    return _episodes(policy_dir, Condition(INTACT), episodes, seed, overrides)[2]


def run_condition(policy_dir, condition: Condition, episodes: int = 3, seed: int = 0,
                  episode_seconds: float | None = None, env: dict | None = None) -> dict:
    """Roll out the policy (deterministic actions) for ``episodes`` episodes seeded ``seed + k`` under
    ``condition``. Returns ``{metric: list per episode}`` for every metric in :data:`METRICS` plus
    ``"activation"`` (episode x muscle mean activation) and ``"muscles"``. The joint RMSE compares with the
    intact run of the same seed over the shorter of the two episodes. ``env``: further environment
    overrides (e.g. ``termination_distance``). Deterministic for a seed."""
    policy_dir = str(Path(policy_dir).resolve())
    overrides = _overrides(episode_seconds, env)
    metrics, activation, angles = _episodes(policy_dir, condition, episodes, seed, overrides)
    intact = angles if condition.name == INTACT else _intact_angles(policy_dir, episodes, seed, overrides)
    metrics["joint_rmse_rad"] = [float(np.sqrt(np.mean((a[:n] - b[:n]) ** 2)))
                                 for a, b in zip(angles, intact) for n in [min(len(a), len(b))]]
    muscles = _session(policy_dir, overrides, min(episodes, BATCH))[1].muscles
    return {**{k: metrics[k] for k in METRICS}, "activation": activation, "muscles": list(muscles)}


# -- partial results ---------------------------------------------------------------------------------------
def _filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", name) + f"-{hashlib.sha1(name.encode()).hexdigest()[:8]}.json"


def _save_partial(path: Path, key: dict, condition: Condition, result: dict) -> None:
    """Write atomically: a reader sees the whole file or none."""
    payload = {"key": key, "condition": {"name": condition.name, "ablate": list(condition.ablate),
                                         "weaken": condition.weaken},
               "result": {**result, "activation": np.asarray(result["activation"]).tolist()}}
    storage.write_text(json.dumps(payload), path)


def _load_partial(path: Path, key: dict, condition: Condition) -> dict | None:
    """A saved result for this condition and these sweep settings, else None."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = payload.get("key") == key and payload["condition"] == {
        "name": condition.name, "ablate": list(condition.ablate), "weaken": condition.weaken}
    return {**payload["result"], "activation": np.asarray(payload["result"]["activation"])} if same else None


# -- sweep -------------------------------------------------------------------------------------------------
def sweep(policy_dir, conditions: list[Condition], episodes: int = 3, seed: int = 0, *,
          episode_seconds: float | None = None, env: dict | None = None, scheduler: str | None = None,
          n_workers: int | None = None, out=None, progress: bool = True) -> xr.Dataset:
    """Run ``conditions`` (the intact control is added if missing) on dask.distributed: a new LocalCluster of
    ``n_workers`` single-threaded processes (default ``os.cpu_count()``), or the scheduler at ``scheduler``.
    With ``out``, each finished condition is saved under ``out/partial/`` and reused by a later call with the
    same settings; at the end ``ablation.nc``, ``summary.csv`` and figures are written to ``out``.
    ``episode_seconds`` caps the episodes; ``env`` holds further environment overrides (e.g.
    ``{"termination_distance": math.inf}`` for episodes of fixed length).

    Returns a Dataset with ``metrics`` (condition x episode x metric), ``activation`` (condition x episode x
    muscle), ``compensation`` (condition x muscle: mean activation minus the intact one) and ``computed``
    (condition: True where run in this call, False where loaded from a partial file)."""
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    require_positive(episodes=episodes, episode_seconds=episode_seconds)
    policy_dir = str(Path(policy_dir).resolve())
    conditions = list(conditions)
    if INTACT not in [c.name for c in conditions]:
        conditions.insert(0, Condition(INTACT))
    names = [c.name for c in conditions]
    if len(set(names)) != len(names):
        raise KinesisNeuroError("condition names must be unique")
    _check_names(conditions)
    key = {"policy": policy_dir, "episodes": episodes, "seed": seed, "episode_seconds": episode_seconds,
           "env": json.dumps(env or {}, sort_keys=True)}
    partial = Path(out) / "partial" if out is not None else None
    results = {}
    if partial is not None:
        for c in conditions:
            loaded = _load_partial(partial / _filename(c.name), key, c)
            if loaded is not None:
                results[c.name] = loaded
    todo = [c for c in conditions if c.name not in results]
    if todo:
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=n_workers or os.cpu_count(), threads_per_worker=1, processes=True,
                                   dashboard_address=":0")
        client = Client(cluster if cluster is not None else scheduler)
        try:
            futures = {client.submit(run_condition, policy_dir, c, episodes, seed, episode_seconds, env,
                                     pure=False): c for c in todo}
            with tqdm(total=len(todo), desc="conditions", disable=not progress) as bar:
                for future in as_completed(futures):
                    c = futures[future]
                    results[c.name] = future.result()
                    if partial is not None:
                        _save_partial(partial / _filename(c.name), key, c, results[c.name])
                    bar.update()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    ds = _dataset(conditions, results, {c.name for c in todo}, key)
    if out is not None:
        write_outputs(ds, out)
    return ds


def _check_names(conditions: list[Condition]) -> None:
    """Fail before starting any worker if a condition names an unknown muscle or group."""
    from kinesis_neuro import model as mdl

    model = mdl.load_model()
    known = set(mdl.muscle_names(model)) | set(mdl.muscle_groups(model))
    unknown = sorted({n for c in conditions for n in (*c.ablate, *c.weaken)} - known)
    if unknown:
        raise KinesisNeuroError(f"unknown muscles or groups {unknown}; known: {sorted(known)}")


def _dataset(conditions: list[Condition], results: dict, computed: set, key: dict) -> xr.Dataset:
    names = [c.name for c in conditions]
    muscles = results[INTACT]["muscles"]
    values = np.array([[results[n][m] for m in METRICS] for n in names]).transpose(0, 2, 1)
    activation = np.stack([results[n]["activation"] for n in names])
    ds = xr.Dataset(
        {"metrics": (("condition", "episode", "metric"), values, {"long_name": "per-episode metrics"}),
         "activation": (("condition", "episode", "muscle"), activation,
                        {"units": "1", "long_name": "mean activation over the episode"}),
         "computed": (("condition",), np.array([n in computed for n in names]))},
        coords={"condition": names, "episode": np.arange(values.shape[1]), "metric": list(METRICS),
                "muscle": muscles,
                "metric_units": ("metric", [u for u, _ in METRICS.values()]),
                "ablated": ("condition", [",".join(c.ablate) for c in conditions]),
                "weakened": ("condition", [",".join(f"{k}={v:g}" for k, v in c.weaken.items()) for c in conditions])},
        attrs={k: ("" if v is None else v) for k, v in key.items()})
    mean_activation = ds.activation.mean("episode")
    ds["compensation"] = (mean_activation - mean_activation.sel(condition=INTACT)).assign_attrs(
        units="1", long_name="mean activation change vs intact")
    return ds


# -- statistics and outputs ------------------------------------------------------------------------------
def summary(ds: xr.Dataset) -> pd.DataFrame:
    """Per condition and metric: mean, SD, difference from intact with a 95 % Welch t CI, Cohen's d (pooled
    SD), Welch t-test p-value, and p-values Holm-corrected across the non-intact conditions (per metric)."""
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    rows = []
    for metric in ds.metric.values:
        base = ds.metrics.sel(condition=INTACT, metric=metric).values
        for name in ds.condition.values:
            x = ds.metrics.sel(condition=name, metric=metric).values
            diff = float(x.mean() - base.mean())
            pooled = np.sqrt((x.var(ddof=1) + base.var(ddof=1)) / 2) if len(x) > 1 else np.nan
            p = low = high = np.nan
            if name != INTACT and len(x) > 1 and (x.var() > 0 or base.var() > 0):
                test = stats.ttest_ind(x, base, equal_var=False)
                ci = test.confidence_interval(0.95)
                p, low, high = float(test.pvalue), float(ci.low), float(ci.high)
            rows.append({"condition": name, "metric": metric, "units": str(ds.metric_units.sel(metric=metric).item()),
                         "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else np.nan,
                         "intact_mean": float(base.mean()), "difference": diff, "ci_low": low, "ci_high": high,
                         "cohen_d": diff / pooled if pooled > 0 else np.nan, "p": p})
    table = pd.DataFrame(rows)
    table["p_holm"] = np.nan
    for _, rows_ in table.groupby("metric"):
        ok = rows_.p.notna()
        if ok.any():
            table.loc[rows_.index[ok], "p_holm"] = multipletests(rows_.p[ok], method="holm")[1]
    return table


def write_outputs(ds: xr.Dataset, out) -> None:
    """``ablation.nc``, ``summary.csv``, ``metric_per_condition.png`` and ``compensation_heatmap.png``."""
    with storage.output_folder(out, last=("summary.csv",)) as staging:
        storage.write_netcdf(ds, staging / "ablation.nc")
        storage.write_csv(summary(ds), staging / "summary.csv", index=False)
        write_figures(ds, staging)


def write_figures(ds: xr.Dataset, out) -> None:
    """``metric_per_condition.png`` (mean ± 1.96 SEM per condition) and ``compensation_heatmap.png`` in ``out``."""
    out = Path(out)
    storage.savefig(_plot_metrics(ds, summary(ds)), out / "metric_per_condition.png", dpi=100)
    storage.savefig(_plot_compensation(ds), out / "compensation_heatmap.png", dpi=100)


def _plot_metrics(ds: xr.Dataset, table: pd.DataFrame):
    from matplotlib.figure import Figure

    metrics = list(ds.metric.values)
    n = ds.sizes["condition"]
    fig = Figure(figsize=(max(6.0, 0.18 * n + 2), 2.2 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        rows = table[table.metric == metric].set_index("condition").loc[ds.condition.values]
        sem = rows.sd / np.sqrt(ds.sizes["episode"])
        ax.errorbar(np.arange(n), rows["mean"], yerr=1.96 * sem.fillna(0), fmt="o", ms=3)
        ax.axhline(rows.loc[INTACT, "mean"], color="grey", lw=0.8, ls="--")
        ax.set_ylabel(f"{metric}\n[{rows.units.iloc[0]}]", fontsize=8)
    axes[-1].set_xticks(np.arange(n), ds.condition.values, rotation=90, fontsize=6)
    fig.suptitle("mean ± 1.96 SEM over episodes (dashed: intact)", fontsize=9)
    return fig


def _plot_compensation(ds: xr.Dataset):
    from matplotlib.figure import Figure

    comp = ds.compensation.values
    lim = float(np.abs(comp).max()) or 1.0
    fig = Figure(figsize=(max(8.0, 0.12 * ds.sizes["muscle"] + 2), max(3.0, 0.14 * ds.sizes["condition"] + 1.5)),
                 layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(comp, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(ds.sizes["muscle"]), ds.muscle.values, rotation=90, fontsize=5)
    ax.set_yticks(np.arange(ds.sizes["condition"]), ds.condition.values, fontsize=6)
    ax.set_xlabel("muscle")
    ax.set_ylabel("condition")
    fig.colorbar(im, ax=ax, label="mean activation change vs intact")
    return fig
