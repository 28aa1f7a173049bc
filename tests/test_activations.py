"""cnnjax.relu and cnnjax.softmax."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax


def test_relu_zeroes_negatives_only():
    x = jnp.array([-2.0, -0.11, 0.0, 0.11, 3.0])
    np.testing.assert_array_equal(cnnjax.relu(x), np.array([0.0, 0.0, 0.0, 0.11, 3.0], np.float32))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.int32])
def test_relu_keeps_dtype(dtype):
    assert cnnjax.relu(jnp.array([-1, 2], dtype)).dtype == dtype


def test_relu_gradient_is_the_step():
    g = jax.vmap(jax.grad(cnnjax.relu))(jnp.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])


def test_softmax_rows_sum_to_one_and_keep_order():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    p = np.asarray(cnnjax.softmax(logits))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-6)


def test_softmax_rejects_integers():
    with pytest.raises(TypeError, match="`logits` must have a floating-point dtype"):
        cnnjax.softmax(jnp.array([1, 2]))


def test_softmax_axis_is_checked_and_honoured():
    logits = jnp.array([[0.0, 1.0, 2.0], [3.0, 5.0, 7.0]])
    with pytest.raises(ValueError, match=re.escape("`axis` must be in [-2, 2) for an array of rank 2, got 5")):
        cnnjax.softmax(logits, axis=5)
    with pytest.raises(TypeError, match=re.escape("`axis` must be an int, got 0.5")):
        cnnjax.softmax(logits, axis=0.5)
    with pytest.raises(ValueError, match=re.escape("`logits` must have at least one axis (the classes), got a scalar")):
        cnnjax.softmax(jnp.array(1.0))
    e = np.exp(np.asarray(logits))
    np.testing.assert_allclose(cnnjax.softmax(logits, axis=-2), e / e.sum(0), rtol=1e-6)
