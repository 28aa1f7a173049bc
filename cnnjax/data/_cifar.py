"""CIFAR-10's binary release, read with NumPy."""

from __future__ import annotations

import os
import tarfile

import numpy as np

CIFAR10_MEMBERS = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
_CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue 32x32 planes


def read_cifar10(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's binary release (``cifar-10-binary.tar.gz``) as ``uint8 (N, 32, 32, 3)`` images
    and ``int32 (N,)`` labels: ``data_batch_1..5.bin`` for ``"train"``, ``test_batch.bin``
    for ``"test"``; each record a label byte and three 32x32 planes (R, G, B).

    Raises:
      ValueError: naming the file, if a member is missing or not whole records.
    """
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
