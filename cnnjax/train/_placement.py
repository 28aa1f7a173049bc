"""Where arrays live while training: a mesh over the devices, the batch split along it.

All local devices are used by default: a ``jax.sharding.Mesh`` with one axis,
``"batch"``; the parameters are replicated and every batch is split across the devices.
One device is the same code path with a mesh of one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import _checks


class Rows:
    """``source[idx]``, read a piece at a time: the rows a process's own devices need, only.

    ``source`` is anything with ``shape``, ``dtype`` and ``source[indices]`` for a 1-D
    integer array (a NumPy array, ``np.load(..., mmap_mode="r")``, an h5py or zarr
    dataset, a grain-style random-access source); ``idx`` an integer array of any rank.
    ``Rows(source, idx)`` has shape ``idx.shape + source.shape[1:]``, and indexing it with
    the slices of a shard reads only that shard's rows. Placing it on a mesh therefore
    reads, in each process, only the examples of its own devices' slices.
    """

    def __init__(self, source, idx):
        self.source, self.idx = source, np.asarray(idx)
        self.shape = (*self.idx.shape, *source.shape[1:])
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        k = self.idx.ndim
        rows = self.idx[index[:k]]
        values = np.asarray(self.source[rows.reshape(-1)]).reshape(*rows.shape, *self.shape[k:])
        return values[(slice(None),) * rows.ndim + index[k:]]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[()], dtype)


def _put(x, sharding):
    """Places a host array, or :class:`Rows`, on ``sharding``; in each process only its own
    devices' pieces are read. Works for one host or many."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    x = x if isinstance(x, Rows) else np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


@dataclasses.dataclass(frozen=True)
class Placement:
    """How arrays go onto a mesh: replicated, or split along the batch axis."""

    mesh: Mesh

    @classmethod
    def over(cls, devices: Sequence[jax.Device] | None = None) -> Placement:
        """A placement over ``devices`` (default: all devices)."""
        devices = list(jax.devices() if devices is None else devices)
        if not devices:
            raise ValueError("`devices` must not be empty.")
        return cls(Mesh(np.array(devices), ("batch",)))

    @property
    def size(self) -> int:
        return self.mesh.size

    @property
    def devices(self) -> list[jax.Device]:
        return list(self.mesh.devices.flat)

    def replicated(self, tree):
        """Every array of ``tree`` (random keys included), whole on every device."""
        sharding = NamedSharding(self.mesh, P())
        return jax.tree.map(lambda x: _put(x, sharding), tree)

    def batched(self, x, axis: int = 0):
        """``x`` split along ``axis`` across the devices."""
        spec = [None] * np.ndim(x)
        spec[axis] = "batch"
        return _put(x, NamedSharding(self.mesh, P(*spec)))

    def spec(self, x, axis: int | None = 0) -> jax.ShapeDtypeStruct:
        """What :meth:`batched` (or, with ``axis=None``, :meth:`replicated`) would make of
        ``x``: its shape, dtype and sharding, with nothing read or placed (for compiling)."""
        spec = [None] * len(x.shape)
        if axis is not None:
            spec[axis] = "batch"
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(self.mesh, P(*spec)))

    def check_batch_size(self, batch_size: int) -> int:
        """``batch_size``, which must split evenly across the devices (ValueError otherwise)."""
        if batch_size % self.size:
            raise ValueError(
                f"`batch_size` {batch_size} must be a multiple of the {self.size} devices it is "
                f"split across (e.g. {self.size * max(1, round(batch_size / self.size))})."
            )
        return batch_size

    def default_batch_size(self, batch_size: int | None, default: int = 256) -> int:
        """An evaluation batch size: ``batch_size`` (checked), or ``default`` rounded up to
        a multiple of the device count."""
        if batch_size is None:
            return math.ceil(default / self.size) * self.size
        return self.check_batch_size(_checks.positive_int(batch_size, "batch_size"))


def fits_on_device(nbytes: int, device: jax.Device) -> bool:
    """Whether ``nbytes`` takes at most half of the device's memory (host RAM for CPUs)."""
    limit = None
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 -- platforms without memory stats raise various errors
        limit = None
    if limit is None:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return nbytes <= limit // 2


__all__: list[str] = []  # internal: fit, evaluate and predict place their arrays with it
