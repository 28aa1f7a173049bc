"""IDX files, the format MNIST, Fashion-MNIST, KMNIST and EMNIST are published in: found in a
folder, read with NumPy (headers validated), and recognised when they are another known
dataset's upstream files."""

from __future__ import annotations

import functools
import gzip
import os
import re
import zlib
from pathlib import Path

import numpy as np

from . import fetch
from ._common import DatasetNotFoundError
from ._datasets import IDX_DATASETS

IDX_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}
_IDX_NAME = re.compile(r"^(?:.*-)?(train|t10k)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


def check_idx_shape(images: np.ndarray, name: str, directory: str | os.PathLike, split: str) -> None:
    """Refuses images whose IDX header gives another shape than dataset ``name``'s (for the
    datasets of :data:`IDX_DATASETS`), naming both shapes."""
    base = name.split("/")[0]
    expected = IDX_DATASETS.get(base)
    if expected is not None and tuple(images.shape[1:]) != expected:
        path = idx_files(directory)[IDX_SPLITS[split], "images"]
        raise ValueError(f"{path}: its IDX header says images of {images.shape[1]}x{images.shape[2]}, but {base}'s "
                         f"are {expected[0]}x{expected[1]}: the file is damaged or another dataset's.")


def check_idx_dataset(directory: str | os.PathLike, name: str) -> None:
    """Refuses a folder whose gzipped IDX files are, byte for byte, another known dataset's
    upstream files (tensorflow-datasets' registered SHA-256), e.g. MNIST's files given as
    ``fashion_mnist``: the two have the same names and shapes. Files that match no known
    dataset (a subset, uncompressed copies, other data) are not judged.

    Raises:
      ValueError: naming the file and the dataset it is.
    """
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
    try:
        return {sha: name for name in fetch.DATASETS for _, _, sha in fetch.registry(name).values()}
    except (DatasetNotFoundError, OSError):  # no registry to compare with: nothing is judged
        return {}


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
