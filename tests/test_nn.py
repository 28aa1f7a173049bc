"""cnnjax.nn layers: each is its pure function plus parameters, with Keras' defaults."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import cnnjax
from cnnjax import nn


def test_conv_layer_is_the_pure_function():
    layer = nn.Conv(2, 4, 3, stride=2, padding="same", activation="relu", rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.arange(4.0) - 2
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 2))
    want = cnnjax.relu(cnnjax.conv(x, layer.kernel[...], layer.bias[...], stride=2, padding="SAME"))
    np.testing.assert_array_equal(layer(x), want)
    chex.assert_shape(layer(x), (3, 4, 4, 4))


@pytest.mark.parametrize("kernel_size, x_shape, y_shape", [
    (3, (2, 9, 9, 1), (2, 7, 7, 5)),
    ((5,), (2, 16, 1), (2, 12, 5)),          # sound, text
    ((3, 3, 3), (2, 6, 6, 6, 1), (2, 4, 4, 4, 5)),  # volumes
])
def test_conv_layer_spatial_dims(kernel_size, x_shape, y_shape):
    layer = nn.Conv(1, 5, kernel_size, rngs=nnx.Rngs(0))
    chex.assert_shape(layer(jnp.ones(x_shape)), y_shape)


def test_keras_default_initialisers():
    layer = nn.Conv(16, 32, (3, 3), rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(layer.bias[...], np.zeros(32))
    limit = np.sqrt(6.0 / (9 * 16 + 9 * 32))  # Glorot uniform with receptive-field fans
    w = np.asarray(layer.kernel[...])
    assert w.shape == (3, 3, 16, 32) and np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    dense = nn.Dense(100, 10, rngs=nnx.Rngs(0))
    assert np.abs(np.asarray(dense.kernel[...])).max() <= np.sqrt(6.0 / 110)


def test_dense_layer_and_no_bias():
    layer = nn.Dense(3, 2, use_bias=False, rngs=nnx.Rngs(0))
    assert layer.bias is None
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(layer(x), x @ layer.kernel[...], rtol=1e-6)


def test_pool_relu_flatten_layers():
    x = jnp.arange(2 * 7 * 7 * 3.0).reshape(2, 7, 7, 3) - 50
    np.testing.assert_array_equal(nn.MaxPool(2, ceil_mode=True)(x), cnnjax.maxpool(x, 2, ceil_mode=True))
    np.testing.assert_array_equal(nn.MaxPool((3, 2), (1, 2))(x), cnnjax.maxpool(x, (3, 2), (1, 2)))
    np.testing.assert_array_equal(nn.ReLU()(x), cnnjax.relu(x))
    np.testing.assert_array_equal(nn.Flatten()(x), cnnjax.flatten(x))


def test_compute_dtype():
    layer = nn.Conv(1, 2, 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert layer.kernel[...].dtype == jnp.float32
    assert layer(jnp.ones((1, 5, 5, 1))).dtype == jnp.bfloat16


def test_sequential_and_capture_names():
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.Conv(1, 2, 3, rngs=rngs), nn.ReLU(), nn.MaxPool(), nn.Conv(2, 2, 1, rngs=rngs),
                          nn.MaxPool(), nn.Flatten())
    y, calls = nn.capture(model, jnp.ones((1, 10, 10, 1)))
    assert [c[0] for c in calls] == ["conv", "re_lu", "max_pool", "conv_1", "max_pool_1", "flatten"]
    np.testing.assert_array_equal(calls[-1][3], y)
    np.testing.assert_array_equal(calls[1][2], calls[0][3])  # ReLU's input is conv's output
    assert len(model) == 6 and isinstance(model[0], nn.Conv)


@pytest.mark.parametrize("make, error, message", [
    (lambda r: nn.Conv(0, 2, 3, rngs=r), ValueError, "`in_features` must be positive, got 0"),
    (lambda r: nn.Conv(1, 2.0, 3, rngs=r), TypeError, "`out_features` must be an int, got 2.0"),
    (lambda r: nn.Conv(1, 2, "3", rngs=r), TypeError, "`kernel_size` must be an int or a sequence of ints, got '3'"),
    (lambda r: nn.Conv(1, 2, (3, 0), rngs=r), ValueError, "`kernel_size` must be positive, got (3, 0)"),
    (lambda r: nn.Conv(1, 2, 3, padding="full", rngs=r), ValueError, "`padding` must be 'VALID', 'SAME'"),
    (lambda r: nn.Conv(1, 2, 3, activation="tanh", rngs=r), ValueError, "`activation` must be None, a callable, or one of"),
    (lambda r: nn.Dense(3, -1, rngs=r), ValueError, "`out_features` must be positive, got -1"),
    (lambda r: nn.MaxPool(0), ValueError, "`window` must be positive, got 0"),
    (lambda r: nn.MaxPool(2, ceil_mode=1), TypeError, "`ceil_mode` must be a bool, got 1"),
    (lambda r: nn.Sequential(nn.ReLU(), 3), TypeError, "`layers[1]` must be callable, got 3"),
])
def test_errors(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make(nnx.Rngs(0))


def test_channel_mismatch_at_call_names_the_arrays():
    layer = nn.Conv(3, 2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=re.escape("`x` has 1 input channels")):
        layer(jnp.ones((1, 5, 5, 1)))
