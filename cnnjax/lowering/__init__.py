"""Where cnnjax chooses how ``conv`` and ``maxpool`` are lowered to XLA.

The public operations (:func:`cnnjax.conv`, :func:`cnnjax.maxpool`) normalise and check
their arguments, then ask this module for an implementation. Every implementation has
the same signature and the same numerics to float tolerance as :mod:`.reference`, which
is built on ``jax.lax.conv_general_dilated`` and ``jax.lax.reduce_window``.

The choice is made here and nowhere else: per operation and per platform, inside the
traced program (``jax.lax.platform_dependent``): a function lowered for one platform
holds only that platform's form, and one exported for several (``jax.export`` with
``platforms=["cpu", "cuda"]``) holds each platform's own. A context manager overrides
the choice on every platform::

    with cnnjax.lowering.use(conv="reference"):
        y = jax.jit(f)(x)

The override is part of ``jax.jit``'s cache key (``jax.make_user_context``): a function
jitted once and called under another choice is traced again, never served stale code.

Defaults, chosen by measurement (training the lecture's functional CNN, batch 64, on a
2-core CPU; ``benchmarks/train_throughput.py``):

- CPU: ``"patches"`` for both operations. XLA:CPU's native convolution, its transpose
  and ``select_and_scatter`` are several times slower than matmuls, and ~25x slower
  inside ``lax.scan``.
- GPU, TPU: ``"reference"``: cuDNN and the MXU run the native convolution.

Example:
    >>> from cnnjax import lowering
    >>> lowering.available("conv")
    ('reference', 'patches')
    >>> lowering.default("conv", "cpu"), lowering.default("conv", "gpu")
    ('patches', 'reference')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import jax

from . import patches, reference

_IMPLEMENTATIONS: dict[str, dict[str, Callable]] = {
    "conv": {"reference": reference.conv, "patches": patches.conv},
    "maxpool": {"reference": reference.maxpool, "patches": patches.maxpool},
    "avgpool": {"reference": reference.avgpool, "patches": patches.avgpool},
}

# Default lowering per operation and platform; platforms not listed use "*".
_DEFAULTS: dict[str, dict[str, str]] = {
    "conv": {"cpu": "patches", "*": "reference"},
    "maxpool": {"cpu": "patches", "*": "reference"},
    "avgpool": {"cpu": "patches", "*": "reference"},
}

# Lowerings that XLA runs much slower inside ``lax.scan`` than in a loop of jitted calls:
# XLA:CPU's native convolution and its transposes (see benchmarks/train_throughput.py).
_SLOW_IN_SCAN = {("conv", "reference", "cpu")}

# The active overrides, as a hashable tuple of (op, name) pairs, innermost last; a JAX
# user context, so that jit caches key on it.
_overrides = jax.make_user_context(default_value=())


def available(op: str) -> tuple[str, ...]:
    """Names of the lowerings registered for ``op`` (``"conv"`` or ``"maxpool"``)."""
    return tuple(_table(op))


def _table(op: str) -> dict[str, Callable]:
    if op not in _IMPLEMENTATIONS:
        raise ValueError(f"`op` must be one of {sorted(_IMPLEMENTATIONS)}, got {op!r}.")
    return _IMPLEMENTATIONS[op]


def default(op: str, platform: str | None = None) -> str:
    """The name of the lowering used for ``op`` on ``platform`` when nothing overrides it."""
    _table(op)
    platform = platform or jax.default_backend()
    table = _DEFAULTS[op]
    return table.get(platform, table["*"])


def current(op: str, platform: str | None = None) -> str:
    """The name of the lowering that ``op`` uses now: an active override, else the default."""
    _table(op)
    for name_op, name in reversed(_overrides.value or ()):
        if name_op == op:
            return name
    return default(op, platform)


def get(op: str, platform: str | None = None) -> Callable:
    """The implementation of ``op`` used on ``platform`` (default: the default backend)."""
    return _table(op)[current(op, platform)]


_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # the names jax.lax.platform_dependent knows


def call(op: str, arrays: tuple, *static):
    """Runs ``op``'s implementation for the platform the program is lowered for:
    ``impl(*arrays, *static)``; the public operations call this."""
    choice = {p: current(op, "gpu" if p in ("cuda", "rocm") else p) for p in _PLATFORMS}
    fallback = current(op, "*")
    table = _table(op)
    branch = lambda name: (lambda *a: table[name](*a, *static))
    if all(name == fallback for name in choice.values()):
        return branch(fallback)(*arrays)
    per_platform = {p: branch(name) for p, name in choice.items() if name != fallback}
    return jax.lax.platform_dependent(*arrays, default=branch(fallback), **per_platform)


def register(op: str, name: str, implementation: Callable | None) -> None:
    """Adds (or, with ``None``, removes) a lowering of ``op`` under ``name``, selectable with
    :func:`use`. It receives the arguments the built-in ones do (see :mod:`.reference`):
    arrays first, then normalised tuples (stride, explicit padding pairs, ...)."""
    table = _table(op)
    if name in _DEFAULTS[op].values():
        raise ValueError(f"`name` {name!r} is a built-in lowering of {op!r} and cannot be replaced.")
    if implementation is None:
        table.pop(name, None)
    elif not callable(implementation):
        raise TypeError(f"`implementation` must be a function or None, got {implementation!r}.")
    else:
        table[name] = implementation


def runs_well_in_scan(platform: str | None = None) -> bool:
    """Whether the lowerings in use on ``platform`` run as fast inside ``lax.scan`` as in a
    Python loop of jitted calls; :func:`cnnjax.train.fit` asks before it scans an epoch."""
    platform = platform or jax.default_backend()
    return not any((op, current(op, platform), platform) in _SLOW_IN_SCAN for op in _IMPLEMENTATIONS)


@contextlib.contextmanager
def use(**choices: str) -> Iterator[None]:
    """Overrides the lowering of one or more operations inside a ``with`` block.

    Args:
      **choices: ``op=name`` pairs, e.g. ``conv="reference"``.

    The choice is part of ``jax.jit``'s cache key, so jitted functions are traced
    again under a new choice.
    """
    for op, name in choices.items():
        if name not in _table(op):
            raise ValueError(
                f"`{op}` lowering must be one of {available(op)}, got {name!r}."
            )
    with _overrides((*(_overrides.value or ()), *sorted(choices.items()))):
        yield


__all__ = ["available", "call", "current", "default", "get", "patches", "reference", "register", "runs_well_in_scan",
           "use"]
