"""Comparison of simulated muscle activations with human EMG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from kinesis_neuro import activation as act_dynamics
from kinesis_neuro import emg, gait, mapping
from kinesis_neuro.errors import ProcessingError, require_positive
from kinesis_neuro.record import Recording

UNDEFINED_R_NOTE = ("no r (the simulated mean cycle has no variance: the controller never activates the muscle); "
                    "medians are over the other muscles")


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


# -- gait-cycle comparison (kinesis-neuro compare) ----------------------------------------------

STRIDE_TOLERANCE = 0.25  # a rollout's gait cycle may differ this much (fraction) from the imitated stride


def _phase_grid(human: xr.DataArray) -> dict:
    """``n_points`` and ``split`` that cut simulated cycles on the phase grid of ``human`` (a stance/swing
    grid holds its stance points below 50 %)."""
    n = human.sizes["phase"]
    if not str(human.attrs.get("phase_definition", "")).startswith("stance"):
        return {"n_points": n, "split": None}
    stance = int((human.phase.values < 50.0).sum())
    return {"n_points": n, "split": (stance, n - stance)}


def simulated_cycles(recording: Recording, channels, *, side: str = "right", n_points: int = 101,
                     split=None, mapping_table=None) -> xr.DataArray:
    """Simulated activations mapped onto EMG ``channels`` and cut into cycles at the recording's
    own heel strikes (from simulated foot contacts or the GRF); cycles spanning two episodes are dropped, and
    so are cycles of a rollout that last more than ``STRIDE_TOLERANCE`` off the imitated stride."""
    side = gait.check_side(side)
    events = recording.events()
    strikes = events[(events.side == side) & (events.event == "heel_strike")]
    if len(strikes) < 2:
        raise ProcessingError(f"{recording.source or 'recording'}: {len(strikes)} {side} heel strike(s) among its "
                              "gait events; a comparison needs at least one complete simulated gait cycle")
    act = mapping.map_to_channels(recording.muscle_activation(side), list(channels), side=side,
                                  mapping=mapping_table)
    cycles = gait.segment_cycles(act.transpose("time", "channel"), events, side=side, n_points=n_points,
                                 split=split)
    cycles = recording.within_one_episode(cycles)
    stride = recording.data.attrs.get("reference_stride_s")
    if stride is not None:  # a rollout: a stride far from the imitated one is a stumble, not a gait cycle
        duration = cycles.cycle_end.values - cycles.cycle_start.values
        keep = np.abs(duration - stride) <= STRIDE_TOLERANCE * stride
        cycles = cycles.isel(cycle=np.flatnonzero(keep))
        cycles.attrs["dropped_cycles"] = int((~keep).sum())
    if cycles.sizes["cycle"] == 0:
        raise ProcessingError(f"{recording.source or 'recording'}: no complete {side} gait cycle within one episode"
                              + (f" lasting {stride:.2f} s ± {STRIDE_TOLERANCE:.0%} like the imitated stride"
                                 if stride is not None else ""))
    return cycles


def human_cycles(source, *, side: str = "right", n_points: int = 101, split=None, preset: str | None = None,
                 events=None, activation_dynamics: bool = False, data_dir=None) -> xr.DataArray:
    """Human EMG as gait cycles: ``(cycle, phase, channel)`` for one person, ``(subject, phase, channel)``
    for musclesyneRgies' SYNS (15 people, one processed cycle each).

    EMG time series are processed with ``preset`` (registered datasets: ``processed`` when their
    card lists processing already applied, ``musclesynergies`` for musclesyneRgies raw data;
    files: ``default``) and cut at the heel strikes of ``events`` (default: the dataset's GRF or
    cycle timings); ``activation_dynamics`` passes the envelope through the muscles' activation
    dynamics first (the lag between EMG and activation). Already time-normalised data (musclesyneRgies
    SYNS or FILT_EMG, recognised by the R object inside, whatever the file's name) need the
    stance/swing grid ``split=(100, 100)``; cycle tables on an even grid (Falisse et al.'s ``.mat``) are
    compared on their own grid (``n_points`` ignored), with only the cycles recorded in every channel.
    """
    from kinesis_neuro import datasets
    from kinesis_neuro.emg.presets import musclesynergies_cycles, process

    side = gait.check_side(side)
    text = str(source)
    name, _, filename = text.partition("/")
    card = datasets.get(name) if datasets.is_dataset_spec(text) else None
    entry = card.file(filename or None) if card else None
    signal = emg.read(source, data_dir=data_dir)
    if signal.attrs.get("side") in ("right", "left") and signal.attrs["side"] != side:
        raise ProcessingError(f"{text}: EMG of the {signal.attrs['side']} leg, but the comparison is for the "
                              f"{side} leg (--side)")
    if "time" not in signal.dims:  # (subject or cycle, phase, channel)
        stance_swing = str(signal.attrs.get("phase_definition", "")).startswith("stance")
        if stance_swing and tuple(split or ()) != (100, 100):
            raise ProcessingError(f"{text}: holds cycles already normalised to 100 stance + 100 swing points; "
                                  "compare on that grid (--phase-points 100,100)")
        if not stance_swing and split is not None:
            raise ProcessingError(f"{text}: holds cycles on an even grid of {signal.sizes['phase']} points from heel "
                                  "strike to heel strike; compare without a stance/swing split")
        cycles = signal
        if "valid" in cycles.coords:  # a cycle table with cycles missing per channel: never imputed
            from kinesis_neuro.io.matlab import valid_cycles

            cycles = valid_cycles(cycles).drop_vars("valid")
            cycles.attrs["cycles_used"] = f"{cycles.sizes['cycle']} cycles recorded in every channel"
    else:
        if preset is None:
            preset = ("musclesynergies" if entry is not None and name == "musclesynergies" else
                      "processed" if entry is not None and entry.meta.get("processing") else "default")
        if events is None:
            if card is None:
                raise ProcessingError(f"{text}: give the gait events (a GRF .mot, .c3d or musclesyneRgies .RData)")
            grf = card.card.get("grf")  # GRF heel strikes, else the file's own cycle timings (RData)
            events = f"{name}/{grf}" if grf else f"{name}/{entry.name}"
        table = events if isinstance(events, pd.DataFrame) else emg.read_events(events, data_dir=data_dir)
        processed = process(signal, preset)
        if activation_dynamics:
            processed = emg_through_activation_dynamics(processed)
        if preset == "musclesynergies" and split is not None:
            cycles = musclesynergies_cycles(processed, table, side=side, cycle_div=tuple(split))
        else:
            cycles = gait.segment_cycles(processed, table, side=side, n_points=n_points, split=split)
    if cycles.sizes.get("cycle", cycles.sizes.get("subject", 0)) < 1:
        raise ProcessingError(f"{text}: no complete gait cycle in the EMG")
    cycles.attrs.setdefault("source", text)
    return cycles


def _observations(human: xr.DataArray) -> str:
    return "subject" if "subject" in human.dims else "cycle"


def compare(recording: Recording, human: xr.DataArray, *, side: str = "right", mapping_table=None,
            n_boot: int = 1000, seed: int = 0, synergies: bool = True) -> xr.Dataset:
    """Every metric of simulated vs human cycles in one Dataset (aligned cycles included).

    ``human`` comes from :func:`human_cycles`; the simulated activations are cut on the same phase grid.
    """
    from kinesis_neuro import metrics

    require_positive(n_boot=n_boot)
    channels = [str(c) for c in human.channel.values]
    sim = simulated_cycles(recording, channels, side=side, **_phase_grid(human), mapping_table=mapping_table)
    sim = sim.assign_coords(phase=human.phase.values)
    obs = _observations(human)
    human = human.rename({obs: "subject"}) if obs == "subject" else human
    per_subject = metrics.simulation_vs_subjects(sim, human)
    ci = metrics.bootstrap_ci(sim, human, n_boot=n_boot, seed=seed)
    grand = human.mean("subject" if obs == "subject" else "cycle")
    lags = metrics.lag_scan(sim, grand)
    amplitude = metrics.amplitude_metrics(sim, grand)
    ds = xr.Dataset({
        "sim_cycles": sim.rename(cycle="sim_cycle").drop_vars(["cycle_start", "cycle_end", "toe_off",
                                                                "stance_percent"], errors="ignore"),
        "human_cycles": human.rename({("subject" if obs == "subject" else "cycle"): "human_cycle"}).drop_vars(
            ["cycle_start", "cycle_end", "toe_off", "stance_percent"], errors="ignore"),
        "r_subject_channel": per_subject.r, "r_subject": per_subject.r_subject,
        "r": ci.r, "r_ci_lower": ci.lower, "r_ci_upper": ci.upper,
        "lag_r": lags.r, "best_lag": lags.best_lag, "r_at_best_lag": lags.r_best,
        "rmse": amplitude.rmse, "cosine": amplitude.cosine, "onoff_agreement": amplitude.onoff,
    })
    if obs == "subject" and human.sizes["subject"] >= 2:
        baseline = metrics.human_baseline(human)
        ds["human_r_pairs"] = baseline.r_pairs.drop_vars(["subject_a", "subject_b"], errors="ignore")
        ds["human_r_loo"] = baseline.r_loo.rename(subject="loo_subject")
    n_human = human.sizes["subject" if obs == "subject" else "cycle"]
    if sim.sizes["cycle"] >= 2 and n_human >= 2:
        try:
            spm = metrics.spm_test(sim, human)
            ds["spm_t"] = spm.t.reset_coords(drop=True)
            ds.attrs["spm_clusters"] = spm.clusters.to_json(orient="records")
        except ProcessingError as err:
            ds.attrs["spm_note"] = str(err)
    else:
        ds.attrs["spm_note"] = (f"SPM needs >= 2 cycles on each side; simulated {sim.sizes['cycle']}, "
                                f"human {n_human}")
    if synergies:
        compared = _synergy_comparison(sim, human)
        ds = ds.merge(compared)
        ds.attrs.update(compared.attrs)
    ds.attrs.update(side=side, phase_definition=str(human.attrs.get("phase_definition", "")),
                    human_source=str(human.attrs.get("source", "")), recording=str(recording.source or ""),
                    controller=str(recording.data.attrs.get("controller", "")), n_boot=n_boot, seed=seed,
                    sim_cycles_n=int(sim.sizes["cycle"]), human_observations=f"{n_human} {obs}(s)")
    return ds


SYNERGY_MAX_CYCLES = 10  # synergies from at most 10 consecutive cycles per side (musclesyneRgies allows up to 30)


def _fit_synergies(human: xr.DataArray, sim: xr.DataArray, rank_rule: str = "r2_linearity"):
    """Synergy models of human and simulated cycles, their matching and the cross-fit of the simulation
    with the human weights."""
    from kinesis_neuro.synergies import SynergyModel, cross_fit, match

    # envelopes can undershoot zero slightly after low-pass filtering; NMF needs non-negative data
    human, sim = human.clip(min=0.0), sim.clip(min=0.0)
    human_model = SynergyModel(rank_rule=rank_rule).fit(human)
    sim_model = SynergyModel(rank_rule=rank_rule).fit(sim)
    pairs = match(human_model.weights_, sim_model.weights_)
    return human_model, sim_model, pairs, cross_fit(human_model.weights_, sim)


def _synergy_comparison(sim: xr.DataArray, human: xr.DataArray) -> xr.Dataset:
    sim = sim.isel(cycle=slice(0, SYNERGY_MAX_CYCLES))
    if "cycle" in human.dims:
        human = human.isel(cycle=slice(0, SYNERGY_MAX_CYCLES))
    human_model, sim_model, pairs, crossed = _fit_synergies(human, sim)
    human_fit, sim_fit = human_model.to_dataset(), sim_model.to_dataset()
    hw, sw = human_fit.weights, sim_fit.weights

    def mean_pattern(fit: xr.Dataset) -> xr.DataArray:  # activation pattern averaged over cycles/subjects
        return fit.patterns.mean([d for d in fit.patterns.dims if d not in ("phase", "synergy")])

    out = xr.Dataset({
        "human_synergy_weights": hw.rename(synergy="human_synergy"),
        "sim_synergy_weights": sw.rename(synergy="sim_synergy"),
        "human_synergy_patterns": mean_pattern(human_fit).rename(synergy="human_synergy"),
        "sim_synergy_patterns": mean_pattern(sim_fit).rename(synergy="sim_synergy"),
        "matched_cosine": ("matched", np.asarray(pairs.cosine, dtype=float)),
        "matched_human": ("matched", np.asarray(hw.synergy.values)[pairs.index_a]),
        "matched_sim": ("matched", np.asarray(sw.synergy.values)[pairs.index_b]),
    })
    out.attrs.update(sim_rank=int(sim_model.rank_), human_rank=int(human_model.rank_),
                     cross_fit_vaf=float(crossed.vaf))
    return out


def synergy_analysis(human: xr.DataArray, recording: Recording | None = None, *, side: str = "right",
                     rank_rule: str = "r2_linearity") -> tuple[dict, dict[str, xr.Dataset]]:
    """Synergies of human cycles and, with a ``recording``, of its simulated cycles on the same grid,
    matched to the human ones. Returns a summary dict and the fitted synergies as Datasets."""
    from kinesis_neuro.synergies import SynergyModel

    if recording is None:
        model = SynergyModel(rank_rule=rank_rule).fit(human.clip(min=0.0))
    else:
        sim = simulated_cycles(recording, [str(c) for c in human.channel.values], side=side, **_phase_grid(human))
        model, sim_model, pairs, crossed = _fit_synergies(human, sim, rank_rule)
    result = {"human_rank": int(model.rank_), "human_r2": float(model.r2_), "human_vaf": float(model.vaf_),
              "r2_curve": [float(v) for v in model.r2_curve_]}
    fitted = {"human": model.to_dataset()}
    if recording is not None:
        result.update(sim_rank=int(sim_model.rank_), matched_cosine=[float(c) for c in pairs.cosine],
                      cross_fit_vaf=float(crossed.vaf))
        fitted["simulation"] = sim_model.to_dataset()
    return result, fitted


def summary(ds: xr.Dataset) -> dict:
    """The ``summary.json`` content, computed from a comparison Dataset.

    ``median_r`` and ``mean_r_fisher`` are over the muscles with a defined r; ``undefined_r`` lists the
    others (a simulated mean cycle without variance: the controller never activates the muscle).
    """
    from kinesis_neuro.metrics import fisher_mean

    muscles = {}
    for ch in map(str, ds.channel.values):
        muscles[ch] = {"r": float(ds.r.sel(channel=ch)),
                       "r_ci": [float(ds.r_ci_lower.sel(channel=ch)), float(ds.r_ci_upper.sel(channel=ch))],
                       "best_lag_pct": float(ds.best_lag.sel(channel=ch)),
                       "r_at_best_lag": float(ds.r_at_best_lag.sel(channel=ch)),
                       "rmse": float(ds.rmse.sel(channel=ch)), "onoff_agreement": float(ds.onoff_agreement.sel(channel=ch)),
                       "cosine": float(ds.cosine.sel(channel=ch))}
    baseline = None
    if "human_r_pairs" in ds:
        baseline = {"median_r_pairs": {ch: float(ds.human_r_pairs.sel(channel=ch).median()) for ch in muscles},
                    "median_r_leave_one_out": {ch: float(ds.human_r_loo.sel(channel=ch).median()) for ch in muscles}}
    r = ds.r.values
    defined = np.isfinite(r)  # r is undefined for a mean cycle without variance (a muscle never activated)
    out = {"muscles": muscles, "median_r": float(np.median(r[defined])) if defined.any() else float("nan"),
           "mean_r_fisher": float(fisher_mean(ds.r.clip(-0.999999, 0.999999))),
           "undefined_r": [ch for ch, ok in zip(muscles, defined) if not ok],
           "human_baseline": baseline,
           "synergies": ({"sim_rank": ds.attrs["sim_rank"], "human_rank": ds.attrs["human_rank"],
                          "matched_cosine": [float(c) for c in ds.matched_cosine.values],
                          "cross_fit_vaf": ds.attrs["cross_fit_vaf"]} if "matched_cosine" in ds else None),
           "cycles": {"simulated": ds.attrs["sim_cycles_n"], "human": ds.attrs["human_observations"]},
           "side": ds.attrs["side"], "controller": ds.attrs["controller"], "human_source": ds.attrs["human_source"]}
    return out


def write_outputs(ds: xr.Dataset, out_dir, protect=()) -> dict:
    """``summary.json``, ``correlation.csv``, ``comparison.nc`` and the figures in ``out_dir``, which shows them
    only once all are written (``summary.json`` last); ``protect``: input files never to overwrite. Returns
    the summary."""
    from kinesis_neuro import plots, storage

    result = summary(ds)
    with storage.output_folder(out_dir, protect=protect) as out:
        storage.save(ds, out / "comparison.nc")
        storage.write_csv(correlation_table(result), out / "correlation.csv")
        plots.plot_comparison(ds, out)
        storage.write_json(result, out / "summary.json")
    return result


def correlation_table(result: dict) -> pd.DataFrame:
    """One row per muscle from a summary: r with its CI, best lag, r at best lag, RMSE, cosine, on/off."""
    rows = {name: {"r": m["r"], "r_ci_low": m["r_ci"][0], "r_ci_high": m["r_ci"][1],
                   "best_lag_pct": m["best_lag_pct"], "r_at_best_lag": m["r_at_best_lag"], "rmse": m["rmse"],
                   "cosine": m["cosine"], "onoff_agreement": m["onoff_agreement"]}
            for name, m in result["muscles"].items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "channel"
    if result["human_baseline"]:
        table["human_median_r_pairs"] = pd.Series(result["human_baseline"]["median_r_pairs"])
    return table
