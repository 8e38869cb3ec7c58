"""Hostile and broken input, generated from the real files, through every command.

Each case runs the command line in-process and checks what a user sees: exit code 2, one line starting with
``kinesis-neuro`` that names the offending file or option, no traceback (any exception other than the
package's user errors fails the test), nothing written under the output folder (not even a partial file),
and every input file byte-identical afterwards. Case ids start with their category
(``pytest tests/test_bad_input.py -v`` lists them).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdata
import xarray as xr

from kinesis_neuro.cli import main

MOCO = ("coordinates.sto", "grf_walk.mot", "electromyography.sto")


# -- corrupting real text files ---------------------------------------------------------------------------
def _split(path: Path) -> tuple[list[str], str, list[str]]:
    """OpenSim storage text as (header lines up to ``endheader``, column line, data rows)."""
    lines = path.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    return lines[:end + 1], lines[end + 1], lines[end + 2:]


def _join(header, columns, rows) -> str:
    return "\n".join([*header, columns, *rows]) + "\n"


def _set_cell(path: Path, row: int, col: int, value: str) -> str:
    header, columns, rows = _split(path)
    cells = rows[row].split("\t")
    cells[col] = value
    rows[row] = "\t".join(cells)
    return _join(header, columns, rows)


def _rename_column(path: Path, col: int, like: int) -> str:
    header, columns, rows = _split(path)
    names = columns.split("\t")
    names[col] = names[like]
    return _join(header, "\t".join(names), rows)


def _rows(path: Path, transform) -> str:
    header, columns, rows = _split(path)
    return _join(header, columns, transform(rows))


def _scale_time(path: Path, factor: float) -> str:
    header, columns, rows = _split(path)
    scaled = ["\t".join([repr(float(r.split("\t")[0]) * factor), *r.split("\t")[1:]]) for r in rows]
    return _join(header, columns, scaled)


def _swap(rows: list[str], i: int, j: int) -> list[str]:
    rows = list(rows)
    rows[i], rows[j] = rows[j], rows[i]
    return rows


def _text_variants(src: Path, first_data_col: int) -> dict[str, bytes]:
    """Broken copies of one OpenSim storage file (bytes, named by what is wrong)."""
    raw = src.read_bytes()
    n = len(_split(src)[2])
    return {
        "1e300-cell": _set_cell(src, n // 2, first_data_col, "1e300").encode(),
        "nan-cell": _set_cell(src, n // 2, first_data_col, "nan").encode(),
        "inf-cell": _set_cell(src, n // 3, first_data_col, "inf").encode(),
        "text-cell": _set_cell(src, n // 2, first_data_col, "abc").encode(),
        "duplicated-column": _rename_column(src, first_data_col + 1, first_data_col).encode(),
        "reversed-time": _rows(src, lambda r: _swap(r, n // 2, n // 2 + 1)).encode(),
        "duplicated-time": _rows(src, lambda r: r[: n // 2] + [r[n // 2]] + r[n // 2:]).encode(),
        "time-gap": _rows(src, lambda r: r[: n // 3] + r[2 * n // 3:]).encode(),
        "time-in-ms": _scale_time(src, 1000.0).encode(),
        "non-utf8": raw[: len(raw) // 2] + b"\xff\xfe\xfa" + raw[len(raw) // 2:],
        "truncated-mid-row": raw[: int(len(raw) * 0.6)],
        "header-only": "\n".join(_split(src)[0]).encode(),
        "empty": b"",
        "garbage": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


# -- corrupting a real recording ------------------------------------------------------------------------------
def _recording_variants(src: Path) -> dict[str, xr.Dataset | bytes]:
    ds = xr.load_dataset(src, engine="h5netcdf")

    def activation(f):
        out = ds.copy(deep=True)
        out["activation"].values = f(out["activation"].values)
        return out

    def nan_at(a):
        a = a.copy()
        a[5, 3] = np.nan
        return a

    reversed_time = ds.copy(deep=True).assign_coords(time=ds.time.values[::-1].copy())
    nan_event = ds.copy(deep=True)
    nan_event["heel_strike_time"].values[0] = np.nan
    late_event = ds.copy(deep=True)
    late_event["toe_off_time"].values[-1] = float(ds.time[-1]) + 100.0
    not_recording = ds.copy()
    not_recording.attrs.pop("kinesis_neuro_format")
    raw = src.read_bytes()
    return {
        "activation-negative": activation(lambda a: a - 5), "activation-times-7": activation(lambda a: a * 7),
        "activation-1e300": activation(lambda a: a + 1e300), "activation-nan": activation(nan_at),
        "reversed-time": reversed_time, "nan-event": nan_event, "event-outside": late_event,
        "not-a-recording": not_recording, "unrelated-netcdf": xr.Dataset({"x": ("t", np.arange(5.0))}),
        "truncated": raw[: len(raw) // 2], "garbage": raw[:8] + bytes(4096), "empty": b"",
    }


@pytest.fixture(scope="module")
def files(data_dir, tmp_path_factory) -> dict[str, Path]:
    """Every input of the cases, generated once: real copies, broken copies, a recording, policy folders."""
    from kinesis_neuro.simulate import static_optimisation_recording

    root = tmp_path_factory.mktemp("inputs")
    out = {}
    for name in MOCO:
        out[name] = root / name
        shutil.copy(data_dir / "moco-walk" / name, out[name])
        for what, data in _text_variants(out[name], 1).items():
            path = root / f"{what}-{name}"
            path.write_bytes(data)
            out[f"{what}/{name}"] = path
    header, columns, rows = _split(out["grf_walk.mot"])
    out["short/grf_walk.mot"] = root / "short-grf_walk.mot"  # covers 0-0.9 s of a motion lasting 0.45-1.80 s
    out["short/grf_walk.mot"].write_text(_join(header, columns, rows[:1800]))
    rec = static_optimisation_recording("moco-walk", "moco-walk/grf_walk.mot", progress=False)
    out["rec.nc"] = rec.save(root / "rec.nc")
    for what, data in _recording_variants(out["rec.nc"]).items():
        path = root / f"{what}-rec.nc"
        path.write_bytes(data if isinstance(data, bytes) else bytes(data.to_netcdf(engine="h5netcdf")))
        out[f"{what}/rec.nc"] = path
    for kind in ("sto", "nc"):
        out[f"fifo.{kind}"] = root / f"fifo.{kind}"
        os.mkfifo(out[f"fifo.{kind}"])
        out[f"folder.{kind}"] = root / f"folder.{kind}"
        out[f"folder.{kind}"].mkdir()
    out["SYNS.RData"] = root / "SYNS_lab2.RData"
    shutil.copy(data_dir / "musclesynergies" / "SYNS.RData", out["SYNS.RData"])
    out["unrelated.RData"] = root / "unrelated.RData"  # an R data frame, not musclesyneRgies data
    rdata.write_rda(out["unrelated.RData"], {"mydata": pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})})
    out["garbage.RData"] = root / "garbage.RData"
    out["garbage.RData"].write_bytes(b"RDX3\n" + bytes(300))
    out["comparison-like.nc"] = root / "comparison-like.nc"
    xr.Dataset({"r": ("channel", [0.5, 0.2])}).to_netcdf(out["comparison-like.nc"], engine="h5netcdf")
    return out


@pytest.fixture(scope="module")
def policies(policy_dir, tmp_path_factory) -> dict[str, Path]:
    """Broken copies of a real policy folder."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("policies")

    def variant(name, edit):
        folder = root / name
        shutil.copytree(policy_dir, folder)
        edit(folder)
        return folder

    def config(folder, change):
        cfg = json.loads((folder / "policy.json").read_text())
        change(cfg)
        (folder / "policy.json").write_text(json.dumps(cfg))

    def nan_weights(folder):
        state = load_file(folder / "policy.safetensors")
        state["log_std"][0] = float("nan")
        save_file(state, folder / "policy.safetensors")

    def cut(folder, name, fraction):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * fraction)])

    return {
        "good": policy_dir,
        "invalid-json": variant("invalid-json", lambda f: cut(f, "policy.json", 0.5)),
        "missing-hidden": variant("missing-hidden", lambda f: config(f, lambda c: c.pop("hidden"))),
        "wrong-hidden": variant("wrong-hidden", lambda f: config(f, lambda c: c.update(hidden=[7, 7]))),
        "unknown-env-key": variant("unknown-env-key", lambda f: config(f, lambda c: c["env"].update(warp=9))),
        "truncated-weights": variant("truncated-weights", lambda f: cut(f, "policy.safetensors", 0.5)),
        "garbage-weights": variant("garbage-weights", lambda f: (f / "policy.safetensors").write_bytes(bytes(999))),
        "nan-weights": variant("nan-weights", nan_weights),
        "no-weights": variant("no-weights", lambda f: (f / "policy.safetensors").unlink()),
    }


# -- the cases ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    category: str
    name: str
    argv: tuple  # "{key}" is a file of ``files``, "[key]" a policy folder, "<out>/..." the case's output folder
    names: str = ""  # text the error must contain (default: the file name of the first input that is not GOOD)


GOOD = {*MOCO, "rec.nc"}  # intact copies of real files


def _rec_cases() -> list[Case]:
    variants = ["activation-negative", "activation-times-7", "activation-1e300", "activation-nan", "reversed-time",
                "nan-event", "event-outside", "not-a-recording", "unrelated-netcdf", "truncated", "garbage", "empty"]
    commands = {
        "compare": ("compare", "--recording", "{X}", "--emg", "moco-walk", "--bootstrap", "10", "--out", "<out>/cmp"),
        "export": ("export", "--recording", "{X}", "--out", "<out>/study.nc"),
        "nullspace": ("nullspace", "--recording", "{X}", "--out", "<out>/ns"),
        "synergies": ("synergies", "--emg", "moco-walk", "--recording", "{X}", "--out", "<out>/syn"),
    }
    cases = [Case("recording", f"{cmd}-{v}", tuple(a.replace("X", f"{v}/rec.nc") for a in argv))
             for v in variants for cmd, argv in commands.items()]
    cases += [Case("recording", f"{cmd}-{kind}", tuple(a.replace("X", kind) for a in argv))
              for kind in ("fifo.nc", "folder.nc") for cmd, argv in commands.items()]
    cases.append(Case("recording", "export-unrelated-comparison",
                      ("export", "--recording", "{rec.nc}", "--comparison", "{comparison-like.nc}", "--out",
                       "<out>/study.nc"), names="comparison-like.nc"))
    return cases


def _text_cases() -> list[Case]:
    variants = ["1e300-cell", "nan-cell", "inf-cell", "text-cell", "duplicated-column", "reversed-time",
                "duplicated-time", "time-gap", "time-in-ms", "non-utf8", "truncated-mid-row", "header-only", "empty",
                "garbage"]
    cases = []
    for v in variants:
        cases += [
            Case("motion", f"simulate-motion-{v}", ("simulate", "--motion", f"{{{v}/coordinates.sto}}", "--grf",
                                                     "{grf_walk.mot}", "--out", "<out>/so.nc")),
            Case("grf", f"simulate-grf-{v}", ("simulate", "--motion", "{coordinates.sto}", "--grf",
                                               f"{{{v}/grf_walk.mot}}", "--out", "<out>/so.nc")),
            Case("grf", f"motion-check-grf-{v}", ("motion", "check", "--motion", "{coordinates.sto}", "--grf",
                                                   f"{{{v}/grf_walk.mot}}", "--json", "<out>/check.json")),
            Case("emg", f"emg-process-{v}", ("emg", "process", f"{{{v}/electromyography.sto}}", "--preset", "processed",
                                             "--events", "{grf_walk.mot}", "--out", "<out>/cycles.nc")),
        ]
    cases += [
        Case("grf", "simulate-grf-shorter-than-motion", ("simulate", "--motion", "{coordinates.sto}", "--grf",
                                                         "{short/grf_walk.mot}", "--out", "<out>/so.nc")),
        Case("file-kind", "emg-process-fifo", ("emg", "process", "{fifo.sto}", "--out", "<out>/c.nc")),
        Case("file-kind", "emg-process-folder", ("emg", "process", "{folder.sto}", "--out", "<out>/c.nc")),
        Case("file-kind", "simulate-motion-fifo", ("simulate", "--motion", "{fifo.sto}", "--out", "<out>/so.nc")),
        Case("file-kind", "emg-events-fifo", ("emg", "events", "{fifo.sto}")),
        Case("rdata", "compare-unrelated-rdata", ("compare", "--recording", "{rec.nc}", "--emg", "{unrelated.RData}",
                                                  "--phase-points", "100,100", "--out", "<out>/cmp")),
        Case("rdata", "compare-garbage-rdata", ("compare", "--recording", "{rec.nc}", "--emg", "{garbage.RData}",
                                                "--phase-points", "100,100", "--out", "<out>/cmp")),
        Case("rdata", "emg-process-garbage-rdata", ("emg", "process", "{garbage.RData}", "--out", "<out>/c.nc")),
    ]
    return cases


def _policy_cases() -> list[Case]:
    kinds = ["invalid-json", "missing-hidden", "wrong-hidden", "unknown-env-key", "truncated-weights",
             "garbage-weights", "nan-weights", "no-weights"]
    return [Case("policy", f"rollout-{k}", ("rollout", "--policy", f"[{k}]", "--episodes", "1", "--out",
                                            "<out>/r.nc"), names=k) for k in kinds]


def _option_cases() -> list[Case]:
    good = {"rollout": ("rollout", "--policy", "[good]", "--out", "<out>/r.nc"),
            "pipeline": ("pipeline", "--policy", "[good]", "--out", "<out>/main"),
            "nullspace": ("nullspace", "--recording", "{rec.nc}", "--out", "<out>/ns"),
            "nullspace-policy": ("nullspace", "--policy", "[good]", "--out", "<out>/ns"),
            "ablate": ("ablate", "--policy", "[good]", "--muscles", "soleus_r", "--out", "<out>/ab"),
            "simulate": ("simulate", "--out", "<out>/so.nc"),
            "compare": ("compare", "--recording", "{rec.nc}", "--emg", "moco-walk", "--out", "<out>/cmp"),
            "emg-process": ("emg", "process", "moco-walk", "--events", "moco-walk/grf_walk.mot", "--out",
                            "<out>/c.nc"),
            "emg-events": ("emg", "events", "moco-walk/grf_walk.mot"),
            "train": ("train", "--out", "<out>/run", "--no-progress")}
    options = {"rollout": ["--episodes", "--seed"], "pipeline": ["--episodes", "--bootstrap", "--seed"],
               "nullspace": ["--step", "--feasible-every", "--norm"],
               "nullspace-policy": ["--episodes", "--perturbation-seconds"],
               "ablate": ["--episodes", "--episode-seconds", "--weaken", "--seed"],
               "simulate": ["--periodic", "--exponent", "--reserves"], "compare": ["--bootstrap", "--seed"],
               "emg-process": ["--points"], "emg-events": ["--threshold"],
               "train": ["--steps", "--workers", "--checkpoint-every"]}
    cases = []
    for command, opts in options.items():
        for opt in opts:
            for value in ("0", "-1", "nan", "abc"):
                if value == "0" and opt in ("--seed", "--weaken"):
                    continue  # seed 0 and weakening to 0 are valid
                cases.append(Case("option", f"{command}{opt}={value}", (*good[command], opt, value), names=opt))
    cases += [
        Case("option", "compare--side=up", (*good["compare"], "--side", "up"), names="--side"),
        Case("option", "compare--phase-points=abc", (*good["compare"], "--phase-points", "abc"),
             names="--phase-points"),
        Case("option", "emg-process--split=x", (*good["emg-process"], "--split", "x"), names="--split"),
        Case("option", "rollout--weaken=soleus", (*good["rollout"], "--weaken", "soleus_r"), names="--weaken"),
        Case("option", "rollout--weaken=-1", (*good["rollout"], "--weaken", "soleus_r:-1"), names="--weaken"),
        Case("option", "rollout-out-not-nc", ("rollout", "--policy", "[good]", "--out", "<out>/r.csv"), names="r.csv"),
    ]
    return cases


def _overwrite_cases() -> list[Case]:
    return [
        Case("overwrite", "export-out-is-input", ("export", "--recording", "{rec.nc}", "--out", "{rec.nc}"),
             names="rec.nc"),
        Case("overwrite", "simulate-out-is-motion", ("simulate", "--motion", "{coordinates.sto}", "--out",
                                                     "{coordinates.sto}"), names="coordinates.sto"),
        Case("overwrite", "rollout-out-is-weights", ("rollout", "--policy", "[good]", "--out",
                                                     "[good]/policy.safetensors"), names="policy.safetensors"),
        Case("overwrite", "pipeline-out-is-policy", ("pipeline", "--policy", "[good]", "--out", "[good]"),
             names="policy"),
        Case("overwrite", "emg-process-out-is-input", ("emg", "process", "{rec.nc}", "--out", "{rec.nc}"),
             names="rec.nc"),
        Case("overwrite", "motion-check-json-is-grf", ("motion", "check", "--motion", "{coordinates.sto}", "--grf",
                                                       "{grf_walk.mot}", "--json", "{grf_walk.mot}"),
             names="grf_walk.mot"),
    ]


CASES = _rec_cases() + _text_cases() + _policy_cases() + _option_cases() + _overwrite_cases()


def _resolve(argv, files, policies, out: Path) -> list[str]:
    resolved = []
    for arg in argv:
        if arg.startswith("{"):
            arg = str(files[arg[1:-1]])
        elif arg.startswith("["):
            key, _, rest = arg[1:].partition("]")
            arg = str(policies[key]) + rest
        resolved.append(arg.replace("<out>", str(out)))
    return resolved


def _digests(paths) -> dict[Path, str]:
    """SHA-256 of every regular file among ``paths`` and inside those that are folders."""
    found = {}
    for p in map(Path, paths):
        for f in ([p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else []):
            if f.is_file():
                found[f] = hashlib.sha256(f.read_bytes()).hexdigest()
    return found


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang("the command hung")


def run_bad(argv: list[str], capsys) -> str:
    """Run the command line; returns its one-line error after checking exit code 2 and a single line."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, f"exit {code} for bad input; stderr: {captured.err}"
    assert len(lines) == 1 and lines[0].startswith("kinesis-neuro"), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.category}:{c.name}" for c in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(case, files, policies, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = _resolve(case.argv, files, policies, out)
    inputs = [a for a in argv if Path(a).exists() and not Path(a).is_relative_to(out)]
    before = _digests(inputs)
    message = run_bad(argv, capsys)
    names = case.names or next(files[a[1:-1]].name for a in case.argv if a.startswith("{") and a[1:-1] not in GOOD)
    assert names in message, message
    assert list(out.rglob("*")) == [], "output left behind"
    assert _digests(inputs) == before, "an input changed"
    assert not list(files["rec.nc"].parent.glob(".*partial-*")), "a partial file was left beside the inputs"


def test_syns_file_is_recognised_by_content_not_name(files):
    from kinesis_neuro.compare import human_cycles

    cycles = human_cycles(files["SYNS.RData"], split=(100, 100))  # saved as SYNS_lab2.RData
    assert dict(cycles.sizes) == {"subject": 15, "phase": 200, "channel": 13}


def _python(code: str, limit_bytes: int | None = None, **kw) -> subprocess.Popen:
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code], preexec_fn=limit, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_write_failure_is_one_line_and_leaves_nothing(data_dir, tmp_path):
    """A file-size limit (like a full disk) while writing: one line, exit 2, no crash, no partial file."""
    out = tmp_path / "cycles.nc"
    code = (f"import sys; from kinesis_neuro.cli import main; sys.exit(main(['emg', 'process', 'moco-walk', "
            f"'--preset', 'processed', '--out', {str(out)!r}]))")
    proc = _python(code, limit_bytes=100_000)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_kill_while_writing_leaves_no_output_under_the_final_name(files, tmp_path):
    """kill -9 while compare writes its folder: the folder never appears half-written under its name."""
    out = tmp_path / "cmp"
    code = (f"import sys; from kinesis_neuro.cli import main; sys.exit(main(['compare', '--recording', "
            f"{str(files['rec.nc'])!r}, '--emg', 'moco-walk', '--bootstrap', '50', '--out', {str(out)!r}]))")
    proc = _python(code)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".cmp.partial-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert not out.exists()
