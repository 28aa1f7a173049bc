"""Generated datasets: the lecture's X's and O's, drawn with its "trickier cases".

The lecture asks what a CNN makes of X's that are shifted, scaled, rotated or drawn with
heavier strokes. :func:`draw` renders an X or an O on a 9x9 grid of -1 (background) and
+1 (ink) with any of those changes, exactly (no resampling: every pixel is inside a
stroke or not); :func:`xo_dataset` draws random sets of one case. At 9x9 pixels a
small change can draw the very same pixels (a scaling near 1), and a turned O is the
same O: the rotation case changes the X's only. For the same changes
applied to any image (e.g. MNIST digits), see :mod:`cnnjax.transforms`.
"""

from __future__ import annotations

import numpy as np

XO_CLASSES = ("x", "o")
"""Class 0 is X, class 1 is O."""

CASES = ("clean", "translation", "scaling", "rotation", "weight")
"""The lecture's "trickier cases" (translation, scaling, rotation, stroke weight), and none."""


def draw(shape: str, *, size: int = 9, shift: tuple[float, float] = (0.0, 0.0), scale: float = 1.0,
         angle: float = 0.0, weight: float = 1.0) -> np.ndarray:
    """Draws an X or an O on a ``size x size`` grid of -1 (background) and +1 (ink).

    With the defaults, ``draw("x")`` is :data:`X_IMAGE` and ``draw("o")`` is
    :data:`O_IMAGE` exactly: strokes of half-width ``weight / 2`` pixel around two
    diagonals of half-length 3 (X) or a circle of radius 3 (O), centred on the grid.

    Args:
      shape: ``"x"`` or ``"o"``.
      size: grid size in pixels.
      shift: ``(rows, cols)`` translation in pixels.
      scale: size factor.
      angle: rotation in degrees (counter-clockwise).
      weight: stroke width in pixels.
    """
    if shape not in XO_CLASSES:
        raise ValueError(f"`shape` must be 'x' or 'o', got {shape!r}.")
    centre = (size - 1) / 2
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    r, c = rows - centre - shift[0], cols - centre - shift[1]
    t = np.deg2rad(angle)
    u, v = np.cos(t) * c + np.sin(t) * r, -np.sin(t) * c + np.cos(t) * r  # rotate the grid back
    half = 3.0 * scale * size / 9
    if shape == "x":
        on_diagonal = (np.abs(u - v) / np.sqrt(2) <= weight / 2) | (np.abs(u + v) / np.sqrt(2) <= weight / 2)
        ink = on_diagonal & (np.maximum(np.abs(u), np.abs(v)) <= half + 0.5)
    else:
        ink = np.abs(np.hypot(u, v) - half) <= weight / 2 + 1e-9
    return np.where(ink, 1.0, -1.0).astype(np.float32)


def xo_dataset(n: int, case: str = "clean", *, seed: int = 0, strength: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``n`` random X's and O's of one case: images ``(n, 9, 9, 1)`` float32, labels ``(n,)`` int32.

    Args:
      n: number of images (half X, half O, shuffled).
      case: one of :data:`CASES`, or ``"mixed"``: every image varied a little in every way.
      seed: the random seed.
      strength: ``"test"`` (the case's full range) or ``"train"`` (milder, for ``"mixed"``).

    Ranges (``test``): translation up to 2 pixels, scaling 0.6 to 1.3, rotation 15 to 35
    degrees either way, strokes 1.6 to 2.6 pixels wide. ``mixed`` at ``train`` strength:
    translation up to 1, scaling 0.8 to 1.1, rotation up to 12 degrees, strokes 1 to 1.6.
    """
    if case not in (*CASES, "mixed"):
        raise ValueError(f"`case` must be one of {(*CASES, 'mixed')}, got {case!r}.")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int32)
    images = np.empty((n, 9, 9, 1), np.float32)
    mild = strength == "train"
    for i, label in enumerate(labels):
        kw: dict = {}
        if case in ("translation", "mixed"):
            reach = 1 if mild else 2
            kw["shift"] = tuple(rng.integers(-reach, reach + 1, 2).astype(float))
        if case in ("scaling", "mixed"):
            kw["scale"] = rng.uniform(0.8, 1.1) if mild else rng.uniform(0.6, 1.3)
        if case in ("rotation", "mixed"):
            kw["angle"] = rng.uniform(-12, 12) if mild else rng.choice([-1, 1]) * rng.uniform(15, 35)
        if case in ("weight", "mixed"):
            kw["weight"] = rng.uniform(1.0, 1.6) if mild else rng.uniform(1.6, 2.6)
        images[i, :, :, 0] = draw(XO_CLASSES[label], **kw)
    return images, labels


__all__ = ["CASES", "XO_CLASSES", "draw", "xo_dataset"]
