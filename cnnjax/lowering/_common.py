"""What the lowerings share: the identity of ``max``, and an operation whose derivative
comes from another form (:func:`directed`)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero


def max_identity(dtype):
    """The identity of ``max`` for ``dtype``: -inf for floats, the minimum for integers.

    A NumPy constant, not a ``jnp`` one: under ``jit`` a ``jnp`` constant is a tracer,
    and ``reduce_window`` then no longer recognises a max (whose gradient it knows).
    """
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf, dtype)
    return np.array(jnp.iinfo(dtype).min, dtype)


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


__all__ = ["directed", "max_identity"]
