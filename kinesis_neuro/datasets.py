"""Registry of real human datasets: cards in ``emg_datasets/``, download with pooch, local folders.

A file is looked up, in order, in the local data folder (``data_dir`` argument or the
``KINESIS_NEURO_DATA`` environment variable; ``<folder>/<dataset>/<file>`` or ``<folder>/<file>``),
then in the download cache (``KINESIS_NEURO_CACHE`` or the user cache), and is downloaded into the
cache only if it is in neither place and ``KINESIS_NEURO_OFFLINE`` is not set. Its SHA-256 is checked
on every load; local folders are only read, so a read-only folder works.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from kinesis_neuro.errors import ChecksumError, DatasetError

DATA_ENV = "KINESIS_NEURO_DATA"
CACHE_ENV = "KINESIS_NEURO_CACHE"
OFFLINE_ENV = "KINESIS_NEURO_OFFLINE"


@dataclass(frozen=True)
class DataFile:
    """One registered file: name, SHA-256 and the card's metadata (kind, rate, units, ...)."""

    name: str
    sha256: str
    meta: dict = field(hash=False, compare=False)


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its card and files."""

    name: str
    card: dict = field(hash=False, compare=False)

    @property
    def files(self) -> dict[str, DataFile]:
        return {f["name"]: DataFile(f["name"], f["sha256"], f) for f in self.card["files"]}

    def url(self, filename: str) -> str:
        return self.card["base_url"] + filename

    def file(self, filename: str | None = None) -> DataFile:
        """A file by name; ``None`` gives the dataset's default EMG file."""
        filename = filename or self.card.get("default_emg")
        if filename not in self.files:
            raise DatasetError(f"dataset {self.name!r} has no file {filename!r}; files: {list(self.files)}")
        return self.files[filename]


@cache
def registry() -> dict[str, Dataset]:
    """All datasets whose cards are in ``emg_datasets/``, by name."""
    out = {}
    for card_file in sorted(resources.files("emg_datasets").iterdir(), key=lambda p: p.name):
        if card_file.name.endswith(".toml"):
            card = tomllib.loads(card_file.read_text())
            out[card["name"]] = Dataset(card["name"], card)
    return out


def get(name: str) -> Dataset:
    """The registered dataset ``name``; an unknown name lists the known ones."""
    datasets = registry()
    if name not in datasets:
        raise DatasetError(f"unknown dataset {name!r}; registered datasets: {sorted(datasets)}")
    return datasets[name]


def is_dataset_spec(spec: str | os.PathLike) -> bool:
    """True for ``"NAME"`` or ``"NAME/FILE"`` naming a registered dataset (not an existing path)."""
    text = str(spec)
    return not Path(text).exists() and text.split("/", 1)[0] in registry()


def sha256(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _data_dir(data_dir) -> Path | None:
    folder = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    return Path(folder).expanduser() if folder else None


def cache_dir() -> Path:
    """Where downloads go: ``KINESIS_NEURO_CACHE`` or the user cache folder."""
    import pooch

    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("kinesis-neuro"))


def _verified(path: Path, dataset: Dataset, entry: DataFile) -> Path:
    found = sha256(path)
    if found != entry.sha256:
        raise ChecksumError(
            f"{path}: SHA-256 {found} does not match the registry's {entry.sha256} for "
            f"{dataset.name}/{entry.name}; the file is corrupt or another version - replace it "
            f"(kinesis-neuro datasets fetch {dataset.name}) or remove it"
        )
    return path


def fetch(name: str, filename: str | None = None, *, data_dir=None, offline: bool | None = None,
          progress: bool = False) -> Path:
    """Path of a verified dataset file (``filename=None``: the dataset's default EMG file)."""
    dataset = get(name)
    entry = dataset.file(filename)
    local = _data_dir(data_dir)
    candidates = [local / dataset.name / entry.name, local / entry.name] if local else []
    candidates.append(cache_dir() / dataset.name / entry.name)
    for candidate in candidates:
        if candidate.is_file():
            return _verified(candidate, dataset, entry)
    if offline is None:
        offline = os.environ.get(OFFLINE_ENV, "").lower() not in ("", "0", "no", "false")
    where = ", ".join(str(c) for c in candidates)
    how = (f"run `kinesis-neuro datasets fetch {dataset.name}` where the internet is reachable, or set "
           f"{DATA_ENV} (or --data-dir) to a folder holding {dataset.name}/{entry.name} "
           f"(download: {dataset.url(entry.name)})")
    if offline:
        raise DatasetError(f"{dataset.name}/{entry.name} is not available offline: looked in {where}; {how}")
    import pooch

    try:
        path = pooch.retrieve(
            dataset.url(entry.name), known_hash=f"sha256:{entry.sha256}", fname=entry.name,
            path=cache_dir() / dataset.name, progressbar=progress,
        )
    except ValueError as err:  # pooch's hash mismatch on download
        raise ChecksumError(f"download of {dataset.url(entry.name)} failed its checksum: {err}") from err
    except Exception as err:  # network errors come from requests/urllib with many types
        raise DatasetError(
            f"{dataset.name}/{entry.name} is not available: looked in {where} and the download failed "
            f"({type(err).__name__}: {err}); {how}"
        ) from err
    return _verified(Path(path), dataset, entry)


def fetch_all(name: str, **kwargs) -> dict[str, Path]:
    """Verified paths of every file of a dataset."""
    return {f: fetch(name, f, **kwargs) for f in get(name).files}


def dataset_path(name: str, **kwargs) -> Path:
    """The folder holding every (verified) file of a dataset."""
    folders = {p.parent for p in fetch_all(name, **kwargs).values()}
    if len(folders) != 1:
        raise DatasetError(f"the files of {name!r} are split over several folders: {sorted(map(str, folders))}")
    return folders.pop()


def info(name: str) -> str:
    """The dataset card as readable text."""
    card = get(name).card
    lines = [f"{card['name']}: {card['title']}", "", card["description"].strip(), "",
             f"licence:  {card['licence']}", f"source:   {card['source_repo']} @ {card['commit']}",
             f"citation: {' '.join(card['citation'].split())}", "", "files:"]
    for f in card["files"]:
        rate = f"{f['sampling_rate_hz']} Hz" if "sampling_rate_hz" in f else "-"
        lines.append(f"  {f['name']:<22} {f['kind']:<16} {rate:>8}  units: {f['units'] or '-'}  side: {f['side']}")
        if f.get("muscles"):
            lines.append(f"  {'':<22} muscles: {', '.join(f['muscles'])}")
        if f.get("processing"):
            lines.append(f"  {'':<22} processing: {'; '.join(f['processing'])}")
        lines.append(f"  {'':<22} sha256: {f['sha256']}")
    return "\n".join(lines)
