"""cnnjax.dense and cnnjax.flatten: the fully connected layer and Keras' Flatten order."""

import re

import chex
import jax
import jax.numpy as jnp
import jax.test_util as jtu
import numpy as np
import pytest

import cnnjax


def test_dense_matches_numpy():
    rng = np.random.default_rng(0)
    x, k, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 3)), rng.standard_normal(3)
    got = cnnjax.dense(x.astype(np.float32), k.astype(np.float32), b.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), x @ k + b, rtol=1e-5, atol=1e-5)


def test_dense_over_leading_axes():
    x = jnp.ones((2, 3, 4))
    chex.assert_shape(cnnjax.dense(x, jnp.ones((4, 6))), (2, 3, 6))


def test_dense_gradients():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(rng.standard_normal(s)) for s in [(3, 4), (4, 2), (2,)])
        jtu.check_grads(cnnjax.dense, args, order=2)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_dense_keeps_dtype(dtype):
    assert cnnjax.dense(jnp.ones((2, 3), dtype), jnp.ones((3, 1), dtype)).dtype == dtype


def test_flatten_is_keras_channels_last_order():
    """Keras' Flatten on (N, H, W, C) is a C-order reshape: index (h * W + w) * C + c."""
    n, h, w, c = 2, 3, 4, 5
    x = np.arange(n * h * w * c, dtype=np.float32).reshape(n, h, w, c)
    y = np.asarray(cnnjax.flatten(x))
    for hh, ww, cc in [(0, 0, 1), (1, 2, 3), (2, 3, 4)]:
        assert y[1, (hh * w + ww) * c + cc] == x[1, hh, ww, cc]


@pytest.mark.parametrize("shape, expected", [((2, 3, 3, 64), (2, 576)), ((2, 3, 3, 128), (2, 1152)),
                                             ((0, 5, 5), (0, 25)), ((4,), (4, 1))])
def test_flatten_shapes(shape, expected):
    chex.assert_shape(cnnjax.flatten(jnp.zeros(shape)), expected)


@pytest.mark.parametrize(
    "x, kernel, bias, error, message",
    [
        (np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), None, ValueError,
         "`x` must have shape (..., 4) to match `kernel` of shape (4, 2), got (2, 3)"),
        (np.ones((2, 3), np.float32), np.ones((3,), np.float32), None, ValueError,
         "`kernel` must have rank 2 with layout (in_features, out_features), got shape (3,)"),
        (np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), np.ones(3, np.float32), ValueError,
         "`bias` must have shape (2,) to match out_features=2"),
        (np.ones((2, 3), np.int32), np.ones((3, 2), np.float32), None, TypeError,
         "`x` must have a floating-point dtype"),
        (np.ones((2, 3), np.float32), np.ones((3, 2), np.int64), None, TypeError,
         "`kernel` must have a floating-point dtype"),
    ],
)
def test_dense_errors(x, kernel, bias, error, message):
    with pytest.raises(error, match=re.escape(message)):
        cnnjax.dense(x, kernel, bias)


def test_flatten_error():
    with pytest.raises(ValueError, match=re.escape("`x` must have a batch axis (rank >= 1)")):
        cnnjax.flatten(np.float32(1.0))


def test_flatten_from_a_start_dim_keeps_the_axes_before_it():
    x = jnp.arange(2 * 5 * 3 * 4, dtype=jnp.float32).reshape(2, 5, 3, 4)
    np.testing.assert_array_equal(cnnjax.flatten(x, start_dim=2), np.asarray(x).reshape(2, 5, 12))
    np.testing.assert_array_equal(cnnjax.flatten(x, start_dim=-3), np.asarray(x).reshape(2, 60))
    np.testing.assert_array_equal(cnnjax.flatten(x, start_dim=0), np.asarray(x).reshape(120))
    with pytest.raises(ValueError, match=re.escape("`start_dim` must be in [-4, 4) for an array of rank 4, got 4")):
        cnnjax.flatten(x, start_dim=4)
    with pytest.raises(ValueError, match=re.escape("Give `spatial_dims` or `start_dim`, not both")):
        cnnjax.flatten(x, spatial_dims=2, start_dim=1)
