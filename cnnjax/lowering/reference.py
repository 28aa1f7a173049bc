"""The reference lowering: XLA's own convolution and windowed reduction.

These are the definitions every other lowering is tested against. Arguments arrive
already normalised by the public operations (explicit padding pairs, tuples of
positive ints, matching dtypes), so nothing here validates.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from . import patches
from ._common import directed, max_identity


def channels_last_dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """Dimension numbers for ``x: (N, *spatial, C)``, ``kernel: (*window, C_in, C_out)``."""
    spatial = tuple(range(1, n + 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *spatial),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *spatial),
    )


def conv(
    x,
    kernel,
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    groups: int = 1,
):
    """Cross-correlation of ``x (N, *spatial, C_in)`` with ``kernel (*window, C_in // groups,
    C_out)``; with ``groups`` > 1 each group of ``C_in // groups`` input channels feeds its
    own ``C_out // groups`` outputs."""
    n = kernel.ndim - 2
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=tuple(stride),
        padding=tuple(padding),
        rhs_dilation=tuple(dilation),
        dimension_numbers=channels_last_dimension_numbers(n),
        feature_group_count=groups,
    )


def maxpool(
    x,
    window: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int] | None = None,
):
    """Max over windows of ``x (N, *spatial, C)``; padded cells never win, and a window
    holding a NaN gives NaN.

    On a CPU, XLA hands window maxima to YNNPACK, whose max drops NaN (``jnp.max`` too, in
    inputs of 4,096 elements or more), so there NaN is carried by a window sum of
    ``0 * sign(x)``: zero in every window without NaN, NaN otherwise, and no gradient.
    Other platforms' max keeps NaN as it is. ``dilation`` spaces a window's cells (given
    only when one is not 1); JAX has no derivative of a dilated window max, so a dilated
    pool is differentiated as :mod:`.patches` differentiates it (to each first maximum).
    """
    static = (tuple(window), tuple(stride), tuple(map(tuple, padding)), tuple(dilation or (1,) * len(window)))
    if all(d == 1 for d in static[3]):
        return _window_max(x, *static)
    return directed(_window_max, patches.maxpool, (x,), static)


def maxpool_indices(x, window, stride, padding, dilation=None):
    """Where each window's maximum is: :func:`.patches.maxpool_indices`. XLA's own form, a
    ``reduce_window`` over (value, position) pairs, is not implemented on XLA:CUDA (variadic
    reduce-window), so every platform takes the window taps' variadic ``reduce``."""
    return patches.maxpool_indices(x, window, stride, padding, dilation)


def _window_max(x, window, stride, padding, dilation):
    geometry = dict(window_dimensions=(1, *window, 1), window_strides=(1, *stride, 1),
                    padding=((0, 0), *padding, (0, 0)), window_dilation=(1, *dilation, 1))
    plain = lambda x: lax.reduce_window(x, max_identity(x.dtype), lax.max, **geometry)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return plain(x)
    nan = lambda x: lax.reduce_window(lax.stop_gradient(jnp.sign(x) * 0), np.array(0, x.dtype), lax.add, **geometry)
    return lax.platform_dependent(x, cpu=lambda x: plain(x) + nan(x), default=plain)


def avgpool(
    x,
    window: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
):
    """Window *sums* of ``x (N, *spatial, C)``, padded with zeros; the public
    :func:`cnnjax.avgpool` divides them by each window's count."""
    return lax.reduce_window(
        x,
        np.array(0, x.dtype),
        lax.add,
        window_dimensions=(1, *window, 1),
        window_strides=(1, *stride, 1),
        padding=((0, 0), *padding, (0, 0)),
    )
