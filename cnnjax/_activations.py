"""ReLU: no negative values.

The lecture's "normalization" step: keep the maths from breaking by changing every
negative value to zero. A stack of response maps becomes a stack of maps with no
negative values. :func:`softmax` turns a network's final scores into class
probabilities (the losses in :mod:`cnnjax.losses` apply it for you).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from . import _checks


def relu(x: ArrayLike) -> jax.Array:
    """Rectified linear unit, ``max(x, 0)`` elementwise.

    Args:
      x: array of any shape and real dtype.

    Returns:
      Array of the same shape and dtype with every negative entry set to zero; NaN
      stays NaN. The gradient at exactly zero is zero, as in every framework.

    Example:
      >>> import jax.numpy as jnp
      >>> import cnnjax
      >>> cnnjax.relu(jnp.array([0.77, -0.11, 0.11, -0.33]))
      Array([0.77, 0.  , 0.11, 0.  ], dtype=float32)
    """
    x = _checks.as_array(x, "x")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return jax.nn.relu(x)
    # XLA:CPU fuses a max after a convolution into YNNPACK, whose max drops NaN; the
    # added 0 * sign(x) is zero, or NaN where x is NaN, at no measurable cost.
    return jax.nn.relu(x) + lax.stop_gradient(jnp.sign(x) * 0)


def softmax(logits: ArrayLike, axis: int = -1) -> jax.Array:
    """Class probabilities from scores: ``exp(logits)`` normalised along ``axis``.

    Args:
      logits: array of shape ``(..., num_classes)`` (with the default ``axis``).
      axis: the class axis.

    Returns:
      Array of the same shape and dtype whose entries along ``axis`` are positive and
      sum to one.
    """
    logits = _checks.as_array(logits, "logits")
    _checks.check_floating(logits, "logits")
    if logits.ndim == 0:
        raise ValueError("`logits` must have at least one axis (the classes), got a scalar.")
    return jax.nn.softmax(logits, axis=_checks.axis(axis, logits.ndim))
