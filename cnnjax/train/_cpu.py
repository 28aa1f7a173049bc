"""How training is tuned for a CPU: freed memory kept for reuse, batches cut into parts."""

from __future__ import annotations

from collections.abc import Sequence

import jax

from .. import _memory


def tune_cpu_memory() -> bool:
    """On a CPU backend with glibc, keeps freed memory for reuse (see ``cnnjax._memory``).

    XLA:CPU frees a step's temporaries after every call; with glibc's defaults each call
    then pays page faults on tens of MB, and a jitted training step runs at half speed.
    :func:`~cnnjax.train.create_state`, :func:`~cnnjax.train.fit`,
    :func:`~cnnjax.train.evaluate` and :func:`~cnnjax.train.predict` call this; custom
    loops around :func:`~cnnjax.train.train_step` get it from ``create_state``. Set
    ``CNNJAX_NO_MALLOC_TUNING=1`` to opt out. Returns whether the tuning is in effect.
    """
    if jax.default_backend() != "cpu":
        return False
    return _memory.keep_freed_memory()


def auto_microbatches(batch_size: int, devices: Sequence[jax.Device] | None = None) -> int:
    """How many parts :func:`~cnnjax.train.fit` splits each batch into: 4 on a single CPU
    device when ``batch_size`` is a multiple of 4 and at least 32, else 1.

    On a CPU the independent parts run side by side on its threads and each part's
    activations stay in cache (``docs/performance.md`` has the measurements).
    Accelerators run one large batch best, and several devices already split the batch.
    """
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) == 1 and devices[0].platform == "cpu" and batch_size % 4 == 0 and batch_size >= 32:
        return 4
    return 1


__all__ = ["auto_microbatches", "tune_cpu_memory"]
