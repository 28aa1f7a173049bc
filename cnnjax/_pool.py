"""Pooling: shrinking the image while keeping the most relevant information.

The lecture's recipe: pick a window size (usually 2 or 3), pick a stride (usually 2),
walk the window across each filtered image and keep the maximum of each window. A 7x7
response map pooled 2x2 with stride 2 gives a 4x4 map ("ceiling of 7/2"): the last
window hangs over the edge and takes the maximum of what it covers. Keras'
``MaxPooling2D`` instead drops that partial window (7 -> 3, 11 -> 5); both are here.

Average pooling (:func:`avgpool`) keeps each window's mean instead, and the global pools
(:func:`global_avgpool`, :func:`global_maxpool`) reduce each whole map to one number, the
usual last step of a modern CNN before its dense layer.

**Batched or not.** The spatial rank comes from the window when it is given per
dimension: ``maxpool(x, (2, 2))`` pools a batch ``(N, H, W, C)`` or a single example
``(H, W, C)`` alike, so ``jax.vmap`` over examples gives what the batched call gives. An
int window means every spatial dimension of a *batched* input ``(N, *spatial, C)``:
inside ``jax.vmap`` over single examples, give the window per dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from . import _checks, lowering
from .lowering._common import max_and_index


def _geometry(x, window, stride, padding, ceil_mode, dilation=1):
    """Normalised pooling arguments: ``(x with a batch axis, unbatch, window, stride,
    explicit pads, pads extended for ceil mode, dilation)``."""
    x = _checks.as_array(x, "x")
    if isinstance(window, Sequence) and not isinstance(window, str):
        n = len(window)
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(
                f"`x` must have shape (N, *spatial, C) or (*spatial, C) with {n} spatial dims to match "
                f"`window`={tuple(window)!r}, got shape {tuple(x.shape)} (rank {x.ndim})."
            )
    else:
        if x.ndim < 3:
            raise ValueError(
                "`x` must have rank >= 3 with layout (N, *spatial, C) for an int `window` (give the window per "
                f"spatial dimension to pool a single example), got shape {tuple(x.shape)} (rank {x.ndim})."
            )
        n = x.ndim - 2
    batched = x.ndim == n + 2
    xb = x if batched else x[None]
    window = _checks.positive_tuple(window, n, "window")
    stride = window if stride is None else _checks.positive_tuple(stride, n, "stride")
    dilation = _checks.positive_tuple(dilation, n, "dilation")
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"`ceil_mode` must be a bool, got {ceil_mode!r}.")
    spatial = tuple(xb.shape[1:-1])
    span = tuple((w - 1) * d + 1 for w, d in zip(window, dilation, strict=True))  # the cells a dilated window spans
    pads = _checks.padding_pairs(padding, n, spatial, window, stride, dilation)
    # explicit padding: PyTorch's rule, half the window dilated or not; "SAME" pads a dilated
    # window by up to half its span, and every window still covers input cells
    _check_half_window(pads, span if isinstance(padding, str) else window, padding)
    floor_sizes = _checks.output_sizes(spatial, window, stride, pads, dilation, what="pooling window")
    full = _ceil_pads(spatial, span, stride, pads, floor_sizes) if ceil_mode else pads
    unbatch = (lambda y: y) if batched else (lambda y: y[0])
    return xb, unbatch, window, stride, pads, full, dilation


def maxpool(
    x: ArrayLike,
    window: int | tuple[int, ...] = 2,
    stride: int | tuple[int, ...] | None = None,
    *,
    padding: str | int | tuple = "VALID",
    ceil_mode: bool = False,
    dilation: int | tuple[int, ...] = 1,
    return_indices: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Max pooling over the spatial dimensions of ``x``, each channel on its own.

    Args:
      x: input of shape ``(N, *spatial, C)`` with 1 or more spatial dimensions, or a
        single example ``(*spatial, C)`` when ``window`` is given per dimension.
      window: window size, an int (every spatial dimension of a batched ``x``) or one
        per spatial dimension (which also fixes the spatial rank).
      stride: step between windows, an int or one per spatial dimension. ``None``
        (the default) means ``stride = window``, as in Keras and PyTorch; note that
        ``flax.linen.max_pool`` defaults to a stride of 1 instead.
      padding: ``"VALID"``, ``"SAME"`` (output ``ceil(size / stride)``), an int, one
        int per spatial dimension, or one ``(low, high)`` pair per dimension, each at
        most ``window // 2`` (as in PyTorch). Padded cells hold -inf (the minimum for
        integers) and never win a window.
      ceil_mode: if True, output sizes round up instead of down, so a last window
        that hangs over the high edge is kept (the lecture's "ceiling of 7/2"); as
        in PyTorch, a window that would start inside the high padding is dropped.
      dilation: spacing between a window's cells, an int or one per spatial dimension
        (PyTorch's ``dilation``): a window spans ``span = dilation * (window - 1) + 1``
        cells; the padding stays at most half the window, as in PyTorch.
      return_indices: also return where each maximum came from (PyTorch's
        ``return_indices``), for :func:`max_unpool`.

    Returns:
      Array of shape ``(N, *out_spatial, C)`` (``(*out_spatial, C)`` for a single
      example) and the dtype of ``x``. Per dimension, with ``padded = size + low +
      high``, ``out = (padded - span) // stride + 1``; with ``ceil_mode``,
      ``out = ceil((padded - span) / stride) + 1`` less one if the last window starts
      at or past ``size + low``. The gradient of each window goes to its first maximum.
      With ``return_indices``, ``(y, indices)``: ``indices`` int32 of ``y``'s shape, each
      window's first maximum (NaN wins: the last NaN, as PyTorch picks it) as a row-major
      index into its example's and channel's spatial map (``h * W + w`` for images), as
      PyTorch gives them.

    Raises:
      TypeError: if ``x`` is not a real numeric array, or an argument has the wrong
        type.
      ValueError: on a rank that fits neither layout, a non-positive window or
        stride, an unknown padding or one above half the window, or a window larger
        than the padded input.

    Example: the lecture's 7x7 map pooled 2x2 with stride 2 and the ceiling rule.

    >>> import jax.numpy as jnp
    >>> import cnnjax
    >>> x = jnp.arange(49.0).reshape(1, 7, 7, 1)
    >>> cnnjax.maxpool(x, 2, ceil_mode=True)[0, :, :, 0]
    Array([[ 8., 10., 12., 13.],
           [22., 24., 26., 27.],
           [36., 38., 40., 41.],
           [43., 45., 47., 48.]], dtype=float32)
    >>> cnnjax.maxpool(x, 2).shape  # Keras' MaxPooling2D: floor(7 / 2) = 3
    (1, 3, 3, 1)
    >>> cnnjax.maxpool(x[0], (2, 2)).shape  # one example, the window per dimension
    (3, 3, 1)
    """
    xb, unbatch, window, stride, _, pads, dilation = _geometry(x, window, stride, padding, ceil_mode, dilation)
    _checks.check_real(xb, "x")
    if not isinstance(return_indices, bool):
        raise TypeError(f"`return_indices` must be a bool, got {return_indices!r}.")
    dilated = (dilation,) if any(d != 1 for d in dilation) else ()  # a lowering gets it only when asked
    y = unbatch(lowering.call("maxpool", (xb,), window, stride, pads, *dilated))
    if not return_indices:
        return y
    return y, unbatch(lowering.call("maxpool_indices", (xb,), window, stride, pads, dilation))


def max_unpool(
    x: ArrayLike,
    indices: ArrayLike,
    window: int | tuple[int, ...] = 2,
    stride: int | tuple[int, ...] | None = None,
    *,
    padding: int | tuple = 0,
    output_size: Sequence[int] | None = None,
) -> jax.Array:
    """The inverse of :func:`maxpool` with ``return_indices`` (``torch.nn.functional.max_unpool``):
    each value of ``x`` put back where ``indices`` says its maximum came from, zeros elsewhere
    (SegNet's decoder).

    Args:
      x: the pooled maps ``(N, *spatial, C)``, or one example (the window given per
        dimension), floating point.
      indices: as :func:`maxpool` returned them, of ``x``'s shape.
      window, stride, padding: those of the pooling; they give the output size
        ``(size - 1) * stride - low - high + window`` per dimension, as in PyTorch.
      output_size: the spatial shape to fill instead (the pooled input's, when floor
        mode dropped a row).

    Returns:
      ``(N, *output_size, C)``. Where two windows chose one cell, one value is kept.
      Concrete indices outside ``[0, prod(output_size))`` are refused; under ``jit``
      they cannot be, and the map of each example and channel that holds one is NaN
      throughout (never a value put in another cell).

    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    >>> y, i = maxpool(x, 2, return_indices=True)
    >>> max_unpool(y, i, 2)[0, :, :, 0]
    Array([[0., 0.],
           [0., 4.]], dtype=float32)
    """
    x = _checks.as_array(x, "x")
    indices = _checks.as_array(indices, "indices")
    _checks.check_floating(x, "x")
    n = len(window) if isinstance(window, Sequence) and not isinstance(window, str) else x.ndim - 2
    if x.ndim not in (n + 1, n + 2) or n < 1:
        raise ValueError(f"`x` must have shape (N, *spatial, C) or (*spatial, C) with {n} spatial dims, "
                         f"got shape {tuple(x.shape)}.")
    if tuple(indices.shape) != tuple(x.shape) or not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"`indices` must be integers of `x`'s shape {tuple(x.shape)}, got {indices.dtype} "
                         f"{tuple(indices.shape)}.")
    batched = x.ndim == n + 2
    xb, ib = (x, indices) if batched else (x[None], indices[None])
    window = _checks.positive_tuple(window, n, "window")
    stride = window if stride is None else _checks.positive_tuple(stride, n, "stride")
    pads = _checks.padding_pairs(padding, n, xb.shape[1:-1], window, stride)
    if output_size is None:
        out = tuple((size - 1) * s - lo - hi + w
                    for size, s, (lo, hi), w in zip(xb.shape[1:-1], stride, pads, window, strict=True))
    else:
        if not (isinstance(output_size, Sequence) and len(output_size) == n):
            raise ValueError(f"`output_size` must be the {n} spatial sizes of the output, got {output_size!r}.")
        out = _checks.positive_tuple(tuple(output_size), n, "output_size")
    if any(o <= 0 for o in out):
        raise ValueError(f"output size would be zero or negative: {out}.")
    cells = _checks.prod(out)
    if not isinstance(ib, jax.core.Tracer):
        values = np.asarray(ib)
        if values.size and (values.min() < 0 or values.max() >= cells):
            raise ValueError(f"`indices` must be in [0, {cells}) for an output of spatial shape {out}, got values "
                             f"from {values.min()} to {values.max()}.")
    batch, channels = xb.shape[0], xb.shape[-1]
    flat_x, flat_i = xb.reshape(batch, -1, channels), ib.reshape(batch, -1, channels)
    rows = jnp.arange(batch)[:, None, None]
    cols = jnp.arange(channels)[None, None, :]
    # Traced indices cannot be refused: one outside [0, cells) goes nowhere (a negative one
    # would otherwise count from the end) and its example's channel map is NaN throughout.
    valid = (flat_i >= 0) & (flat_i < cells)
    y = jnp.zeros((batch, cells, channels), x.dtype).at[rows, jnp.where(valid, flat_i, cells), cols].set(
        flat_x, mode="drop")
    y = jnp.where(jnp.all(valid, axis=1, keepdims=True), y, jnp.asarray(jnp.nan, x.dtype))
    y = y.reshape(batch, *out, channels)
    return y if batched else y[0]


def avgpool(
    x: ArrayLike,
    window: int | tuple[int, ...] = 2,
    stride: int | tuple[int, ...] | None = None,
    *,
    padding: str | int | tuple = "VALID",
    ceil_mode: bool = False,
    count_include_pad: bool | None = None,
    divisor_override: int | None = None,
) -> jax.Array:
    """Average pooling: each window's mean, each channel on its own
    (``torch.nn.functional.avg_pool1d/2d/3d`` for the same arguments).

    Args:
      x, window, stride, ceil_mode: as :func:`maxpool`; ``x`` floating point.
      padding: as :func:`maxpool`; padded cells hold zeros.
      count_include_pad: whether padded cells count in a window's mean. ``None`` (the
        default) follows the framework each form comes from: explicit padding counts
        (PyTorch's ``avg_pool2d``), ``"SAME"`` padding does not (Keras'
        ``AveragePooling2D``). ``True`` counts ``"SAME"`` padding too (as
        ``flax.linen.avg_pool`` does by default); ``False`` counts no padding. Cells a
        ceil-mode window hangs over never count.
      divisor_override: divide every window's sum by this instead (PyTorch's
        ``divisor_override``); ``count_include_pad`` then has no effect, as in PyTorch.

    Returns:
      Array of shape ``(N, *out_spatial, C)`` (as :func:`maxpool`), dtype of ``x``; the
      window sums of a narrow float (bfloat16, float16) are taken in float32, forward and
      gradient, then cast back, as PyTorch's pools do.

    >>> import jax.numpy as jnp
    >>> import cnnjax
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> cnnjax.avgpool(x, 2)[0, :, :, 0]
    Array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    >>> ones = jnp.ones((1, 3, 1))  # 'SAME' pads one zero on each side here
    >>> cnnjax.avgpool(ones, 3, 1, padding="SAME")[0, :, 0]  # Keras: padding not counted
    Array([1., 1., 1.], dtype=float32)
    >>> cnnjax.avgpool(ones, 3, 1, padding="SAME", count_include_pad=True)[0, :, 0]  # Flax
    Array([0.6666667, 1.       , 0.6666667], dtype=float32)
    """
    xb, unbatch, window, stride, pads, full, _ = _geometry(x, window, stride, padding, ceil_mode)
    _checks.check_floating(xb, "x")
    _checks.optional_bool(count_include_pad, "count_include_pad")
    if divisor_override is not None:
        divisor_override = _checks.positive_int(divisor_override, "divisor_override")
    include = (not (isinstance(padding, str) and padding.upper() == "SAME") if count_include_pad is None
               else count_include_pad)
    wide = _checks.summing_dtype(xb.dtype)  # a bfloat16 window adds up in float32, as PyTorch's does
    sums = lowering.call("avgpool", (xb.astype(wide),), window, stride, full)
    if divisor_override is not None:
        return unbatch((sums / jnp.asarray(divisor_override, wide)).astype(xb.dtype))
    counts = _window_counts(tuple(xb.shape[1:-1]), window, stride, pads, full, include)
    return unbatch((sums / counts[None, ..., None].astype(wide)).astype(xb.dtype))


def _window_counts(spatial, window, stride, pads, full, include_pad) -> np.ndarray:
    """How many cells each window averages: ``(*out_spatial,)``, the outer product of one
    count per dimension (the counted region is a box)."""
    counts = np.ones((), np.float64)
    for size, w, s, (lo, hi), (_, full_hi) in zip(spatial, window, stride, pads, full, strict=True):
        pad = 1.0 if include_pad else 0.0
        mask = np.concatenate([np.full(lo, pad), np.ones(size), np.full(hi, pad), np.zeros(full_hi - hi)])
        out = (len(mask) - w) // s + 1
        per_dim = np.array([mask[o * s : o * s + w].sum() for o in range(out)])
        counts = np.multiply.outer(counts, per_dim)
    return counts


def _adaptive_geometry(x, output_size):
    """``(x with a batch axis, unbatch, output sizes)``: the rank from ``output_size`` (an
    int is a square 2-D output, as PyTorch's ``AdaptiveAvgPool2d(6)``)."""
    x = _checks.as_array(x, "x")
    n = _checks.window_rank(output_size, "output_size", default=2)
    sizes = _checks.positive_tuple(output_size, n, "output_size")
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(f"`x` must have shape (N, *spatial, C) or (*spatial, C) with {n} spatial dims to match "
                         f"`output_size`={output_size!r}, got shape {tuple(x.shape)} (rank {x.ndim}).")
    batched = x.ndim == n + 2
    xb = x if batched else x[None]
    if 0 in xb.shape[1:-1]:
        raise ValueError(f"`x` must have at least one position in each spatial dim, got shape {tuple(x.shape)}.")
    return xb, (lambda y: y) if batched else (lambda y: y[0]), sizes


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive windows of an axis of ``size`` cells pooled to ``out``: window
    ``i`` covers ``[floor(i * size / out), ceil((i + 1) * size / out))``. Returns
    ``(indices, valid)``, each ``(out, longest window)``; a shorter window's extra slots
    repeat its first cell and are not valid.

    >>> adaptive_windows(5, 3)[0].tolist()  # windows [0, 2), [1, 4), [3, 5)
    [[0, 1, 0], [1, 2, 3], [3, 4, 3]]
    """
    i = np.arange(out)
    starts, ends = (i * size) // out, -((-(i + 1) * size) // out)
    slots = starts[:, None] + np.arange(int((ends - starts).max()))[None]
    valid = slots < ends[:, None]
    return np.where(valid, slots, starts[:, None]), valid


def _adaptive(xb, sizes, reduce):
    """``reduce(windows, valid, axis)`` along each spatial axis in turn: a box window is
    the product of one interval per axis, so the pools separate."""
    for axis, out in enumerate(sizes, start=1):
        index, valid = adaptive_windows(xb.shape[axis], out)
        windows = jnp.take(xb, index.reshape(-1), axis=axis)
        windows = windows.reshape(*xb.shape[:axis], *index.shape, *xb.shape[axis + 1:])
        xb = reduce(windows, valid.reshape(*index.shape, *(1,) * (xb.ndim - axis - 1)), axis + 1)
    return xb


def adaptive_avgpool(x: ArrayLike, output_size: int | tuple[int, ...]) -> jax.Array:
    """Average pooling to a fixed output size (``torch.nn.functional.adaptive_avg_pool1d/2d/3d``):
    output cell ``i`` of an axis of ``size`` cells averages cells
    ``floor(i * size / out)`` to ``ceil((i + 1) * size / out) - 1``. AlexNet's head pools
    to 6x6 this way whatever the input size.

    Args:
      x: floating point, ``(N, *spatial, C)`` or one example ``(*spatial, C)``.
      output_size: an int (a square 2-D output) or one size per spatial dimension (which
        fixes the spatial rank); larger than the input repeats cells, as in PyTorch.

    Returns:
      ``(N, *output_size, C)`` (``(*output_size, C)`` for one example), dtype of ``x``.

    >>> import jax.numpy as jnp
    >>> adaptive_avgpool(jnp.arange(5.0).reshape(5, 1), (3,))[:, 0]
    Array([0.5, 2. , 3.5], dtype=float32)
    """
    xb, unbatch, sizes = _adaptive_geometry(x, output_size)
    _checks.check_floating(xb, "x")

    def mean(windows, valid, axis):  # where, not a product: a NaN outside a window stays outside
        total = jnp.sum(jnp.where(valid, windows, 0), axis=axis)
        return total / jnp.asarray(valid.sum(axis=1), windows.dtype)  # (out, 1, ...): right-aligned

    return unbatch(_adaptive(xb.astype(_checks.summing_dtype(xb.dtype)), sizes, mean).astype(xb.dtype))


def adaptive_maxpool(x: ArrayLike, output_size: int | tuple[int, ...]) -> jax.Array:
    """Max pooling to a fixed output size (``torch.nn.functional.adaptive_max_pool1d/2d/3d``),
    over the windows of :func:`adaptive_avgpool`. Each window's maximum and the cell its
    gradient goes to are PyTorch's: the first maximum, row-major over the whole window; NaN
    wins (the last NaN).

    Args, Returns: as :func:`adaptive_avgpool`; ``x`` real numeric.
    """
    xb, unbatch, sizes = _adaptive_geometry(x, output_size)
    _checks.check_real(xb, "x")
    n = len(sizes)
    windows, valid = xb, np.ones((), bool)
    for axis, out in enumerate(sizes):  # gather each axis' windows: (N, o_1, l_1, ..., o_n, l_n, C)
        index, slots = adaptive_windows(xb.shape[1 + axis], out)
        at = 1 + 2 * axis
        windows = jnp.take(windows, index.reshape(-1), axis=at).reshape(
            *windows.shape[:at], *index.shape, *windows.shape[at + 1:])
        valid = np.multiply.outer(valid, slots)
    order = (0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)  # outputs, then the window's slots
    windows = windows.transpose(order).reshape(xb.shape[0], *sizes, -1, xb.shape[-1])
    valid = valid.transpose(tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2))).reshape(*sizes, -1, 1)
    _, pick = max_and_index(lax.stop_gradient(windows), n + 1, valid)  # one window slot per output, row-major
    return unbatch(jnp.take_along_axis(windows, pick[..., None, :], axis=n + 1).squeeze(n + 1))


def _global_axes(x, spatial_dims):
    x = _checks.as_array(x, "x")
    if spatial_dims is None:
        if x.ndim < 3:
            raise ValueError(f"`x` must have rank >= 3 with layout (N, *spatial, C), got shape {tuple(x.shape)}; "
                             "for a single example give `spatial_dims`.")
        return x, x.ndim - 2, True
    n = _checks.positive_int(spatial_dims, "spatial_dims")
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(f"`x` must have shape (N, *spatial, C) or (*spatial, C) with {n} spatial dims "
                         f"(`spatial_dims`={n}), got shape {tuple(x.shape)}.")
    return (x, n, True) if x.ndim == n + 2 else (x[None], n, False)


def global_avgpool(x: ArrayLike, *, spatial_dims: int | None = None) -> jax.Array:
    """Each channel's mean over all positions: ``(N, *spatial, C) -> (N, C)``.

    Args:
      x: floating point, ``(N, *spatial, C)``; or ``(*spatial, C) -> (C,)`` for a
        single example when ``spatial_dims`` is given.
      spatial_dims: the number of spatial dimensions; default ``x.ndim - 2`` (batched).
    """
    xb, n, batched = _global_axes(x, spatial_dims)
    _checks.check_floating(xb, "x")
    y = jnp.mean(xb.astype(_checks.summing_dtype(xb.dtype)), axis=tuple(range(1, n + 1))).astype(xb.dtype)
    return y if batched else y[0]


def global_maxpool(x: ArrayLike, *, spatial_dims: int | None = None, mask: ArrayLike | None = None) -> jax.Array:
    """Each channel's maximum over all positions: ``(N, *spatial, C) -> (N, C)``; as in
    :func:`maxpool`, the gradient goes to the first maximum (row-major), and NaN wins.

    With ``mask``, only the positions it marks are pooled: the max-over-time pooling of a
    sentence CNN (Kim, 2014), where a sentence's padding must never win, not even with a
    NaN, so that its result is the same whatever length it was padded to.

    Args:
      x, spatial_dims: as :func:`global_avgpool`; ``x`` real numeric.
      mask: optional bool ``(N, *spatial)`` (``(*spatial,)`` for one example): ``True``
        where a position counts. An example with no position marked pools to the lowest
        value of the dtype (``-inf`` for floats), the maximum of nothing; a concrete mask
        with such a row is refused.

    >>> import jax.numpy as jnp
    >>> x = jnp.array([[[1.0], [5.0], [9.0]]])              # (1, 3, 1): three positions
    >>> global_maxpool(x, mask=jnp.array([[True, True, False]]))[0, 0]
    Array(5., dtype=float32)
    """
    xb, n, batched = _global_axes(x, spatial_dims)
    _checks.check_real(xb, "x")
    if _checks.prod(xb.shape[1:-1]) == 0:
        raise ValueError(f"`x` must have at least one position to take a maximum over, got shape {tuple(x.shape)}.")
    flat = xb.reshape(xb.shape[0], _checks.prod(xb.shape[1:-1]), xb.shape[-1])
    if mask is not None:
        keep = _position_mask(mask, xb.shape[:-1], batched, tuple(jnp.shape(x)))
        lowest = -jnp.inf if jnp.issubdtype(xb.dtype, jnp.floating) else jnp.iinfo(xb.dtype).min
        flat = jnp.where(keep.reshape(flat.shape[:2])[..., None], flat, jnp.asarray(lowest, xb.dtype))
    y = _max_and_argmax(flat)[0]
    return y if batched else y[0]


def _position_mask(mask, positions: tuple[int, ...], batched: bool, x_shape: tuple[int, ...]) -> jax.Array:
    """``mask`` checked against the positions of ``x`` (its shape without the channels),
    batched like ``x``; a concrete mask must mark at least one position of every example."""
    if not isinstance(mask, jax.core.Tracer):
        mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"`mask` must be a bool array, True where a position counts, got dtype {mask.dtype}.")
    expected = positions if batched else positions[1:]
    if tuple(mask.shape) != tuple(expected):
        raise ValueError(f"`mask` must have the shape of `x` without its channels, {tuple(expected)}, got "
                         f"{tuple(mask.shape)} for `x` of shape {x_shape}.")
    mask = mask if batched else mask[None]
    if isinstance(mask, np.ndarray):
        empty = np.flatnonzero(~mask.reshape(mask.shape[0], -1).any(axis=1))
        if len(empty) and mask.shape[0]:
            raise ValueError(f"`mask` marks no position of example {int(empty[0])}: a maximum over nothing; "
                             "mark at least one position of every example.")
    return jnp.asarray(mask)


@jax.custom_jvp
def _max_and_argmax(x):
    """``(N, P, C) -> (N, C)`` maxima and the index of each, as PyTorch picks it (the first
    maximum; NaN wins, the last NaN: :func:`~cnnjax.lowering._common.pick_max`). A variadic
    reduction, not ``jnp.max`` (which on XLA:CPU drops NaN in inputs of 4,096 elements or more)."""
    return max_and_index(x, 1)


@_max_and_argmax.defjvp
def _max_and_argmax_jvp(primals, tangents):
    """The tangent at each chosen maximum; the primals from the function itself, so that a
    second derivative goes through this same rule."""
    (x,), (t,) = primals, tangents
    y, index = _max_and_argmax(x)
    return (y, index), (jnp.take_along_axis(t, index[:, None, :], axis=1)[:, 0, :],
                        np.zeros(index.shape, jax.dtypes.float0))


def _check_half_window(pads, window, padding) -> None:
    """PyTorch's rule: padding of at most half the window on each side, so that every window
    covers at least one input cell (a window of padding alone would pool nothing)."""
    for i, ((lo, hi), w) in enumerate(zip(pads, window, strict=True)):
        if max(lo, hi) > w // 2:
            raise ValueError(
                f"`padding` must be at most half the window on each side (window {w} // 2 = {w // 2} "
                f"in spatial dim {i}), got ({lo}, {hi}) there from padding={padding!r}."
            )


def _ceil_pads(spatial, window, stride, pads, floor_sizes):
    """Extends the high padding so that floor mode over it yields the ceil-mode size."""
    out_pads = []
    for size, w, s, (lo, hi), floor_out in zip(spatial, window, stride, pads, floor_sizes, strict=True):
        padded = size + lo + hi
        out = -(-(padded - w) // s) + 1
        if (out - 1) * s >= size + lo:  # the last window would start in the high padding
            out -= 1
        out = max(out, floor_out)
        out_pads.append((lo, hi + max((out - 1) * s + w - padded, 0)))
    return tuple(out_pads)


__all__ = ["adaptive_avgpool", "adaptive_maxpool", "adaptive_windows", "avgpool", "global_avgpool", "global_maxpool",
           "max_unpool", "maxpool"]
