"""Figures: small multiples of gait-cycle curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
