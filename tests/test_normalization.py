"""cnnjax.local_response_norm (AlexNet's, as PyTorch and Caffe compute it) against a NumPy loop."""

import re

import chex
import jax
import jax.numpy as jnp
import jax.test_util as jtu
import numpy as np
import numpy_reference as ref
import pytest

import cnnjax
from cnnjax import nn

numpy_lrn = ref.local_response_norm


@pytest.mark.parametrize("shape, size, alpha, beta, k", [
    ((2, 5, 5, 7), 5, 1e-4, 0.75, 1.0),       # PyTorch's defaults
    ((2, 4, 4, 9), 5, 5e-4, 0.75, 2.0),       # the paper's, written as PyTorch takes them
    ((3, 6), 4, 0.5, 0.5, 1.0),               # an even window: one more channel before than after
    ((2, 3, 3, 3), 7, 2.0, 1.0, 0.5),         # a window wider than the channels
    ((6,), 1, 1.0, 2.0, 1.0),                 # one example of channels; size 1: each value alone
    ((1, 2, 3, 2, 4), 3, 1.0, 0.75, 1.0),     # 3-D maps
])
@pytest.mark.slow
def test_matches_the_numpy_loop(shape, size, alpha, beta, k):
    x = np.random.default_rng(len(shape) + size).normal(size=shape).astype(np.float32) * 3
    got = cnnjax.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)
    chex.assert_shape(got, shape)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, numpy_lrn(x, size, alpha, beta, k), rtol=1e-5, atol=1e-6)
    jitted = jax.jit(cnnjax.local_response_norm, static_argnums=1, static_argnames=("alpha", "beta", "k"))
    np.testing.assert_allclose(jitted(x, size, alpha=alpha, beta=beta, k=k), got, rtol=1e-6, atol=1e-7)


def test_by_hand():
    """Two channels, a window of two (the channel and the one before), alpha = beta = k = 1:
    1 / (1 + (1/2)(1)) and 2 / (1 + (1/2)(1 + 4))."""
    y = cnnjax.local_response_norm(jnp.array([1.0, 2.0]), 2, alpha=1.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(y, [2 / 3, 2 / 3.5], rtol=1e-6)


@pytest.mark.slow
def test_gradients():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 5)))
        jtu.check_grads(lambda x: cnnjax.local_response_norm(x, 3, alpha=1.0, beta=0.75, k=1.0), (x,), order=2,
                        modes=("fwd", "rev"))
    grad = jax.grad(lambda x: jnp.sum(jnp.sin(cnnjax.local_response_norm(x, 3, alpha=1.0))))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 5)), jnp.float32)
    np.testing.assert_allclose(jax.jit(grad)(x), grad(x), rtol=1e-5, atol=1e-6)  # differentiable when traced too


def test_nan_in_a_channel_is_nan_out_of_its_window_only():
    x = np.ones((1, 2, 2, 6), np.float32)
    x[0, 0, 0, 2] = np.nan
    y = np.asarray(cnnjax.local_response_norm(x, 3))
    np.testing.assert_array_equal(np.argwhere(np.isnan(y))[:, -1], [1, 2, 3])  # channels whose sum holds it
    assert np.isnan(y).sum() == 3


def test_the_layer_lists_no_parameters_and_reads_one_example_as_the_batch_does():
    layer = nn.LocalResponseNorm(3, alpha=1.0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 5)), jnp.float32)
    np.testing.assert_allclose(jax.vmap(layer)(x), layer(x), rtol=1e-6)
    np.testing.assert_allclose(layer(x), numpy_lrn(x, 3, 1.0, 0.75, 1.0), rtol=1e-5, atol=1e-6)
    row = cnnjax.summary(nn.Sequential(layer), (4, 4, 5)).rows[0]
    assert (row.name, row.type, row.output_shape, row.params) == ("local_response_norm", "LocalResponseNorm",
                                                                    (None, 4, 4, 5), 0)


@pytest.mark.parametrize("call, error, message", [
    (lambda: cnnjax.local_response_norm(jnp.ones((2, 3)), 0), ValueError, "`size` must be positive, got 0"),
    (lambda: cnnjax.local_response_norm(jnp.ones((2, 3)), 2.5), TypeError, "`size` must be an int, got 2.5"),
    (lambda: cnnjax.local_response_norm(jnp.ones((2, 3)), alpha=-1.0), ValueError,
     "`alpha` must be a number >= 0, got -1.0"),
    (lambda: cnnjax.local_response_norm(jnp.ones((2, 3)), beta=float("nan")), ValueError,
     "`beta` must be a number >= 0, got nan"),
    (lambda: cnnjax.local_response_norm(jnp.ones((2, 3)), k="1"), ValueError, "`k` must be a number >= 0, got '1'"),
    (lambda: cnnjax.local_response_norm(jnp.ones((2, 3), jnp.int32)), TypeError,
     "`x` must have a floating-point dtype"),
    (lambda: cnnjax.local_response_norm(jnp.array(1.0)), ValueError, "`x` must have a channel axis"),
    (lambda: nn.LocalResponseNorm(5, alpha=-2), ValueError, "`alpha` must be a number >= 0, got -2"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_lrn_of_float16_sums_its_squares_in_float32():
    """Squares of 300 overflow float16 (65,504): the sum over 64 channels read inf and every
    output 0. The squares now add up in float32; the output is float16, as the input."""
    x = np.full((1, 2, 2, 64), 300.0, np.float16)
    got = cnnjax.local_response_norm(x, 64, alpha=1.0, beta=0.75, k=1.0)
    assert got.dtype == jnp.float16
    xs = np.asarray(x, np.float64)[0, 0, 0]
    want = [300.0 / (1.0 + 1.0 / 64 * (xs[max(c - 32, 0):c + 32] ** 2).sum()) ** 0.75 for c in range(64)]
    np.testing.assert_allclose(np.asarray(got, np.float64)[0, 0, 0], want, rtol=2e-3)
