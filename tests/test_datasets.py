import functools
import hashlib
import http.server
import re
import shutil
import stat
import threading

import pytest

from kinesis_neuro import datasets
from kinesis_neuro.cli import main
from kinesis_neuro.errors import ChecksumError, DatasetError

MOCO_FILES = {"coordinates.sto", "electromyography.sto", "grf_walk.mot", "grf_walk.xml", "id_walk.sto",
              "markers_walk.trc"}
# the ten downloadable datasets of issue 14 (two original + eight new) and the local-only one
DOWNLOADABLE = {"moco-walk", "musclesynergies", "falisse2019", "rajagopal-run", "moco-subject05", "hamner-run",
                "gaitextract-walk", "c3d-gait-emg", "schwartz2008", "t2m-samples"}
LOCAL_ONLY = {"opensim-results"}
ALL_FILES = [(name, f) for name, ds in sorted(datasets.registry().items()) for f in ds.files]
RAW_URL = re.compile(r"^https://raw\.githubusercontent\.com/([\w.-]+/[\w.-]+)/([0-9a-f]{40})/\S+$")


def test_registry_cards_are_complete():
    reg = datasets.registry()
    assert set(reg) == DOWNLOADABLE | LOCAL_ONLY
    for ds in reg.values():
        for key in ("title", "description", "licence", "citation", "side", "subjects"):
            assert ds.card[key], (ds.name, key)
        assert ds.local_only == (ds.name in LOCAL_ONLY)
        if not ds.local_only:
            for key in ("base_url", "source_repo", "commit"):
                assert ds.card[key], (ds.name, key)
            assert ds.card["base_url"].startswith("https://raw.githubusercontent.com/")
            assert ds.card["commit"] in ds.card["base_url"]
        assert len(ds.card["title"]) <= 80, ds.name  # one line in `datasets list`
        for f in ds.files.values():
            assert len(f.sha256) == 64 and {"kind", "units", "side", "processing"} <= set(f.meta)
            assert f.kind == f.meta["kind"] and f.meta["side"] in ("right", "left", "both", "unknown")
        if ds.card.get("default_emg"):
            assert ds.file().kind in ("emg", "emg-cycles", "c3d"), ds.name
        if ds.card.get("grf"):
            assert ds.file(ds.card["grf"]).kind == "grf", ds.name
    assert set(reg["moco-walk"].files) == MOCO_FILES
    assert reg["moco-walk"].file().name == "electromyography.sto"


@pytest.mark.parametrize("name, filename", ALL_FILES, ids=[f"{n}/{f}" for n, f in ALL_FILES])
def test_every_registered_file_is_local_and_matches_its_sha256(data_dir, name, filename):
    """Every file of every card is in the shared data folder, byte for byte (hashlib, not the registry)."""
    entry = datasets.get(name).file(filename)
    path = data_dir / name / filename
    assert path.is_file(), f"{path} is missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    assert datasets.fetch(name, filename) == path  # and the registry finds and verifies it offline


def test_every_downloadable_file_has_a_raw_url_at_a_fixed_commit():
    for name in DOWNLOADABLE:
        ds = datasets.get(name)
        for filename in ds.files:
            url = ds.url(filename)
            match = RAW_URL.match(url or "")
            assert match, (name, filename, url)
            repo, commit = ds.source(filename)
            assert match.groups() == (repo, commit), (name, filename, url)
    ds = datasets.get("opensim-results")
    assert all(ds.url(f) is None and ds.source(f) == (None, None) for f in ds.files)


def test_source_names_and_folders_that_differ_from_the_local_name():
    raj = "https://raw.githubusercontent.com/opensim-org/opensim-models/20a888b9655e73fb84963d6e03eee3752cf6074b/Pipelines/Rajagopal/"
    run = datasets.get("rajagopal-run")
    assert run.url("emg_run.mat") == raj + "scripts/emg_run.mat"
    assert run.url("grf_run.mot") == raj + "ExpData/grf_run.mot"
    assert run.url("markerset_preScale.xml") == raj + "Scale/markerset_walk_preScale.xml"
    assert run.url("ik_setup_run.xml") == raj + "IK/ik_setup_run.xml"
    t2m = datasets.get("t2m-samples")
    assert t2m.url("mdm_running_in_circle.npy").endswith(
        "/ciroanni/motion-diffusion-model/00d34e364394bf5fedbb451870faec64c9994cf8/results.npy")
    assert t2m.url("amp_cmu_09_11_run.npy").endswith(
        "/NVIDIA-Omniverse/IsaacGymEnvs/aeed298638a1f7b5421b38f5f3cc2d1079b6d9c3/assets/amp/motions/amp_humanoid_run.npy")
    assert {t2m.source(f)[0] for f in t2m.files} == {"ciroanni/motion-diffusion-model", "NVIDIA-Omniverse/IsaacGymEnvs"}
    assert " " not in datasets.get("schwartz2008").url("MTibialisAnt.txt")  # "Walking norm data" is %20-encoded


def test_licences_as_the_sources_state_them():
    licence = {name: ds.card["licence"] for name, ds in datasets.registry().items()}
    for name in ("rajagopal-run", "gaitextract-walk", "opensim-results"):  # README: none stated
        assert licence[name] == "none stated", name
    c3d = licence["c3d-gait-emg"]  # repository MIT/Apache-2.0, sample files without a data licence
    assert "MIT" in c3d and "Apache-2.0" in c3d and "none stated" in c3d
    assert licence["moco-walk"] == licence["moco-subject05"] == licence["hamner-run"] == "Apache-2.0"
    assert licence["musclesynergies"] == licence["falisse2019"] == "MIT"
    assert licence["schwartz2008"].startswith("Apache-2.0")
    assert "MIT" in licence["t2m-samples"] and "BSD-3" in licence["t2m-samples"]
    t2m = datasets.get("t2m-samples")
    assert {t2m.file(f).meta["licence"] for f in t2m.files} == {"MIT", "BSD-3"}


def test_known_defects_are_on_the_cards():
    defects = {name: " ".join(ds.card.get("known_defects", [])) for name, ds in datasets.registry().items()}
    assert "k/1000 s" in defects["rajagopal-run"]
    assert "HAMMED" in defects["gaitextract-walk"] and "OFFSET/SCALE" in defects["gaitextract-walk"]
    assert "36 %" in defects["falisse2019"] and "side is not labelled" in defects["falisse2019"]
    assert "0.7-1.43 s" in defects["hamner-run"]
    assert "restricted unpickler" in defects["t2m-samples"]
    for name in sorted(DOWNLOADABLE - {"musclesynergies"}) + sorted(LOCAL_ONLY):
        assert defects[name], name
    for name, filename in ALL_FILES:  # each pickled .npy says which globals a restricted unpickler must allow
        if filename.endswith(".npy"):
            assert datasets.get(name).file(filename).meta["pickle_globals"], filename


def test_files_by_kind():
    assert [f.name for f in datasets.get("hamner-run").files_of_kind("grf")] == ["subject02_grf_HiFreq.mot"]
    assert len(datasets.get("schwartz2008").files_of_kind("normative-emg")) == 5
    assert {f.kind for f in datasets.get("t2m-samples").files.values()} >= {"motion-joint-positions", "skeleton-motion"}
    with pytest.raises(DatasetError, match="no default EMG file.*hamner-run/FILE"):
        datasets.get("hamner-run").file()


def test_datasets_list_shows_every_dataset_one_line_each(capsys):
    assert main(["datasets", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(DOWNLOADABLE | LOCAL_ONLY)  # a header, then one line per dataset
    assert {line.split()[0] for line in lines[1:]} == DOWNLOADABLE | LOCAL_ONLY
    assert all(len(line) <= 140 for line in lines)
    row = {line.split()[0]: line for line in lines[1:]}
    assert " local " in row["opensim-results"] and "none stated" in row["rajagopal-run"]


def test_info_shows_known_defects(capsys):
    assert main(["datasets", "info", "rajagopal-run"]) == 0
    out = capsys.readouterr().out
    assert "known defects:" in out and "k/1000 s" in out and "Pipelines/Rajagopal/scripts/emg_run.mat" in out
    assert main(["datasets", "info", "opensim-results"]) == 0
    out = capsys.readouterr().out
    assert "local only" in out and "none stated" in out


@pytest.mark.parametrize("action", ["path", "fetch"])
def test_local_only_dataset_missing_is_a_clear_error(tmp_path, monkeypatch, capsys, action):
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    assert main(["datasets", action, "opensim-results"]) == 2
    err = capsys.readouterr().err
    assert "local-only" in err and "cannot be downloaded" in err and str(tmp_path / "data" / "opensim-results") in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(DatasetError, match="local-only"):  # online too: there is nothing to download
        datasets.fetch("opensim-results", "so_activation.sto", offline=False)


def test_local_only_dataset_is_read_from_the_data_folder(data_dir):
    assert datasets.dataset_path("opensim-results") == data_dir / "opensim-results"


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


def test_download_follows_per_file_url_and_source_path(loopback_server, tmp_path, monkeypatch):
    """A file's own ``url`` / ``source_path`` is what pooch downloads; the cache keeps the local name."""
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    t2m = datasets.get("t2m-samples")
    monkeypatch.setitem(t2m.file("amp_cmu_09_11_run.npy").meta, "url", loopback_server + "t2m-samples/amp_cmu_09_11_run.npy")
    path = datasets.fetch("t2m-samples", "amp_cmu_09_11_run.npy", data_dir=tmp_path / "none", offline=False)
    assert path == tmp_path / "cache" / "t2m-samples" / "amp_cmu_09_11_run.npy"
    run = datasets.get("rajagopal-run")
    monkeypatch.setitem(run.card, "base_url", loopback_server)
    monkeypatch.setitem(run.file("ik_setup_run.xml").meta, "source_path", "rajagopal-run/ik_setup_run.xml")
    assert run.url("ik_setup_run.xml") == loopback_server + "rajagopal-run/ik_setup_run.xml"
    path = datasets.fetch("rajagopal-run", "ik_setup_run.xml", data_dir=tmp_path / "none", offline=False)
    assert datasets.sha256(path) == run.file("ik_setup_run.xml").sha256


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    ds = datasets.get("musclesynergies")
    monkeypatch.setitem(ds.card, "base_url", "http://127.0.0.1:9/")  # discard port: connection refused
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="download failed"):
        datasets.fetch("musclesynergies", "SYNS.RData", data_dir=tmp_path, offline=False)


def test_info_shows_card():
    text = datasets.info("moco-walk")
    assert "Apache-2.0" in text and "electromyography.sto" in text and "2000 Hz" in text
