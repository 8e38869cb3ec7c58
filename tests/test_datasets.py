import functools
import http.server
import shutil
import stat
import threading

import pytest

from kinesis_neuro import datasets
from kinesis_neuro.errors import ChecksumError, DatasetError

MOCO_FILES = {"coordinates.sto", "electromyography.sto", "grf_walk.mot", "grf_walk.xml", "id_walk.sto",
              "markers_walk.trc"}


def test_registry_cards_are_complete():
    reg = datasets.registry()
    assert set(reg) == {"moco-walk", "musclesynergies"}
    for ds in reg.values():
        for key in ("title", "licence", "citation", "base_url", "source_repo", "commit", "side"):
            assert ds.card[key], (ds.name, key)
        assert ds.card["base_url"].startswith("https://raw.githubusercontent.com/")
        assert ds.card["commit"] in ds.card["base_url"]
        for f in ds.files.values():
            assert len(f.sha256) == 64 and {"kind", "units", "side", "processing"} <= set(f.meta)
    assert set(reg["moco-walk"].files) == MOCO_FILES
    assert reg["moco-walk"].file().name == "electromyography.sto"


def test_dataset_path_holds_all_verified_files(data_dir):
    folder = datasets.dataset_path("moco-walk")
    assert folder == data_dir / "moco-walk"
    assert MOCO_FILES <= {p.name for p in folder.iterdir()}
    for name, entry in datasets.get("moco-walk").files.items():
        assert datasets.sha256(folder / name) == entry.sha256


def _copy(data_dir, dest, name="moco-walk"):
    shutil.copytree(data_dir / name, dest / name)
    return dest / name


def test_read_only_folder_works(data_dir, tmp_path):
    folder = _copy(data_dir, tmp_path)
    for p in [*folder.iterdir(), folder]:
        p.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    try:
        assert datasets.dataset_path("moco-walk", data_dir=tmp_path) == folder
        assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before  # nothing written
    finally:
        folder.chmod(0o755)


def test_checksum_mismatch_is_reported(data_dir, tmp_path):
    folder = _copy(data_dir, tmp_path)
    target = folder / "grf_walk.mot"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(ChecksumError, match="grf_walk.mot.*does not match"):
        datasets.fetch("moco-walk", "grf_walk.mot", data_dir=tmp_path)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DatasetError, match="registered datasets: .*moco-walk"):
        datasets.get("walking-2000")
    with pytest.raises(DatasetError, match="no file 'x.sto'"):
        datasets.fetch("moco-walk", "x.sto")


def test_offline_and_missing_says_which_file_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DatasetError) as err:
        datasets.fetch("moco-walk", "id_walk.sto", data_dir=tmp_path / "empty", offline=True)
    msg = str(err.value)
    assert "moco-walk/id_walk.sto" in msg and str(tmp_path / "empty") in msg and str(tmp_path / "cache") in msg
    assert "KINESIS_NEURO_DATA" in msg and "datasets fetch moco-walk" in msg


@pytest.fixture
def loopback_server(data_dir):
    """A real HTTP server on 127.0.0.1 serving the shared datasets (no external network)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(data_dir))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_into_cache_with_pooch(loopback_server, tmp_path, monkeypatch):
    ds = datasets.get("musclesynergies")
    monkeypatch.setitem(ds.card, "base_url", loopback_server + "musclesynergies/")
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    path = datasets.fetch("musclesynergies", "FILT_EMG.RData", data_dir=tmp_path / "none", offline=False)
    assert path == tmp_path / "cache" / "musclesynergies" / "FILT_EMG.RData"
    assert datasets.sha256(path) == ds.file("FILT_EMG.RData").sha256
    # a corrupted cached copy is caught on the next load
    path.write_bytes(b"not the file")
    with pytest.raises(ChecksumError):
        datasets.fetch("musclesynergies", "FILT_EMG.RData", data_dir=tmp_path / "none", offline=True)


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    ds = datasets.get("musclesynergies")
    monkeypatch.setitem(ds.card, "base_url", "http://127.0.0.1:9/")  # discard port: connection refused
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="download failed"):
        datasets.fetch("musclesynergies", "SYNS.RData", data_dir=tmp_path, offline=False)


def test_info_shows_card():
    text = datasets.info("moco-walk")
    assert "Apache-2.0" in text and "electromyography.sto" in text and "2000 Hz" in text
