"""What the lowerings share: the identity of ``max``, which maximum of a window wins
(:func:`max_and_index`, PyTorch's choice), and an operation whose derivative comes from
another form (:func:`directed`)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero


def max_identity(dtype):
    """The identity of ``max`` for ``dtype``: -inf for floats, the minimum for integers.

    A NumPy constant, not a ``jnp`` one: under ``jit`` a ``jnp`` constant is a tracer,
    and ``reduce_window`` then no longer recognises a max (whose gradient it knows).
    """
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf, dtype)
    return np.array(jnp.iinfo(dtype).min, dtype)


def pick_max(a, b):
    """Reducer over ``(value, index)`` pairs: the maximum PyTorch's kernels pick as they scan
    a window (``if (val > max || isnan(val))``). The larger value wins and, among equal
    values, the lower index (the first maximum, row-major); NaN beats every number and,
    among NaNs, the higher index (the last NaN). A total order, so any reduction order
    gives the same pair."""
    (av, ai), (bv, bi) = a, b
    a_nan, b_nan = jnp.isnan(av), jnp.isnan(bv)
    take_a = jnp.where(a_nan | b_nan, a_nan & (~b_nan | (ai > bi)), (av > bv) | ((av == bv) & (ai < bi)))
    return lax.select(take_a, av, bv), lax.select(take_a, ai, bi)


def max_and_index(values, axis: int, valid=None):
    """``values``' maximum along ``axis`` and the index it is at, as :func:`pick_max` picks
    them; with a bool ``valid`` (broadcast to ``values``), only the marked entries compete
    (a window with none gives the dtype's lowest value and the index ``values.shape[axis]``)."""
    index = lax.broadcasted_iota(jnp.int32, values.shape, axis)
    if valid is not None:
        valid = jnp.broadcast_to(valid, values.shape)
        values = jnp.where(valid, values, max_identity(values.dtype))
        index = jnp.where(valid, index, values.shape[axis])
    init = (max_identity(values.dtype), np.int32(values.shape[axis]))
    return lax.reduce((values, index), init, pick_max, (axis,))


def directed(forward: Callable, derivative: Callable, arrays: tuple, static: tuple):
    """``forward(*arrays, *static)``, differentiated as ``derivative(*arrays, *static)`` is.

    Arguments whose tangent is a symbolic zero (the input images, a frozen kernel) are
    left out of the derivative's JVP, so no zero tangent is ever computed with.
    """
    if forward is derivative:
        return forward(*arrays, *static)

    @jax.custom_jvp
    def op(*arrays):
        return forward(*arrays, *static)

    def rule(primals, tangents):
        live = [i for i, t in enumerate(tangents) if not isinstance(t, SymbolicZero)]
        if not live:
            y = forward(*primals, *static)
            return y, jnp.zeros_like(y)

        def of_live(*values):
            args = list(primals)
            for i, v in zip(live, values, strict=True):
                args[i] = v
            return derivative(*args, *static)

        return jax.jvp(of_live, [primals[i] for i in live], [tangents[i] for i in live])

    op.defjvp(rule, symbolic_zeros=True)
    return op(*arrays)


__all__ = ["directed", "max_and_index", "max_identity", "pick_max"]
