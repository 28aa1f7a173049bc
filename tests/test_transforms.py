"""cnnjax.transforms against NumPy references."""

import re

import numpy as np
import pytest

from cnnjax import transforms


def image(seed=0, h=7, w=7, c=2):
    return np.random.default_rng(seed).uniform(size=(3, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("rows, cols", [(0, 0), (1, -2), (-3, 4), (7, 0)])
def test_shift(rows, cols):
    x = image()
    want = np.zeros_like(x)
    h, w = x.shape[1:3]
    for r in range(h):
        for c in range(w):
            if 0 <= r - rows < h and 0 <= c - cols < w:
                want[:, r, c] = x[:, r - rows, c - cols]
    np.testing.assert_array_equal(transforms.shift(x, rows, cols), want)


def test_rotate_quarter_turns_equal_rot90():
    x = image(h=6, w=6)
    np.testing.assert_allclose(transforms.rotate(x, 90), np.rot90(x, 1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(transforms.rotate(x, -90), np.rot90(x, -1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(transforms.rotate(x, 0), x, atol=1e-6)


def test_scale_one_is_identity_and_shrinking_fills():
    x = image()
    np.testing.assert_allclose(transforms.scale(x, 1.0), x, atol=1e-6)
    small = np.asarray(transforms.scale(np.ones((1, 9, 9, 1), np.float32), 0.5))
    assert small[0, 4, 4, 0] == 1.0 and small[0, 0, 0, 0] == 0.0


def np_dilate(x):
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    h, w = x.shape[1:3]
    return np.max([padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=0)


def test_stroke_is_morphology():
    x = image()
    np.testing.assert_array_equal(transforms.stroke(x, 1), np_dilate(x))
    np.testing.assert_array_equal(transforms.stroke(x, 2), np_dilate(np_dilate(x)))
    np.testing.assert_array_equal(transforms.stroke(x, -1), -np_dilate(-x))
    np.testing.assert_array_equal(transforms.stroke(x, 0), x)


@pytest.mark.parametrize("call, error, message", [
    (lambda: transforms.shift(np.ones((7, 7, 1), np.float32), 1), ValueError, "`images` must have rank 4 with layout (N, H, W, C)"),
    (lambda: transforms.rotate(np.ones((1, 7, 7, 1), np.uint8), 10), TypeError, "`images` must have a floating-point dtype"),
    (lambda: transforms.scale(np.ones((1, 7, 7, 1), np.float32), 0), ValueError, "`factor` must be positive, got 0"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
