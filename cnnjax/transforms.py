"""The lecture's "trickier cases" as image transforms: translation, rotation, scaling, weight.

Each takes a batch ``(N, H, W, C)`` and returns one of the same shape and dtype, with
``fill`` (default 0, the MNIST background) where the transform uncovers pixels.
Rotation and scaling sample bilinearly (``jax.scipy.ndimage.map_coordinates``) about
the image centre. Stroke weight is morphology built on the lecture's own max pooling:
dilation is a 3x3 max pool with stride 1, erosion the same on the negated image.

The amounts (pixels, degrees, factors) may be traced: the transforms run inside
``jax.jit`` and ``jax.vmap``, and rotation and scaling are differentiable in their
amount. ``shift``, ``rotate`` and ``scale`` also take one amount per image (shape
``(N,)``), which is what random augmentation needs::

    key_angle, key_scale = jax.random.split(key)
    angles = jax.random.uniform(key_angle, (len(images),), minval=-15, maxval=15)
    images = rotate(images, angles)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.ndimage import map_coordinates
from jax.typing import ArrayLike

from . import _checks
from ._pool import maxpool


def _batch(images: ArrayLike) -> jax.Array:
    images = _checks.as_array(images, "images")
    _checks.check_ndim(images, "images", 4, "(N, H, W, C)")
    _checks.check_floating(images, "images")
    return images


def _dtype(value: ArrayLike) -> np.dtype:
    """The dtype of ``value`` (traced or not) without reading its contents."""
    return np.dtype(value.dtype) if hasattr(value, "dtype") else np.asarray(value).dtype


def _per_image(value: ArrayLike, n: int, name: str, dtype) -> jax.Array:
    """``value`` (a number, or one per image) as an ``(n,)`` array of ``dtype``."""
    if isinstance(value, (bool, np.bool_)) or not np.issubdtype(_dtype(value), np.number):
        raise TypeError(f"`{name}` must be a number or an array of one per image, got {value!r}.")
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(_dtype(value), np.integer):
        raise TypeError(f"`{name}` must be a whole number of pixels (an int), got {value!r}.")
    array = jnp.asarray(value, dtype)
    if array.shape not in ((), (n,)):
        raise ValueError(f"`{name}` must be a number or one per image, shape ({n},), got shape {array.shape}.")
    return jnp.broadcast_to(array, (n,))


def _is_concrete(value: ArrayLike) -> bool:
    return not isinstance(value, jax.core.Tracer)


def shift(images: ArrayLike, rows: ArrayLike = 0, cols: ArrayLike = 0, *,
          fill: float = 0.0) -> jax.Array:
    """Translates by whole pixels (positive: down and right); ``rows`` and ``cols`` are ints,
    one for all images or one per image ``(N,)``."""
    images = _batch(images)
    n, h, w, _ = images.shape
    rows, cols = _per_image(rows, n, "rows", jnp.int32), _per_image(cols, n, "cols", jnp.int32)
    r, c = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    fill = jnp.asarray(fill, images.dtype)

    def one(image, dr, dc):
        inside = (r - dr >= 0) & (r - dr < h) & (c - dc >= 0) & (c - dc < w)
        return jnp.where(inside[:, :, None], jnp.roll(image, (dr, dc), axis=(0, 1)), fill)

    return jax.vmap(one)(images, rows, cols)


def _resample(images: jax.Array, matrices: jax.Array, fill: float) -> jax.Array:
    """Output pixel p of image i samples it at centre + matrices[i] @ (p - centre), bilinearly."""
    _, h, w, _ = images.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2], np.float32)
    grid = np.stack(np.mgrid[0:h, 0:w], axis=-1).reshape(-1, 2).astype(np.float32) - centre

    def one(image, matrix):
        coords = (grid @ matrix.T + centre).T.reshape(2, h, w)
        sample = lambda channel: map_coordinates(channel, list(coords), order=1, mode="constant", cval=fill)
        return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)

    return jax.vmap(one)(images, matrices.astype(jnp.float32)).astype(images.dtype)


def rotate(images: ArrayLike, degrees: ArrayLike, *, fill: float = 0.0) -> jax.Array:
    """Rotates counter-clockwise by ``degrees`` (one for all images, or one per image ``(N,)``)
    about the centre."""
    images = _batch(images)
    t = jnp.deg2rad(_per_image(degrees, images.shape[0], "degrees", jnp.float32))
    cos, sin = jnp.cos(t), jnp.sin(t)
    # output (row, col) takes the input at the point rotated back by -degrees
    matrices = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)
    return _resample(images, matrices, fill)


def scale(images: ArrayLike, factor: ArrayLike, *, fill: float = 0.0) -> jax.Array:
    """Zooms by ``factor`` (one for all images, or one per image ``(N,)``) about the centre
    (below 1: smaller). A factor known before tracing must be positive."""
    images = _batch(images)
    factors = _per_image(factor, images.shape[0], "factor", jnp.float32)
    if _is_concrete(factor) and not np.all(np.asarray(factor) > 0):
        raise ValueError(f"`factor` must be positive, got {factor!r}.")
    return _resample(images, jnp.eye(2) / factors[:, None, None], fill)


def stroke(images: ArrayLike, pixels: ArrayLike) -> jax.Array:
    """Thickens (``pixels > 0``: dilation) or thins (``< 0``: erosion) strokes, one pixel a
    step. ``pixels`` is one int for the batch; a traced one runs as a ``lax.fori_loop``
    (differentiable in ``images`` only for a Python int)."""
    images = _batch(images)
    if isinstance(pixels, (bool, np.bool_)) or not np.issubdtype(_dtype(pixels), np.integer) or np.ndim(pixels):
        raise TypeError(f"`pixels` must be an int (one for the batch), got {pixels!r}.")
    grow = lambda x: maxpool(x, 3, 1, padding="SAME")
    if _is_concrete(pixels):
        pixels = int(pixels)
        for _ in range(abs(pixels)):
            images = grow(images) if pixels > 0 else -grow(-images)
        return images
    sign = jnp.where(pixels > 0, 1, -1).astype(images.dtype)
    return lax.fori_loop(0, jnp.abs(pixels), lambda _, x: sign * grow(sign * x), images)


__all__ = ["rotate", "scale", "shift", "stroke"]
