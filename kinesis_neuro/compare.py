"""Comparison of simulated muscle activations with human EMG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import activation as act_dynamics
from kinesis_neuro import mapping
from kinesis_neuro.errors import ProcessingError


def emg_through_activation_dynamics(signal: xr.DataArray, tau_activation: float = 0.01,
                                    tau_deactivation: float = 0.04) -> xr.DataArray:
    """Treat a normalised EMG envelope (0-1) as excitation and return the activation MuJoCo's muscle
    dynamics (time constants in s) would make of it: the lag between EMG and force-producing state."""
    excitation = signal.transpose("time", "channel").clip(0.0, 1.0)
    values = act_dynamics.activation_from_excitation(excitation.values, signal.time.values, tau_activation,
                                                     tau_deactivation, a0=excitation.values[0])
    out = excitation.copy(data=values)
    out.attrs = {**signal.attrs, "activation_dynamics": f"tau_act={tau_activation:g} s, tau_deact={tau_deactivation:g} s"}
    return out


def timeseries_correlation(activation: xr.DataArray, signal: xr.DataArray, *, side: str = "right",
                           mapping_table=None) -> pd.DataFrame:
    """Pearson r per EMG channel between simulated activations (``time, muscle``) mapped onto the
    channels and the EMG, over the time window both cover (EMG interpolated to the simulation's times)."""
    t0 = max(float(activation.time[0]), float(signal.time[0]))
    t1 = min(float(activation.time[-1]), float(signal.time[-1]))
    if t1 <= t0:
        raise ProcessingError(f"no overlap between simulation ({float(activation.time[0]):g}-"
                              f"{float(activation.time[-1]):g} s) and EMG ({float(signal.time[0]):g}-"
                              f"{float(signal.time[-1]):g} s)")
    sim = activation.sel(time=slice(t0, t1))
    channels = [str(c) for c in signal.channel.values]
    sim = mapping.map_to_channels(sim, channels, side=side, mapping=mapping_table)
    human = signal.interp(time=sim.time.values)
    rows = []
    for ch in channels:
        a, b = sim.sel(channel=ch).values, human.sel(channel=ch).values
        rows.append({"channel": ch, "muscles": str(sim.muscles.sel(channel=ch).values),
                     "r": float(np.corrcoef(a, b)[0, 1]), "samples": int(a.size)})
    table = pd.DataFrame(rows).set_index("channel")
    table.attrs.update(window_s=(t0, t1), side=side)
    return table
