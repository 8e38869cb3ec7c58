"""Registry of real human datasets: cards in ``emg_datasets/``, download with pooch, local folders.

A file is looked up, in order, in the local data folder (``data_dir`` argument or the
``KINESIS_NEURO_DATA`` environment variable; ``<folder>/<dataset>/<file>`` or ``<folder>/<file>``),
then in the download cache (``KINESIS_NEURO_CACHE`` or the user cache), and is downloaded into the
cache only if it is in neither place and ``KINESIS_NEURO_OFFLINE`` is not set. Its SHA-256 is checked
on every load; local folders are only read, so a read-only folder works.

Card format (``emg_datasets/<name>.toml``): ``name``, ``title``, ``description``, ``licence`` (as the
source states it; ``licence_short`` for the list table), ``citation``, ``source_repo``, ``commit``,
``base_url`` (raw URL of a folder at the fixed commit), ``known_defects`` and one ``[[files]]`` table per
file with ``name`` (the local name), ``sha256``, ``kind``, ``units``, ``side``, ``processing`` and
optionally ``defects``. A file is downloaded from ``base_url + name`` unless it says otherwise:
``source_path`` (relative to ``base_url``, for a source name or folder other than the local one) or a
full ``url`` (another repository; then also ``source_repo`` and ``commit`` of that file). A card with
``local_only = true`` has no URL: its files can only be read from the local data folder.
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

    @property
    def kind(self) -> str:
        """What the file holds (emg, coordinates, grf, markers, c3d, ...), so readers can pick their path."""
        return self.meta["kind"]


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its card and files."""

    name: str
    card: dict = field(hash=False, compare=False)

    @property
    def files(self) -> dict[str, DataFile]:
        return {f["name"]: DataFile(f["name"], f["sha256"], f) for f in self.card["files"]}

    @property
    def local_only(self) -> bool:
        """True for a dataset that no URL serves: it is read from the local data folder only."""
        return bool(self.card.get("local_only"))

    def url(self, filename: str) -> str | None:
        """Download URL of a file (``None`` for a local-only dataset): the file's own ``url``, else
        ``base_url`` + its ``source_path`` (or its name)."""
        if self.local_only:
            return None
        meta = self.file(filename).meta
        if meta.get("url"):
            return meta["url"]
        return self.card["base_url"] + meta.get("source_path", meta["name"])

    def source(self, filename: str) -> tuple[str | None, str | None]:
        """``(repository, commit)`` a file comes from (``(None, None)`` when local-only)."""
        if self.local_only:
            return None, None
        meta = self.file(filename).meta
        return meta.get("source_repo", self.card.get("source_repo")), meta.get("commit", self.card.get("commit"))

    def files_of_kind(self, kind: str) -> list[DataFile]:
        """The files whose ``kind`` is ``kind`` (e.g. ``"emg"``, ``"coordinates"``), in card order."""
        return [f for f in self.files.values() if f.kind == kind]

    def file(self, filename: str | None = None) -> DataFile:
        """A file by name; ``None`` gives the dataset's default EMG file."""
        if not filename and not self.card.get("default_emg"):
            raise DatasetError(f"dataset {self.name!r} has no default EMG file; name one as "
                               f"{self.name}/FILE, FILE one of {list(self.files)}")
        filename = filename or self.card.get("default_emg")
        if filename not in self.files:
            raise DatasetError(f"dataset {self.name!r} has no file {filename!r}; files: {list(self.files)}")
        return self.files[filename]


_CARD_KEYS = ("name", "title", "description", "licence", "citation", "files")
_FILE_KEYS = ("name", "sha256", "kind", "units", "side", "processing")


def _check_card(card: dict, where: str) -> None:
    """A card is complete: every key a reader relies on, a SHA-256 per file and a download URL per file
    (unless the card is local-only)."""
    missing = [k for k in _CARD_KEYS if k not in card]
    if not card.get("local_only"):
        missing += [k for k in ("source_repo", "commit") if k not in card]
    if missing:
        raise DatasetError(f"dataset card {where} lacks {missing}")
    for f in card["files"]:
        lacking = [k for k in _FILE_KEYS if k not in f]
        if lacking:
            raise DatasetError(f"dataset card {where}: file {f.get('name')!r} lacks {lacking}")
        if len(f["sha256"]) != 64:
            raise DatasetError(f"dataset card {where}: file {f['name']!r} has no valid SHA-256")
        if not card.get("local_only") and not (f.get("url") or card.get("base_url")):
            raise DatasetError(f"dataset card {where}: file {f['name']!r} has no URL (url or base_url)")


@cache
def registry() -> dict[str, Dataset]:
    """All datasets whose cards are in ``emg_datasets/``, by name."""
    out = {}
    for card_file in sorted(resources.files("emg_datasets").iterdir(), key=lambda p: p.name):
        if card_file.name.endswith(".toml"):
            card = tomllib.loads(card_file.read_text())
            _check_card(card, card_file.name)
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
    if dataset.local_only:
        put = f"{local / dataset.name}" if local else f"${DATA_ENV}/{dataset.name}"
        note = " ".join(dataset.card.get("local_note", "").split())
        raise DatasetError(
            f"{dataset.name}/{entry.name} is not available: {dataset.name} is a local-only dataset (no URL "
            f"serves it, so it cannot be downloaded); looked in {', '.join(str(c) for c in candidates)}; put "
            f"its files in {put}/ ({DATA_ENV} or --data-dir names the folder above it)"
            + (f"; where they come from: {note}" if note else "")
        )
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


# per-file card fields shown by info() when present
_INFO_NOTES = ("units_note", "side_note", "time_range_s", "layout", "channels_note", "muscles_note",
               "coordinates_note", "events", "source_repo", "licence", "pickle_globals", "note")


def _oneline(text: str) -> str:
    return " ".join(str(text).split())


def info(name: str) -> str:
    """The dataset card as readable text, known defects included."""
    dataset = get(name)
    card = dataset.card
    lines = [f"{card['name']}: {card['title']}", "", card["description"].strip(), "",
             f"licence:  {card['licence']}"]
    if card.get("licence_note"):
        lines.append(f"          {_oneline(card['licence_note'])}")
    if dataset.local_only:
        lines.append(f"source:   local only, no download URL: {_oneline(card.get('local_note', ''))}")
    else:
        sources = dict.fromkeys(dataset.source(f) for f in dataset.files)  # ordered, unique
        lines.append("source:   " + "; ".join(f"{repo} @ {commit}" for repo, commit in sources))
    lines.append(f"citation: {_oneline(card['citation'])}")
    if "subjects" in card:
        lines.append(f"subjects: {card['subjects']}")
    if "side" in card:
        lines.append(f"side:     {card['side']}" + (f" ({card['side_note']})" if card.get("side_note") else ""))
    defects = card.get("known_defects", [])
    if defects:
        lines += ["", "known defects:", *(f"  - {_oneline(d)}" for d in defects)]
    lines += ["", "files:"]
    width = max(22, *(len(f["name"]) for f in card["files"]))
    pad = " " * width
    for f in card["files"]:
        rate = (f"{f['sampling_rate_hz']:g} Hz" if "sampling_rate_hz" in f else
                f"{f['points_per_cycle']} pts/cycle" if "points_per_cycle" in f else "-")
        lines.append(f"  {f['name']:<{width}} {f['kind']:<22} {rate:>10}  units: {f['units'] or '-'}  "
                     f"side: {f['side']}")
        if f.get("format"):
            lines.append(f"  {pad} format: {f['format']}")
        if f.get("muscles"):
            lines.append(f"  {pad} muscles: {', '.join(f['muscles'])}")
        if f.get("channels"):
            lines.append(f"  {pad} channels: {'; '.join(f'{k} = {v}' for k, v in f['channels'].items())}")
        if f.get("processing"):
            lines.append(f"  {pad} processing: {'; '.join(f['processing'])}")
        for key in _INFO_NOTES:
            if f.get(key):
                value = f[key]
                value = ", ".join(map(str, value)) if isinstance(value, list) else _oneline(value)
                lines.append(f"  {pad} {key.replace('_', ' ')}: {value}")
        for d in f.get("defects", []):
            lines.append(f"  {pad} DEFECT: {_oneline(d)}")
        if not dataset.local_only:
            lines.append(f"  {pad} url: {dataset.url(f['name'])}")
        lines.append(f"  {pad} sha256: {f['sha256']}")
    return "\n".join(lines)
