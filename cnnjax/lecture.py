"""The lecture's hand-made data: the 9x9 X and O images and the three 3x3 features.

Pixels are +1 (ink) and -1 (background), as in the lecture. These are inputs, not
results: the response maps they produce are computed by :func:`cnnjax.conv`.
"""

from __future__ import annotations

import numpy as np

X_IMAGE = np.array(
    [
        [-1, -1, -1, -1, -1, -1, -1, -1, -1],
        [-1, 1, -1, -1, -1, -1, -1, 1, -1],
        [-1, -1, 1, -1, -1, -1, 1, -1, -1],
        [-1, -1, -1, 1, -1, 1, -1, -1, -1],
        [-1, -1, -1, -1, 1, -1, -1, -1, -1],
        [-1, -1, -1, 1, -1, 1, -1, -1, -1],
        [-1, -1, 1, -1, -1, -1, 1, -1, -1],
        [-1, 1, -1, -1, -1, -1, -1, 1, -1],
        [-1, -1, -1, -1, -1, -1, -1, -1, -1],
    ],
    dtype=np.float32,
)
"""The lecture's 9x9 X: a one-pixel border of -1 and two +1 diagonals."""

O_IMAGE = np.array(
    [
        [-1, -1, -1, -1, -1, -1, -1, -1, -1],
        [-1, -1, -1, 1, 1, 1, -1, -1, -1],
        [-1, -1, 1, -1, -1, -1, 1, -1, -1],
        [-1, 1, -1, -1, -1, -1, -1, 1, -1],
        [-1, 1, -1, -1, -1, -1, -1, 1, -1],
        [-1, 1, -1, -1, -1, -1, -1, 1, -1],
        [-1, -1, 1, -1, -1, -1, 1, -1, -1],
        [-1, -1, -1, 1, 1, 1, -1, -1, -1],
        [-1, -1, -1, -1, -1, -1, -1, -1, -1],
    ],
    dtype=np.float32,
)
"""A 9x9 O in the same style (the lecture shows O's as pictures only)."""

BACKSLASH = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float32)
"""The lecture's first feature, a backslash (top-left to bottom-right diagonal)."""

X_FEATURE = np.array([[1, -1, 1], [-1, 1, -1], [1, -1, 1]], dtype=np.float32)
"""The lecture's second feature, a small X (the crossing at the centre)."""

SLASH = np.array([[-1, -1, 1], [-1, 1, -1], [1, -1, -1]], dtype=np.float32)
"""The lecture's third feature, a slash (bottom-left to top-right diagonal)."""

FEATURE_NAMES = ("backslash", "x", "slash")


def features() -> np.ndarray:
    """The three features as one conv kernel of shape ``(3, 3, 1, 3)`` (HWIO).

    Output channel 0 is the backslash, 1 the X, 2 the slash, the lecture's order.
    """
    return np.stack([BACKSLASH, X_FEATURE, SLASH], axis=-1)[:, :, None, :]


def as_printed(values) -> np.ndarray:
    """Values as the lecture prints them: cut (truncated towards zero) to two decimals.

    7/9 = 0.777... prints as 0.77 and 5/9 as 0.55; values are first rounded to four
    decimals so that float noise (0.99999994 for 9/9) does not cut to 0.99.

    >>> as_printed([7 / 9, -1 / 9, 0.99999994]).tolist()
    [0.77, -0.11, 1.0]
    """
    return np.trunc(np.round(np.asarray(values, np.float64) * 10_000) / 100) / 100


def batch(image: np.ndarray) -> np.ndarray:
    """A single ``(H, W)`` image as a batch ``(1, H, W, 1)``."""
    return np.asarray(image, np.float32)[None, :, :, None]
