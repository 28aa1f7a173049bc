"""Image datasets as NumPy arrays: tensorflow-datasets without TensorFlow, or IDX files.

The lecture's preprocessing, as one call::

    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    train_images = train_images.reshape((60000, 28, 28, 1)).astype('float32') / 255

    images, labels = cnnjax.data.load("mnist", "train")   # (60000, 28, 28, 1) float32

Two sources, one result (images ``float32`` in [0, 1], shape ``(N, H, W, C)``; labels
``int32``, shape ``(N,)``):

- **IDX files** (offline machines): a directory holding the standard
  ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
  ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (gzipped or not; a
  ``name-`` prefix such as ``emnist-digits-`` is allowed). Pass it as ``data_dir`` or
  as ``name``. MNIST, Fashion-MNIST and KMNIST are distributed this way.
- **tensorflow-datasets** (machines with internet, Colab): any image classification
  dataset by name (``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``, ...) through
  ``tfds.data_source``, which reads array-record files with no TensorFlow import.

Then :func:`batches` (seeded shuffling, per epoch), :func:`stacked_batches` (a whole
epoch as ``(steps, batch, ...)`` arrays, for one device transfer and a ``lax.scan``),
and :func:`split_validation`.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import socket
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import _checks

IDX_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}
_IDX_NAME = re.compile(r"^(?:.*-)?(train|t10k)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_DATASETS = ("mnist", "fashion_mnist", "kmnist", "emnist")
"""The datasets published as IDX files (EMNIST's variants as ``emnist/<variant>``)."""
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
"""Each known dataset's class names, in label order (as tensorflow-datasets lists them)."""
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
"""Where tensorflow-datasets downloads MNIST-family data from; checked before a download."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is on neither source; the message says where cnnjax looked and how to get it."""


# ----------------------------------------------------------------------------- IDX files


def idx_files(directory: str | os.PathLike) -> dict[tuple[str, str], Path]:
    """The IDX files in ``directory``, keyed by ``(split, kind)``: ``("t10k", "images")``.

    Raises:
      ValueError: if two files claim the same role (e.g. plain and gzipped copies).
    """
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(Path(directory).iterdir()):
        m = _IDX_NAME.match(path.name)
        if not m or not path.is_file():
            continue
        key = (m.group(1), m.group(2))
        if key in found:
            raise ValueError(
                f"{directory} holds two IDX files for {key[0]} {key[1]}: {found[key].name} and "
                f"{path.name}; keep one."
            )
        found[key] = path
    return found


def read_idx(path: str | os.PathLike, *, expect_ndim: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a read-only NumPy array.

    The header is validated: two zero bytes, a known type code, the number of
    dimensions (``expect_ndim`` if given), big-endian sizes, and a payload of exactly
    the size they imply. Results are cached per file (path, size and mtime), so a second
    read costs no decompression.

    Raises:
      ValueError: naming the file, on corrupt or truncated gzip data, a wrong magic
        number, an unexpected rank, or a payload of the wrong length.
    """
    path = Path(path)
    stat = path.stat()
    array = _read_idx_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if expect_ndim is not None and array.ndim != expect_ndim:
        raise ValueError(
            f"{path}: IDX file has {array.ndim} dimensions {array.shape}, expected {expect_ndim} "
            f"({'images (N, rows, cols)' if expect_ndim == 3 else 'labels (N,)'})."
        )
    return array


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({e}).") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        magic = raw[:4].hex() if len(raw) >= 4 else repr(raw)
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{magic}, expected 0x0000TTNN (two zero "
            f"bytes, a type code such as 08 for unsigned bytes, the number of dimensions)."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header}).")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX header promises shape {dims} ({expected} bytes in all) but the file "
            f"holds {len(raw)} bytes: {'truncated' if len(raw) < expected else 'trailing data'}."
        )
    array = np.frombuffer(raw, dtype, offset=header).reshape(dims)
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    array.flags.writeable = False
    return array


def load_idx(directory: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split from a directory of IDX files, unscaled.

    Returns:
      ``(images, labels)``: the file's raw images ``(N, rows, cols)`` (uint8 for MNIST)
      and labels ``(N,)``, read-only.

    Raises:
      ValueError: on an unknown split, a missing file of the pair, a bad file, or
        images and labels of different lengths (naming both files).
    """
    if split not in IDX_SPLITS:
        raise ValueError(
            f"`split` must be one of {sorted(IDX_SPLITS)} for IDX files, got {split!r}."
        )
    prefix = IDX_SPLITS[split]
    files = idx_files(directory)
    missing = [kind for kind in ("images", "labels") if (prefix, kind) not in files]
    if missing:
        have = sorted({s for s, _ in files}) or ["none"]
        raise DatasetNotFoundError(
            f"{directory} has no {prefix}-{' or '.join(missing)} IDX file for split {split!r} "
            f"(it holds IDX files for: {', '.join('test (t10k)' if s == 't10k' else s for s in have)}). "
            f"Expected {prefix}-images-idx3-ubyte.gz and {prefix}-labels-idx1-ubyte.gz."
        )
    images = read_idx(files[prefix, "images"], expect_ndim=3)
    labels = read_idx(files[prefix, "labels"], expect_ndim=1)
    if len(images) != len(labels):
        raise ValueError(
            f"{files[prefix, 'images']} holds {len(images)} images but "
            f"{files[prefix, 'labels']} holds {len(labels)} labels."
        )
    return images, labels


# --------------------------------------------------------------------------- CIFAR-10

CIFAR10_MEMBERS = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
_CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue 32x32 planes


def read_cifar10(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's binary release (``cifar-10-binary.tar.gz``) as ``uint8 (N, 32, 32, 3)`` images
    and ``int32 (N,)`` labels: ``data_batch_1..5.bin`` for ``"train"``, ``test_batch.bin``
    for ``"test"``; each record a label byte and three 32x32 planes (R, G, B).

    Raises:
      ValueError: naming the file, if a member is missing or not whole records.
    """
    import tarfile

    if split not in CIFAR10_MEMBERS:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    parts = []
    with tarfile.open(path, "r:gz") as archive:
        members = {os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()}
        for name in CIFAR10_MEMBERS[split]:
            if name not in members:
                raise ValueError(f"{path} holds no {name}: not CIFAR-10's binary release.")
            raw = np.frombuffer(archive.extractfile(members[name]).read(), np.uint8)
            if raw.size % _CIFAR_RECORD:
                raise ValueError(f"{name} in {path} is not a whole number of {_CIFAR_RECORD}-byte records.")
            parts.append(raw.reshape(-1, _CIFAR_RECORD))
    records = np.concatenate(parts)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int32)


# ------------------------------------------------------------------ tensorflow-datasets


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


def _tfds_source(name: str, split: str, data_dir, download: bool):
    import tensorflow_datasets as tfds

    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    try:
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


# --------------------------------------------------------------------------- one loader


def load(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads an image classification dataset as the lecture prepares it.

    Args:
      name: a tensorflow-datasets name (``"mnist"``, ``"fashion_mnist"``, ``"kmnist"``,
        ``"cifar10"``, ...) or a directory of IDX files.
      split: ``"train"`` or ``"test"``; tfds also takes its split syntax
        (``"train[:10%]"``).
      data_dir: a directory of IDX files (used when it holds any), else the
        tensorflow-datasets data directory.
      limit: keep only the first ``limit`` examples (quick runs).
      download: fetch the dataset when it is not there yet: the MNIST family's upstream
        IDX files without TensorFlow (verified against tensorflow-datasets' registered
        SHA-256, cached; see :mod:`cnnjax.fetch`, ``CNNJAX_DATA_MIRROR``), any other
        dataset through tensorflow-datasets.

    Returns:
      ``(images, labels)``: images ``float32`` in [0, 1] of shape ``(N, H, W, C)`` (C = 1
      for MNIST-style data, 3 for CIFAR-10), labels ``int32`` of shape ``(N,)``.

    Raises:
      DatasetNotFoundError: (a ``FileNotFoundError``) saying where it looked and how to
        get the data.
      ValueError: on a bad IDX file (naming it) or a bad argument.

    Example (offline, the real MNIST test split)::

        images, labels = load("mnist", "test", data_dir="../shared/data/mnist")
        images.shape, images.dtype, labels[:5]
        # ((10000, 28, 28, 1), dtype('float32'), array([7, 2, 1, 0, 4], dtype=int32))
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"`name` must be a dataset name or a directory, got {name!r}.")
    if limit is not None:
        limit = _checks.positive_int(limit, "limit")
    where = f"{name!r} split {split!r}"
    if os.path.isdir(name):
        images, labels = load_idx(name, split)
        where = f"the IDX files of split {split!r} in {name}"
    elif data_dir is not None and os.path.isdir(data_dir) and idx_files(data_dir):
        check_idx_dataset(data_dir, str(name))
        images, labels = load_idx(data_dir, split)
        where = f"the IDX files of split {split!r} in {data_dir}"
    elif data_dir is not None and not os.path.isdir(data_dir):
        raise DatasetNotFoundError(f"`data_dir` {str(data_dir)!r} is not a directory. {_how_to_get(str(name))}")
    else:
        images, labels = _load_named(str(name), split, data_dir, limit, download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return _unit_images(images, where), _class_labels(labels, where)


def _unit_images(images: np.ndarray, where: str) -> np.ndarray:
    """``uint8`` images scaled to [0, 1]; float images already in [0, 1] as they are; any
    other kind refused: their scale is not known, and [0, 1] is what ``load`` promises."""
    if images.dtype == np.uint8:
        return to_float_images(images)
    if np.issubdtype(images.dtype, np.floating) and images.size and np.all((images >= 0) & (images <= 1)):
        return to_float_images(images)
    low, high = (images.min(), images.max()) if images.size else (None, None)
    raise ValueError(
        f"{where} holds {images.dtype} images with values from {low} to {high}: `load` scales unsigned bytes "
        f"(0-255) to [0, 1] and keeps float images already in [0, 1], but cannot know the scale of these. "
        f"Read them with `cnnjax.data.read_idx` and scale them yourself."
    )


def _class_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Labels as ``int32`` class indices; labels that are not whole numbers in [0, 2**31) refused."""
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
        if len(bad):
            raise ValueError(f"{where} holds {labels.dtype} labels that are not class indices: "
                             f"{labels[bad[0]]} at index {bad[0]}.")
    elif not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where} holds labels of dtype {labels.dtype}, not class indices.")
    bad = np.flatnonzero((labels < 0) | (labels > np.iinfo(np.int32).max))
    if len(bad):
        raise ValueError(f"{where} holds label {labels[bad[0]]} at index {bad[0]}: class indices are "
                         f"whole numbers from 0 to 2**31 - 1.")
    return labels.astype(np.int32)


def check_idx_dataset(directory: str | os.PathLike, name: str) -> None:
    """Refuses a folder whose gzipped IDX files are, byte for byte, another known dataset's
    upstream files (tensorflow-datasets' registered SHA-256), e.g. MNIST's files given as
    ``fashion_mnist``: the two have the same names and shapes. Files that match no known
    dataset (a subset, uncompressed copies, other data) are not judged.

    Raises:
      ValueError: naming the file and the dataset it is.
    """
    from . import fetch

    if name not in fetch.DATASETS:
        return
    known = _registered_files()
    for path in idx_files(directory).values():
        if path.suffix != ".gz":
            continue
        owner = known.get(_sha256(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns))
        if owner is not None and owner != name:
            raise ValueError(f"{path} is {owner}'s upstream file (its SHA-256 is the one tensorflow-datasets "
                             f"registers for {owner}), not {name}'s: name the dataset {owner!r}, or give a "
                             f"folder of {name} files.")


@functools.lru_cache(maxsize=1)
def _registered_files() -> dict[str, str]:
    """Every registered SHA-256 of the datasets cnnjax fetches, to the dataset's name."""
    from . import fetch

    try:
        return {sha: name for name in fetch.DATASETS for _, _, sha in fetch.registry(name).values()}
    except (DatasetNotFoundError, OSError):  # no registry to compare with: nothing is judged
        return {}


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _load_named(name: str, split: str, data_dir, limit, download: bool):
    """tensorflow-datasets' prepared data when it exists; else, for the MNIST family, the
    upstream IDX files fetched without TensorFlow (:mod:`cnnjax.fetch`); else tfds' download."""
    from . import fetch

    if name not in fetch.DATASETS or split not in IDX_SPLITS:
        return load_tfds(name, split, data_dir=data_dir, limit=limit, download=download)
    try:
        return load_tfds(name, split, data_dir=data_dir, limit=limit, download=False)
    except DatasetNotFoundError:
        if not download:
            raise
    split = "test" if split == "t10k" else split
    if name == "cifar10":
        return read_cifar10(fetch.files(name, split)[0], split)
    return load_idx(fetch.files(name, split)[0].parent, split)


def to_float_images(images: np.ndarray) -> np.ndarray:
    """``uint8`` images to ``float32`` in [0, 1] with a channel axis: ``astype('float32') / 255``."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    out = images.astype(np.float32)
    if images.dtype == np.uint8:
        out /= np.float32(255)
    return out


# ------------------------------------------------------------------------------ batches


def _check_pair(images, labels) -> int:
    if len(images) != len(labels):
        raise ValueError(
            f"`images` and `labels` must have the same length, got {len(images)} and {len(labels)}."
        )
    return len(images)


def shuffled_indices(n: int, *, seed: int, epoch: int = 0) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of ``range(n)`` fixed by ``(seed, epoch)``."""
    return np.random.default_rng((seed, epoch)).permutation(n)


def batch_indices(
    n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_remainder: bool = False
) -> list[np.ndarray]:
    """Index arrays of one epoch's batches: full batches, then the remainder unless dropped."""
    batch_size = _checks.positive_int(batch_size, "batch_size")
    order = shuffled_indices(n, seed=seed, epoch=epoch) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields ``(images, labels)`` batches of one epoch.

    The order is a permutation fixed by ``(seed, epoch)``: the same seed gives the same
    batches on every run and machine, and each epoch a different order.

    Args:
      images, labels: arrays with the same first dimension.
      batch_size: examples per batch.
      shuffle: shuffle (seeded) or keep the data's order.
      seed, epoch: the permutation's seed and the epoch number.
      drop_remainder: drop the last batch if it is smaller than ``batch_size``.
    """
    n = _check_pair(images, labels)
    for idx in batch_indices(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_remainder=drop_remainder):
        yield images[idx], labels[idx]


def batch_plan(
    n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_remainder: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's batches as a padded index matrix: ``(indices, weights)``, each ``(steps, batch_size)``.

    Row ``i`` holds the indices of :func:`batch_indices`' batch ``i``; a last, partial
    batch is padded with index 0 and weight 0 (real examples have weight 1), so every
    row has the same shape and a compiled loop can run them all.

    >>> idx, w = batch_plan(5, 2, shuffle=False)
    >>> idx.tolist(), w.tolist()
    ([[0, 1], [2, 3], [4, 0]], [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    """
    batches = batch_indices(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_remainder=drop_remainder)
    idx = np.zeros((len(batches), batch_size), np.int32)
    w = np.zeros((len(batches), batch_size), np.float32)
    for i, b in enumerate(batches):
        idx[i, : len(b)], w[i, : len(b)] = b, 1.0
    return idx, w


def stacked_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A whole epoch as ``(steps, batch_size, ...)`` arrays, for one transfer to the device.

    The batches are those of :func:`batches` with ``drop_remainder=True``, stacked, so
    a compiled ``lax.scan`` can iterate them without returning to Python.

    Raises:
      ValueError: if there are fewer examples than ``batch_size``.
    """
    n = _check_pair(images, labels)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    if n < batch_size:
        raise ValueError(f"`batch_size` {batch_size} is larger than the {n} examples.")
    idx, _ = batch_plan(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_remainder=True)
    return images[idx], labels[idx]


def split_validation(
    images: np.ndarray, labels: np.ndarray, *, fraction: float | None = None, size: int | None = None, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Splits off a seeded random validation set: ``((train_x, train_y), (val_x, val_y))``.

    Give either ``fraction`` (of the examples, in (0, 1)) or ``size`` (a count).
    """
    n = _check_pair(images, labels)
    if (fraction is None) == (size is None):
        raise ValueError("Give exactly one of `fraction` and `size`.")
    if fraction is not None:
        if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ValueError(f"`fraction` must be in (0, 1), got {fraction!r}.")
        size = max(1, int(round(n * fraction)))
    size = _checks.positive_int(size, "size")
    if size >= n:
        raise ValueError(f"`size` {size} leaves no training examples out of {n}.")
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:size]), np.sort(order[size:])
    return (images[train], labels[train]), (images[val], labels[val])


__all__ = [
    "CLASS_NAMES",
    "DatasetNotFoundError",
    "IDX_DATASETS",
    "batch_indices",
    "batch_plan",
    "batches",
    "check_idx_dataset",
    "idx_files",
    "load",
    "load_idx",
    "load_tfds",
    "read_cifar10",
    "read_idx",
    "shuffled_indices",
    "split_validation",
    "stacked_batches",
    "to_float_images",
]
