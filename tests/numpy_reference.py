"""Plain NumPy loop implementations of convolution and max pooling, for the tests.

Written from the definitions, independently of cnnjax and of jax.lax: explicit loops
over output positions and window taps, float64 accumulation. Padding sizes are
computed here from their definitions too.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def same_pads(size, window, stride, dilation=1):
    """XLA/TensorFlow 'SAME': output ceil(size / stride), odd pixel of padding on the high side."""
    eff = (window - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def conv(x, kernel, stride, pads, dilation):
    """Cross-correlation; x (N, *S, Cin), kernel (*K, Cin, Cout); per-dim tuples."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    n = kernel.ndim - 2
    window = kernel.shape[:n]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    out_sizes = [
        (xp.shape[1 + i] - ((window[i] - 1) * dilation[i] + 1)) // stride[i] + 1 for i in range(n)
    ]
    out = np.zeros((x.shape[0], *out_sizes, kernel.shape[-1]))
    for pos in itertools.product(*(range(s) for s in out_sizes)):
        acc = np.zeros((x.shape[0], kernel.shape[-1]))
        for tap in itertools.product(*(range(w) for w in window)):
            idx = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation, strict=True))
            acc += xp[(slice(None), *idx, slice(None))] @ kernel[tap]
        out[(slice(None), *pos, slice(None))] = acc
    return out


def pool_out_size(size, window, stride, lo, hi, ceil_mode):
    """PyTorch's rule: ceil mode keeps a last partial window unless it starts in the high padding."""
    padded = size + lo + hi
    if not ceil_mode:
        return (padded - window) // stride + 1
    out = math.ceil((padded - window) / stride) + 1
    if (out - 1) * stride >= size + lo:
        out -= 1
    return out


def maxpool(x, window, stride, pads, ceil_mode, dilation=None):
    """Max over each window of the unpadded cells it covers (-inf if none); a dilated window
    covers the cells ``start + t * dilation``, as PyTorch's."""
    x = np.asarray(x, np.float64)
    n = x.ndim - 2
    spatial = x.shape[1:-1]
    dilation = dilation or (1,) * n
    span = [(window[i] - 1) * dilation[i] + 1 for i in range(n)]
    out_sizes = [
        pool_out_size(spatial[i], span[i], stride[i], *pads[i], ceil_mode) for i in range(n)
    ]
    out = np.full((x.shape[0], *out_sizes, x.shape[-1]), -np.inf)
    for pos in itertools.product(*(range(s) for s in out_sizes)):
        cells = [[p * stride[i] - pads[i][0] + t * dilation[i] for t in range(window[i])] for i, p in enumerate(pos)]
        cells = [[c for c in axis if 0 <= c < spatial[i]] for i, axis in enumerate(cells)]
        block = x[(slice(None), *np.ix_(*cells), slice(None))] if all(cells) else np.zeros((0,))
        if block.size:
            out[(slice(None), *pos, slice(None))] = block.max(axis=tuple(range(1, n + 1)))
    return out


def maxpool_indices(x, window, stride, pads, ceil_mode, dilation=None):
    """The maximum PyTorch's CPU kernel keeps as it scans each window row-major (``if (val >
    max || isnan(val))``: the first of equal maxima, the last NaN), as a row-major index into
    the unpadded spatial map: PyTorch's ``return_indices``."""
    x = np.asarray(x, np.float64)
    n = x.ndim - 2
    spatial = x.shape[1:-1]
    dilation = dilation or (1,) * n
    span = [(window[i] - 1) * dilation[i] + 1 for i in range(n)]
    out_sizes = [pool_out_size(spatial[i], span[i], stride[i], *pads[i], ceil_mode) for i in range(n)]
    out = np.zeros((x.shape[0], *out_sizes, x.shape[-1]), np.int64)
    for pos in itertools.product(*(range(s) for s in out_sizes)):
        for b in range(x.shape[0]):
            for c in range(x.shape[-1]):
                best, where = None, None
                for tap in itertools.product(*(range(w) for w in window)):
                    cell = [p * stride[i] - pads[i][0] + t * dilation[i] for i, (p, t) in enumerate(zip(pos, tap, strict=True))]
                    if not all(0 <= v < spatial[i] for i, v in enumerate(cell)):
                        continue
                    v = x[(b, *cell, c)]
                    if best is None or v > best or np.isnan(v):
                        best, where = v, np.ravel_multi_index(cell, spatial)
                out[(b, *pos, c)] = where
    return out


def avgpool(x, window, stride, pads, ceil_mode, count_include_pad):
    """PyTorch's average pooling, from its definition: a window's sum over the unpadded cells
    it covers, divided by its extent inside the explicitly padded input (count_include_pad)
    or by the unpadded cells alone."""
    x = np.asarray(x, np.float64)
    n = x.ndim - 2
    spatial = x.shape[1:-1]
    out_sizes = [pool_out_size(spatial[i], window[i], stride[i], *pads[i], ceil_mode) for i in range(n)]
    out = np.zeros((x.shape[0], *out_sizes, x.shape[-1]))
    for pos in itertools.product(*(range(s) for s in out_sizes)):
        ranges, extent, cells = [], 1, 1
        for i, p in enumerate(pos):
            start = p * stride[i] - pads[i][0]
            end = min(start + window[i], spatial[i] + pads[i][1])
            extent *= end - start
            lo, hi = max(start, 0), min(end, spatial[i])
            cells *= hi - lo
            ranges.append(slice(lo, hi))
        block = x[(slice(None), *ranges, slice(None))]
        out[(slice(None), *pos, slice(None))] = block.sum(axis=tuple(range(1, n + 1))) / (
            extent if count_include_pad else cells)
    return out


def adaptive_pool(x, output_size, reduce):
    """PyTorch's adaptive pooling from its definition: output cell ``i`` of an axis of
    ``size`` cells reduces cells ``floor(i * size / out)`` to ``ceil((i + 1) * size / out) - 1``
    (computed here in floating point), ``reduce`` being ``np.mean`` or ``np.max``."""
    x = np.asarray(x, np.float64)
    n = x.ndim - 2
    spatial = x.shape[1:-1]
    out = np.zeros((x.shape[0], *output_size, x.shape[-1]))
    for pos in itertools.product(*(range(o) for o in output_size)):
        ranges = [slice(math.floor(p * spatial[i] / output_size[i]), math.ceil((p + 1) * spatial[i] / output_size[i]))
                  for i, p in enumerate(pos)]
        out[(slice(None), *pos, slice(None))] = reduce(x[(slice(None), *ranges, slice(None))],
                                                       axis=tuple(range(1, n + 1)))
    return out


def grouped_conv(x, kernel, stride, pads, dilation, groups):
    """Each group of C_in / groups input channels convolved with its own C_out / groups filters."""
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    gi, go = c_in // groups, c_out // groups
    parts = [conv(x[..., g * gi:(g + 1) * gi], kernel[..., g * go:(g + 1) * go], stride, pads, dilation)
             for g in range(groups)]
    return np.concatenate(parts, axis=-1)


def conv_transpose(x, kernel, stride, pads, output_padding, dilation, groups):
    """Transposed convolution as a scatter: every input cell adds its kernel-weighted window
    into the output; kernel (*K, C_out / groups, C_in); then the padding is cropped."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    n = kernel.ndim - 2
    window = kernel.shape[:n]
    spatial = x.shape[1:-1]
    c_in, go = x.shape[-1], kernel.shape[-2]
    gi = c_in // groups
    full = [(spatial[i] - 1) * stride[i] + (window[i] - 1) * dilation[i] + 1 + output_padding[i] for i in range(n)]
    buf = np.zeros((x.shape[0], *full, go * groups))
    for pos in itertools.product(*(range(s) for s in spatial)):
        for tap in itertools.product(*(range(w) for w in window)):
            idx = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation, strict=True))
            for g in range(groups):
                contrib = x[(slice(None), *pos, slice(g * gi, (g + 1) * gi))] @ kernel[tap][:, g * gi:(g + 1) * gi].T
                buf[(slice(None), *idx, slice(g * go, (g + 1) * go))] += contrib
    crop = tuple(slice(pads[i][0], full[i] - pads[i][1]) for i in range(n))
    return buf[(slice(None), *crop, slice(None))]


def local_response_norm(x, size, alpha, beta, k):
    """Section 3.3 of Krizhevsky et al. (2012) with PyTorch's alpha / size, channel by channel
    over the last axis."""
    x = np.asarray(x, np.float64)
    c_count = x.shape[-1]
    out = np.empty_like(x)
    for c in range(c_count):
        lo, hi = max(0, c - size // 2), min(c_count - 1, c + (size - 1) // 2)
        total = sum(x[..., j] ** 2 for j in range(lo, hi + 1))
        out[..., c] = x[..., c] / (k + alpha / size * total) ** beta
    return out
