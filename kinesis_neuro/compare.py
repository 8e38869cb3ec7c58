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
    from kinesis_neuro import registration

    n = human.sizes["phase"]
    found = registration.convention(human)
    if found["kind"] == registration.TOE_OFF:  # cut like the human cycles, then registered the same way
        return {"n_points": n, "split": registration.toe_off_split(found["toe_off_percent"], n)}
    if found["kind"] != registration.STANCE_SWING:
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
                 events=None, activation_dynamics: bool = False, data_dir=None,
                 signal: xr.DataArray | None = None) -> xr.DataArray:
    """Human EMG as gait cycles: ``(cycle, phase, channel)`` for one person, ``(subject, phase, channel)``
    for musclesyneRgies' SYNS (15 people, one processed cycle each).

    EMG time series are processed with ``preset`` (default: :func:`emg_preset`) and cut at the heel strikes
    of ``events`` (default: the dataset's GRF or cycle timings); ``activation_dynamics`` passes the envelope through the muscles' activation
    dynamics first (the lag between EMG and activation). Already time-normalised data (musclesyneRgies
    SYNS or FILT_EMG, recognised by the R object inside, whatever the file's name) need the
    stance/swing grid ``split=(100, 100)``; cycle tables on an even grid (Falisse et al.'s ``.mat``) are
    compared on their own grid (``n_points`` ignored), with only the cycles recorded in every channel.
    ``signal``: the EMG already read from ``source`` (not read again).
    """
    from kinesis_neuro.emg.presets import musclesynergies_cycles, process

    side = gait.check_side(side)
    text = str(source)
    name, card, entry = _emg_card(text)
    if signal is None:
        signal = read_side(source, side, data_dir=data_dir)
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
        preset = emg_preset(source, signal, preset)[0]
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


def read_side(source, side: str, *, data_dir=None) -> xr.DataArray:
    """The EMG of ``source``, refused when its file says it was recorded on the other leg than ``side``."""
    signal = emg.read(source, data_dir=data_dir)
    if signal.attrs.get("side") in ("right", "left") and signal.attrs["side"] != side:
        raise ProcessingError(f"{source}: EMG of the {signal.attrs['side']} leg, but the comparison is for the "
                              f"{side} leg (--side)")
    return signal


def _same_phase_convention(sim: xr.DataArray, human: xr.DataArray) -> xr.DataArray:
    """Simulated cycles cut on ``human``'s grid, registered like them (toe-off registration), checked to follow
    the same phase convention (:func:`kinesis_neuro.registration.check_same`: never silently mixed) and
    labelled with the human phase values."""
    from kinesis_neuro import registration

    found = registration.convention(human)
    if found["kind"] == registration.TOE_OFF:
        sim = registration.register_toe_off(sim, found["toe_off_percent"])
    else:
        sim = registration.annotate(sim)
    if "registration" not in human.attrs:
        human = registration.annotate(human)
    registration.check_same(sim, human)
    return sim.assign_coords(phase=human.phase.values)


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
    sim = _same_phase_convention(sim, human)
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
                    registration=str(sim.attrs.get("registration", "")), comparison_kind="cycles",
                    comparison=(f"mean gait cycles ({int(sim.sizes['cycle'])} simulated vs {n_human} human "
                                f"{obs}(s))"),
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
           "side": ds.attrs["side"], "controller": ds.attrs["controller"], "human_source": ds.attrs["human_source"],
           "comparison": ds.attrs.get("comparison", "mean gait cycles"), "comparison_kind": "cycles",
           "phase_definition": ds.attrs.get("phase_definition", ""), "registration": ds.attrs.get("registration", "")}
    return out


def write_outputs(ds: xr.Dataset, out_dir, protect=()) -> dict:
    """``summary.json``, ``correlation.csv``, ``comparison.nc`` and the figures in ``out_dir``, which shows them
    only once all are written (``summary.json`` last); ``protect``: input files never to overwrite. Returns
    the summary."""
    from kinesis_neuro import plots, storage

    kind = ds.attrs.get("comparison_kind", "cycles")
    result = summarise(ds)
    with storage.output_folder(out_dir, protect=protect) as out:
        storage.save(ds, out / "comparison.nc")
        storage.write_csv(correlation_table(result), out / "correlation.csv")
        if kind == "time series":
            plots.plot_timeseries_comparison(ds, out)
        elif kind == "normative":
            plots.plot_normative_comparison(ds, out)
        else:
            plots.plot_comparison(ds, out)
        storage.write_json(result, out / "summary.json")
    return result


def summarise(ds: xr.Dataset) -> dict:
    """The ``summary.json`` content of any comparison: gait cycles (:func:`summary`), time series
    (:func:`timeseries_summary`) or normative curves (:func:`kinesis_neuro.cycle_tables.normative_summary`)."""
    kind = ds.attrs.get("comparison_kind", "cycles")
    if kind == "time series":
        return timeseries_summary(ds)
    if kind == "normative":
        from kinesis_neuro.cycle_tables import normative_summary

        return normative_summary(ds)
    return summary(ds)


def correlation_table(result: dict) -> pd.DataFrame:
    """One row per muscle from a summary: r with its CI, best lag, r at best lag, RMSE, cosine, on/off (time
    series: r, best lag in ms, r at best lag, RMSE, cosine, samples; normative: r, RMSE, lag, share of phases
    within ±1 SD)."""
    kind = result.get("comparison_kind", "cycles")
    if kind != "cycles":
        table = pd.DataFrame.from_dict(result["muscles"], orient="index")
        table.index.name = "channel"
        return table
    rows = {name: {"r": m["r"], "r_ci_low": m["r_ci"][0], "r_ci_high": m["r_ci"][1],
                   "best_lag_pct": m["best_lag_pct"], "r_at_best_lag": m["r_at_best_lag"], "rmse": m["rmse"],
                   "cosine": m["cosine"], "onoff_agreement": m["onoff_agreement"]}
            for name, m in result["muscles"].items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "channel"
    if result["human_baseline"]:
        table["human_median_r_pairs"] = pd.Series(result["human_baseline"]["median_r_pairs"])
    return table


# -- comparisons of any kind: gait cycles, or a time-series window without a complete cycle ------------------

MAX_LAG_S = 0.2  # time-series lag scan: +-200 ms
LAG_STEP_S = 0.001
ENVELOPE_UNDERSHOOT = 0.05  # an EMG file whose minimum is above -5 % of its maximum is an envelope already


def _emg_card(text: str):
    """(dataset name, card, file entry) of a registered EMG source, or (None, None, None) for a file."""
    from kinesis_neuro import datasets

    if not datasets.is_dataset_spec(text):
        return None, None, None
    name, _, filename = text.partition("/")
    card = datasets.get(name)
    return name, card, card.file(filename or None)


def emg_preset(source, signal: xr.DataArray, preset: str | None = None) -> tuple[str, str]:
    """The processing preset for ``signal`` read from ``source``, and why: as :func:`human_cycles` chooses it
    (``musclesynergies`` for musclesyneRgies data, ``processed`` for registered envelopes, ``default`` for raw
    files), except that a file whose samples are (nearly) never negative is an envelope already: ``processed``
    (raw EMG swings around zero)."""
    if preset is not None:
        return preset, "given"
    name, _, entry = _emg_card(str(source))
    if entry is not None:
        if name == "musclesynergies":
            return "musclesynergies", "musclesyneRgies data"
        if entry.meta.get("processing"):
            return "processed", "the dataset card lists the processing already applied"
        return "default", "raw EMG of a registered dataset"
    values = np.asarray(signal.values, dtype=float)
    peak = float(np.nanmax(np.abs(values))) if values.size else 0.0
    if peak > 0 and float(np.nanmin(values)) >= -ENVELOPE_UNDERSHOOT * peak:
        return "processed", ("no negative samples: read as envelopes already processed (give --emg-format default "
                             "to filter and rectify raw EMG)")
    return "default", "raw EMG (samples of both signs)"


def emg_events(source, events=None, *, data_dir=None) -> pd.DataFrame | None:
    """Gait events of an EMG source: ``events`` (a table, or a file / dataset file for
    :func:`kinesis_neuro.emg.read_events`, or heel-strike times as :func:`kinesis_neuro.activation_files.parse_events`
    reads them), else those of a registered dataset (its GRF, or the file's own cycle timings); None for a file
    without events."""
    from kinesis_neuro.activation_files import parse_events

    if events is not None:
        return parse_events(events, data_dir=data_dir)
    name, card, entry = _emg_card(str(source))
    if card is None:
        return None
    grf = card.card.get("grf")
    return emg.read_events(f"{name}/{grf}" if grf else f"{name}/{entry.name}", data_dir=data_dir)


def _columnwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of every column pair of ``a`` and ``b`` (samples x columns); NaN without variance."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip((a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0)), -1.0, 1.0)


def timeseries_comparison(recording: Recording, signal: xr.DataArray, *, side: str = "right", mapping_table=None,
                          reason: str = "", label: str = "no complete gait cycle", max_lag: float = MAX_LAG_S,
                          lag_step: float = LAG_STEP_S) -> xr.Dataset:
    """Simulated activations against an EMG envelope as time series over the window both cover, for data
    without a complete gait cycle: Pearson r per channel (:func:`timeseries_correlation`, EMG interpolated to the
    simulation's times), a lag scan of ``±max_lag`` s in ``lag_step`` steps (``r(L) = corr(sim(t), EMG(t - L))``;
    positive L: the simulation is late, the EMG leads) with the best lag and r there, and the RMSE and cosine of
    peak-normalised curves. ``signal`` is the processed EMG ``(time, channel)``; ``reason`` says why no gait cycles
    were compared."""
    from kinesis_neuro import metrics

    require_positive(max_lag=max_lag, lag_step=lag_step)
    activation = recording.muscle_activation()
    with np.errstate(divide="ignore", invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a muscle never active: r is NaN, said in the summary
            table = timeseries_correlation(activation, signal, side=side, mapping_table=mapping_table)
    t0, t1 = (float(v) for v in table.attrs["window_s"])
    channels = [str(c) for c in table.index]
    sim = mapping.map_to_channels(activation.sel(time=slice(t0, t1)), channels, side=side,
                                  mapping=mapping_table).transpose("time", "channel")
    t, sim_values = sim.time.values, sim.values
    if t.size < 3:
        raise ProcessingError(f"{recording.source}: only {t.size} simulated samples within {t0:g}-{t1:g} s, the window "
                              "the EMG also covers; too few for a time-series comparison")
    emg_t = signal.time.values.astype(float)
    emg_values = signal.transpose("time", "channel").sel(channel=channels).values.astype(float)

    def emg_at(times):
        return np.column_stack([np.interp(times, emg_t, emg_values[:, k]) for k in range(len(channels))])

    human = emg_at(t)
    n = round(max_lag / lag_step)
    lags = np.round(np.arange(-n, n + 1) * lag_step, 9)
    r_lag = np.full((lags.size, len(channels)), np.nan)
    for i, lag in enumerate(lags):
        ok = (t - lag >= emg_t[0]) & (t - lag <= emg_t[-1])
        if ok.sum() >= 3:
            r_lag[i] = _columnwise_r(sim_values[ok], emg_at(t[ok] - lag))
    defined = np.isfinite(r_lag).any(0)
    best = np.where(defined, np.nanargmax(np.where(np.isfinite(r_lag), r_lag, -np.inf), axis=0), 0)
    best_lag = np.where(defined, lags[best], np.nan)
    r_best = np.where(defined, r_lag[best, np.arange(len(channels))], np.nan)
    coords = {"time": ("time", t, {"units": "s"}), "channel": channels,
              "muscles": ("channel", [str(m) for m in sim.muscles.values])}
    sim_da = xr.DataArray(sim_values, dims=("time", "channel"), coords=coords)
    human_da = xr.DataArray(human, dims=("time", "channel"), coords=coords)
    with np.errstate(divide="ignore", invalid="ignore"):
        rmse = metrics.normalised_rmse(sim_da, human_da, dim="time")
        cosine = metrics.cosine_similarity(sim_da, human_da, dim="time")
    ds = xr.Dataset(
        {"sim": sim_da.assign_attrs(units="1", long_name="simulated activation mapped onto the EMG channels"),
         "human": human_da.assign_attrs(units=str(signal.attrs.get("units", "?")),
                                        long_name="human EMG envelope at the simulation's times"),
         "r": ("channel", table.r.to_numpy(float), {"units": "1", "long_name": "Pearson r over the window"}),
         "lag_r": (("lag", "channel"), r_lag, {"units": "1", "long_name": "Pearson r of sim(t) with EMG(t - lag)"}),
         "best_lag": ("channel", best_lag, {"units": "s", "long_name": "lag of highest r",
                                            "sign": "positive: simulation late (EMG leads)"}),
         "r_at_best_lag": ("channel", r_best, {"units": "1", "long_name": "Pearson r at the best lag"}),
         "rmse": rmse, "cosine": cosine,
         "samples": ("channel", table.samples.to_numpy(int), {"units": "1"})},
        coords={**coords, "lag": ("lag", lags, {"units": "s", "long_name": "shift of the simulation",
                                                "sign": "positive: simulation late"})})
    ds.attrs.update(
        comparison_kind="time series", comparison=f"time series over {t0:.2f}-{t1:.2f} s ({label})",
        reason=reason, window_s=np.array([t0, t1]), side=side, max_lag_s=max_lag, lag_step_s=lag_step,
        phase_definition="none: a time series, not normalised to the gait cycle",
        registration=(f"none; lag scan of ±{max_lag * 1000:g} ms in {lag_step * 1000:g} ms steps "
                      "(positive: simulation late)"),
        human_source=str(signal.attrs.get("source", "")), recording=str(recording.source or ""),
        controller=str(recording.data.attrs.get("controller", "")),
        emg_processing=str(signal.attrs.get("processing", "[]")),
        emg_through_activation_dynamics=str(signal.attrs.get("activation_dynamics", "no")),
        emg_mapping=str(sim.attrs.get("emg_mapping", "")))
    return ds


def timeseries_summary(ds: xr.Dataset) -> dict:
    """The ``summary.json`` content of a :func:`timeseries_comparison` (lags in ms)."""
    from kinesis_neuro.metrics import fisher_mean

    muscles = {}
    for ch in map(str, ds.channel.values):
        muscles[ch] = {"muscles": str(ds.muscles.sel(channel=ch).values), "r": float(ds.r.sel(channel=ch)),
                       "best_lag_ms": 1000 * float(ds.best_lag.sel(channel=ch)),
                       "r_at_best_lag": float(ds.r_at_best_lag.sel(channel=ch)),
                       "rmse": float(ds.rmse.sel(channel=ch)), "cosine": float(ds.cosine.sel(channel=ch)),
                       "samples": int(ds.samples.sel(channel=ch))}
    r, r_best = ds.r.values, ds.r_at_best_lag.values
    defined = np.isfinite(r)
    return {"comparison": ds.attrs["comparison"], "comparison_kind": "time series", "reason": ds.attrs["reason"],
            "window_s": [float(v) for v in ds.attrs["window_s"]], "muscles": muscles,
            "median_r": float(np.median(r[defined])) if defined.any() else float("nan"),
            "mean_r_fisher": float(fisher_mean(ds.r.clip(-0.999999, 0.999999))),
            "median_r_at_best_lag": float(np.nanmedian(r_best)) if np.isfinite(r_best).any() else float("nan"),
            "median_best_lag_ms": (float(1000 * np.nanmedian(ds.best_lag.values))
                                   if np.isfinite(ds.best_lag.values).any() else float("nan")),
            "undefined_r": [ch for ch, ok in zip(muscles, defined) if not ok],
            "side": ds.attrs["side"], "controller": ds.attrs["controller"], "human_source": ds.attrs["human_source"],
            "phase_definition": ds.attrs["phase_definition"], "registration": ds.attrs["registration"],
            "emg_through_activation_dynamics": ds.attrs["emg_through_activation_dynamics"]}


def _cycle_problem(recording: Recording, channels, *, side: str, mapping_table, n_points: int, split) -> str | None:
    """Why ``recording`` has no complete gait cycle to compare (None when it has one)."""
    try:
        simulated_cycles(recording, channels, side=side, n_points=n_points, split=split, mapping_table=mapping_table)
    except ProcessingError as err:
        return str(err).replace(f"{recording.source}: ", "")
    return None


def _off_trial_time(recording: Recording) -> bool:
    """Whether ``recording``'s time axis is not that of a recorded trial: a rollout, or a periodic walk built
    from a trial (their times cannot be lined up with EMG of the trial)."""
    return ("episode" in recording.data or "reference_stride_s" in recording.data.attrs
            or "periodic walk" in str(recording.data.attrs.get("motion", "")))


def compare_any(recording: Recording, emg_source, *, side: str = "right", n_points: int = 101, split=None,
                preset: str | None = None, events=None, activation_dynamics: bool = False, mapping_table=None,
                n_boot: int = 1000, seed: int = 0, synergies: bool = True, toe_off_percent: float | None = None,
                speed: float | None = None, max_lag: float = MAX_LAG_S, data_dir=None) -> xr.Dataset:
    """Compare ``recording`` with any human EMG, choosing the comparison the data allow:

    * a table of normative curves (``schwartz2008``, or a CSV with a % gait cycle column and a column, or
      ``_mean``/``_sd`` columns, per muscle): the simulated mean cycle against the normative mean ± SD
      (:func:`kinesis_neuro.cycle_tables.normative_comparison`; ``speed``: non-dimensional speed to pick);
    * gait cycles on both sides: :func:`compare` of mean cycles (``n_points`` / ``split`` grid; with
      ``toe_off_percent`` both sides are registered piecewise-linearly to that toe-off, see
      :mod:`kinesis_neuro.registration`);
    * EMG time series, when either side lacks a complete gait cycle (a short EMG window, an activation file of
      part of a trial): :func:`timeseries_comparison` over the window both cover, labelled as such.

    ``preset``: EMG processing (see :func:`emg_preset`); ``events``: the EMG's gait events (see
    :func:`emg_events`). The Dataset's attrs ``comparison`` and ``comparison_kind`` say which was done.
    """
    from kinesis_neuro import cycle_tables, registration
    from kinesis_neuro.emg.presets import process

    side = gait.check_side(side)
    text = str(emg_source)
    if cycle_tables.is_normative(emg_source, data_dir=data_dir):
        return cycle_tables.normative_comparison(recording, emg_source, side=side, mapping_table=mapping_table,
                                                 speed=speed, data_dir=data_dir)
    signal = read_side(emg_source, side, data_dir=data_dir)
    if toe_off_percent is not None:
        n_points = 100 if n_points == 101 else n_points
        split = registration.toe_off_split(toe_off_percent, n_points)
    options = {"mapping_table": mapping_table, "n_boot": n_boot, "seed": seed, "synergies": synergies, "side": side}
    if "time" not in signal.dims:  # gait cycles already (SYNS, Falisse et al.): no time series to fall back on
        human = human_cycles(emg_source, side=side, n_points=n_points, split=split, preset=preset,
                             activation_dynamics=activation_dynamics, data_dir=data_dir, signal=signal)
        return compare(recording, human, **options)
    preset, why = emg_preset(emg_source, signal, preset)
    table = emg_events(emg_source, events, data_dir=data_dir)
    t0, t1 = float(signal.time[0]), float(signal.time[-1])
    reasons = []
    if table is None:
        reasons.append("EMG: no gait events given (--events)")
    else:
        strikes = table[(table.side == side) & (table.event == "heel_strike") & (table.time >= t0) & (table.time <= t1)]
        if len(strikes) < 2:
            reasons.append(f"EMG: {len(strikes)} {side} heel strike(s) within its {t0:.2f}-{t1:.2f} s")
    channels = [str(c) for c in signal.channel.values]
    problem = _cycle_problem(recording, channels, side=side, mapping_table=mapping_table, n_points=n_points,
                             split=split)
    if problem:
        reasons.append(f"simulation: {problem}")
    if not reasons:
        human = human_cycles(emg_source, side=side, n_points=n_points, split=split, preset=preset, events=table,
                             activation_dynamics=activation_dynamics, data_dir=data_dir, signal=signal)
        if toe_off_percent is not None:
            human = registration.register_toe_off(human, toe_off_percent)
        ds = compare(recording, human, **options)
        ds.attrs["emg_preset"] = f"{preset} ({why})"
        return ds
    if _off_trial_time(recording):
        raise ProcessingError(f"{recording.source}: no gait cycle to compare ({'; '.join(reasons)}); its time axis "
                              "(a rollout or periodic walk) is not the EMG's, so no time-series comparison either")
    if toe_off_percent is not None:
        raise ProcessingError(f"toe-off registration needs complete gait cycles ({'; '.join(reasons)})")
    processed = process(signal, preset)
    if activation_dynamics:
        processed = emg_through_activation_dynamics(processed)
    processed.attrs.setdefault("source", text)
    ds = timeseries_comparison(recording, processed, side=side, mapping_table=mapping_table,
                               reason="; ".join(reasons), max_lag=max_lag)
    ds.attrs.update(emg_preset=f"{preset} ({why})", human_source=text)
    return ds


def activation_agreement(a: Recording, b: Recording, *, min_overlap_s: float = 0.1) -> pd.DataFrame:
    """How alike two controllers' activations of the same trial are: per muscle present in both, Pearson r and
    the RMSE (activation units) over the time window both cover (``b`` interpolated to ``a``'s times), with the
    peak activation of each. Recordings on another time axis (rollouts, periodic walks) have no such window:
    ``ProcessingError``."""
    for rec in (a, b):
        if _off_trial_time(rec):
            raise ProcessingError(f"{rec.source}: not on the trial's time axis (a rollout or periodic walk); "
                                  "activations of two controllers are compared frame by frame only for one trial")
    t0 = max(float(a.data.time[0]), float(b.data.time[0]))
    t1 = min(float(a.data.time[-1]), float(b.data.time[-1]))
    if t1 - t0 < min_overlap_s:
        raise ProcessingError(f"{a.source} and {b.source} overlap {max(t1 - t0, 0.0):.3f} s; need {min_overlap_s:g} s")
    muscles = [m for m in map(str, a.data.muscle.values) if m in set(map(str, b.data.muscle.values))]
    if not muscles:
        raise ProcessingError(f"{a.source} and {b.source} share no muscle")
    first = a.data.activation.sel(time=slice(t0, t1), muscle=muscles)
    second = b.data.activation.sel(muscle=muscles).interp(time=first.time.values)
    x, y = first.transpose("time", "muscle").values, second.transpose("time", "muscle").values
    table = pd.DataFrame({"r": _columnwise_r(x, y), "rmse": np.sqrt(((x - y) ** 2).mean(0)),
                          "peak_a": x.max(0), "peak_b": y.max(0)}, index=pd.Index(muscles, name="muscle"))
    table.attrs.update(window_s=(t0, t1), samples=int(x.shape[0]))
    return table
