"""Winograd's minimal filtering F(2x2, 3x3) for 3x3 convolutions of stride 1 (Lavin and
Gray, 2016): each 2x2 block of outputs from a 4x4 tile of the input with 16 multiplies
per input and output channel instead of the direct algorithm's 36, 2.25 times fewer.

With ``B``, ``G`` and ``A`` the transforms below, a tile ``d`` (4x4) and a filter ``g``
(3x3) give the output block ``A^T [(G g G^T) * (B^T d B)] A``; summed over input
channels, the elementwise product becomes 16 matrix products, one per tile position,
``(tiles, C_in) @ (C_in, C_out)``. The input and output transforms are additions and
subtractions only; the filter transform's halves are exact in binary floating point.

Only a 2-D convolution with a 3x3 window, stride 1, no dilation and one group is
computed this way; every other convolution goes to :mod:`.auto`, the CPU default.
Derivatives are JAX's own, of these same operations (the transposes of slices, sums and
matrix products).

**Rounding.** The transforms add up to four terms each way, so an output's rounding error
is larger than the direct algorithm's: within ``8 * eps * sum |x| |w|`` over its window
(float32's ``eps`` = 1.2e-7), against about ``9 * C_in * eps`` relative for a direct sum;
``tests/test_lowering.py`` checks the bound against a float64 loop.

Not chosen by :mod:`.auto`: on the CPU it was measured on, the direct forms were faster
(``docs/performance.md``). Select it with ``cnnjax.lowering.use(conv="winograd")``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from . import auto

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
"""The filter transform: ``U = G g G^T`` (4x4 from 3x3)."""
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
"""The input transform: ``V = B^T d B`` (4x4 from 4x4)."""
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
"""The output transform: ``Y = A^T M A`` (2x2 from 4x4)."""


def applies(kernel_shape, stride, dilation, groups: int) -> bool:
    """Whether a convolution is one this lowering computes by Winograd's algorithm."""
    return (tuple(kernel_shape[:-2]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and groups == 1)


def _combine(row: np.ndarray, terms: list):
    """``sum(c * t for c, t in zip(row, terms))`` for a row of 0 and +-1 coefficients:
    additions and subtractions only (every entry of ``B^T`` and ``A^T`` is one of those)."""
    picked = [(c, t) for c, t in zip(row, terms, strict=True) if c != 0]
    acc = picked[0][1] if picked[0][0] == 1 else -picked[0][1]
    for c, t in picked[1:]:
        acc = acc + t if c == 1 else acc - t
    return acc


def _transform(m: np.ndarray, t: list) -> list:
    """``m t m^T`` for a square grid ``t`` (lists of lists) of equally shaped arrays."""
    rows = [[_combine(r, [t[a][b] for a in range(len(t))]) for b in range(len(t[0]))] for r in m]
    return [[_combine(r, row) for r in m] for row in rows]


def conv(x, kernel, stride, padding, dilation, groups: int = 1):
    """Same contract as :func:`.reference.conv`."""
    if not applies(kernel.shape, stride, dilation, groups):
        return auto.conv(x, kernel, stride, padding, dilation, groups)
    (top, bottom), (left, right) = padding
    n, h, w, _ = x.shape
    ho, wo = h + top + bottom - 2, w + left + right - 2
    th, tw = -(-ho // 2), -(-wo // 2)  # 2x2 output blocks down and across
    # padded (or cropped: negative padding) to whole tiles, 2 * blocks + 2 rows and columns
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, 2 * th + 2 - h - top, 0),
                                            (left, 2 * tw + 2 - w - left, 0), (0, 0, 0)))
    # the 4x4 tiles, one strided slice per tap: d[a][b] is (N, th, tw, C_in)
    d = [[x[:, a : a + 2 * th : 2, b : b + 2 * tw : 2] for b in range(4)] for a in range(4)]
    v = _transform(B_T, d)  # B^T d B
    u = jnp.einsum("ia,jb,abco->ijco", G, G, kernel.astype(jnp.float32)).astype(kernel.dtype)  # G g G^T
    stacked = jnp.stack([v[i][j] for i in range(4) for j in range(4)])  # (16, N, th, tw, C_in)
    m = jnp.einsum("knhwc,kco->knhwo", stacked, u.reshape(16, *u.shape[2:]))  # one matmul per tile position
    m = [[m[4 * i + j] for j in range(4)] for i in range(4)]
    y = _transform(A_T, m)  # A^T M A: y[p][q] is (N, th, tw, C_out)
    out = jnp.stack([jnp.stack(y[p], axis=3) for p in range(2)], axis=2)  # (N, th, 2, tw, 2, C_out)
    return out.reshape(n, 2 * th, 2 * tw, -1)[:, :ho, :wo]
