"""One loader over every source: a folder of IDX files, tensorflow-datasets, or the upstream
files fetched and verified (:mod:`cnnjax.data.fetch`); the result scaled and checked."""

from __future__ import annotations

import os

import numpy as np

from .. import _checks
from . import fetch
from ._cifar import read_cifar10
from ._common import DatasetNotFoundError, to_float_images
from ._datasets import DATASETS
from ._idx import IDX_SPLITS, check_idx_dataset, check_idx_shape, idx_files, load_idx
from ._tfds import _how_to_get, load_tfds, tfds_data_dir

READERS = {  # a dataset's format (its record in _datasets.py) -> how its fetched files are read
    "idx": lambda files, split: load_idx(files[0].parent, split),
    "cifar10": lambda files, split: read_cifar10(files[0], split),
}


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
        SHA-256, cached; see :mod:`cnnjax.data.fetch`, ``CNNJAX_DATA_MIRROR``), any other
        dataset through tensorflow-datasets.

    Returns:
      ``(images, labels)``: images ``float32`` in [0, 1] of shape ``(N, H, W, C)`` (C = 1
      for MNIST-style data, 3 for CIFAR-10), labels ``int32`` of shape ``(N,)``.

    Raises:
      DatasetNotFoundError: (a ``FileNotFoundError``) saying where it looked and how to
        get the data.
      ValueError: on a bad IDX file (naming it) or a bad argument.

    Example (offline, the real MNIST test split)::

        images, labels = load("mnist", "test", data_dir="samples/mnist")
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
        check_idx_shape(images, str(name), data_dir, split)
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


def _load_named(name: str, split: str, data_dir, limit, download: bool):
    """tensorflow-datasets' prepared data when it exists; else, for the MNIST family, the
    upstream IDX files fetched without TensorFlow (:mod:`cnnjax.data.fetch`); else tfds' download."""
    if name not in fetch.DATASETS or split not in IDX_SPLITS:
        return load_tfds(name, split, data_dir=data_dir, limit=limit, download=download)
    try:
        return load_tfds(name, split, data_dir=data_dir, limit=limit, download=False)
    except DatasetNotFoundError:
        if not download:
            raise
    split = "test" if split == "t10k" else split
    try:
        files = fetch.files(name, split)
    except DatasetNotFoundError as e:
        raise DatasetNotFoundError(f"{name!r} is not prepared in tensorflow-datasets' data_dir "
                                   f"({tfds_data_dir(data_dir)}), nor cached "
                                   f"in {fetch.cache_dir() / name}. {e}") from None
    return READERS[DATASETS[name].format](files, split)
