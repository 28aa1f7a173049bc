"""Flattening and fully connected layers.

Flattening converts the stack of pooled maps into a 1D array per example; a fully
connected (dense) layer then gives every output a weighted vote from every input. In
the lecture's functional CNN a ``(3, 3, 128)`` stack flattens to 1152 values, and a
dense layer with 10 outputs holds ``1152 * 10 + 10`` parameters.
"""

from __future__ import annotations

import math

import jax
from jax import lax
from jax.typing import ArrayLike

from . import _checks


def flatten(x: ArrayLike, *, spatial_dims: int | None = None, start_dim: int | None = None) -> jax.Array:
    """Flattens every axis but the batch axis, row-major: ``(N, *dims) -> (N, prod(dims))``.

    The order is C order over the spatial and channel axes, identical to Keras'
    ``Flatten`` with ``channels_last``, so Keras dense weights load unchanged.

    Args:
      x: array of shape ``(N, *dims)`` with rank >= 1; with ``spatial_dims``, a batch
        ``(N, *spatial, C)`` or one example ``(*spatial, C)``.
      spatial_dims: the number of spatial dimensions of one example. ``None`` (the
        default) takes the first axis of ``x`` as the batch axis whatever its rank;
        given, it tells a batch from one example, so that ``jax.vmap`` over examples
        gives what the batched call gives (:class:`cnnjax.nn.Flatten` always gives it).
      start_dim: instead, flatten the axes from this one on, keeping those before it
        (``torch.flatten(x, start_dim)``; negative counts from the end). On
        channels-last data the order is still channels last.

    Returns:
      Array of shape ``(N, prod(dims))`` (``(N, 1)`` for rank 1), or ``(prod(dims),)``
      for one example, and the dtype of ``x``. A batch of zero examples is allowed.

    Example: the lecture's sequential CNN flattens ``(3, 3, 64)`` to 576 values.

    >>> import jax.numpy as jnp
    >>> import cnnjax
    >>> cnnjax.flatten(jnp.zeros((2, 3, 3, 64))).shape
    (2, 576)
    >>> cnnjax.flatten(jnp.zeros((3, 3, 64)), spatial_dims=2).shape  # one example
    (576,)
    >>> cnnjax.flatten(jnp.zeros((2, 5, 3, 3, 64)), start_dim=2).shape  # keep (N, T)
    (2, 5, 576)
    """
    x = _checks.as_array(x, "x")
    if start_dim is not None:
        if spatial_dims is not None:
            raise ValueError(f"Give `spatial_dims` or `start_dim`, not both (got {spatial_dims!r} and {start_dim!r}).")
        start = _checks.axis(start_dim, max(x.ndim, 1), "start_dim") if x.ndim else 0
        return x.reshape(*x.shape[:start], math.prod(x.shape[start:]))
    if spatial_dims is not None:
        n = _checks.positive_int(spatial_dims, "spatial_dims")
        if x.ndim not in (n + 1, n + 2):
            raise ValueError(f"`x` must have shape (N, *spatial, C) or (*spatial, C) with {n} spatial dims "
                             f"(`spatial_dims`={n}), got shape {tuple(x.shape)}.")
        return x.reshape(*x.shape[: x.ndim - n - 1], math.prod(x.shape[x.ndim - n - 1 :]))
    if x.ndim < 1:
        raise ValueError(f"`x` must have a batch axis (rank >= 1), got a scalar of shape {x.shape}.")
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def dense(x: ArrayLike, kernel: ArrayLike, bias: ArrayLike | None = None) -> jax.Array:
    """Fully connected layer: ``x @ kernel + bias``.

    Args:
      x: input of shape ``(..., in_features)``, floating point.
      kernel: weights of shape ``(in_features, out_features)`` (Keras and Flax order).
      bias: optional ``(out_features,)``.

    Returns:
      Array of shape ``(..., out_features)``; dtype of ``x`` and ``kernel`` promoted.

    Raises:
      TypeError: if an argument is not floating point.
      ValueError: on a kernel that is not 2D, mismatched features, or a bias of the
        wrong shape.

    Example:
      >>> import jax.numpy as jnp
      >>> import cnnjax
      >>> cnnjax.dense(jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.arange(4.0))
      Array([[3., 4., 5., 6.],
             [3., 4., 5., 6.]], dtype=float32)
    """
    x = _checks.as_array(x, "x")
    kernel = _checks.as_array(kernel, "kernel")
    _checks.check_floating(kernel, "kernel")
    _checks.check_ndim(kernel, "kernel", 2, "(in_features, out_features)")
    _checks.check_floating(x, "x")
    if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"`x` must have shape (..., {kernel.shape[0]}) to match `kernel` of shape "
            f"{tuple(kernel.shape)}, got {tuple(x.shape)}."
        )
    out_features = kernel.shape[1]
    if bias is not None:
        bias = _checks.check_bias(bias, "bias", out_features, f"out_features={out_features} of `kernel`")
    dtype = _checks.result_dtype(x, kernel)
    y = lax.dot_general(
        x.astype(dtype), kernel.astype(dtype), (((x.ndim - 1,), (0,)), ((), ()))
    )
    if bias is not None:
        y = y + bias.astype(dtype)
    return y
