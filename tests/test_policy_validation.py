"""Untrusted policy folders and training checkpoints: every corrupt or foreign file gives a one-line
``KinesisNeuroError`` naming the file, never a traceback, and nothing but tensors is ever unpickled."""

import json
import os
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from kinesis_neuro import policies
from kinesis_neuro.cli import main
from kinesis_neuro.errors import KinesisNeuroError
from kinesis_neuro.train import CHECKPOINT, load_checkpoint, save_checkpoint


def cli_error(capsys, argv: list[str]) -> str:
    """Run the command line, which must fail with exit code 2 and one line on stderr; that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kinesis-neuro: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _edit_json(change):
    def corrupt(folder):
        config = json.loads((folder / "policy.json").read_text())
        change(config)
        (folder / "policy.json").write_text(json.dumps(config))
    return corrupt


def _edit_weights(change):
    def corrupt(folder):
        state = load_file(folder / "policy.safetensors")
        change(state)
        save_file(state, folder / "policy.safetensors")
    return corrupt


def _write(name, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


def _truncate(folder):
    data = (folder / "policy.safetensors").read_bytes()
    (folder / "policy.safetensors").write_bytes(data[: len(data) // 2])


def _replace_by_folder(folder):
    (folder / "policy.json").unlink()
    (folder / "policy.json").mkdir()


def _replace_by_fifo(folder):
    (folder / "policy.json").unlink()
    os.mkfifo(folder / "policy.json")


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _poison(value):
    def change(state):
        state["actor.0.weight"][0, 0] = value
    return change


CORRUPT_POLICIES = {  # how the folder is corrupted, what the message must say
    "config missing": (lambda f: (f / "policy.json").unlink(), r"policy.json: missing"),
    "config not JSON": (_write("policy.json", b'{"hidden": [32, '), r"policy.json: not valid JSON"),
    "config not UTF-8": (_write("policy.json", b"\xff\xfe\x00"), r"policy.json: not valid JSON"),
    "config not an object": (_write("policy.json", b"[32, 32]"), r"policy.json: expected a JSON object"),
    "no hidden": (_edit_json(lambda c: c.pop("hidden")), r"policy.json: lacks hidden"),
    "no env": (_edit_json(lambda c: c.pop("env")), r"policy.json: lacks env"),
    "negative layer size": (_edit_json(_set("hidden", [32, -1])), r"hidden must be a non-empty list"),
    "hidden not a list": (_edit_json(_set("hidden", "32")), r"hidden must be a non-empty list"),
    "fractional layer size": (_edit_json(_set("hidden", [32.5, 32])), r"hidden must be a non-empty list"),
    "hidden of other sizes": (_edit_json(_set("hidden", [64, 32])),
                              r"actor.0.weight has shape \(32, \d+\), expected \(64, \d+\)"),
    "env not an object": (_edit_json(_set("env", "moco-walk")), r"env must be a mapping"),
    "unknown env key": (_edit_json(lambda c: c["env"].update(motoin="x")),
                        r"env: unknown environment settings \['motoin'\]"),
    "config a folder": (_replace_by_folder, r"policy.json: exists, but is not a regular file"),
    "config a FIFO": (_replace_by_fifo, r"policy.json: exists, but is not a regular file"),
    "weights missing": (lambda f: (f / "policy.safetensors").unlink(), r"policy.safetensors: missing"),
    "weights truncated": (_truncate, r"policy.safetensors: not a readable safetensors file"),
    "weights garbage": (_write("policy.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......"),
                        r"policy.safetensors: not a readable safetensors file"),
    "weights empty": (_write("policy.safetensors", b""), r"policy.safetensors: not a readable safetensors file"),
    "no norm.mean": (_edit_weights(lambda s: s.pop("norm.mean")), r"lacks the 1-D tensor norm.mean"),
    "no log_std": (_edit_weights(lambda s: s.pop("log_std")), r"lacks the 1-D tensor log_std"),
    "no actor layer": (_edit_weights(lambda s: s.pop("actor.2.weight")), r"do not fit .* lacks actor.2.weight"),
    "wrong shape": (_edit_weights(lambda s: s.__setitem__("actor.2.bias", torch.zeros(7))),
                    r"actor.2.bias has shape \(7,\), expected \(32,\)"),
    "unexpected tensor": (_edit_weights(lambda s: s.__setitem__("actor.9.weight", torch.zeros(2))),
                          r"unexpected actor.9.weight"),
    "NaN weight": (_edit_weights(_poison(float("nan"))), r"actor.0.weight holds NaN or infinite values"),
    "infinite weight": (_edit_weights(_poison(float("inf"))), r"actor.0.weight holds NaN or infinite values"),
}


@pytest.mark.parametrize("case", list(CORRUPT_POLICIES))
def test_a_corrupt_policy_folder_gives_one_line_naming_the_file(policy_dir, tmp_path, capsys, case):
    corrupt, message = CORRUPT_POLICIES[case]
    folder = shutil.copytree(policy_dir, tmp_path / "policy")
    corrupt(folder)
    with pytest.raises(KinesisNeuroError, match=message):
        policies.load(folder)
    assert str(folder) in cli_error(capsys, ["rollout", "--policy", str(folder), "--episodes", "1"])


def test_a_folder_without_policy_files_is_not_a_policy_folder(tmp_path, capsys):
    with pytest.raises(KinesisNeuroError, match="not a policy folder"):
        policies.load(tmp_path)
    cli_error(capsys, ["rollout", "--policy", str(tmp_path / "nowhere")])


def test_the_copied_policy_folder_loads(policy_dir, tmp_path):
    """The corruptions above start from a folder that loads."""
    policy = policies.load(shutil.copytree(policy_dir, tmp_path / "policy"))
    assert policy.env_config["episode_seconds"] == 1.0


class Hostile:
    """Unpickling this runs ``touch MARKER``: a checkpoint must never be unpickled beyond tensors."""

    marker = None

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile(path, tmp_path, protocol=2):
    Hostile.marker = tmp_path / "MARKER"
    path.write_bytes(pickle.dumps({"config": {}, "agent": Hostile(), "update": 1, "global_step": 1},
                                  protocol=protocol))


def _foreign(payload):
    return lambda path, tmp_path: torch.save(payload, path)


def _truncated_checkpoint(path, tmp_path):
    save_checkpoint(path, {"config": {}, "agent": {"w": torch.zeros(100)}, "update": 1, "global_step": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CORRUPT_CHECKPOINTS = {
    "hostile pickle (protocol 2)": (_hostile, r"objects other than tensors and plain data"),
    "hostile pickle (protocol 4)": (lambda p, t: _hostile(p, t, protocol=4), r"objects other than tensors"),
    "garbage": (lambda p, t: p.write_bytes(b"not a checkpoint at all"), r"not a kinesis-neuro training checkpoint"),
    "empty": (lambda p, t: p.write_bytes(b""), r"corrupt, truncated or of another format: EOFError"),
    "truncated": (_truncated_checkpoint, r"corrupt, truncated or of another format"),
    "a bare tensor": (_foreign(torch.zeros(3)), r"it holds a Tensor, not the dict a checkpoint is"),
    "a foreign dict": (_foreign({"model": {"w": torch.zeros(3)}}), r"it lacks config, agent, update, global_step"),
    "wrong types": (_foreign({"config": [], "agent": {}, "update": "1", "global_step": 1}),
                    r"config and agent must be dicts"),
    "NaN weights": (_foreign({"config": {}, "agent": {"log_std": torch.tensor([float("nan")])}, "update": 1,
                              "global_step": 1}), r"agent: log_std holds NaN or infinite values"),
    "a folder": (lambda p, t: p.mkdir(), r"checkpoint.pt: not a regular file"),
}


@pytest.mark.parametrize("case", list(CORRUPT_CHECKPOINTS))
def test_a_corrupt_checkpoint_is_refused_without_running_code(tmp_path, capsys, case):
    make, message = CORRUPT_CHECKPOINTS[case]
    run = tmp_path / "run"
    run.mkdir()
    make(run / CHECKPOINT, tmp_path)
    with pytest.raises(KinesisNeuroError, match=message):
        load_checkpoint(run / CHECKPOINT)
    assert "checkpoint.pt" in cli_error(capsys, ["export-policy", str(run), "--out", str(tmp_path / "policy")])
    assert "checkpoint.pt" in cli_error(capsys, ["train", "--out", str(run), "--resume", "--no-progress"])
    assert not (tmp_path / "MARKER").exists()  # no code in the file ran
    assert not (tmp_path / "policy").exists()
    assert sorted(p.name for p in run.iterdir()) == [CHECKPOINT]  # --resume wrote nothing


def test_export_writes_both_files_whole_and_never_over_its_input(policy_dir, tmp_path, capsys):
    run = shutil.copytree(policy_dir, tmp_path / "run")
    checkpoint = (run / CHECKPOINT).read_bytes()
    err = cli_error(capsys, ["export-policy", str(run), "--out", str(run / CHECKPOINT)])
    assert "exists and is not a folder" in err
    (tmp_path / "file").write_text("x")
    assert "exists and is not a folder" in cli_error(capsys, ["export-policy", str(run), "--out",
                                                              str(tmp_path / "file")])
    (run / "policy.safetensors").unlink()
    (run / "policy.safetensors").symlink_to(run / CHECKPOINT)  # writing the weights would replace the checkpoint
    assert "would overwrite an input" in cli_error(capsys, ["export-policy", str(run)])
    assert (run / CHECKPOINT).read_bytes() == checkpoint
    assert "is a file" in cli_error(capsys, ["export-policy", str(run / CHECKPOINT)])
    assert main(["export-policy", str(run), "--out", str(tmp_path / "policy")]) == 0
    assert sorted(p.name for p in (tmp_path / "policy").iterdir()) == ["policy.json", "policy.safetensors"]
    assert not [p for p in tmp_path.rglob("*") if ".partial-" in p.name]
    assert policies.load(tmp_path / "policy").env_config == policies.load(policy_dir).env_config
