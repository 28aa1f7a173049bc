"""Local response normalisation: AlexNet's "brightness normalisation" across channels.

Krizhevsky, Sutskever and Hinton (2012), section 3.3: after the ReLU of the first two
convolutions, each response is divided by a power of the summed squares of the responses
at the same position in ``size`` neighbouring maps, so maps compete ("lateral
inhibition"). Later networks replaced it with batch normalisation (``nn.BatchNorm``).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from . import _checks


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"`{name}` must be a number >= 0, got {value!r}.")
    return float(value)


def lrn_arguments(size, alpha, beta, k) -> tuple[int, float, float, float]:
    """``(size, alpha, beta, k)`` checked: a positive int and three numbers >= 0."""
    size = _checks.positive_int(size, "size")
    return size, _non_negative(alpha, "alpha"), _non_negative(beta, "beta"), _non_negative(k, "k")


def local_response_norm(x: ArrayLike, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> jax.Array:
    """Each value divided by ``(k + alpha / size * sum of squares over size channels) ** beta``.

    The sum runs over the channels ``c - size // 2`` to ``c + (size - 1) // 2`` at the same
    position (those beyond the first and last channel count as zero), as PyTorch's
    ``torch.nn.functional.local_response_norm`` and Caffe's ``LRN`` compute it. Note the
    ``alpha / size``: the 2012 paper writes ``alpha`` without dividing by the window, so
    its ``k=2, n=5, alpha=1e-4, beta=0.75`` are ``size=5, alpha=5e-4, beta=0.75, k=2``
    here (what :func:`cnnjax.models.alexnet` with ``variant="paper"`` uses).

    Args:
      x: float array, channels last: ``(N, *spatial, C)`` or one example ``(*spatial, C)``
        (the maths reads the last axis only, so any rank >= 1 gives the same values).
      size: the number of neighbouring channels summed, >= 1.
      alpha: the scale of the sum, >= 0.
      beta: the exponent, >= 0.
      k: the additive constant, >= 0 (``k = 0`` with an all-zero window divides by 0).

    Returns:
      An array of ``x``'s shape and dtype; NaN stays NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> import cnnjax
      >>> cnnjax.local_response_norm(jnp.array([[1.0, 2.0]]), size=2, alpha=1.0, beta=1.0, k=1.0)
      Array([[0.6666667, 0.5714286]], dtype=float32)

      (the first channel: ``1 / (1 + 1/2 * 1)``; the second: ``2 / (1 + 1/2 * (1 + 4))``.)
    """
    x = _checks.as_array(x, "x")
    _checks.check_floating(x, "x")
    if x.ndim == 0:
        raise ValueError("`x` must have a channel axis (the last), got a scalar.")
    size, alpha, beta, k = lrn_arguments(size, alpha, beta, k)
    ones = (1,) * (x.ndim - 1)
    pads = ((0, 0),) * (x.ndim - 1) + ((size // 2, (size - 1) // 2),)
    # a NumPy zero: a traced one would make this a generic, non-differentiable reduce_window
    wide = x.astype(_checks.summing_dtype(x.dtype))  # float16 squares of 300 overflow; their sum in float32
    squares = lax.reduce_window(jnp.square(wide), np.zeros((), wide.dtype), lax.add, (*ones, size), (*ones, 1), pads)
    return (wide / (k + (alpha / size) * squares) ** beta).astype(x.dtype)


__all__ = ["local_response_norm"]
