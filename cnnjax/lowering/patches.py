"""The patches lowering: convolution as one matrix multiply, pooling as a max over taps.

"Trying every possible match" written the way a matrix unit likes it: gather, for each
output position, the ``prod(window) * C_in`` input values under the kernel (strided
slices of the padded input, one per tap), then multiply the ``(positions, taps * C_in)``
patch matrix by the ``(taps * C_in, C_out)`` kernel matrix in one ``dot_general``.
XLA:CPU runs that matmul (and its transposes in the backward pass) several times
faster than its native convolution, and much faster inside ``lax.scan``.

Max pooling stacks the window's taps the same way and takes the max over them. Its
derivative is written by hand (``jax.custom_jvp``) so that each window's gradient goes
to its *first* maximum, exactly as ``lax.reduce_window``'s does, instead of
``jnp.max``'s splitting among ties; reverse mode is JAX's transpose of that rule.

Numerics equal :mod:`.reference` to float tolerance (the sums are reassociated);
``tests/test_lowering.py`` compares the two on random configurations.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from .reference import max_identity


def _taps(x, window, stride, padding, dilation, fill):
    """Strided views of padded ``x``, one per window tap: ``(N, *out, taps, C)``."""
    n = len(window)
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=fill)
    out = [(x.shape[1 + i] - ((window[i] - 1) * dilation[i] + 1)) // stride[i] + 1 for i in range(n)]
    views = []
    for tap in itertools.product(*(range(w) for w in window)):
        start = [t * d for t, d in zip(tap, dilation)]
        limit = [s + (o - 1) * st + 1 for s, o, st in zip(start, out, stride)]
        views.append(
            lax.slice(x, (0, *start, 0), (x.shape[0], *limit, x.shape[-1]), (1, *stride, 1))
        )
    return jnp.stack(views, axis=-2)


def conv(
    x,
    kernel,
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int],
):
    """Cross-correlation as patches @ kernel; same contract as :func:`.reference.conv`."""
    n = kernel.ndim - 2
    window = kernel.shape[:n]
    c_out = kernel.shape[-1]
    if all(w == 1 for w in window) and all(s == 1 for s in stride) and not any(sum(p) for p in padding):
        patches = x  # a 1x1 convolution is already a matmul over channels
    else:
        patches = _taps(x, window, stride, padding, dilation, 0)
        patches = patches.reshape(*patches.shape[:-2], patches.shape[-2] * patches.shape[-1])  # (N, *out, taps * C_in)
    return lax.dot_general(
        patches, kernel.reshape(patches.shape[-1], c_out), (((patches.ndim - 1,), (0,)), ((), ()))
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def maxpool(x, window: Sequence[int], stride: Sequence[int], padding: Sequence[tuple[int, int]]):
    """Max over stacked window taps; same contract as :func:`.reference.maxpool`."""
    window, stride, padding = tuple(window), tuple(stride), tuple(map(tuple, padding))
    return jnp.max(_taps(x, window, stride, padding, (1,) * len(window), max_identity(x.dtype)), axis=-2)


@maxpool.defjvp
def _maxpool_jvp(window, stride, padding, primals, tangents):
    """Each window's tangent is its first maximum's: linear in the tangent, so JAX
    transposes it for reverse mode (the gradient routed to the first maximum only)."""
    (x,), (t,) = primals, tangents
    window, stride, padding = tuple(window), tuple(stride), tuple(map(tuple, padding))
    ones = (1,) * len(window)
    taps = _taps(x, window, stride, padding, ones, max_identity(x.dtype))
    first = jnp.argmax(taps, axis=-2)  # argmax returns the first maximum
    chosen = jnp.arange(taps.shape[-2])[:, None] == first[..., None, :]
    y = jnp.max(taps, axis=-2)
    t_taps = _taps(t, window, stride, padding, ones, 0)
    return y, jnp.sum(jnp.where(chosen, t_taps, jnp.zeros((), t.dtype)), axis=-2)
