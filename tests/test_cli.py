import subprocess
import sys

import pytest

from kinesis_neuro import storage
from kinesis_neuro.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "kinesis_neuro.cli", *args], capture_output=True, text=True)


def test_datasets_list_and_path(data_dir, capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "moco-walk" in out and "musclesynergies" in out
    assert main(["datasets", "path", "moco-walk"]) == 0
    assert capsys.readouterr().out.strip() == str(data_dir / "moco-walk")
    assert main(["--data-dir", str(data_dir), "datasets", "info", "musclesynergies"]) == 0
    assert "doi:10.21105/joss.04439" in capsys.readouterr().out


def test_emg_process_writes_cycles_and_figure(data_dir, tmp_path, capsys):
    out, fig = tmp_path / "ms.nc", tmp_path / "ms.png"
    code = main(["emg", "process", "musclesynergies", "--preset", "musclesynergies", "--events", "musclesynergies",
                 "--split", "100,100", "--out", str(out), "--plot", str(fig)])
    assert code == 0
    assert "3 right gait cycle(s) x 200 phase points" in capsys.readouterr().out
    assert storage.load(out).shape == (3, 200, 13) and fig.stat().st_size > 10_000


def test_emg_events_table(data_dir, capsys):
    assert main(["emg", "events", "moco-walk/grf_walk.mot"]) == 0
    out = capsys.readouterr().out
    assert "0.8355 heel_strike  left" in out and "1.4112 heel_strike right" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["datasets", "info", "nope"], "unknown dataset 'nope'"),
        (["emg", "process", "moco-walk", "--channels", "deltoid"], "no channel ['deltoid']"),
        (["emg", "process", "moco-walk/markers_walk.trc", "--preset", "default"], "Nyquist frequency 50 Hz"),
        (["emg", "process", "/nonexistent/file.sto"], "/nonexistent/file.sto: no such file"),
        (["emg", "process", "moco-walk", "--preset", "magic"], "unknown processing preset"),
    ],
)
def test_user_errors_are_one_line_without_traceback(data_dir, args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_offline_missing_dataset_message(tmp_path):
    import os

    env = {**os.environ, "KINESIS_NEURO_DATA": str(tmp_path), "KINESIS_NEURO_CACHE": str(tmp_path / "c"),
           "KINESIS_NEURO_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "kinesis_neuro.cli", "datasets", "path", "moco-walk"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "not available offline" in result.stderr and "Traceback" not in result.stderr


def test_own_emg_labels_fail_before_the_work_and_benchmark_needs_a_controller(data_dir, tmp_path):
    path = tmp_path / "emg.csv"
    path.write_text("time,soleus,hamstrings\n0.5,0.1,0.2\n0.6,0.2,0.3\n0.7,0.1,0.2\n")
    result = run_cli("simulate", "--emg", str(path), "--side", "left", "--out", str(tmp_path / "so.nc"))
    assert result.returncode == 2 and "EMG channel 'hamstrings' is not in the muscle mapping" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "so.nc").exists()
    result = run_cli("benchmark", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "give controllers to benchmark" in result.stderr
    activations = tmp_path / "activations.csv"
    activations.write_text("time,soleus_r\n0.5,0.1\n0.6,0.2\n0.7,0.1\n")
    result = run_cli("compare", "--recording", str(activations), "--emg", "moco-walk", "--recording-events", "right:x",
                     "--out", str(tmp_path / "c"))
    assert result.returncode == 2 and "'x' is not a time in s" in result.stderr and "Traceback" not in result.stderr
