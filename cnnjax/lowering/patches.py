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

How the arrays are shaped matters as much as the arithmetic here, because XLA:CPU
fuses some forms and not others (the measurements are in ``docs/performance.md``):

- The taps are stacked in nested groups of at most 8: XLA:CPU does not fuse a
  concatenate of more than 8 operands, and a 3x3 window stacked flat (9 operands)
  materialises every tap before copying them again.
- The patch matrix is 2-D ``(N * positions, taps * C_in)``, so that the forward matmul
  and both of its transposes (``dW = patches^T g``, ``dpatches = g W^T``) are plain
  2-D products, with no transposes of the batch-sized operands around them.
- When pooling windows do not overlap (stride == window: the lecture's 2x2 pooling),
  the tangent is taken on the input reshaped into whole windows, so that reverse mode
  is one broadcast-and-select back into the input's shape, instead of one strided pad
  per tap summed.

Numerics equal :mod:`.reference` to float tolerance (the sums are reassociated);
``tests/test_lowering.py`` compares the two on random configurations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _checks
from ._common import max_and_index, max_identity

# XLA:CPU fuses a concatenate only if it has at most this many operands.
_MAX_FUSED_CONCAT = 8


def _stack(arrays: list, axis: int):
    """``jnp.stack(arrays, axis)`` built from concatenates of at most 8 operands each."""
    return _concat([jnp.expand_dims(a, axis) for a in arrays], axis)


def _concat(arrays: list, axis: int):
    """``jnp.concatenate`` in a tree of concatenates of at most 8 operands each."""
    while len(arrays) > _MAX_FUSED_CONCAT:
        arrays = [
            jnp.concatenate(arrays[i : i + _MAX_FUSED_CONCAT], axis)
            for i in range(0, len(arrays), _MAX_FUSED_CONCAT)
        ]
    return jnp.concatenate(arrays, axis) if len(arrays) > 1 else arrays[0]


def _taps(x, window, stride, padding, dilation, fill):
    """Strided views of padded ``x``, one per window tap: ``(N, *out, *window, C)``.

    Taps run in row-major window order (the order of ``kernel.reshape(-1, C_in, C_out)``);
    each window axis is one level of stacking, so no concatenate has more than 8 operands.
    """
    n = len(window)
    out = _checks.output_sizes(x.shape[1:-1], window, stride, padding, dilation)
    if any(sum(p) for p in padding):
        x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=fill)

    def view(tap):
        start = [t * d for t, d in zip(tap, dilation, strict=True)]
        limit = [s + (o - 1) * st + 1 for s, o, st in zip(start, out, stride, strict=True)]
        return lax.slice(x, (0, *start, 0), (x.shape[0], *limit, x.shape[-1]), (1, *stride, 1))

    def stacked(prefix: tuple):  # the taps whose first len(prefix) window indices are prefix
        d = len(prefix)
        if d == n:
            return view(prefix)
        return _stack([stacked((*prefix, t)) for t in range(window[d])], axis=1 + n)

    return stacked(())


def conv(
    x,
    kernel,
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    groups: int = 1,
):
    """Cross-correlation as patches @ kernel; same contract as :func:`.reference.conv`.

    With ``groups`` > 1 the patch matrix is split by input-channel group and each group
    multiplied by its own slice of the kernel (one batched ``dot_general``)."""
    n = kernel.ndim - 2
    window = kernel.shape[:n]
    c_out = kernel.shape[-1]
    if all(w == 1 for w in window) and all(s == 1 for s in stride) and not any(sum(p) for p in padding):
        patches = x  # a 1x1 convolution is already a matmul over channels
    else:
        patches = _taps(x, window, stride, padding, dilation, 0)  # (N, *out, *window, C_in)
    out_shape = patches.shape[: n + 1]
    if groups > 1:
        taps, c_group = math.prod(window), kernel.shape[-2]
        matrix = patches.reshape(-1, taps, groups, c_group)  # (positions, taps, G, C_in / G)
        weights = kernel.reshape(taps, c_group, groups, c_out // groups)
        # batch over groups: (G, positions, taps * C_in/G) @ (G, taps * C_in/G, C_out/G)
        y = lax.dot_general(matrix, weights, (((1, 3), (0, 1)), ((2,), (2,))))  # (G, positions, C_out/G)
        return jnp.moveaxis(y, 0, 1).reshape(*out_shape, c_out)
    k = kernel.size // c_out
    matrix = patches.reshape(-1, k)  # (N * positions, taps * C_in)
    y = lax.dot_general(matrix, kernel.reshape(k, c_out), (((1,), (0,)), ((), ())))
    return y.reshape(*out_shape, c_out)


def avgpool(x, window: Sequence[int], stride: Sequence[int], padding: Sequence[tuple[int, int]]):
    """Window sums over stacked taps (zero padding); same contract as :func:`.reference.avgpool`."""
    n = len(window)
    taps = _taps(x, tuple(window), tuple(stride), tuple(map(tuple, padding)), (1,) * n, 0)
    return jnp.sum(taps, axis=tuple(range(n + 1, 2 * n + 1)))


def maxpool(x, window: Sequence[int], stride: Sequence[int], padding: Sequence[tuple[int, int]],
            dilation: Sequence[int] | None = None):
    """Max over stacked window taps; same contract as :func:`.reference.maxpool`."""
    window, stride, padding = tuple(window), tuple(stride), tuple(map(tuple, padding))
    return _pool_and_index(x, window, stride, padding, tuple(dilation or (1,) * len(window)))[0]


def maxpool_indices(x, window: Sequence[int], stride: Sequence[int], padding: Sequence[tuple[int, int]],
                    dilation: Sequence[int] | None = None):
    """Where each window's maximum is, as :func:`maxpool` picks it (PyTorch's choice: the
    first maximum, NaN wins, the last NaN): ``(N, *out, C)`` int32, the row-major index into
    the unpadded spatial map of ``x (N, *spatial, C)``, as PyTorch's ``return_indices``."""
    window, stride, padding = tuple(window), tuple(stride), tuple(map(tuple, padding))
    dilation = tuple(dilation or (1,) * len(window))
    _, tap = _max_and_first(lax.stop_gradient(x), window, stride, padding, dilation)  # row-major in the window
    offsets = []
    for w in reversed(window):
        offsets.insert(0, tap % w)
        tap = tap // w
    flat = jnp.zeros_like(offsets[0])
    for i, (size, s, (lo, _), d) in enumerate(zip(x.shape[1:-1], stride, padding, dilation, strict=True)):
        position = lax.broadcasted_iota(jnp.int32, flat.shape, i + 1) * s - lo + offsets[i] * d
        flat = flat * size + position
    return flat


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _pool_and_index(x, window, stride, padding, dilation):
    """``_max_and_first`` with its derivative: each window's tangent is its first maximum's."""
    return _max_and_first(x, window, stride, padding, dilation)


@_pool_and_index.defjvp
def _pool_and_index_jvp(window, stride, padding, dilation, primals, tangents):
    """Linear in the tangent, so JAX transposes it for reverse mode (the gradient routed to
    the first maximum only). The primal outputs come from ``_pool_and_index`` itself, so a
    transformation of this rule (a second derivative) differentiates them by this same
    rule; the index is piecewise constant, its tangent zero."""
    (x,), (t,) = primals, tangents
    y, first = _pool_and_index(x, window, stride, padding, dilation)
    return (y, first), (_select(t, first, window, stride, padding, dilation),
                        np.zeros(first.shape, jax.dtypes.float0))


def _max_and_first(x, window, stride, padding, dilation):
    """Each window's max and the row-major index of the tap PyTorch picks: the first maximum
    (:func:`._common.pick_max`; NaN wins, the last NaN of a window): ``(N, *out, C)``.

    One variadic ``lax.reduce`` over the taps yields both. Being a reduction, XLA keeps its
    result in memory for the next layer to read, instead of recomputing the window max
    inside that layer's patches (which ``jnp.max`` over stacked taps, simplified to
    elementwise maxima, invites).
    """
    n = len(window)
    taps = _taps(x, window, stride, padding, dilation, max_identity(x.dtype))
    taps = taps.reshape(*taps.shape[: n + 1], math.prod(window), taps.shape[-1])  # (N, *out, taps, C)
    return max_and_index(taps, n + 1)


def _select(t, first, window, stride, padding, dilation):
    """Each window's value of ``t`` at the tap ``first`` (row-major tap index): ``(N, *out, C)``."""
    n = len(window)
    zero = jnp.zeros((), t.dtype)
    if window == stride and all(d == 1 for d in dilation):
        # Windows tile the (padded, cropped) input: reshape it into whole windows,
        # (N, o_1, w_1, ..., o_n, w_n, C), and select each window's first maximum.
        out = first.shape[1:-1]
        if any(sum(p) for p in padding):
            t = jnp.pad(t, ((0, 0), *padding, (0, 0)))
        t = t[(slice(None), *(slice(0, o * w) for o, w in zip(out, window, strict=True)), slice(None))]
        blocks = [t.shape[0]]
        for o, w in zip(out, window, strict=True):
            blocks += [o, w]
        t = t.reshape(*blocks, t.shape[-1])
        axes = tuple(2 + 2 * i for i in range(n))
        tap = functools.reduce(
            lambda acc, i: acc * window[i] + lax.broadcasted_iota(first.dtype, t.shape, axes[i]), range(n), 0
        )
        chosen = tap == jnp.expand_dims(first, axes)
        return jnp.sum(jnp.where(chosen, t, zero), axis=axes)
    t_taps = _taps(t, window, stride, padding, dilation, 0)
    t_taps = t_taps.reshape(*t_taps.shape[: n + 1], math.prod(window), t_taps.shape[-1])
    chosen = jnp.arange(t_taps.shape[-2])[:, None] == first[..., None, :]
    return jnp.sum(jnp.where(chosen, t_taps, zero), axis=-2)
