"""``kinesis-neuro`` command line: thin subcommands over the library."""

from __future__ import annotations

import argparse
import errno
import math
import sys
from pathlib import Path

from kinesis_neuro import __version__
from kinesis_neuro.errors import KinesisNeuroError


def _number(kind, minimum: float, inclusive: bool):
    """An argparse type: a number of ``kind`` (int/float), finite, at least (or above) ``minimum``."""
    bound = f"{'at least' if inclusive else 'greater than'} {minimum:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} "
                                             f"{bound}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT = _number(int, 1, inclusive=True)
POSITIVE = _number(float, 0, inclusive=False)
NON_NEGATIVE = _number(float, 0, inclusive=True)
SEED = _number(int, 0, inclusive=True)
SIDE = {"choices": ["right", "left"], "default": "right"}


def _datasets(args) -> None:
    from kinesis_neuro import datasets

    kw = {"data_dir": args.data_dir}
    if args.action == "list":
        def cut(text, width):
            text = " ".join(str(text).split())
            return text if len(text) <= width else text[:width - 3].rstrip() + "..."

        rows = [(name, str(len(ds.files)), "local" if ds.local_only else "url",
                 cut(ds.card.get("licence_short") or ds.card["licence"], 20), cut(ds.card["title"], 80))
                for name, ds in datasets.registry().items()]
        header = ("dataset", "files", "from", "licence", "title")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]:<{widths[3]}}  {row[4]}")
    elif args.action == "info":
        print(datasets.info(args.name))
    elif args.action == "fetch":
        for name, path in datasets.fetch_all(args.name, progress=True, **kw).items():
            print(f"{name}: {path} (sha256 verified)")
    elif args.action == "path":
        print(datasets.dataset_path(args.name, **kw))


def _parse_split(text: str | None):
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise KinesisNeuroError(f"--split must look like 100,100 (stance points,swing points), got {text!r}") from None


def _emg_events(args) -> None:
    from kinesis_neuro import emg

    table = emg.read_events(args.source, data_dir=args.data_dir, **({"threshold": args.threshold}
                                                                    if args.threshold is not None else {}))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _emg_process(args) -> None:
    from kinesis_neuro import emg, gait, plots, storage

    storage.refuse_overwriting([args.out, args.plot], [args.source, args.events])
    if args.plot and not args.events:
        raise KinesisNeuroError("--plot draws gait cycles: give --events too")
    signal = emg.read(args.source, data_dir=args.data_dir, channels=args.channels)
    processed = emg.process(signal, args.preset)
    print(f"read {signal.sizes['time']} samples x {signal.sizes['channel']} channels at "
          f"{signal.attrs['sampling_rate']:g} Hz from {signal.attrs['source']}; preset {args.preset!r}")
    result = processed
    if args.events:
        events = emg.read_events(args.events, data_dir=args.data_dir)
        if args.preset == "musclesynergies":
            result = emg.musclesynergies_cycles(processed, events, side=args.side,
                                                cycle_div=_parse_split(args.split) or (100, 100))
        else:
            result = gait.segment_cycles(processed, events, side=args.side, n_points=args.points,
                                         split=_parse_split(args.split))
        print(f"{result.sizes['cycle']} {args.side} gait cycle(s) x {result.sizes['phase']} phase points; "
              f"heel strikes at {', '.join(f'{t:.3f}' for t in result.cycle_start.values)} s")
    with storage.created_together(args.plot, args.out):
        if args.plot:
            print(f"figure: {plots.plot_cycles(result, args.plot)}")
        if args.out:
            print(f"saved: {storage.save(result, args.out)}")


def _simulate(args) -> None:
    from kinesis_neuro import compare, emg, mapping, storage
    from kinesis_neuro.record import check_recording_path
    from kinesis_neuro.simulate import static_optimisation_recording

    check_recording_path(args.out)
    storage.refuse_overwriting([args.out], [args.motion, args.grf, args.emg, args.muscle_map])
    table = mapping.load_mapping(args.muscle_map) if args.muscle_map else None
    signal = emg.read(args.emg, data_dir=args.data_dir) if args.emg else None  # a bad --emg fails before the work
    if signal is not None:
        if signal.attrs.get("side") in ("right", "left") and signal.attrs["side"] != args.side:
            raise KinesisNeuroError(f"{args.emg}: EMG of the {signal.attrs['side']} leg, but --side is {args.side}")
        if "time" not in signal.dims:
            raise KinesisNeuroError(f"{args.emg}: holds gait cycles, not a time series; compare a recording with it "
                                    "through `kinesis-neuro compare`")
        for channel in signal.channel.values:  # an unmapped channel fails before the work
            mapping.muscles_for(str(channel), args.side, table)
        preset, why = compare.emg_preset(args.emg, signal)
        signal = emg.normalise(emg.process(signal, preset))  # an envelope, 0-1 per channel (activation dynamics)
    recording = static_optimisation_recording(args.motion, args.grf, exponent=args.exponent,
                                              reserves=args.reserves, periodic=args.periodic,
                                              data_dir=args.data_dir)
    recording.save(args.out)
    attrs = recording.data.attrs
    print(f"{recording.data.sizes['time']} frames, {attrs['wall_time_s']:.1f} s wall time, max leg-joint "
          f"residual {attrs['max_leg_residual_n_m']:.2e} N m, max root residual force "
          f"{float(abs(recording.data.root_residual_force).max()):.0f} N; saved {args.out}")
    if signal is not None:
        raw = compare.timeseries_correlation(recording.muscle_activation(), signal, side=args.side,
                                             mapping_table=table)
        lagged = compare.timeseries_correlation(recording.muscle_activation(),
                                                compare.emg_through_activation_dynamics(signal), side=args.side,
                                                mapping_table=table)
        table = raw[["muscles", "r"]].assign(r_emg_activation_dynamics=lagged.r)
        print(f"Pearson r, simulated activation vs EMG ({args.side} leg, {raw.attrs['window_s'][0]:g}-"
              f"{raw.attrs['window_s'][1]:g} s):")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"median r: {raw.r.median():.3f} (EMG through activation dynamics: {lagged.r.median():.3f}); "
              f"EMG preset {preset!r}: {why}")


def _motion_check(args) -> None:
    from kinesis_neuro import dynamics, emg, motion, motion_check, storage
    from kinesis_neuro import model as mdl
    from kinesis_neuro.io.motion_file import read_provenance

    grf = None if args.no_grf else args.grf or ("moco-walk/grf_walk.mot" if args.motion == "moco-walk" else None)
    storage.refuse_overwriting([args.json], [args.motion, grf])
    model = mdl.load_model()
    walk = motion.from_opensim(args.motion, data_dir=args.data_dir)
    provenance = read_provenance(args.motion)
    loads = (dynamics.load_grf(grf, data_dir=args.data_dir, lab_to_ground=provenance.get("lab_to_ground"))
             if grf else None)  # a bad GRF fails before the work
    report = motion_check.check_kinematics(model, walk)
    print(f"motion {args.motion}: {walk.time.size} frames, {walk.time[0]:g}-{walk.time[-1]:g} s")
    if provenance:
        kind = provenance.get("residual_kind", "")
        residual = (f"; {kind} residual RMS {provenance['residual_rms_m']:.4f} m (max {provenance['residual_max_m']:.4f} m)"
                    if provenance.get("residual_rms_m") is not None else "")
        print(f"imported from {provenance.get('source')} by {provenance.get('method')}{residual}; floor shift "
              f"{provenance.get('floor_shift_m') or 0.0:+.3f} m")
        report["import"] = {k: provenance[k] for k in (
            "source", "method", "residual_kind", "residual_rms_m", "residual_max_m", "residual_rms_per_marker_m",
            "residual_rms_per_point_m", "scale", "floor", "skating_correction", "root_path_error_rms_m",
            "clipped_to_range_deg") if k in provenance}
        per = provenance.get("residual_rms_per_marker_m") or provenance.get("residual_rms_per_point_m") or {}
        if per:
            worst = sorted(per.items(), key=lambda kv: -kv[1])[:5]
            print(f"  largest {kind} residuals (RMS): " + ", ".join(f"{k} {v:.3f} m" for k, v in worst))
    summary = report["summary"]
    belt = summary["treadmill_belt_speed_m_s"]
    print("kinematic contact (lowest foot point within "
          f"{summary['thresholds']['contact_height_m'] * 100:g} cm of its floor level, slow)"
          + (f"; treadmill belt {belt:.2f} m/s (skating relative to it)" if belt else "") + ":")
    for side in ("right", "left"):
        r = report[side]
        print(f"{side:>7}: skating mean {r['skating_mean_m_s']:.3f} m/s (95th pct {r['skating_p95_m_s']:.3f}), "
              f"contact {100 * r['contact_fraction']:.0f} % of frames; lowest point {r['lowest_height_m']:+.3f} m, "
              f"penetration {r['penetration_max_m']:.3f} m; heel strikes "
              f"{', '.join(f'{t:.2f}' for t in r['heel_strikes_kinematic_s']) or 'none'} s")
    beyond = [(j, v) for j, v in report["joint_ranges"].items() if v["beyond_deg"] >= 0.05]
    print("joint ranges: " + ("all within MyoLegs' ranges" if not beyond else "beyond MyoLegs' ranges: " + ", ".join(
        f"{j} {v['beyond_deg']:.1f} deg ({100 * v['frames_beyond']:.0f} % of frames)" for j, v in beyond)))
    if loads is not None:
        grf_report = motion_check.check_motion(model, walk, loads, emg.read_events(grf, data_dir=args.data_dir))
        print(f"with the GRF of {grf}:")
        for side, r in grf_report.items():
            print(f"{side:>7}: stance slip mean {r['stance_slip_mean_m_s']:.3f} m/s (95th pct "
                  f"{r['stance_slip_p95_m_s']:.3f}); lowest foot point in stance p5/p50/p95 "
                  f"{r['stance_height_p5_m']:.3f}/{r['stance_height_p50_m']:.3f}/{r['stance_height_p95_m']:.3f} m, "
                  f"max penetration {r['penetration_max_m']:.3f} m; heel strikes GRF "
                  f"{', '.join(f'{t:.3f}' for t in r['heel_strikes_grf_s'])} s vs kinematics "
                  f"{', '.join(f'{t:.3f}' for t in r['heel_strikes_kinematic_s'])} s")
        report["grf"] = {"source": str(grf), **grf_report}
    limits = summary["thresholds"]
    print(f"{'passed' if summary['passed'] else 'NOT passed'}: penetration {summary['penetration_max_m']:.3f} m "
          f"(<= {limits['penetration_max_m']:g}), skating {summary['skating_mean_m_s']:.3f} m/s "
          f"(<= {limits['skating_mean_m_s']:g}), joint range excursion {summary['range_beyond_deg']:.1f} deg "
          f"(<= {limits['range_beyond_deg']:g})")
    if args.json:
        storage.write_json(report, args.json)


def _motion_import(args) -> None:
    from kinesis_neuro import model as mdl
    from kinesis_neuro import motion, motion_check, storage
    from kinesis_neuro.io import motion_file

    sidecar = motion_file.sidecar_path(args.out)
    if Path(args.out).suffix.lower() not in (".mot", ".sto"):
        raise KinesisNeuroError(f"{args.out}: --out must be an OpenSim coordinates file ending in .mot or .sto")
    storage.refuse_overwriting([args.out, sidecar, args.render], [args.file, args.static])
    model = mdl.load_model()
    walk, provenance = motion_file.import_motion(args.file, fmt=args.format, sample=args.sample, static=args.static,
                                                 floor=not args.no_floor, data_dir=args.data_dir, model=model)
    with storage.created_together(args.out, sidecar, args.render):
        motion_file.write_motion(walk, args.out, provenance)
        written = motion.from_opensim(args.out)  # as every command reads it
        check = motion_check.check_kinematics(model, written)
        provenance["check"] = check["summary"]
        storage.write_json(motion_file.plain(provenance), sidecar)
        if args.render:
            _, used = motion_check.render_strip(model, written, args.render, title=f"{args.file} -> {args.out}")
    print(f"{args.file} ({provenance['format']}) -> {args.out}: {provenance['frames']} frames, "
          f"{provenance['time_s'][0]:g}-{provenance['time_s'][1]:g} s; {provenance['method']}")
    if provenance.get("residual_rms_m") is not None:
        print(f"  {provenance['residual_kind']} residual RMS {provenance['residual_rms_m']:.4f} m "
              f"(max {provenance['residual_max_m']:.4f} m)")
    scale = provenance.get("scale")
    if scale is not None:
        print("  scale " + (f"{scale:.3f} (MyoLegs leg length / source's)" if isinstance(scale, float) else
                            ", ".join(f"{k} {v:.3f}" for k, v in scale.items())))
    floor = provenance.get("floor") or {}
    if floor:
        print(f"  feet on the floor: shifted {floor['floor_shift_m']:+.3f} m, root lifted up to {floor['lift_max_m']:.3f} "
              f"m, toes extended {', '.join(f'{k} {v:.0f} deg' for k, v in floor['mtp_extended_deg'].items()) or 'nowhere'}")
    if "skating_correction" in provenance:
        c = provenance["skating_correction"]
        print(f"  skating {c['skating_before_m_s']:.3f} m/s" + (f" -> {c['skating_after_m_s']:.3f} m/s by root correction"
                                                              if c["applied"] else "")
              + f"; root path error RMS {provenance['root_path_error_rms_m']:.3f} m (max "
              f"{provenance['root_path_error_max_m']:.3f} m) over {provenance['source_root_path_length_m']:.2f} m")
    summary = check["summary"]
    print(f"  check: {'passed' if summary['passed'] else 'NOT passed'}: penetration {summary['penetration_max_m']:.3f} m, "
          f"skating {summary['skating_mean_m_s']:.3f} m/s, joint range excursion {summary['range_beyond_deg']:.1f} deg")
    print(f"  provenance: {sidecar}" + (f"; image strip ({used}): {args.render}" if args.render else ""))


def _motion_render(args) -> None:
    from kinesis_neuro import model as mdl
    from kinesis_neuro import motion, motion_check, storage

    storage.refuse_overwriting([args.out], [args.motion])
    walk = motion.from_opensim(args.motion, data_dir=args.data_dir)
    path, used = motion_check.render_strip(mdl.load_model(), walk, args.out, frames=args.frames,
                                           renderer=args.renderer)
    print(f"{args.frames} frames of {args.motion} ({used}): {path}")


def _phase_grid(text: str) -> tuple[int, tuple[int, int] | None]:
    if "," in text:
        return 101, _parse_split(text)
    try:
        return int(text), None
    except ValueError:
        raise KinesisNeuroError(f"--phase-points takes N (e.g. 101) or STANCE,SWING (e.g. 100,100), got {text!r}") from None


def _load_recordings(paths, args) -> list:
    """``--recording`` paths (recording .nc or another tool's activation file) with ``--recording-events``,
    ``--muscle-names`` and ``--motion``."""
    from kinesis_neuro.activation_files import load_muscle_names, load_recording

    names = load_muscle_names(args.muscle_names) if getattr(args, "muscle_names", None) else None
    return [load_recording(p, events=getattr(args, "recording_events", None), muscle_names=names,
                           motion=getattr(args, "motion", None), data_dir=args.data_dir) for p in paths]


def _print_comparison(result: dict, ds, out) -> None:
    from kinesis_neuro import compare

    print(compare.correlation_table(result).to_string(float_format=lambda v: f"{v:.3f}"))
    kind = result.get("comparison_kind", "cycles")
    muscles = len(result["muscles"])
    if kind == "time series":
        print(f"{result['comparison']}: {result['reason']}")
        print(f"median r {result['median_r']:.3f}, Fisher-z mean r {result['mean_r_fisher']:.3f} over {muscles} "
              f"muscles (at the best lag within ±{1000 * ds.attrs['max_lag_s']:g} ms: median r "
              f"{result['median_r_at_best_lag']:.3f}, median lag {result['median_best_lag_ms']:+.0f} ms); "
              f"outputs in {out}")
    elif kind == "normative":
        print(result["comparison"] + (f"; {result['speed']['choice']}" if result["speed"]["choice"] else ""))
        print(f"median r {result['median_r']:.3f}, Fisher-z mean r {result['mean_r_fisher']:.3f} over {muscles} "
              "muscles; "
              f"median share of phases within ±1 SD {result['median_share_within_sd']:.2f}; outputs in {out}")
    else:
        print(f"{result['comparison']}; phase: {result['phase_definition']}")
        print(f"median r {result['median_r']:.3f}, Fisher-z mean r {result['mean_r_fisher']:.3f} over "
              f"{muscles} muscles; {result['cycles']['simulated']} simulated cycles vs "
              f"{result['cycles']['human']}; outputs in {out}")
    if result["undefined_r"]:
        print(f"note: {compare.UNDEFINED_R_NOTE}: {', '.join(result['undefined_r'])}")
    if "spm_note" in ds.attrs:
        print(f"note: {ds.attrs['spm_note']}")
    if "samples" in ds.attrs.get("emg_preset", ""):  # chosen from the values of a file: say so
        print(f"note: EMG processing preset {ds.attrs['emg_preset']}")


def _compare(args) -> None:
    from kinesis_neuro import compare, mapping, storage

    inputs = [args.recording, args.emg, args.events, args.muscle_map, args.muscle_names, args.recording_events]
    storage.refuse_overwriting([args.out], inputs)
    recording = _load_recordings([args.recording], args)[0]
    n_points, split = _phase_grid(args.phase_points)
    table = mapping.load_mapping(args.muscle_map) if args.muscle_map else None
    ds = compare.compare_any(recording, args.emg, side=args.side, n_points=n_points, split=split,
                             preset=args.emg_format, events=args.events, activation_dynamics=args.activation_dynamics,
                             mapping_table=table, n_boot=args.bootstrap, seed=args.seed,
                             toe_off_percent=args.register_toe_off, speed=args.speed, data_dir=args.data_dir)
    result = compare.write_outputs(ds, args.out, protect=inputs)
    _print_comparison(result, ds, args.out)


def _synergies(args) -> None:
    import json

    from kinesis_neuro import compare, storage
    from kinesis_neuro.record import Recording

    storage.refuse_overwriting([args.out], [args.emg, args.recording])
    n_points, split = _phase_grid(args.phase_points)
    human = compare.human_cycles(args.emg, side=args.side, n_points=n_points, split=split, data_dir=args.data_dir)
    recording = Recording.load(args.recording) if args.recording else None
    result, fitted = compare.synergy_analysis(human, recording, side=args.side, rank_rule=args.rank_rule)
    with storage.output_folder(args.out, protect=[args.emg, args.recording], last=("synergies.json",)) as out:
        for name, ds in fitted.items():
            storage.write_netcdf(ds, out / f"synergies_{name}.nc")
        storage.write_json(result, out / "synergies.json")
    print(json.dumps(result, indent=2))


def _export(args) -> None:
    from kinesis_neuro import export, storage

    storage.refuse_overwriting([args.out, f"{args.out}.dictionary.txt"],
                               [*args.recording, args.comparison, args.recording_events, args.muscle_names])
    comparison = export.load_comparison(args.comparison) if args.comparison else None
    ds = export.study_dataset(_load_recordings(args.recording, args), comparison, side=args.side)
    for path in export.write(ds, args.out, args.format):
        print(f"wrote {path}")


def _ablate(args) -> None:
    from kinesis_neuro import storage
    from kinesis_neuro.redundancy import ablation

    storage.refuse_overwriting([args.out], [args.policy])
    kind = args.muscles if args.muscles else args.kind
    conditions = ablation.conditions(kind, factor=args.weaken)
    ds = ablation.sweep(args.policy, conditions, episodes=args.episodes, seed=args.seed,
                        episode_seconds=args.episode_seconds, scheduler=args.scheduler, out=args.out)
    table = ablation.summary(ds)
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"{ds.sizes['condition']} conditions x {ds.sizes['episode']} episodes; outputs in {args.out}")


def _nullspace(args) -> None:
    import json

    from kinesis_neuro import storage
    from kinesis_neuro.record import Recording
    from kinesis_neuro.redundancy.nullspace import analyse, write_figures

    if (args.recording is None) == (args.policy is None):
        raise KinesisNeuroError("give either --recording (e.g. static optimisation) or --policy")
    storage.refuse_overwriting([args.out], [args.recording, args.policy])
    closed_loop, perturbed = {}, None
    if args.policy:
        from kinesis_neuro import policies
        from kinesis_neuro.redundancy.perturbation import closed_loop_perturbation
        from kinesis_neuro.rollout import rollout

        policy = policies.load(args.policy)
        recording = rollout(policy, episodes=args.episodes, seed=args.seed)[1]
        perturbed = closed_loop_perturbation(policy, episodes=args.episodes, norm=args.norm, seed=args.seed,
                                             episode_seconds=args.perturbation_seconds)
        closed_loop = {"closed_loop_perturbation": perturbed.attrs}
    else:
        recording = Recording.load(args.recording)
    results, summary = analyse(recording, step=args.step, feasible_every=args.feasible_every, norm=args.norm,
                               seed=args.seed)
    summary.update(closed_loop)
    with storage.output_folder(args.out, protect=[args.recording, args.policy]) as out:
        if perturbed is not None:
            storage.write_netcdf(perturbed, out / "closed_loop_perturbation.nc")
        storage.write_netcdf(results, out / "nullspace.nc")
        write_figures(results, out, perturbed)
        storage.write_json(summary, out / "summary.json")
    print(json.dumps(summary, indent=2))


def _train(args) -> None:
    from kinesis_neuro.train import PPOConfig, Trainer

    from kinesis_neuro.envs.imitation import KINESIS_SETTINGS
    from kinesis_neuro.motion_library import select

    env = {**(KINESIS_SETTINGS if args.kinesis else {}), "motion": args.motion, "control_mode": args.control_mode}
    if args.termination:
        env["termination"] = args.termination
    if args.clips:
        env["clips"] = select(args.clips)
    if args.data_dir:
        env["data_dir"] = args.data_dir
    config = PPOConfig(total_steps=args.steps, workers=args.workers, num_envs=args.num_envs,
                       overlap=not args.no_overlap, seed=args.seed, env=env,
                       checkpoint_every=args.checkpoint_every, mirror_coef=args.mirror_coef, init_from=args.init_from,
                       hard_negative_mining=not args.no_mining, gate_warm_start=not args.no_gate_warm_start,
                       experts=tuple(args.experts.split(",")) if args.experts else ())
    trainer = Trainer(config, args.out, resume=args.resume, overwrite=args.overwrite, scheduler=args.scheduler)
    if trainer.gate_start:
        start = trainer.gate_start
        print(f"gate warm start: {start['samples']} observations of {len(start['clips'])} clips, the gate chooses "
              f"each clip's expert at {100 * start['accuracy']:.1f} % of them ("
              + ", ".join(f"{clip}: {k}" for clip, k in start["clips"].items()) + ")")
    try:
        trainer.run(progress=not args.no_progress)
    finally:
        trainer.close()
    print(f"{trainer.global_step} steps, {trainer.update} updates; checkpoint: {Path(args.out) / 'checkpoint.pt'}")


def _evaluate(args) -> None:
    from kinesis_neuro import evaluate, policies, storage
    from kinesis_neuro.motion_library import select

    if args.out:
        storage.refuse_overwriting([args.out], [args.policy])
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    table = evaluate.evaluate(policies.load(args.policy), splits=args.splits,
                              clips=select(args.clips) if args.clips else None, episodes=args.episodes,
                              seed=args.seed, **overrides)
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(evaluate.summary(table).to_string(float_format=lambda v: f"{v:.3f}"))
    if args.out:
        storage.write_csv(table, args.out)
        print(f"saved {args.out}")


def _parse_weaken(items) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, factor = item.rpartition(":")
        try:
            out[name] = NON_NEGATIVE(factor)
        except argparse.ArgumentTypeError:
            raise KinesisNeuroError(f"--weaken takes MUSCLE:FACTOR with FACTOR >= 0 (e.g. soleus_r:0.5), "
                                    f"got {item!r}") from None
        if not sep or not name:
            raise KinesisNeuroError(f"--weaken takes MUSCLE:FACTOR (e.g. soleus_r:0.5), got {item!r}")
    return out


def _rollout(args) -> None:
    from kinesis_neuro import policies, storage
    from kinesis_neuro.record import check_recording_path
    from kinesis_neuro.rollout import rollout

    if args.out:
        check_recording_path(args.out)
        storage.refuse_overwriting([args.out], [args.policy, args.motion])
    weaken = _parse_weaken(args.weaken)
    policy = policies.load(args.policy)
    overrides = {"motion": args.motion} if args.motion else {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    metrics, recording = rollout(policy, episodes=args.episodes, seed=args.seed, ablate=args.ablate or (),
                                 weaken=weaken, deterministic=not args.stochastic, **overrides)
    print(metrics.to_string(float_format=lambda v: f"{v:.3f}"))
    full = (~metrics.terminated_early).sum()
    print(f"{full}/{len(metrics)} episodes without early termination; mean tracking error "
          f"{metrics.tracking_error_m.mean():.3f} m")
    if args.out:
        recording.save(args.out)
        print(f"saved {args.out}: {recording.summary()}")


def _pipeline(args) -> None:
    from kinesis_neuro import storage
    from kinesis_neuro.compare import UNDEFINED_R_NOTE
    from kinesis_neuro.pipeline import main_job, muscle_table, write_policy_metrics

    storage.refuse_overwriting([args.out], [args.policy, args.emg])

    summary = main_job(args.policy, emg=args.emg, episodes=args.episodes, seed=args.seed, n_boot=args.bootstrap,
                       out=args.out, data_dir=args.data_dir)
    evaluation = summary["evaluation"]
    print(f"policy {summary['policy']}: {evaluation['full_episodes']}/{evaluation['episodes']} episodes without "
          f"early termination, mean {evaluation['mean_duration_s']:.2f} s, tracking error "
          f"{evaluation['mean_tracking_error_m']:.3f} m")
    print(f"Pearson r of mean gait cycles vs {summary['emg']} EMG:")
    print(muscle_table(summary).to_string(float_format=lambda v: f"{v:.3f}"))
    for label, controller in summary["controllers"].items():
        if controller["undefined_r"]:
            print(f"note: {label}: {UNDEFINED_R_NOTE}: {', '.join(controller['undefined_r'])}")
    for label, note in summary["notes"].items():
        print(f"note: {label} not compared: {note}")
    print(f"outputs in {args.out}: summary.json, policy_episodes.csv, recordings policy.nc and static-opt.nc, "
          f"comparisons in {', '.join(c.replace(' ', '-') + '/' for c in summary['controllers'])}, figures/")
    if args.write_metrics:
        print(f"policy metrics written to {write_policy_metrics(summary, args.policy)}")


def _benchmark(args) -> None:
    from kinesis_neuro import benchmark, mapping, storage

    inputs = [*(args.recording or []), *(args.policy or []), *(args.emg or []), args.muscle_map, args.muscle_names,
              args.events, args.recording_events]
    storage.refuse_overwriting([args.out], inputs)
    if not args.recording and not args.policy:
        raise KinesisNeuroError("give controllers to benchmark: --recording (recording .nc or activation file) "
                                "and/or --policy (policy folders)")
    table = mapping.load_mapping(args.muscle_map) if args.muscle_map else None
    controllers = {}
    for rec in _load_recordings(args.recording or [], args):
        controllers[benchmark.controller_label(rec, controllers)] = rec
    controllers.update(benchmark.rollout_policies(args.policy or [], episodes=args.episodes, seed=args.seed,
                                                  data_dir=args.data_dir))
    result, comparisons = benchmark.benchmark(controllers, user_emg=args.emg or (), side=args.side, mapping_table=table,
                                              events=args.events, emg_format=args.emg_format, gait=args.gait,
                                              datasets=args.datasets, n_boot=args.bootstrap, seed=args.seed,
                                              data_dir=args.data_dir)
    written = benchmark.write_outputs(result, comparisons, args.out, protect=inputs)
    print(benchmark.format_table(result))
    print(f"human range: {benchmark.CEILING}")
    print(f"outputs in {args.out}: {', '.join(written)}")


def _export_policy(args) -> None:
    from kinesis_neuro import policies

    print(f"policy written to {policies.export(args.run, args.out)}")


def _experts_next(args) -> None:
    from kinesis_neuro.experts import next_expert

    plan = next_expert(args.run, args.window, args.min_gain, args.threshold)
    print(f"plateaued: {'yes' if plan['plateaued'] else 'no'} (success rate {plan['success_rate']:.3f}, "
          f"mean over the clips of 1 - failure rate)")
    print(f"failed clips (failure rate >= {args.threshold:g}): {', '.join(plan['clips']) or 'none'}")
    if plan["command"]:
        print(f"next expert: {plan['command']}\nthen the gate: {plan['gate_command']}")
        if plan["other_env"]:
            print(f"(the run's other environment settings, set them in PPOConfig.env: {plan['other_env']})")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``kinesis-neuro CMD: error: ...``), exit code 2, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _recording_options(parser) -> None:
    parser.add_argument("--recording-events",
                        help="gait events of an activation file (GRF .mot, dataset file, or heel strikes "
                             "'right:0.61,1.72;left:1.15'; right_toe_off:T for toe-offs); replace a .nc's events")
    parser.add_argument("--muscle-names", help="CSV of other models' muscle names (name,myolegs) extending "
                                               "kinesis_neuro/data/muscle_names.csv (gait2392 -> MyoLegs)")
    parser.add_argument("--motion", help="motion of an activation file (e.g. moco-walk: its speed and gait)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kinesis-neuro", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kinesis-neuro {__version__}")
    parser.add_argument("--data-dir", help="local folder holding the datasets (default: $KINESIS_NEURO_DATA)")
    sub = parser.add_subparsers(dest="command", required=True)

    ds = sub.add_parser("datasets", help="registered human datasets: list, info, fetch, path")
    ds.add_argument("action", choices=["list", "info", "fetch", "path"])
    ds.add_argument("name", nargs="?")
    ds.set_defaults(func=_datasets)

    em = sub.add_parser("emg", help="read, process and segment EMG")
    em_sub = em.add_subparsers(dest="emg_command", required=True)
    ev = em_sub.add_parser("events", help="gait events from GRF (.mot), C3D events or musclesyneRgies cycles")
    ev.add_argument("source", help="file path or dataset (e.g. moco-walk/grf_walk.mot)")
    ev.add_argument("--threshold", type=POSITIVE, help="vertical GRF threshold in N (default 20)")
    ev.set_defaults(func=_emg_events)
    pr = em_sub.add_parser("process", help="EMG -> envelope -> time-normalised cycles -> NetCDF/Zarr")
    pr.add_argument("source", help="file path or dataset (e.g. musclesynergies, moco-walk)")
    pr.add_argument("--preset", default="default", help="default | musclesynergies | processed")
    pr.add_argument("--channels", nargs="+", help="channels to keep")
    pr.add_argument("--events", help="where gait events come from (GRF .mot, .c3d, .RData, or a dataset file)")
    pr.add_argument("--side", **SIDE)
    pr.add_argument("--points", type=POSITIVE_INT, default=101, help="points per cycle (default 101; 100 as KINESIS)")
    pr.add_argument("--split", help="stance,swing points (e.g. 100,100 as musclesyneRgies)")
    pr.add_argument("--out", help="output .nc or .zarr")
    pr.add_argument("--plot", help="figure of the mean cycles (.png/.pdf)")
    pr.set_defaults(func=_emg_process)

    si = sub.add_parser("simulate", help="muscle activations of a real walking trial (static optimisation)")
    si.add_argument("--controller", default="static-opt", choices=["static-opt"])
    si.add_argument("--motion", default="moco-walk", help="dataset or OpenSim coordinates file")
    si.add_argument("--grf", default="moco-walk/grf_walk.mot", help="OpenSim GRF .mot (dataset file or path)")
    si.add_argument("--exponent", type=POSITIVE, default=2.0, help="minimise sum a^exponent")
    si.add_argument("--reserves", type=POSITIVE, help="reserve torque actuators of this max torque (N m)")
    si.add_argument("--periodic", type=POSITIVE_INT, metavar="STRIDES",
                    help="simulate this many strides of the periodic walk built from the trial (mirrored half cycle)")
    si.add_argument("--emg", help="EMG envelopes to correlate with (e.g. moco-walk, or your own file)")
    si.add_argument("--muscle-map", help="CSV overriding the EMG-channel to muscle mapping (emg_name,muscles)")
    si.add_argument("--side", **SIDE)
    si.add_argument("--out", required=True, help="recording .nc")
    si.set_defaults(func=_simulate)

    mo = sub.add_parser("motion", help="reference motions: import, check, render")
    mo_sub = mo.add_subparsers(dest="motion_command", required=True)
    mi = mo_sub.add_parser("import", help="markers (.trc/.c3d), OpenSim IK (.sto/.mot/.mat) or joint positions "
                                          "(MDM/AMP .npy) -> MyoLegs coordinates (.mot) every command reads")
    mi.add_argument("file", help="motion file or dataset file (e.g. rajagopal-run/motion_capture_run.trc)")
    mi.add_argument("--out", required=True, help="coordinates file .mot (its provenance goes beside it: .mot.json)")
    mi.add_argument("--format", choices=["markers", "opensim", "mdm", "skeleton"],
                    help="override the format found from the extension (and a pickle's content)")
    mi.add_argument("--sample", type=SEED, help="sample of a multi-sample MDM file (default 0)")
    mi.add_argument("--static", help="static marker trial to calibrate the subject on (marker files)")
    mi.add_argument("--no-floor", action="store_true",
                    help="keep the height of a marker or IK motion as it is (joint positions are always placed)")
    mi.add_argument("--render", help="also draw an image strip of the imported motion (.png)")
    mi.set_defaults(func=_motion_import)
    mc = mo_sub.add_parser("check", help="foot skating, floor penetration, joint ranges, residuals and heel strikes "
                                         "of a motion on MyoLegs")
    mc.add_argument("--motion", default="moco-walk", help="dataset or OpenSim coordinates file")
    mc.add_argument("--grf", help="GRF (.mot or .c3d) for stance slip and heel strikes (default: moco-walk's own "
                                  "for --motion moco-walk; otherwise none: kinematic contacts only)")
    mc.add_argument("--no-grf", action="store_true", help="kinematic checks only, even for moco-walk")
    mc.add_argument("--json", help="also write the report as JSON")
    mc.set_defaults(func=_motion_check)
    mr = mo_sub.add_parser("render", help="image strip of a motion on MyoLegs (side view)")
    mr.add_argument("motion", help="dataset or OpenSim coordinates file")
    mr.add_argument("--out", required=True, help="image file (.png, .pdf, .svg)")
    mr.add_argument("--frames", type=POSITIVE_INT, default=6, help="frames in the strip (default 6)")
    mr.add_argument("--renderer", choices=["auto", "mujoco", "matplotlib"], default="auto",
                    help="MuJoCo offscreen (needs MUJOCO_GL=egl/osmesa) or a stick figure; auto: MuJoCo when it works")
    mr.set_defaults(func=_motion_render)

    tr = sub.add_parser("train", help="train a muscle policy to imitate a walking trial (PPO)")
    tr.add_argument("--clips", help="imitate a motion library: a split (train, held_out, text_to_motion) or clip "
                    "names separated by commas (see kinesis_neuro.motion_library); replaces --motion")
    tr.add_argument("--kinesis", action="store_true", help="KINESIS-aligned environment: mean kernels, L1+L2 effort "
                    "over substeps, activation dynamics, any-body termination, toe contacts observed")
    tr.add_argument("--termination", choices=["mean", "any"], help="end an episode when the mean tracked-body "
                    "distance (mean; default) or any body's (any; the --kinesis default) exceeds 0.15 m")
    tr.add_argument("--no-mining", action="store_true", help="with --clips: sample clips uniformly instead of "
                    "more often from the clips that fail (hard-negative mining)")
    tr.add_argument("--motion", default="moco-walk", help="dataset or OpenSim coordinates file")
    tr.add_argument("--steps", type=POSITIVE_INT, default=1_000_000, help="total control steps (all workers)")
    tr.add_argument("--workers", type=POSITIVE_INT, default=2, help="rollout workers (processes, or Dask actors)")
    tr.add_argument("--num-envs", type=POSITIVE_INT, default=16,
                    help="environments stepped together in each worker (a divisor of 2048, the steps per worker)")
    tr.add_argument("--no-overlap", action="store_true",
                    help="workers wait while the learner updates (default: they collect the next batch meanwhile)")
    tr.add_argument("--scheduler", help="run the workers on this dask.distributed scheduler (tcp://host:8786) "
                                        "instead of local processes")
    tr.add_argument("--control-mode", default="target-length", choices=["direct", "target-length"])
    tr.add_argument("--seed", type=SEED, default=0)
    tr.add_argument("--checkpoint-every", type=POSITIVE_INT, default=10, help="updates between checkpoints")
    tr.add_argument("--mirror-coef", type=NON_NEGATIVE, default=0.0,
                    help="weight of the left-right symmetry loss on the policy (0: off)")
    tr.add_argument("--out", required=True, help="run folder (config, checkpoint, training log)")
    tr.add_argument("--resume", action="store_true", help="continue exactly from the run's checkpoint")
    tr.add_argument("--init-from", metavar="PATH",
                    help="start from the weights of a training run folder or a policy folder (warm start); its "
                         "observation may lack entries appended at the end of this run's")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace the run already in --out (its checkpoint and log go once the new run has started)")
    tr.add_argument("--no-gate-warm-start", action="store_true",
                    help="with --experts: start the gate untrained (near the experts' average, as KINESIS) instead "
                    "of choosing on each clip the expert trained on it")
    tr.add_argument("--experts", metavar="A,B", help="train a gate over these frozen experts (training run or "
                    "policy folders, separated by commas) instead of one policy: KINESIS' mixture of experts")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_train)

    cp = sub.add_parser("compare", help="simulated activations vs human EMG: correlations, timing, SPM, synergies")
    cp.add_argument("--recording", required=True,
                    help="recording .nc (simulate or rollout), or another tool's activations: OpenSim static "
                         "optimisation *_activation.sto, CMC *_states.sto, Moco solution .sto, CSV/TSV (time + muscles)")
    cp.add_argument("--emg", required=True,
                    help="dataset (moco-walk, musclesynergies/SYNS.RData, schwartz2008, ...), EMG file, or a table "
                         "of EMG in %% of the gait cycle (CSV: %% column + MUSCLE or MUSCLE_mean/MUSCLE_sd columns)")
    cp.add_argument("--emg-format", help="processing preset of the EMG: default | musclesynergies | processed")
    cp.add_argument("--events", help="gait events of an EMG file (GRF .mot, .c3d, .RData, or heel strikes "
                                     "'right:0.61,1.72;left:1.15')")
    _recording_options(cp)
    cp.add_argument("--register-toe-off", type=_number(float, 0, inclusive=False), metavar="PCT",
                    help="register stance piecewise-linearly to toe-off at PCT %% of the cycle (both sides)")
    cp.add_argument("--speed", type=POSITIVE, help="non-dimensional speed v/sqrt(g L) picking the speed group of "
                                                   "normative tables (default: nearest the recording's)")
    cp.add_argument("--activation-dynamics", action="store_true",
                    help="pass the EMG envelope through the muscles' activation dynamics before comparing")
    cp.add_argument("--muscle-map", help="CSV overriding the EMG-channel to muscle mapping")
    cp.add_argument("--side", **SIDE)
    cp.add_argument("--phase-points", default="101", help="N points per cycle, or STANCE,SWING (e.g. 100,100)")
    cp.add_argument("--bootstrap", type=POSITIVE_INT, default=1000, help="bootstrap resamples for the CIs of r")
    cp.add_argument("--seed", type=SEED, default=0)
    cp.add_argument("--out", required=True, help="output folder")
    cp.set_defaults(func=_compare)

    sy = sub.add_parser("synergies", help="muscle synergies (NMF) of human EMG, optionally vs a recording")
    sy.add_argument("--emg", required=True)
    sy.add_argument("--recording", help="recording .nc to compare synergies with")
    sy.add_argument("--side", **SIDE)
    sy.add_argument("--phase-points", default="101")
    sy.add_argument("--rank-rule", default="r2_linearity", choices=["r2_linearity", "vaf"])
    sy.add_argument("--out", required=True)
    sy.set_defaults(func=_synergies)

    xp = sub.add_parser("export", help="one self-describing study dataset (NetCDF/Zarr/CSV) + data dictionary")
    xp.add_argument("--recording", nargs="+", required=True,
                    help="recording(s) .nc, or other tools' activation files (OpenSim SO/CMC/Moco .sto, CSV)")
    _recording_options(xp)
    xp.add_argument("--comparison", help="comparison.nc from kinesis-neuro compare")
    xp.add_argument("--side", **SIDE)
    xp.add_argument("--format", default="netcdf", choices=["netcdf", "zarr", "csv"])
    xp.add_argument("--out", required=True)
    xp.set_defaults(func=_export)

    ab = sub.add_parser("ablate", help="muscle ablation/weakness sweep of a policy on dask.distributed")
    ab.add_argument("--policy", required=True, help="policy folder")
    ab.add_argument("--kind", default="muscles", choices=["muscles", "groups"], help="every muscle or every group")
    ab.add_argument("--muscles", nargs="+", help="only these muscles or groups (e.g. tibant_r quadriceps_l)")
    ab.add_argument("--weaken", type=NON_NEGATIVE, help="weaken (max force x FACTOR) instead of silencing")
    ab.add_argument("--episodes", type=POSITIVE_INT, default=3)
    ab.add_argument("--episode-seconds", type=POSITIVE, help="episode cap (default: the policy's)")
    ab.add_argument("--seed", type=SEED, default=0)
    ab.add_argument("--scheduler", help="address of an existing dask scheduler (default: a LocalCluster)")
    ab.add_argument("--out", required=True, help="output folder (partial results there make reruns resume)")
    ab.set_defaults(func=_ablate)

    bm = sub.add_parser("benchmark", help="controllers vs every registered EMG dataset that suits their motion")
    bm.add_argument("--recording", nargs="+", help="recording(s) .nc or other tools' activation files")
    bm.add_argument("--policy", nargs="+", help="policy folder(s): rolled out --episodes seeded episodes each")
    bm.add_argument("--episodes", type=POSITIVE_INT, default=5)
    bm.add_argument("--seed", type=SEED, default=0)
    _recording_options(bm)
    bm.add_argument("--emg", nargs="+", help="your own EMG file(s) to add to the registered datasets")
    bm.add_argument("--emg-format", help="processing preset of --emg files: default | processed")
    bm.add_argument("--events", help="gait events of the --emg files (GRF file or 'right:0.61,1.72;left:1.15')")
    bm.add_argument("--muscle-map", help="CSV overriding the EMG-channel to muscle mapping (for --emg files)")
    bm.add_argument("--side", **{**SIDE, "help": "leg of the --emg files (registered datasets: right)"})
    bm.add_argument("--gait", choices=["walking", "running"], help="override the walking/running decision")
    bm.add_argument("--datasets", nargs="+", help="only these registered datasets (moco-walk, musclesynergies, "
                                                  "falisse2019, rajagopal-run, schwartz2008)")
    bm.add_argument("--bootstrap", type=POSITIVE_INT, default=1000, help="bootstrap resamples for the r CIs")
    bm.add_argument("--out", required=True, help="output folder")
    bm.set_defaults(func=_benchmark)

    pl = sub.add_parser("pipeline", help="main job: policy rollouts and static optimisation vs human EMG, figures")
    pl.add_argument("--policy", default="policies/myolegs-walk", help="policy folder")
    pl.add_argument("--emg", default="moco-walk", help="EMG dataset or file")
    pl.add_argument("--episodes", type=POSITIVE_INT, default=10)
    pl.add_argument("--seed", type=SEED, default=0)
    pl.add_argument("--bootstrap", type=POSITIVE_INT, default=1000, help="bootstrap resamples for the r CIs")
    pl.add_argument("--out", default="out/main")
    pl.add_argument("--write-metrics", action="store_true",
                    help="also write the policy folder's metrics.json (for its model card)")
    pl.set_defaults(func=_pipeline)

    ns = sub.add_parser("nullspace", help="null-space analyses of a recording (rank, perturbations, effort, ranges)")
    ns.add_argument("--recording", help="recording .nc (simulate or rollout)")
    ns.add_argument("--policy", help="policy folder: record --episodes rollouts and perturb it in closed loop")
    ns.add_argument("--episodes", type=POSITIVE_INT, default=5, help="with --policy: seeded episodes")
    ns.add_argument("--seed", type=SEED, default=0)
    ns.add_argument("--norm", type=POSITIVE, default=0.05, help="perturbation norm (activation, Euclidean)")
    ns.add_argument("--perturbation-seconds", type=POSITIVE, default=2.0, help="with --policy: episode cap (s)")
    ns.add_argument("--step", type=POSITIVE_INT, default=10, help="analyse every STEP-th frame")
    ns.add_argument("--feasible-every", type=POSITIVE_INT, default=100, help="feasible ranges every N-th frame (slow LPs)")
    ns.add_argument("--out", required=True)
    ns.set_defaults(func=_nullspace)

    ro = sub.add_parser("rollout", help="run a trained policy: evaluation metrics and a recording")
    ro.add_argument("--policy", required=True, help="policy folder (policy.safetensors + policy.json)")
    ro.add_argument("--motion", help="reference motion (default: the one the policy was trained on)")
    ro.add_argument("--episodes", type=POSITIVE_INT, default=10)
    ro.add_argument("--seed", type=SEED, default=0)
    ro.add_argument("--stochastic", action="store_true", help="sample actions instead of the policy mean")
    ro.add_argument("--ablate", nargs="+", help="muscles or groups to silence (e.g. tibant_r quadriceps_l)")
    ro.add_argument("--weaken", nargs="+", help="MUSCLE:FACTOR pairs scaling max force (e.g. soleus_r:0.5)")
    ro.add_argument("--out", help="recording .nc")
    ro.set_defaults(func=_rollout)

    ev = sub.add_parser("evaluate", help="a policy on the clips of the motion library: episodes completed and "
                        "tracking error per clip and split")
    ev.add_argument("--policy", required=True, help="policy folder (policy.safetensors + policy.json)")
    ev.add_argument("--splits", nargs="+", default=["train", "held_out", "text_to_motion"],
                    choices=["train", "held_out", "text_to_motion"])
    ev.add_argument("--clips", help="these clips instead (a split or names separated by commas)")
    ev.add_argument("--episodes", type=POSITIVE_INT, default=5, help="episodes per clip")
    ev.add_argument("--seed", type=SEED, default=0)
    ev.add_argument("--out", help="table .csv")
    ev.set_defaults(func=_evaluate)

    ex = sub.add_parser("export-policy", help="write policy.safetensors + policy.json from a training run")
    ex.add_argument("run", help="training run folder (holds checkpoint.pt)")
    ex.add_argument("--out", help="policy folder (default: the run folder)")
    ex.set_defaults(func=_export_policy)

    mx = sub.add_parser("experts", help="mixture of experts (KINESIS): when and on which clips to train the next")
    mx_sub = mx.add_subparsers(dest="action", required=True)
    nx = mx_sub.add_parser("next", help="whether a library run plateaued, the clips it fails and the commands "
                           "that train the next expert on them and then a gate over the experts")
    nx.add_argument("--run", required=True, help="training run folder (trained with --clips)")
    nx.add_argument("--threshold", type=float, default=0.5,
                    help="failure rate (in [0, 1]) from which a clip counts as failed")
    nx.add_argument("--window", type=POSITIVE_INT, default=100, help="updates compared for the plateau")
    nx.add_argument("--min-gain", type=NON_NEGATIVE, default=0.01,
                    help="least gain of the success rate from one window to the next that is progress")
    nx.set_defaults(func=_experts_next)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"kinesis-neuro: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _show_warning  # one line per warning, like the errors
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "datasets" and args.action != "list" and not args.name:
        parser.error(f"datasets {args.action} needs a dataset NAME")
    try:
        args.func(args)
    except KinesisNeuroError as err:
        print(f"kinesis-neuro: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable paths, full disks: the user's to fix, not a bug
        reason = "no space left on device" if err.errno == errno.ENOSPC else err.strerror or str(err)
        print(f"kinesis-neuro: error: {f'{err.filename}: ' if err.filename else ''}{reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinesis-neuro: interrupted; no partial output was left", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
