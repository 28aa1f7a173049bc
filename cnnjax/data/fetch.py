"""Fetching datasets' upstream files without TensorFlow: verified, cached.

tensorflow-datasets *reads* prepared data without TensorFlow, but *preparing* it needs
TensorFlow, which Colab's TPU runtimes no longer ship. For ``mnist``, ``fashion_mnist``
and ``kmnist`` (IDX files) and ``cifar10`` (its binary tarball) the upstream files are
simple to read, so :func:`files` fetches them itself with pooch (retries, a progress
bar), checks each against the SHA-256 that
tensorflow-datasets registers for it (``tensorflow_datasets/url_checksums/<name>.txt``,
read as a text file: no second table to keep), and keeps them in a cache folder:

- ``CNNJAX_DATA_CACHE``, else the user cache folder (``~/.cache/cnnjax`` on Linux),
  one subfolder per dataset;
- ``CNNJAX_DATA_MIRROR=<base URL>`` fetches ``<base URL>/<dataset>/<file name>`` instead
  of the upstream address (a proxy, an internal mirror), hashes unchanged.

A corrupt or partial download fails its hash and is never parsed; a cached file that
no longer matches is fetched again.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.parse
from pathlib import Path

from ._common import DatasetNotFoundError
from ._datasets import DATASETS as _KNOWN
from ._datasets import FETCHED
from ._tfds import _network_available

MIRROR_VARIABLE = "CNNJAX_DATA_MIRROR"
CACHE_VARIABLE = "CNNJAX_DATA_CACHE"
DATASETS = FETCHED  # one record each in _datasets.py
TIMEOUT_S = 10.0  # pooch's, for each transfer
PROBE_S = 3.0  # before a download: does the host answer at all?


def registry(name: str) -> dict[str, tuple[str, int, str]]:
    """tensorflow-datasets' registered files of ``name``: ``{file name: (url, size, sha256)}``."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("tensorflow-datasets is not installed: its checksum registry is needed.")
    path = Path(list(spec.submodule_search_locations)[0]) / "url_checksums" / f"{name}.txt"
    entries = {}
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0].strip():
            url, size, sha = fields[0], int(fields[1]), fields[2]
            entries[url.rsplit("/", 1)[-1]] = (url, size, sha)
    return entries


def cache_dir() -> Path:
    """Where fetched files are kept: ``$CNNJAX_DATA_CACHE``, else the user cache folder."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    import pooch

    return Path(pooch.os_cache("cnnjax"))


def _file_names(name: str, split: str) -> tuple[str, ...]:
    return _KNOWN[name].upstream[split]  # CIFAR-10: both splits in one tarball


def files(name: str, split: str, *, progress: bool = True) -> list[Path]:
    """The cached upstream files of ``name``'s ``split`` (fetched and verified first if
    needed): the two IDX files of the MNIST family, CIFAR-10's binary tarball.

    Raises:
      ValueError: if ``name`` is not one of :data:`DATASETS` or ``split`` is unknown; if a
        downloaded file's SHA-256 differs from the registered one (naming the file).
      DatasetNotFoundError: if a file cannot be fetched (naming the address tried).
    """
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {DATASETS} to fetch without TensorFlow, got {name!r}.")
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    import pooch
    import requests

    registered = registry(name)
    folder = cache_dir() / name
    created = not folder.exists()
    mirror = os.environ.get(MIRROR_VARIABLE, "").rstrip("/")
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT_S)
    paths, answered = [], set()
    for file_name in _file_names(name, split):
        url, _, sha = registered[file_name]
        if mirror:
            url = f"{mirror}/{name}/{file_name}"
        host = _host(url)
        if not (folder / file_name).exists() and host not in answered:  # probed once per host and call
            if not _network_available(host, PROBE_S):
                _remove_if_empty(folder, created)
                raise DatasetNotFoundError(f"Could not fetch {file_name} of {name!r} from {url}: {host[0]} does "
                                           f"not answer within {PROBE_S:g} s. " + _check(mirror))
            answered.add(host)
        try:
            path = pooch.retrieve(url, known_hash=f"sha256:{sha}", fname=file_name, path=folder,
                                  downloader=downloader, progressbar=progress)
        except ValueError as e:  # pooch: the hash of the downloaded file does not match
            raise ValueError(f"{file_name} fetched from {url} is corrupt: its SHA-256 is not the one "
                             f"tensorflow-datasets registers ({sha}); nothing was kept. ({e})") from None
        except (requests.exceptions.RequestException, OSError) as e:
            _remove_if_empty(folder, created)
            raise DatasetNotFoundError(
                f"Could not fetch {file_name} of {name!r} from {url}: {type(e).__name__}. " + _check(mirror)
            ) from None
        paths.append(Path(path))
    return paths


def _host(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _check(mirror: str) -> str:
    if mirror:
        return f"Check {MIRROR_VARIABLE}."
    return f"Check the internet connection, or set {MIRROR_VARIABLE} to a mirror."


def _remove_if_empty(folder: Path, created: bool) -> None:
    """A cache folder this call created and left empty is removed: a failed fetch leaves nothing."""
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


__all__ = ["CACHE_VARIABLE", "DATASETS", "MIRROR_VARIABLE", "cache_dir", "files", "registry"]
