"""Figures: small multiples of gait-cycle curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from kinesis_neuro.storage import savefig


def plot_cycles(cycles: xr.DataArray, path: str | Path, title: str | None = None) -> Path:
    """Mean +- SD over cycles per channel against gait phase (%), one panel per channel; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels = [str(c) for c in cycles.channel.values]
    ncol = min(5, len(channels))
    nrow = int(np.ceil(len(channels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.0 * nrow), sharex=True, squeeze=False)
    mean, sd = cycles.mean("cycle"), cycles.std("cycle")
    phase = cycles.phase.values
    for ax, ch in zip(axes.flat, channels):
        m, s = mean.sel(channel=ch).values, sd.sel(channel=ch).values
        ax.fill_between(phase, m - s, m + s, alpha=0.3, lw=0)
        ax.plot(phase, m, lw=1.5)
        split = cycles.attrs.get("phase_definition", "").startswith("stance")
        toe_off = 50.0 if split else float(cycles.stance_percent.mean()) if "stance_percent" in cycles.coords else None
        if toe_off is not None:
            ax.axvline(toe_off, color="0.5", ls=":", lw=1)  # toe-off: stance | swing
        ax.set_title(ch, fontsize=9)
    for ax in axes.flat[len(channels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("gait cycle (%)")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"EMG ({cycles.attrs.get('units', '?')})")
    name = cycles.attrs.get("dataset") or Path(str(cycles.attrs.get("source", ""))).name
    fig.suptitle(title or f"{name}: mean ± SD of {cycles.sizes['cycle']} cycle(s) (dotted: toe-off)",
                 fontsize=10)
    fig.tight_layout()
    savefig(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    """``name``.png and ``name``.svg; the SVG carries no date and fixed element ids, so that a rerun on
    the same data writes the same files."""
    import matplotlib

    paths = []
    for suffix in (".png", ".svg"):
        path = Path(out_dir) / f"{name}{suffix}"
        with matplotlib.rc_context({"svg.hashsalt": name}):
            savefig(fig, path, dpi=120, metadata={"Date": None} if suffix == ".svg" else None)
        paths.append(path)
    return paths


def _peak_scaled(ax, phase, curves: xr.DataArray, dim: str, color, label: str, band: bool = True) -> None:
    """Mean over ``dim`` of ``curves`` (with a ± SD band), scaled to the mean's peak."""
    m, s = curves.mean(dim).values, curves.std(dim).values
    peak = max(float(np.nanmax(m)), 1e-12)
    if band:
        ax.fill_between(phase, (m - s) / peak, (m + s) / peak, color=color, alpha=0.2, lw=0)
    ax.plot(phase, m / peak, color=color, lw=1.5 if band else 1.2, label=label)


def _label_grid(axes, used: int, ylabel: str) -> None:
    """Blank the unused panels of a grid; phase labels below, ``ylabel`` left, legend in the first."""
    for ax in axes.flat[used:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("gait cycle (%)")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    axes.flat[0].legend(fontsize=7, frameon=False)


def plot_comparison(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Figures of a comparison Dataset (PNG + SVG): cycle overlays, r boxplots, per-subject summary,
    lag curves and matched synergy weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channels = [str(c) for c in ds.channel.values]
    phase = ds.phase.values
    paths = []
    ncol = min(5, len(channels))
    nrow = int(np.ceil(len(channels) / ncol))

    fig, axes = plt.subplots(nrow, ncol, figsize=(2.7 * ncol, 2.1 * nrow), sharex=True, squeeze=False)
    for ax, ch in zip(axes.flat, channels):
        for var, label, color in (("human_cycles", "human", "k"), ("sim_cycles", "simulation", "C1")):
            data = ds[var].sel(channel=ch)
            _peak_scaled(ax, phase, data, [d for d in data.dims if d != "phase"][0], color, label)
        ax.set_title(f"{ch}  r={float(ds.r.sel(channel=ch)):.2f}", fontsize=9)
    _label_grid(axes, len(channels), "mean ± SD / peak")
    fig.suptitle(f"{ds.attrs.get('controller', 'simulation')} vs {Path(ds.attrs.get('human_source', '')).name}",
                 fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "cycles_overlay")
    plt.close(fig)

    rows = [pd.DataFrame({"channel": ch, "r": ds.r_subject_channel.sel(channel=ch).values.ravel(),
                          "comparison": "human vs simulation"}) for ch in channels]
    if "human_r_pairs" in ds:
        rows += [pd.DataFrame({"channel": ch, "r": ds.human_r_pairs.sel(channel=ch).values.ravel(),
                               "comparison": "human vs human"}) for ch in channels]
    table = pd.concat(rows, ignore_index=True)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(channels)), 3.6))
    sns.boxplot(data=table, x="channel", y="r", hue="comparison", ax=ax, fliersize=2)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("Pearson r of mean cycles")
    ax.set_title("KINESIS-style comparison: human-human baseline vs human-simulation", fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "r_boxplot")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * ds.sizes["subject"] + 2), 3.2))
    r_subject = ds.r_subject.to_series()
    ax.plot(range(len(r_subject)), r_subject.values, "o", color="C1")
    ax.set_xticks(range(len(r_subject)), [str(s) for s in r_subject.index], rotation=60, fontsize=7)
    ax.set_ylabel("mean r over muscles (Fisher z)")
    ax.set_title("per-subject summary: simulation vs each subject", fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "per_subject")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for ch in channels:
        ax.plot(ds.lag.values, ds.lag_r.sel(channel=ch).values, lw=1, label=ch)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("shift of the simulation (% of cycle; positive = simulation late)")
    ax.set_ylabel("Pearson r")
    ax.legend(fontsize=6, ncol=2, frameon=False)
    ax.set_title("timeshift check", fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "lag_curves")
    plt.close(fig)

    if "matched_cosine" in ds:
        n = ds.sizes["matched"]
        fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.6), squeeze=False, gridspec_kw={"height_ratios": [3, 2]})
        y = np.arange(len(channels))
        for k in range(n):
            human_syn, sim_syn = ds.matched_human.values[k], ds.matched_sim.values[k]
            ax = axes[0, k]
            ax.barh(y - 0.2, ds.human_synergy_weights.sel(human_synergy=human_syn).values, height=0.4, color="k",
                    label="human")
            ax.barh(y + 0.2, ds.sim_synergy_weights.sel(sim_synergy=sim_syn).values, height=0.4, color="C1",
                    label="simulation")
            ax.set_yticks(y, channels if k == 0 else [], fontsize=7)
            ax.set_title(f"cos = {float(ds.matched_cosine[k]):.2f}", fontsize=9)
            ax = axes[1, k]
            for var, syn, color in (("human_synergy_patterns", {"human_synergy": human_syn}, "k"),
                                    ("sim_synergy_patterns", {"sim_synergy": sim_syn}, "C1")):
                pattern = ds[var].sel(syn)
                ax.plot(pattern.phase.values, pattern.values / max(float(pattern.max()), 1e-12), color=color, lw=1.2)
            ax.set_xlabel("gait cycle (%)", fontsize=8)
        axes[0, 0].legend(fontsize=7, frameon=False)
        axes[1, 0].set_ylabel("activation pattern / peak", fontsize=8)
        fig.suptitle(f"matched synergies: weights (top) and activation patterns (bottom); human rank "
                     f"{ds.attrs['human_rank']}, simulation rank {ds.attrs['sim_rank']}", fontsize=10)
        fig.tight_layout()
        paths += _save(fig, out_dir, "synergies")
        plt.close(fig)
    return paths


def plot_controllers(comparisons: dict[str, xr.Dataset], out_dir: str | Path) -> list[Path]:
    """Several controllers against the same human EMG (PNG + SVG), KINESIS's figure design: per-muscle
    boxplots of human-human r next to each controller's r against every person (``emg_correlation``),
    per-person mean r (``emg_correlation_per_subject``), mean cycles over the human mean ± SD
    (``emg_correlation_cycles``) and the r-vs-timeshift curve (``emg_correlation_lag``).
    ``comparisons`` maps a label to a :func:`kinesis_neuro.compare.compare` Dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from kinesis_neuro.metrics import fisher_mean

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = next(iter(comparisons.values()))
    channels = [str(c) for c in first.channel.values]
    colors = {label: f"C{k + 1}" for k, label in enumerate(comparisons)}
    paths = []

    rows = []
    if "human_r_pairs" in first:
        rows += [pd.DataFrame({"channel": ch, "r": first.human_r_pairs.sel(channel=ch).values.ravel(),
                               "comparison": "human vs human"}) for ch in channels]
    for label, ds in comparisons.items():
        rows += [pd.DataFrame({"channel": ch, "r": ds.r_subject_channel.sel(channel=ch).values.ravel(),
                               "comparison": f"human vs {label}"}) for ch in channels]
    table = pd.concat(rows, ignore_index=True)
    palette = {"human vs human": "0.7", **{f"human vs {label}": c for label, c in colors.items()}}
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(channels)), 3.8))
    sns.boxplot(data=table, x="channel", y="r", hue="comparison", palette=palette, ax=ax, fliersize=2)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("Pearson r of mean cycles")
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("muscle activity vs human EMG, per muscle (boxes: people or pairs of people)", fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "emg_correlation")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(4.5, 0.4 * first.sizes["subject"] + 2), 3.2))
    for label, ds in comparisons.items():
        r_subject = ds.r_subject.to_series()
        ax.plot(range(len(r_subject)), r_subject.values, "o", color=colors[label], label=label)
    ax.set_xticks(range(first.sizes["subject"]), [str(s) for s in first.subject.values], rotation=60, fontsize=7)
    ax.set_ylabel("mean r over muscles (Fisher z)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("per-person summary", fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "emg_correlation_per_subject")
    plt.close(fig)

    ncol = min(5, len(channels))
    nrow = int(np.ceil(len(channels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.7 * ncol, 2.1 * nrow), sharex=True, squeeze=False)
    phase = first.phase.values
    for ax, ch in zip(axes.flat, channels):
        _peak_scaled(ax, phase, first.human_cycles.sel(channel=ch), "human_cycle", "k", "human")
        for label, ds in comparisons.items():
            _peak_scaled(ax, phase, ds.sim_cycles.sel(channel=ch), "sim_cycle", colors[label], label, band=False)
        ax.set_title(ch, fontsize=9)
    _label_grid(axes, len(channels), "mean / peak")
    fig.suptitle("mean cycles, each scaled to its peak (human: mean ± SD)", fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "emg_correlation_cycles")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for label, ds in comparisons.items():
        ax.plot(ds.lag.values, fisher_mean(ds.lag_r, "channel").values, color=colors[label], label=label)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("shift of the simulation (% of cycle; positive = simulation late)")
    ax.set_ylabel("mean r over muscles (Fisher z)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("timeshift: correlation of shifted simulated cycles with the human mean", fontsize=9)
    fig.tight_layout()
    paths += _save(fig, out_dir, "emg_correlation_lag")
    plt.close(fig)
    return paths
