"""Pooling: shrinking the image while keeping the most relevant information.

The lecture's recipe: pick a window size (usually 2 or 3), pick a stride (usually 2),
walk the window across each filtered image and keep the maximum of each window. A 7x7
response map pooled 2x2 with stride 2 gives a 4x4 map ("ceiling of 7/2"): the last
window hangs over the edge and takes the maximum of what it covers. Keras'
``MaxPooling2D`` instead drops that partial window (7 -> 3, 11 -> 5); both are here.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from . import _checks, lowering


def maxpool(
    x: Any,
    window: int | tuple[int, ...] = 2,
    stride: int | tuple[int, ...] | None = None,
    *,
    padding: str | int | tuple = "VALID",
    ceil_mode: bool = False,
):
    """Max pooling over the spatial dimensions of ``x``, each channel on its own.

    Args:
      x: input of shape ``(N, *spatial, C)`` with 1 or more spatial dimensions.
      window: window size, an int or one per spatial dimension.
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

    Returns:
      Array of shape ``(N, *out_spatial, C)`` and the dtype of ``x``. Per dimension,
      with ``padded = size + low + high``, ``out = (padded - window) // stride + 1``;
      with ``ceil_mode``, ``out = ceil((padded - window) / stride) + 1`` less one if the
      last window starts at or past ``size + low``.

    Raises:
      TypeError: if ``x`` is not a real numeric array, or an argument has the wrong
        type.
      ValueError: on a rank below 3, a non-positive window or stride, an unknown
        padding or one above half the window, or a window larger than the padded input.

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
    """
    x = _checks.as_array(x, "x")
    if x.ndim < 3:
        raise ValueError(
            "`x` must have rank >= 3 with layout (N, *spatial, C), got shape "
            f"{tuple(x.shape)} (rank {x.ndim})."
        )
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"`x` must have a real numeric dtype, got {x.dtype}.")
    n = x.ndim - 2
    window = _checks.positive_tuple(window, n, "window")
    stride = window if stride is None else _checks.positive_tuple(stride, n, "stride")
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"`ceil_mode` must be a bool, got {ceil_mode!r}.")
    spatial = tuple(x.shape[1:-1])
    pads = _checks.padding_pairs(padding, n, spatial, window, stride)
    _check_half_window(pads, window, padding)
    floor_sizes = _checks.output_sizes(spatial, window, stride, pads, what="pooling window")
    if ceil_mode:
        pads = _ceil_pads(spatial, window, stride, pads, floor_sizes)
    return lowering.call("maxpool", (x,), window, stride, pads)


def _check_half_window(pads, window, padding) -> None:
    """PyTorch's rule: padding of at most half the window on each side, so that every window
    covers at least one input cell (a window of padding alone would pool nothing)."""
    for i, ((lo, hi), w) in enumerate(zip(pads, window)):
        if max(lo, hi) > w // 2:
            raise ValueError(
                f"`padding` must be at most half the window on each side (window {w} // 2 = {w // 2} "
                f"in spatial dim {i}), got ({lo}, {hi}) there from padding={padding!r}."
            )


def _ceil_pads(spatial, window, stride, pads, floor_sizes):
    """Extends the high padding so that floor mode over it yields the ceil-mode size."""
    out_pads = []
    for size, w, s, (lo, hi), floor_out in zip(spatial, window, stride, pads, floor_sizes):
        padded = size + lo + hi
        out = -(-(padded - w) // s) + 1
        if (out - 1) * s >= size + lo:  # the last window would start in the high padding
            out -= 1
        out = max(out, floor_out)
        out_pads.append((lo, hi + max((out - 1) * s + w - padded, 0)))
    return tuple(out_pads)
