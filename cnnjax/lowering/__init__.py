"""Where cnnjax chooses how ``conv`` and ``maxpool`` are lowered to XLA.

The public operations (:func:`cnnjax.conv`, :func:`cnnjax.maxpool`) normalise and check
their arguments, then ask this module for an implementation. Every implementation has
the same signature and the same numerics to float tolerance as :mod:`.reference`, which
is built on ``jax.lax.conv_general_dilated`` and ``jax.lax.reduce_window``.

The choice is made here and nowhere else: per operation and per platform
(``jax.default_backend()`` at trace time), with a context manager to override it::

    with cnnjax.lowering.use(conv="reference"):
        y = cnnjax.conv(x, k)

Example:
    >>> from cnnjax import lowering
    >>> lowering.available("conv")
    ('reference',)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import jax

from . import reference

_IMPLEMENTATIONS: dict[str, dict[str, Callable]] = {
    "conv": {"reference": reference.conv},
    "maxpool": {"reference": reference.maxpool},
}

# Default lowering per operation and platform; platforms not listed use "*".
_DEFAULTS: dict[str, dict[str, str]] = {
    "conv": {"*": "reference"},
    "maxpool": {"*": "reference"},
}

_override = threading.local()


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
    overrides = getattr(_override, "stack", [])
    for frame in reversed(overrides):
        if op in frame:
            return frame[op]
    return default(op, platform)


def get(op: str, platform: str | None = None) -> Callable:
    """The implementation of ``op`` that the public operation calls."""
    return _table(op)[current(op, platform)]


@contextlib.contextmanager
def use(**choices: str) -> Iterator[None]:
    """Overrides the lowering of one or more operations inside a ``with`` block.

    Args:
      **choices: ``op=name`` pairs, e.g. ``conv="reference"``.

    The choice applies when a function is traced: a function already compiled by
    ``jax.jit`` keeps the lowering it was traced with.
    """
    for op, name in choices.items():
        if name not in _table(op):
            raise ValueError(
                f"`{op}` lowering must be one of {available(op)}, got {name!r}."
            )
    stack = getattr(_override, "stack", None)
    if stack is None:
        stack = _override.stack = []
    stack.append(dict(choices))
    try:
        yield
    finally:
        stack.pop()


__all__ = ["available", "current", "default", "get", "use", "reference"]
