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
    fig, axes = _grid(len(channels), 2.6, 2.0)
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
    fig, axes = _grid(len(channels))
    for ax, ch in zip(axes.flat, channels):
        for var, label, color in (("human_cycles", "human", "k"), ("sim_cycles", "simulation", "C1")):
            data = ds[var].sel(channel=ch)
            _peak_scaled(ax, phase, data, [d for d in data.dims if d != "phase"][0], color, label)
        ax.set_title(f"{ch}  r={float(ds.r.sel(channel=ch)):.2f}", fontsize=9)
    _label_grid(axes, len(channels), "mean ± SD / peak")
    fig.suptitle(f"{ds.attrs.get('controller', 'simulation')} vs {Path(ds.attrs.get('human_source', '')).name}"
                 + (f": {ds.attrs['comparison']}" if ds.attrs.get("comparison") else ""), fontsize=10)
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

    fig, axes = _grid(len(channels))
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


def _grid(n: int, width: float = 2.7, height: float = 2.1, sharex: bool = True):
    import matplotlib.pyplot as plt

    ncol = min(5, n)
    nrow = int(np.ceil(n / ncol))
    return plt.subplots(nrow, ncol, figsize=(width * ncol, height * nrow), sharex=sharex, squeeze=False)


def _title(ds: xr.Dataset) -> str:
    """``controller vs EMG source: what was compared`` (the comparison label, e.g. a time-series window)."""
    return (f"{ds.attrs.get('controller', 'simulation')} vs {Path(str(ds.attrs.get('human_source', ''))).name}: "
            f"{ds.attrs.get('comparison', '')}")


def plot_timeseries_comparison(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Figures of a time-series comparison (:func:`kinesis_neuro.compare.timeseries_comparison`, data without a
    complete gait cycle), PNG + SVG: the simulated activation and the EMG over the window, each scaled to its
    peak (``timeseries_overlay``), and r against the lag (``lag_curves``). Titles name the window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channels = [str(c) for c in ds.channel.values]
    t = ds.time.values
    paths = []
    fig, axes = _grid(len(channels))
    for ax, ch in zip(axes.flat, channels):
        for var, label, color in (("human", "EMG", "k"), ("sim", "simulation", "C1")):
            y = ds[var].sel(channel=ch).values
            ax.plot(t, y / max(float(np.nanmax(np.abs(y))), 1e-12), color=color, lw=1.2, label=label)
        lag = float(ds.best_lag.sel(channel=ch)) * 1000
        ax.set_title(f"{ch}  r={float(ds.r.sel(channel=ch)):.2f}\n(lag {lag:+.0f} ms: "
                     f"{float(ds.r_at_best_lag.sel(channel=ch)):.2f})", fontsize=8)
    for ax in axes.flat[len(channels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("signal / peak")
    axes.flat[0].legend(fontsize=7, frameon=False)
    fig.suptitle(_title(ds), fontsize=10)
    fig.tight_layout()
    paths += _save(fig, out_dir, "timeseries_overlay")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for ch in channels:
        ax.plot(ds.lag.values * 1000, ds.lag_r.sel(channel=ch).values, lw=1, label=ch)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("lag of the simulation (ms; positive = simulation late, EMG leads)")
    ax.set_ylabel("Pearson r")
    ax.legend(fontsize=6, ncol=2, frameon=False)
    ax.set_title(f"timeshift check: {ds.attrs.get('comparison', '')}", fontsize=9)
    fig.tight_layout()
    paths += _save(fig, out_dir, "lag_curves")
    plt.close(fig)
    return paths


def plot_normative_comparison(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Figure of a normative comparison (:func:`kinesis_neuro.cycle_tables.normative_comparison`), PNG + SVG: per
    muscle the normative mean ± 1 SD band and the simulated mean cycle, each scaled to its peak, with the phases
    where the simulation leaves the band marked (``normative_overlay``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channels = [str(c) for c in ds.channel.values]
    phase = ds.phase.values
    fig, axes = _grid(len(channels))
    for ax, ch in zip(axes.flat, channels):
        m, s = ds.normative_mean_scaled.sel(channel=ch).values, ds.normative_sd_scaled.sel(channel=ch).values
        if np.isfinite(s).any():
            ax.fill_between(phase, m - s, m + s, color="0.6", alpha=0.35, lw=0, label="normative ± 1 SD")
        ax.plot(phase, m, color="k", lw=1.5, label="normative mean")
        sim = ds.sim_scaled.sel(channel=ch).values
        ax.plot(phase, sim, color="C1", lw=1.5, label="simulation")
        outside = ds.within_sd.sel(channel=ch).values == 0
        ax.plot(phase[outside], sim[outside], "x", color="C3", ms=3, label="outside ± 1 SD")
        share = float(ds.share_within_sd.sel(channel=ch))
        ax.set_title(f"{ch}\nr={float(ds.r.sel(channel=ch)):.2f}, within ±1 SD {100 * share:.0f} %", fontsize=8)
    _label_grid(axes, len(channels), "mean / peak")
    fig.suptitle(_title(ds), fontsize=10)
    fig.tight_layout()
    paths = _save(fig, out_dir, "normative_overlay")
    plt.close(fig)
    return paths


def plot_benchmark(panels: dict[str, dict], out_dir: str | Path, name: str = "benchmark") -> list[Path]:
    """Every controller against every EMG dataset in one figure (PNG + SVG), KINESIS's figure design per dataset
    panel: for each muscle, grey boxes of human-to-human r where the dataset has several people, and each
    controller's r beside them (a box over people, or one point).

    ``panels``: dataset label -> ``{"title": text, "channels": [...], "human": {channel: r values} or None,
    "controllers": {label: {channel: r value or values}}}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = list(dict.fromkeys(c for p in panels.values() for c in p["controllers"]))
    colors = {label: f"C{k + 1}" for k, label in enumerate(labels)}
    n = max(len(panels), 1)
    width = max([len(p["channels"]) for p in panels.values()] + [4])
    fig, axes = plt.subplots(n, 1, figsize=(min(16.0, max(8.0, 0.9 * width)), 2.9 * n), squeeze=False)
    for ax, (dataset, panel) in zip(axes[:, 0], panels.items()):
        channels = panel["channels"]
        groups = (["human vs human"] if panel.get("human") else []) + [c for c in labels if c in panel["controllers"]]
        step = 0.8 / max(len(groups), 1)
        for k, group in enumerate(groups):
            offset = -0.4 + step * (k + 0.5)
            color = "0.7" if group == "human vs human" else colors[group]
            values = panel["human"] if group == "human vs human" else panel["controllers"].get(group, {})
            for x, ch in enumerate(channels):
                v = np.atleast_1d(np.asarray(values.get(ch, []), dtype=float))
                v = v[np.isfinite(v)]
                if v.size > 1:
                    ax.boxplot(v, positions=[x + offset], widths=step * 0.8, patch_artist=True, showfliers=False,
                               boxprops={"facecolor": color, "edgecolor": "0.3", "lw": 0.6},
                               medianprops={"color": "k", "lw": 0.8}, whiskerprops={"lw": 0.6},
                               capprops={"lw": 0.6})
                elif v.size == 1:
                    ax.plot([x + offset], v, "o", color=color, ms=4, mec="0.2", mew=0.4)
            ax.plot([], [], "s" if group == "human vs human" else "o", color=color, label=group)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xticks(range(len(channels)), channels, rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(channels) - 0.4)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("Pearson r", fontsize=8)
        ax.set_title(panel["title"], fontsize=9)
        ax.legend(fontsize=6, frameon=False, ncol=len(groups), loc="lower left")
    fig.suptitle("controllers vs human EMG, every dataset (boxes: people or pairs of people; points: one r)",
                 fontsize=10)
    fig.tight_layout()
    paths = _save(fig, out_dir, name)
    plt.close(fig)
    return paths
