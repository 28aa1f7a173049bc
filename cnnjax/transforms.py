"""The lecture's "trickier cases" as image transforms: translation, rotation, scaling, weight.

Each takes a batch ``(N, H, W, C)`` and returns one of the same shape and dtype, with
``fill`` (default 0, the MNIST background) where the transform uncovers pixels.
Rotation and scaling sample bilinearly (``jax.scipy.ndimage.map_coordinates``) about
the image centre. Stroke weight is morphology built on the lecture's own max pooling:
dilation is a 3x3 max pool with stride 1, erosion the same on the negated image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from . import _checks
from .pool import maxpool


def _batch(images):
    images = _checks.as_array(images, "images")
    _checks.check_ndim(images, "images", 4, "(N, H, W, C)")
    _checks.check_floating(images, "images")
    return images


def shift(images, rows: int = 0, cols: int = 0, *, fill: float = 0.0):
    """Translates by whole pixels (positive: down and right)."""
    images = _batch(images)
    _, h, w, _ = images.shape
    out = jnp.roll(images, (rows, cols), axis=(1, 2))
    r, c = np.arange(h)[:, None] - rows, np.arange(w)[None, :] - cols
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    return jnp.where(inside[None, :, :, None], out, jnp.asarray(fill, images.dtype))


def _resample(images, matrix, fill):
    """Output pixel p samples the input at centre + matrix @ (p - centre), bilinearly."""
    _, h, w, _ = images.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    grid = np.stack(np.mgrid[0:h, 0:w], axis=-1).reshape(-1, 2) - centre
    coords = (grid @ np.asarray(matrix).T + centre).T.reshape(2, h, w)

    def one(channel):
        return map_coordinates(channel, list(coords), order=1, mode="constant", cval=fill)

    per_image = jax.vmap(one, in_axes=-1, out_axes=-1)
    return jax.vmap(per_image)(images).astype(images.dtype)


def rotate(images, degrees: float, *, fill: float = 0.0):
    """Rotates counter-clockwise by ``degrees`` about the centre."""
    images = _batch(images)
    t = np.deg2rad(degrees)
    # output (row, col) takes the input at the point rotated back by -degrees
    matrix = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return _resample(images, matrix, fill)


def scale(images, factor: float, *, fill: float = 0.0):
    """Zooms by ``factor`` about the centre (below 1: smaller)."""
    images = _batch(images)
    if not factor > 0:
        raise ValueError(f"`factor` must be positive, got {factor!r}.")
    return _resample(images, np.eye(2) / factor, fill)


def stroke(images, pixels: int):
    """Thickens (``pixels > 0``: dilation) or thins (``< 0``: erosion) strokes, one pixel a step."""
    images = _batch(images)
    grow = lambda x: maxpool(x, 3, 1, padding="SAME")
    for _ in range(abs(int(pixels))):
        images = grow(images) if pixels > 0 else -grow(-images)
    return images


__all__ = ["rotate", "scale", "shift", "stroke"]
