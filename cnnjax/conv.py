"""Convolution: trying every possible match.

The lecture slides a small feature (a 3x3 filter) over every position of an image, and
at each position multiplies each pixel of the feature by the pixel under it, adds the
products up and divides by the number of pixels: a score of 1.00 means a perfect match,
-1.00 a perfect mismatch. The grid of scores is the *response map* (or filtered image);
a convolution layer turns one image into a stack of them, one per filter.

:func:`conv` is that operation for any number of spatial dimensions, in the
channels-last layout Keras and Flax use.
"""

from __future__ import annotations

from typing import Any

from . import _checks, lowering


def conv(
    x: Any,
    kernel: Any,
    bias: Any = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple = "VALID",
    dilation: int | tuple[int, ...] = 1,
    normalize: bool = False,
):
    """Cross-correlates ``x`` with ``kernel``: every filter tried at every position.

    As in every framework (and the lecture), the kernel is not flipped. With ``n``
    spatial dimensions (1 for sound or text, 2 for images, 3 for volumes):

    Args:
      x: input of shape ``(N, *spatial, C_in)``, floating point.
      kernel: filters of shape ``(*window, C_in, C_out)`` (HWIO for images, as Keras
        and Flax store them), floating point.
      bias: optional ``(C_out,)`` added to every position of each response map.
      stride: step between positions, an int or one per spatial dimension.
      padding: ``"VALID"`` (no padding; output ``size - window + 1``), ``"SAME"``
        (output ``ceil(size / stride)``), an int, one int per spatial dimension, or one
        ``(low, high)`` pair per spatial dimension. Strings are case-insensitive.
      dilation: spacing between kernel taps, an int or one per spatial dimension.
      normalize: if True, divide each sum of products by their number,
        ``prod(window) * C_in``, before adding the bias: the lecture's "add them up
        and divide by the total number of pixels in the feature", so a +/-1 filter
        over a +/-1 image scores in [-1, 1].

    Returns:
      Response maps of shape ``(N, *out_spatial, C_out)`` where, per dimension,
      ``out = (size + low + high - ((window - 1) * dilation + 1)) // stride + 1``.
      The dtype is that of ``x`` and ``kernel`` promoted together (bfloat16 stays
      bfloat16).

    Raises:
      TypeError: if ``x``, ``kernel`` or ``bias`` is not floating point, or an
        argument has the wrong type.
      ValueError: on a wrong rank, mismatched channels, a bias of the wrong length,
        a non-positive stride or dilation, an unknown padding, or a window larger
        than the padded input.

    Example: the lecture's top-left window of the X, scored against the backslash
    filter, matches in 8 of 9 pixels: (8 - 1) / 9 = 0.77.

    >>> import jax.numpy as jnp
    >>> import cnnjax
    >>> window = jnp.array([[-1., -1., -1.],
    ...                     [-1.,  1., -1.],
    ...                     [-1., -1.,  1.]])
    >>> backslash = jnp.array([[ 1., -1., -1.],
    ...                        [-1.,  1., -1.],
    ...                        [-1., -1.,  1.]])
    >>> y = cnnjax.conv(window[None, :, :, None], backslash[:, :, None, None],
    ...                 normalize=True)
    >>> y.shape
    (1, 1, 1, 1)
    >>> round(float(y[0, 0, 0, 0]) * 9)
    7
    """
    x = _checks.as_array(x, "x")
    kernel = _checks.as_array(kernel, "kernel")
    _checks.check_floating(kernel, "kernel")
    if kernel.ndim < 3:
        raise ValueError(
            "`kernel` must have rank >= 3 with layout (*window, C_in, C_out), got shape "
            f"{tuple(kernel.shape)} (rank {kernel.ndim})."
        )
    n = kernel.ndim - 2
    layout = "(N, " + ", ".join(f"S{i}" for i in range(n)) + ", C_in)"
    _checks.check_ndim(x, "x", n + 2, layout + f" to match a kernel with {n} spatial dims")
    _checks.check_floating(x, "x")
    c_in, c_out = kernel.shape[-2], kernel.shape[-1]
    if x.shape[-1] != c_in:
        raise ValueError(
            f"`x` has {x.shape[-1]} input channels (last axis of shape {tuple(x.shape)}) "
            f"but `kernel` expects {c_in} (axis -2 of shape {tuple(kernel.shape)})."
        )
    window = tuple(kernel.shape[:n])
    if any(w == 0 for w in window) or c_in == 0 or c_out == 0:
        raise ValueError(
            f"`kernel` must have a non-empty window, C_in and C_out, got shape {tuple(kernel.shape)}; "
            f"`x` has shape {tuple(x.shape)}."
        )
    stride = _checks.positive_tuple(stride, n, "stride")
    dilation = _checks.positive_tuple(dilation, n, "dilation")
    spatial = tuple(x.shape[1:-1])
    pads = _checks.padding_pairs(padding, n, spatial, window, stride, dilation)
    _checks.output_sizes(spatial, window, stride, pads, dilation, what="dilated kernel")
    if bias is not None:
        bias = _checks.check_bias(bias, "bias", c_out, f"C_out={c_out} of `kernel`")
    if not isinstance(normalize, bool):
        raise TypeError(f"`normalize` must be a bool, got {normalize!r}.")

    dtype = _checks.result_dtype(x, kernel)
    y = lowering.call("conv", (x.astype(dtype), kernel.astype(dtype)), stride, pads, dilation)
    if normalize:
        y = y / _checks.prod((*window, c_in))
    if bias is not None:
        y = y + bias.astype(dtype)
    return y
