"""The lecture's networks: parameter counts, maps, hand-written forwards, Keras weights."""

import re

import chex
import jax
import jax.numpy as jnp
import lecture_tables as T
import numpy as np
import numpy_reference as ref
import pytest
from flax import nnx

import cnnjax
from cnnjax import models, nn


def n_params(model):
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_parameter_counts_are_the_lectures():
    assert n_params(models.mnist_sequential(rngs=nnx.Rngs(0))) == 93_322
    assert n_params(models.mnist_functional(rngs=nnx.Rngs(0))) == 104_202


def test_xo_net_with_lecture_features_gives_the_lecture_maps():
    net = models.xo_net(lecture_features=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(T.X_IMAGE)[None, :, :, None]
    logits, calls = nn.capture(net, x)
    chex.assert_shape(logits, (1, 2))
    by_name = {name: out for name, _, _, out in calls}
    for c in range(3):
        np.testing.assert_array_equal(T.cut_to_hundredths(by_name["conv"][0, :, :, c]), T.RESPONSES[c])
        np.testing.assert_array_equal(T.cut_to_hundredths(by_name["re_lu"][0, :, :, c]), T.RELUS[c])
        np.testing.assert_array_equal(T.cut_to_hundredths(by_name["max_pool"][0, :, :, c]), T.POOLED[c])
        np.testing.assert_array_equal(T.cut_to_hundredths(by_name["max_pool_1"][0, :, :, c]), T.DEEP[c])


def test_xo_net_random_features_are_learnable_params():
    net = models.xo_net(rngs=nnx.Rngs(0))
    assert not np.array_equal(np.asarray(net[0].kernel[...]), cnnjax.lecture.features())
    assert n_params(net) == 3 * 9 + 3 + 12 * 2 + 2


def by_hand_functional(m, x):
    """The functional CNN written with the pure functions only."""
    p = lambda layer: (layer.kernel[...], layer.bias[...])
    x = cnnjax.maxpool(cnnjax.relu(cnnjax.conv(x, *p(m.conv1))), 2)
    x = cnnjax.maxpool(cnnjax.relu(cnnjax.conv(x, *p(m.conv2))), 2)
    x = cnnjax.relu(cnnjax.conv(x, *p(m.conv3)))
    return cnnjax.dense(cnnjax.flatten(x), *p(m.dense))


def by_hand_sequential(m, x):
    c1, _, c2, _, c3, _, d1, d2 = m.layers
    p = lambda layer: (layer.kernel[...], layer.bias[...])
    x = cnnjax.maxpool(cnnjax.relu(cnnjax.conv(x, *p(c1))), 2)
    x = cnnjax.maxpool(cnnjax.relu(cnnjax.conv(x, *p(c2))), 2)
    x = cnnjax.flatten(cnnjax.relu(cnnjax.conv(x, *p(c3))))
    return cnnjax.dense(cnnjax.relu(cnnjax.dense(x, *p(d1))), *p(d2))


@pytest.mark.parametrize("make, by_hand", [(models.mnist_functional, by_hand_functional),
                                           (models.mnist_sequential, by_hand_sequential)],
                         ids=["functional", "sequential"])
def test_forward_equals_the_composition_by_hand(make, by_hand):
    m = make(rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
    np.testing.assert_array_equal(m(x), by_hand(m, x))


@pytest.mark.parametrize("make", [models.mnist_functional, models.mnist_sequential], ids=["functional", "sequential"])
def test_jit_bfloat16_and_batch_sizes(make):
    m = make(rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    graphdef, state = nnx.split(m)
    jitted = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    np.testing.assert_allclose(jitted(state, x), m(x), rtol=1e-5, atol=1e-5)
    chex.assert_shape(m(x[:1]), (1, 10))
    chex.assert_shape(m(x[:0]), (0, 10))
    m16 = make(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # same seed: same float32 params
    y16 = m16(x.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), m(x), rtol=0.1, atol=0.05)


# 32x32x3: 32 - 2 = 30, // 2 = 15, - 2 = 13, // 2 = 6, - 2 = 4, then 4 x 4 x channels.
@pytest.mark.parametrize("make, flat", [(models.mnist_functional, 4 * 4 * 128), (models.mnist_sequential, 4 * 4 * 64)])
def test_other_input_shapes_and_classes(make, flat):
    m = make(input_shape=(32, 32, 3), num_classes=7, rngs=nnx.Rngs(0))
    chex.assert_shape(m(jnp.ones((2, 32, 32, 3))), (2, 7))
    dense = [layer for layer in models.weighted_layers(m) if isinstance(layer, nn.Dense)][0]
    assert dense.in_features == flat


@pytest.mark.parametrize("call, error, message", [
    (lambda: models.mnist_functional(input_shape=(8, 8, 1), rngs=nnx.Rngs(0)), ValueError,
     "`input_shape` (8, 8, 1) is too small for this model: output size would be zero or negative"),
    (lambda: models.mnist_sequential(input_shape=(28, 28), rngs=nnx.Rngs(0)), ValueError,
     "`input_shape` must be (height, width, channels) without the batch axis, e.g. (28, 28, 1), got (28, 28)"),
    (lambda: models.mnist_sequential(input_shape=28, rngs=nnx.Rngs(0)), ValueError,
     "`input_shape` must be (height, width, channels) without the batch axis"),
    (lambda: models.mnist_functional(num_classes=0, rngs=nnx.Rngs(0)), ValueError, "`num_classes` must be positive, got 0"),
    (lambda: models.xo_net(input_shape=(9, 9, 3), lecture_features=True, rngs=nnx.Rngs(0)), ValueError,
     "`lecture_features=True` needs a single input channel"),
])
def test_model_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def numpy_functional(weights, x):
    """The functional CNN in NumPy, from Keras-ordered weights (independent of cnnjax)."""
    k1, b1, k2, b2, k3, b3, kd, bd = weights
    valid = ((0, 0), (0, 0))
    relu = lambda v: np.maximum(v, 0)
    x = relu(ref.conv(x, k1, (1, 1), valid, (1, 1)) + b1)
    x = ref.maxpool(x, (2, 2), (2, 2), valid, False)
    x = relu(ref.conv(x, k2, (1, 1), valid, (1, 1)) + b2)
    x = ref.maxpool(x, (2, 2), (2, 2), valid, False)
    x = relu(ref.conv(x, k3, (1, 1), valid, (1, 1)) + b3)
    return x.reshape(x.shape[0], -1) @ kd + bd


def keras_weights(rng):
    shapes = [(3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (3, 3, 64, 128), (128,), (1152, 10), (10,)]
    return [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]


def test_keras_weights_give_the_same_logits():
    rng = np.random.default_rng(0)
    weights = keras_weights(rng)
    m = models.load_keras_weights(models.mnist_functional(rngs=nnx.Rngs(0)), weights)
    x = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(m(x)), numpy_functional(weights, x), rtol=1e-4, atol=1e-4)


def test_keras_weights_errors():
    rng = np.random.default_rng(0)
    m = models.mnist_functional(rngs=nnx.Rngs(0))
    weights = keras_weights(rng)
    before = np.asarray(m.conv1.kernel[...]).copy()
    with pytest.raises(ValueError, match=re.escape("`weights` must hold 8 arrays")):
        models.load_keras_weights(m, weights[:-1])
    weights[2] = weights[2][:, :, :16]
    with pytest.raises(ValueError, match=re.escape("`weights[2]` has shape (3, 3, 16, 64) but the Conv layer's kernel has shape (3, 3, 32, 64)")):
        models.load_keras_weights(m, weights)
    np.testing.assert_array_equal(before, m.conv1.kernel[...])  # nothing half-loaded: conv1 came first


@pytest.mark.parametrize("lowering_name", ["reference", "patches", "auto"])
@pytest.mark.parametrize("make, shape", [
    (models.mnist_sequential, (20, 20, 1)),
    (models.mnist_functional, (20, 20, 1)),
    (models.xo_net, (9, 9, 1)),
])
def test_every_model_gives_per_example_outputs_and_gradients_under_vmap(make, shape, lowering_name):
    """``jax.vmap`` over single examples, of the model and of the gradient of its loss with respect
    to the parameters (per-example gradients, as DP-SGD takes them), equals each example alone."""
    import optax

    model = make(input_shape=shape, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    xs = jnp.asarray(np.random.default_rng(0).uniform(size=(3, *shape)), jnp.float32)
    ys = jnp.array([1, 0, 1])
    logits = lambda p, x: nnx.merge(graphdef, p)(x)
    loss = lambda p, x, y: optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).sum()

    @jax.jit
    def run(params, xs, ys):
        alone = jax.lax.map(lambda e: jax.grad(loss)(params, e[0][None], e[1][None]), (xs, ys))
        per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(params, xs, ys)
        return logits(params, xs), jax.vmap(logits, in_axes=(None, 0))(params, xs), per_example, alone

    with cnnjax.lowering.use(conv=lowering_name, maxpool=lowering_name, avgpool=lowering_name):
        batched, vmapped, per_example, alone = run(params, xs, ys)
    chex.assert_shape(vmapped, (3, batched.shape[-1]))
    np.testing.assert_allclose(vmapped, batched, rtol=1e-5, atol=1e-6)
    leaves, alone_leaves = jax.tree.leaves(per_example), jax.tree.leaves(alone)
    assert len(leaves) == len(alone_leaves) == len(jax.tree.leaves(params)) > 0
    for got, want in zip(leaves, alone_leaves, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
