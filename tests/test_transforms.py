"""cnnjax.transforms against NumPy references."""

import re

import jax
import jax.numpy as jnp
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


@pytest.mark.slow
def test_amounts_traced_under_jit_equal_the_eager_results():
    x = image(h=8, w=8)
    np.testing.assert_allclose(jax.jit(transforms.rotate)(x, 30.0), transforms.rotate(x, 30), atol=1e-6)
    np.testing.assert_allclose(jax.jit(transforms.scale)(x, 0.7), transforms.scale(x, 0.7), atol=1e-6)
    np.testing.assert_array_equal(jax.jit(transforms.shift)(x, 2, -1), transforms.shift(x, 2, -1))
    np.testing.assert_array_equal(jax.jit(transforms.stroke)(x, 2), transforms.stroke(x, 2))
    np.testing.assert_array_equal(jax.jit(transforms.stroke)(x, -1), transforms.stroke(x, -1))


@pytest.mark.slow
def test_one_amount_per_image_equals_one_call_per_image():
    x = image(h=8, w=8)
    angles, factors, rows = np.array([-40.0, 0.0, 25.0]), np.array([0.6, 1.0, 1.3]), np.array([1, 0, -2])
    for i in range(3):
        np.testing.assert_allclose(transforms.rotate(x, angles)[i], transforms.rotate(x[i:i + 1], angles[i])[0],
                                   atol=1e-6)
        np.testing.assert_allclose(transforms.scale(x, factors)[i], transforms.scale(x[i:i + 1], factors[i])[0],
                                   atol=1e-6)
        np.testing.assert_array_equal(transforms.shift(x, rows, 1)[i], transforms.shift(x[i:i + 1], rows[i], 1)[0])


@pytest.mark.slow
def test_random_augmentation_inside_jit_and_a_gradient_in_the_angle():
    x = image(h=8, w=8)

    @jax.jit
    def augment(key, x):
        angles = jax.random.uniform(key, (len(x),), minval=-15, maxval=15)
        return transforms.rotate(x, angles), angles

    y, angles = augment(jax.random.key(0), x)
    np.testing.assert_allclose(y, transforms.rotate(x, np.asarray(angles)), atol=1e-6)
    step = 1e-2  # d/d(angle) of the rotated image's sum, against a central difference
    grad = jax.grad(lambda a: jnp.sum(transforms.rotate(x, a)))(10.0)
    numeric = (jnp.sum(transforms.rotate(x, 10 + step)) - jnp.sum(transforms.rotate(x, 10 - step))) / (2 * step)
    assert float(grad) != 0 and np.isclose(grad, numeric, rtol=2e-2)


@pytest.mark.parametrize("call, error, message", [
    (lambda: transforms.shift(np.ones((7, 7, 1), np.float32), 1), ValueError, "`images` must have rank 4 with layout (N, H, W, C)"),
    (lambda: transforms.rotate(np.ones((1, 7, 7, 1), np.uint8), 10), TypeError, "`images` must have a floating-point dtype"),
    (lambda: transforms.scale(np.ones((1, 7, 7, 1), np.float32), 0), ValueError, "`factor` must be positive, got 0"),
    (lambda: transforms.scale(np.ones((2, 7, 7, 1), np.float32), [1.0, -1.0]), ValueError,
     "`factor` must be positive, got [1.0, -1.0]"),
    (lambda: transforms.rotate(np.ones((2, 7, 7, 1), np.float32), [1.0, 2.0, 3.0]), ValueError,
     "`degrees` must be a number or one per image, shape (2,), got shape (3,)"),
    (lambda: transforms.rotate(np.ones((2, 7, 7, 1), np.float32), "10"), TypeError,
     "`degrees` must be a number or an array of one per image, got '10'"),
    (lambda: transforms.shift(np.ones((1, 7, 7, 1), np.float32), 1.5), TypeError,
     "`rows` must be a whole number of pixels (an int), got 1.5"),
    (lambda: transforms.stroke(np.ones((1, 7, 7, 1), np.float32), 1.0), TypeError,
     "`pixels` must be an int (one for the batch), got 1.0"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
