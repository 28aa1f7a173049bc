"""The CPU default: each operation lowered by its shape and by its direction.

A pass that nothing differentiates (inference: ``predict``, ``evaluate``, a jitted
model) and a differentiated pass (training) want different forms on XLA:CPU:

- **Forward**: XLA's own convolution and windowed reductions (:mod:`.reference`).
  XLA:CPU fuses a chain of them, with the biases and ReLUs between, into one YNNPACK
  kernel, faster than the patches matmuls at batches of 128 and more. Two shapes
  are left to :mod:`.patches`, whose matmul is faster there: 3-D convolutions (which
  XLA:CPU does not hand to YNNPACK) and convolutions with at most
  :data:`FEW_POSITIONS` output positions per example (a matmul over whole inputs).
- **Derivatives**: XLA:CPU's transposed convolutions and ``select_and_scatter`` are
  several times slower than the patches form's matmuls, so gradients (and higher derivatives)
  come from :mod:`.patches`, except for 1-D convolutions and windows of more than
  :data:`MAX_PATCH_TAPS` taps (pooling windows too: the patches form's compile time grows
  with the taps), which XLA's own operations do faster (the patch
  matrix is then many times the input's size) -- unless their padding is more than half
  the window on a side (a sentence CNN's "full" padding of ``window - 1``), where
  XLA:CPU's gradient convolution is 6-10 times slower than the patches form.

The direction is chosen by JAX itself: each operation is a ``jax.custom_jvp`` whose
primal is the forward form and whose rule is the derivative form's own JVP. A plain
call, ``jit`` or ``vmap`` runs the forward form; ``grad``, ``jvp``, ``hessian`` run the
derivative form and differentiate it again as often as asked. Both forms agree to float
tolerance, so a model gives the same outputs (to ~1e-6) in either direction.
``docs/performance.md`` has the measurements behind each rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .. import _checks
from . import patches, reference
from ._common import directed

# Convolutions with at most this many output positions per example run as one matmul.
FEW_POSITIONS = 16
# Windows with more taps than this are differentiated by XLA's own convolution.
MAX_PATCH_TAPS = 64

_FORMS = {"reference": reference, "patches": patches}


def conv_forms(
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int],
) -> tuple[str, str]:
    """The lowerings ``(forward, derivatives)`` that a convolution of ``x (N, *spatial,
    C_in)`` by ``kernel (*window, C_in // groups, C_out)`` gets on a CPU, by name."""
    n = len(kernel_shape) - 2
    window = tuple(kernel_shape[:n])
    positions = math.prod(_checks.output_sizes(tuple(x_shape[1:-1]), window, stride, padding, dilation))
    forward = "patches" if n >= 3 or positions <= FEW_POSITIONS else "reference"
    wide_padding = any(max(lo, hi) > ((k - 1) * d + 1) // 2  # wider than SAME padding
                       for (lo, hi), k, d in zip(padding, window, dilation, strict=True))
    xla_derivatives = (n == 1 or math.prod(window) > MAX_PATCH_TAPS) and not wide_padding
    return forward, "reference" if xla_derivatives else "patches"


def conv(x, kernel, stride, padding, dilation, groups: int = 1):
    """Same contract as :func:`.reference.conv`; the forms from :func:`conv_forms`."""
    forward, derivatives = conv_forms(x.shape, kernel.shape, stride, padding, dilation)
    static = (tuple(stride), tuple(map(tuple, padding)), tuple(dilation), groups)
    return directed(_FORMS[forward].conv, _FORMS[derivatives].conv, (x, kernel), static)


def pool_derivatives(window: Sequence[int]) -> str:
    """The lowering a pooling window's derivatives get on a CPU, by name: the patches form
    stacks one slice per tap, and its compile time grows with them (a 32x32 window's
    gradient compiled for over a minute), so a window of more than :data:`MAX_PATCH_TAPS`
    taps is differentiated by XLA's own ``reduce_window`` instead."""
    return "reference" if math.prod(window) > MAX_PATCH_TAPS else "patches"


def maxpool(x, window, stride, padding, dilation=None):
    """Same contract as :func:`.reference.maxpool`: XLA's forward, the derivative of
    :func:`pool_derivatives`."""
    static = (tuple(window), tuple(stride), tuple(map(tuple, padding)), tuple(dilation or (1,) * len(window)))
    return directed(reference.maxpool, _FORMS[pool_derivatives(window)].maxpool, (x,), static)


def maxpool_indices(x, window, stride, padding, dilation=None):
    """Where each window's maximum is: :func:`.patches.maxpool_indices` (nothing differentiates it)."""
    return patches.maxpool_indices(x, window, stride, padding, dilation)


def avgpool(x, window, stride, padding):
    """Same contract as :func:`.reference.avgpool`: XLA's forward, the derivative of
    :func:`pool_derivatives`."""
    static = (tuple(window), tuple(stride), tuple(map(tuple, padding)))
    return directed(reference.avgpool, _FORMS[pool_derivatives(window)].avgpool, (x,), static)


__all__ = ["FEW_POSITIONS", "MAX_PATCH_TAPS", "avgpool", "conv", "conv_forms", "directed", "maxpool",
           "pool_derivatives"]
