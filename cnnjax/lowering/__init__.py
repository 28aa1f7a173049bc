"""Where cnnjax chooses how ``conv`` and ``maxpool`` are lowered to XLA.

The public operations (:func:`cnnjax.conv`, :func:`cnnjax.maxpool`) normalise and check
their arguments, then ask this module for an implementation: of ``"conv"``,
``"maxpool"``, ``"avgpool"``, and ``"maxpool_indices"`` (where each window's maximum is,
for ``maxpool(return_indices=True)``; every lowering gives it from the window taps, as
XLA:CUDA has no variadic ``reduce_window``). Every implementation has
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

Defaults, chosen by measurement (``benchmarks/compare.py``; figures in
``docs/performance.md``):

- CPU: ``"auto"`` (:mod:`.auto`): the form is chosen per operation by its shape and
  direction: XLA's own operations for a forward pass that nothing differentiates (XLA:CPU
  fuses them into one YNNPACK kernel), the patches matmuls for derivatives, where
  XLA:CPU's transposed convolutions are several times slower.
- GPU, TPU: ``"reference"``: cuDNN and the MXU run the native convolution.

XLA:CPU runs its own convolution (and its transposes) many times slower inside a loop
(``lax.scan``) than in a program of its own; :func:`runs_well_in_scan` finds such
operations in a traced program, and :func:`cnnjax.train.fit` then loops in Python.

Example:
    >>> from cnnjax import lowering
    >>> lowering.available("conv")
    ('reference', 'patches', 'auto', 'winograd')
    >>> lowering.default("conv", "cpu"), lowering.default("conv", "gpu")
    ('auto', 'reference')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import jax
from jax.extend import core as jex_core

from . import auto, patches, reference, winograd

_IMPLEMENTATIONS: dict[str, dict[str, Callable]] = {
    op: {"reference": getattr(reference, op), "patches": getattr(patches, op), "auto": getattr(auto, op)}
    for op in ("conv", "maxpool", "avgpool", "maxpool_indices")
}
_IMPLEMENTATIONS["conv"]["winograd"] = winograd.conv  # 3x3 stride 1 by F(2x2, 3x3); every other shape as auto
_BUILT_IN = ("reference", "patches", "auto", "winograd")

# Default lowering per operation and platform; platforms not listed use "*".
_DEFAULTS: dict[str, dict[str, str]] = {op: {"cpu": "auto", "*": "reference"} for op in _IMPLEMENTATIONS}

# Primitives that XLA runs much slower inside ``lax.scan`` than in a program of their own,
# per platform: XLA:CPU's own convolution and its transposes.
_SLOW_IN_SCAN = {"cpu": frozenset({"conv_general_dilated"})}

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
    arrays first, then normalised tuples (stride, explicit padding pairs, ...); a
    ``maxpool`` lowering gets a fourth, the dilation, only for a pool that asks for one."""
    table = _table(op)
    if name in _BUILT_IN:
        raise ValueError(f"`name` {name!r} is a built-in lowering of {op!r} and cannot be replaced.")
    if implementation is None:
        table.pop(name, None)
    elif not callable(implementation):
        raise TypeError(f"`implementation` must be a function or None, got {implementation!r}.")
    else:
        table[name] = implementation


def runs_well_in_scan(program: jex_core.ClosedJaxpr | jex_core.Jaxpr, platform: str | None = None) -> bool:
    """Whether ``program`` (a traced step, e.g. ``jax.jit(step).trace(*args).jaxpr``) runs as
    fast inside ``lax.scan`` as in a Python loop of jitted calls on ``platform``: whether
    it holds no primitive that XLA runs slowly in a loop there (on a CPU, XLA's own
    convolution). :func:`cnnjax.train.fit` asks before it scans an epoch."""
    platform = platform or jax.default_backend()
    slow = _SLOW_IN_SCAN.get(platform, frozenset())
    return not (slow & _primitives(program, platform))


def _primitives(program, platform: str) -> set[str]:
    """Names of the primitives in ``program`` and in every program nested in it that runs
    on ``platform``: of a ``lax.platform_dependent`` choice, only that platform's branch."""
    jaxpr = program.jaxpr if isinstance(program, jex_core.ClosedJaxpr) else program
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        params = dict(eqn.params)
        if params.get("branches_platforms"):  # (platform names | None for the default, ...)
            params["branches"] = (_branch_for(params["branches"], params["branches_platforms"], platform),)
        for value in params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, (jex_core.ClosedJaxpr, jex_core.Jaxpr)):
                    names |= _primitives(sub, platform)
    return names


def _branch_for(branches, platforms, platform: str):
    names = ("cuda", "rocm") if platform == "gpu" else (platform,)
    for branch, listed in zip(branches, platforms, strict=True):
        if listed is not None and any(p in listed for p in names):
            return branch
    return branches[platforms.index(None)]


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


__all__ = ["auto", "available", "call", "current", "default", "get", "patches", "reference", "register", "winograd",
           "runs_well_in_scan", "use"]
