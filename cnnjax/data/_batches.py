"""Batch orders: seeded shuffling per epoch, padded index plans for a compiled loop, whole
epochs stacked for one transfer, a seeded validation split."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import _checks


def _check_pair(images, labels) -> int:
    if len(images) != len(labels):
        raise ValueError(
            f"`images` and `labels` must have the same length, got {len(images)} and {len(labels)}."
        )
    return len(images)


def shuffled_indices(n: int, *, seed: int, epoch: int = 0) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of ``range(n)`` fixed by ``(seed, epoch)``."""
    return np.random.default_rng((seed, epoch)).permutation(n)


def _batch_indices(
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
    for idx in _batch_indices(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_remainder=drop_remainder):
        yield images[idx], labels[idx]


def batch_plan(
    n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_remainder: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's batches as a padded index matrix: ``(indices, weights)``, each ``(steps, batch_size)``.

    Row ``i`` holds the indices of :func:`batches`' batch ``i``; a last, partial
    batch is padded with index 0 and weight 0 (real examples have weight 1), so every
    row has the same shape and a compiled loop can run them all.

    >>> idx, w = batch_plan(5, 2, shuffle=False)
    >>> idx.tolist(), w.tolist()
    ([[0, 1], [2, 3], [4, 0]], [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    """
    batches = _batch_indices(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_remainder=drop_remainder)
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
