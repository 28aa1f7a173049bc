"""cnnjax.adaptive_avgpool and adaptive_maxpool (PyTorch's adaptive pools) against a NumPy loop."""

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

CASES = [  # (input spatial shape, output size): smaller, uneven, equal, larger than the input, 1-D to 3-D
    ((13, 11), (6, 6)), ((5,), (3,)), ((7,), (7,)), ((4, 5), (6, 7)), ((6, 5, 4), (2, 3, 4)), ((224 // 32, 7), (6, 6)),
]


@pytest.mark.parametrize("spatial, size", CASES)
@pytest.mark.slow
def test_adaptive_pools_match_the_numpy_loop(spatial, size):
    x = np.random.default_rng(len(spatial)).normal(size=(2, *spatial, 3)).astype(np.float32)
    np.testing.assert_allclose(cnnjax.adaptive_avgpool(x, size), ref.adaptive_pool(x, size, np.mean), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(cnnjax.adaptive_maxpool(x, size), ref.adaptive_pool(x, size, np.max))
    np.testing.assert_array_equal(jax.jit(cnnjax.adaptive_maxpool, static_argnums=1)(x, size),
                                  ref.adaptive_pool(x, size, np.max))


@pytest.mark.slow
def test_divisible_sizes_are_the_plain_pools_and_an_int_is_a_square_2d_output():
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(cnnjax.adaptive_avgpool(x, 6), cnnjax.avgpool(x, 2), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(cnnjax.adaptive_maxpool(x, 4), cnnjax.maxpool(x, 3))
    chex.assert_shape(cnnjax.adaptive_avgpool(x[0], 5), (5, 5, 3))  # one example: (H, W, C)
    chex.assert_shape(nn.AdaptiveAvgPool(6)(x[0]), (6, 6, 3))


@pytest.mark.slow
def test_gradients_and_the_first_maximum():
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(1).permutation(5 * 4).reshape(1, 5, 4, 1) / 9.0)
        jtu.check_grads(lambda x: cnnjax.adaptive_avgpool(x, (3, 3)) ** 2, (x,), order=2, modes=("fwd", "rev"))
        jtu.check_grads(lambda x: cnnjax.adaptive_maxpool(x, (3, 3)) ** 2, (x,), order=1, modes=("fwd", "rev"),
                        eps=1e-5)
    g = jax.grad(lambda x: cnnjax.adaptive_maxpool(x, (1,)).sum())(jnp.ones((1, 3, 1)))  # ties: the first cell
    np.testing.assert_array_equal(g[0, :, 0], [1.0, 0.0, 0.0])


def test_nan_in_a_window_is_nan_out_of_that_window_only():
    x = np.zeros((1, 64, 64, 8), np.float32)  # 32,768 values: XLA:CPU's max would drop the NaN
    x[0, 0, 0, 0] = np.nan
    for fn in (cnnjax.adaptive_avgpool, cnnjax.adaptive_maxpool):
        y = np.asarray(fn(x, (5, 5)))
        assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y).sum() == 1, fn.__name__


@pytest.mark.parametrize("call, error, message", [
    (lambda: cnnjax.adaptive_avgpool(jnp.ones((1, 4, 4, 1)), 0), ValueError, "`output_size` must be positive, got 0"),
    (lambda: cnnjax.adaptive_avgpool(jnp.ones((4, 4)), (2, 2)), ValueError,
     "with 2 spatial dims to match `output_size`=(2, 2), got shape (4, 4)"),
    (lambda: cnnjax.adaptive_avgpool(jnp.ones((1, 4, 4, 1), jnp.int32), 2), TypeError,
     "`x` must have a floating-point dtype"),
    (lambda: cnnjax.adaptive_maxpool(jnp.ones((1, 0, 4, 1)), 2), ValueError,
     "`x` must have at least one position in each spatial dim, got shape (1, 0, 4, 1)"),
    (lambda: nn.AdaptiveMaxPool("6"), TypeError, "`output_size` must be an int or a sequence of ints, got '6'"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
