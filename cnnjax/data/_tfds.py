"""tensorflow-datasets without TensorFlow: ``tfds.data_source`` reads prepared array-record
files; before a download the host is probed, so an offline machine hears so at once."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading

import numpy as np

from ._common import DatasetNotFoundError

DOWNLOAD_HOST = ("storage.googleapis.com", 443)
"""Where tensorflow-datasets downloads MNIST-family data from; checked before a download."""


def _network_available(host: tuple[str, int] = DOWNLOAD_HOST, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers within ``timeout`` seconds (DNS included, in a thread)."""
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection(host, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _how_to_get(name: str) -> str:
    return (
        f"To get it: on a machine with internet, `cnnjax.data.load({name!r}, download=True)` "
        f"(tensorflow-datasets prepares it once under its data_dir, by default ~/tensorflow_datasets); "
        f"offline, pass `data_dir=` a directory holding the four IDX files "
        f"(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz)."
    )


@contextlib.contextmanager
def _quiet_absl():
    """absl's warnings (tensorflow-datasets' logger) off for the block."""
    from absl import logging as absl_logging

    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(previous)


def tfds_data_dir(data_dir) -> str:
    """Where tensorflow-datasets looks for prepared data, as an error message names it."""
    return str(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _tfds_source(name: str, split: str, data_dir, download: bool):
    import tensorflow_datasets as tfds

    where = tfds_data_dir(data_dir)
    try:
        with _quiet_absl():  # "Variant folder ... has no dataset_info.json": what the error below says
            return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as first:  # tfds raises several unrelated types for "not prepared"
        if isinstance(first, tfds.core.registered.DatasetNotFoundError):
            guess = re.search(r"Did you mean: \S+ -> (\S+) \?", str(first))
            hint = f" Did you mean {guess.group(1)!r}?" if guess else ""
            raise DatasetNotFoundError(
                f"{name!r} is neither a directory of IDX files nor a tensorflow-datasets name.{hint}"
            ) from None
        reason = first
    if download:
        if not _network_available():
            raise DatasetNotFoundError(
                f"Dataset {name!r} split {split!r} is not prepared in the tensorflow-datasets "
                f"data_dir {where}, and the download host {DOWNLOAD_HOST[0]} cannot be reached "
                f"from this machine. {_how_to_get(name)}"
            ) from reason
        return tfds.data_source(name, split=split, data_dir=data_dir, download=True)
    raise DatasetNotFoundError(
        f"Dataset {name!r} split {split!r} is not prepared in the tensorflow-datasets data_dir "
        f"{where} (download=False). {_how_to_get(name)}"
    ) from reason


def load_tfds(
    name: str, split: str = "train", *, data_dir=None, limit: int | None = None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a tensorflow-datasets dataset via ``tfds.data_source``, unscaled.

    No TensorFlow import: ``data_source`` reads array-record files. Before a download
    the download host is checked with a 3-second timeout, so an offline machine gets a
    clear :class:`DatasetNotFoundError` at once rather than minutes of retries.
    """
    source = _tfds_source(name, split, data_dir, download)
    n = len(source) if limit is None else min(limit, len(source))
    if n == 0:
        raise ValueError(f"Dataset {name!r} split {split!r} is empty.")
    first = source[0]
    images = np.empty((n, *np.shape(first["image"])), np.uint8)
    labels = np.empty((n,), np.int32)
    for i in range(n):
        record = first if i == 0 else source[i]
        images[i] = record["image"]
        labels[i] = record["label"]
    return images, labels
