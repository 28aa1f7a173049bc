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

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from . import _checks, lowering


def conv(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple = "VALID",
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    normalize: bool = False,
) -> jax.Array:
    """Cross-correlates ``x`` with ``kernel``: every filter tried at every position.

    As in every framework (and the lecture), the kernel is not flipped. With ``n``
    spatial dimensions (1 for sound or text, 2 for images, 3 for volumes):

    Args:
      x: input of shape ``(N, *spatial, C_in)``, floating point; or one example
        ``(*spatial, C_in)`` (the kernel fixes the spatial rank), so that ``jax.vmap``
        over examples gives what the batched call gives.
      kernel: filters of shape ``(*window, C_in // groups, C_out)`` (HWIO for images,
        as Keras and Flax store them), floating point.
      bias: optional ``(C_out,)`` added to every position of each response map.
      stride: step between positions, an int or one per spatial dimension.
      padding: ``"VALID"`` (no padding; output ``size - window + 1``), ``"SAME"``
        (output ``ceil(size / stride)``), an int, one int per spatial dimension, or one
        ``(low, high)`` pair per spatial dimension. Strings are case-insensitive.
      dilation: spacing between kernel taps, an int or one per spatial dimension.
      groups: split the input channels into this many groups, each convolved with its
        own ``C_out // groups`` filters (PyTorch's ``groups``); ``groups == C_in`` is a
        depthwise convolution.
      normalize: if True, divide each sum of products by their number,
        ``prod(window) * C_in // groups``, before adding the bias: the lecture's "add them up
        and divide by the total number of pixels in the feature", so a +/-1 filter
        over a +/-1 image scores in [-1, 1].

    Returns:
      Response maps of shape ``(N, *out_spatial, C_out)`` (``(*out_spatial, C_out)``
      for one example) where, per dimension,
      ``out = (size + low + high - ((window - 1) * dilation + 1)) // stride + 1``.
      The dtype is that of ``x`` and ``kernel`` promoted together (bfloat16 stays
      bfloat16).

    Raises:
      TypeError: if ``x``, ``kernel`` or ``bias`` is not floating point, or an
        argument has the wrong type.
      ValueError: on a wrong rank, mismatched channels or groups, a bias of the wrong
        length, a non-positive stride or dilation, an unknown padding, or a window
        larger than the padded input.

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
    given = tuple(np.shape(x))
    x, kernel, unbatch, n = _inputs(x, kernel)
    groups = _checks.positive_int(groups, "groups")
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    _check_groups(c_in, c_out, kernel, groups, "C_out", given)
    window = tuple(kernel.shape[:n])
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
    y = lowering.call("conv", (x.astype(dtype), kernel.astype(dtype)), stride, pads, dilation, groups)
    if normalize:
        y = y / _checks.prod((*window, c_in // groups))
    if bias is not None:
        y = y + bias.astype(dtype)
    return unbatch(y)


def _inputs(x, kernel):
    """``x`` with a batch axis, ``kernel``, the function removing the axis again, and the
    spatial rank (from the kernel); both checked floating point of matching rank."""
    x = _checks.as_array(x, "x")
    kernel = _checks.as_array(kernel, "kernel")
    _checks.check_floating(kernel, "kernel")
    if kernel.ndim < 3:
        raise ValueError(
            "`kernel` must have rank >= 3 with layout (*window, C_in, C_out), got shape "
            f"{tuple(kernel.shape)} (rank {kernel.ndim})."
        )
    n = kernel.ndim - 2
    if x.ndim == n + 1:  # one example: (*spatial, C)
        x, unbatch = x[None], (lambda y: y[0])
    else:
        layout = "(N, " + ", ".join(f"S{i}" for i in range(n)) + ", C_in)"
        _checks.check_ndim(x, "x", n + 2, layout + f" (or one example without N) to match a kernel with {n} "
                           "spatial dims")
        unbatch = lambda y: y
    _checks.check_floating(x, "x")
    return x, kernel, unbatch, n


def _check_groups(c_in: int, c_out: int, kernel, groups: int, out_name: str, x_shape=()) -> None:
    shape = tuple(kernel.shape)
    if any(w == 0 for w in shape[:-2]) or c_in == 0 or c_out == 0 or shape[-2] == 0:
        raise ValueError(f"`kernel` must have a non-empty window and channels, got shape {shape}; "
                         f"`x` has {c_in} channels.")
    if c_in % groups or c_out % groups:
        raise ValueError(f"`groups`={groups} must divide the {c_in} input channels of `x` and the {c_out} "
                         f"channels {out_name} of `kernel` {shape}.")
    if shape[-2] * groups != c_in:
        per_group = "" if groups == 1 else f" = {shape[-2]} per group x groups={groups}"
        expected = shape[-2] * groups
        first = len(x_shape) - len(shape) + 1  # where channels-first data holds its channels
        hint = ""
        if 0 <= first < len(x_shape) - 1 and x_shape[first] == expected:
            hint = (f"; it looks channels-first (PyTorch's NCHW): cnnjax is channels-last (..., H, W, C), "
                    f"move the axis with `jnp.moveaxis(x, {first}, -1)`")
        raise ValueError(
            f"`x` has {c_in} input channels (last axis of shape {x_shape}) but `kernel` expects "
            f"{expected}{per_group} (axis -2 of shape {shape}){hint}."
        )


def conv_transpose(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: str | int | tuple = 0,
    output_padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
) -> jax.Array:
    """Transposed convolution ("deconvolution"): the input-gradient of :func:`conv`,
    which maps each input position back onto a window of the output.

    The values of ``torch.nn.functional.conv_transpose1d/2d/3d`` for the same
    arguments, channels-last. ``conv_transpose(y, kernel, ...)`` is exactly the
    vector-Jacobian product of ``x -> conv(x, kernel, stride=..., padding=...,
    dilation=..., groups=...)`` with ``y`` (for ``output_padding`` below ``stride``): the
    convolution whose gradient it is uses the same kernel.

    Args:
      x: ``(N, *spatial, C_in)`` or one example ``(*spatial, C_in)``, floating point.
      kernel: ``(*window, C_out // groups, C_in)``: Keras' ``Conv2DTranspose`` layout,
        which is the layout of the forward convolution's kernel (``C_out`` there is its
        input). PyTorch's weight ``(C_in, C_out // groups, *window)`` moved to this
        layout is ``weight.permute(2, ..., 1, 0)``.
      bias: optional ``(C_out,)``.
      stride, dilation: as :func:`conv`, of the forward convolution.
      padding: the forward convolution's padding (an int, one int per dimension,
        ``(low, high)`` pairs, or ``"VALID"``): removed from the output's borders.
      output_padding: extra cells on the high side of each output dimension, smaller
        than ``stride`` or than ``dilation`` (PyTorch's rule): which of the input sizes
        that a strided convolution maps to the same size is meant.
      groups: as :func:`conv`.

    Returns:
      ``(N, *out_spatial, C_out)``, per dimension ``out = (size - 1) * stride - low - high
      + dilation * (window - 1) + output_padding + 1``.

    >>> import jax.numpy as jnp
    >>> import cnnjax
    >>> cnnjax.conv_transpose(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), stride=2)[0, :, :, 0]
    Array([[1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.],
           [2., 2., 4., 2., 2.],
           [1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.]], dtype=float32)
    """
    x, kernel, unbatch, n = _inputs(x, kernel)
    groups = _checks.positive_int(groups, "groups")
    c_in, c_out = x.shape[-1], kernel.shape[-2] * groups
    _check_transpose_channels(c_in, kernel, groups)
    window = tuple(kernel.shape[:n])
    stride = _checks.positive_tuple(stride, n, "stride")
    dilation = _checks.positive_tuple(dilation, n, "dilation")
    if isinstance(padding, str) and padding.upper() == "SAME":
        raise ValueError("`padding` 'SAME' is ambiguous for a transposed convolution; give the forward "
                         "convolution's padding as ints or (low, high) pairs.")
    pads = _checks.padding_pairs(padding, n, (0,) * n, window, stride, dilation)
    output_padding = _non_negative_tuple(output_padding, n, "output_padding")
    for i, (op, s, d) in enumerate(zip(output_padding, stride, dilation, strict=True)):
        if op >= max(s, d):
            raise ValueError(f"`output_padding` must be smaller than `stride` or `dilation` in every dimension "
                             f"(PyTorch's rule), got {op} >= max({s}, {d}) in dimension {i}.")
    out = tuple((size - 1) * s - lo - hi + d * (w - 1) + op + 1 for size, s, (lo, hi), d, w, op
                in zip(x.shape[1:-1], stride, pads, dilation, window, output_padding, strict=True))
    if any(o <= 0 for o in out):
        raise ValueError(f"output size would be zero or negative: {out} from input spatial shape "
                         f"{tuple(x.shape[1:-1])}, window {window}, stride {stride}, padding {pads}.")
    if bias is not None:
        bias = _checks.check_bias(bias, "bias", c_out, f"C_out={c_out} (kernel axis -2 x groups)")
    dtype = _checks.result_dtype(x, kernel)
    # The transpose of the convolution without its high padding reaches every cell an input
    # touches (size ``full``); the output is that, its high padding cut off and
    # ``output_padding`` cells added (zeros where no input reaches).
    full = tuple((size - 1) * s - lo + d * (w - 1) + 1 for size, s, (lo, _), d, w
                 in zip(x.shape[1:-1], stride, pads, dilation, window, strict=True))
    forward = lambda z: conv(z, kernel.astype(dtype), stride=stride, padding=[(lo, 0) for lo, _ in pads],
                             dilation=dilation, groups=groups)
    (y,) = jax.linear_transpose(forward, jax.ShapeDtypeStruct((x.shape[0], *full, c_out), dtype))(x.astype(dtype))
    y = y[(slice(None), *(slice(0, min(o, f)) for o, f in zip(out, full, strict=True)), slice(None))]
    y = jnp.pad(y, [(0, 0), *((0, max(o - f, 0)) for o, f in zip(out, full, strict=True)), (0, 0)])
    if bias is not None:
        y = y + bias.astype(dtype)
    return unbatch(y)


def _check_transpose_channels(c_in, kernel, groups) -> None:
    shape = tuple(kernel.shape)
    if any(w == 0 for w in shape) or c_in == 0:
        raise ValueError(f"`kernel` must have a non-empty window and channels, got shape {shape}; "
                         f"`x` has {c_in} channels.")
    if shape[-1] != c_in:
        raise ValueError(f"`x` has {c_in} input channels but `kernel` {shape} expects {shape[-1]} (its last "
                         "axis: (*window, C_out // groups, C_in)).")
    if c_in % groups:
        raise ValueError(f"`groups`={groups} must divide the {c_in} input channels of `x`.")


def _non_negative_tuple(value, n: int, name: str) -> tuple[int, ...]:
    if _checks.is_int(value):
        value = (int(value),) * n
    if not (isinstance(value, (tuple, list)) and len(value) == n and all(_checks.is_int(v) for v in value)):
        raise TypeError(f"`{name}` must be an int or a sequence of {n} ints, got {value!r}.")
    if any(v < 0 for v in value):
        raise ValueError(f"`{name}` must be non-negative, got {value!r}.")
    return tuple(int(v) for v in value)


__all__ = ["conv", "conv_transpose"]
