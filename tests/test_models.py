"""The lecture's networks: parameter counts, maps, hand-written forwards, Keras weights."""

import re

import chex
import jax
import jax.numpy as jnp
import lecture_tables as T
import numpy as np
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
@pytest.mark.slow
def test_jit_bfloat16_and_batch_sizes(make):
    m = make(rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    graphdef, state = nnx.split(m)
    jitted = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    np.testing.assert_allclose(jitted(state, x), m(x), rtol=1e-5, atol=1e-5)
    chex.assert_shape(jitted(state, x[:1]), (1, 10))  # compiled, not an eager op at a time: the suite's time
    chex.assert_shape(jitted(state, x[:0]), (0, 10))
    m16 = make(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # same seed: same float32 params
    y16 = nnx.jit(lambda m, x: m(x))(m16, x.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), m(x), rtol=0.1, atol=0.05)


# 32x32x3: 32 - 2 = 30, // 2 = 15, - 2 = 13, // 2 = 6, - 2 = 4, then 4 x 4 x channels.
@pytest.mark.parametrize("make, flat", [(models.mnist_functional, 4 * 4 * 128), (models.mnist_sequential, 4 * 4 * 64)])
@pytest.mark.slow
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


def test_alexnet_is_torchvisions_layout_or_the_papers():
    model = nnx.eval_shape(lambda: models.alexnet(rngs=nnx.Rngs(0)))  # shapes only: 61M parameters
    assert n_params(model) == 61_100_840  # torchvision.models.alexnet()
    kernels = [tuple(layer.kernel.shape) for layer in model.layers if isinstance(layer, (nn.Conv, nn.Dense))]
    assert kernels == [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256),
                       (9216, 4096), (4096, 4096), (4096, 1000)]
    paper = nnx.eval_shape(lambda: models.alexnet(variant="paper", rngs=nnx.Rngs(0)))
    assert n_params(paper) == 60_965_224  # Caffe's bvlc_alexnet, the paper's two GPUs as two groups
    assert paper.input_shape == (227, 227, 3)
    kernels = [tuple(layer.kernel.shape) for layer in paper.layers if isinstance(layer, (nn.Conv, nn.Dense))]
    assert kernels == [(11, 11, 3, 96), (5, 5, 48, 256), (3, 3, 256, 384), (3, 3, 192, 384), (3, 3, 192, 256),
                       (9216, 4096), (4096, 4096), (4096, 1000)]
    norms = [(layer.size, layer.alpha, layer.beta, layer.k) for layer in paper.layers
             if isinstance(layer, nn.LocalResponseNorm)]
    assert norms == [(5, 5e-4, 0.75, 2.0)] * 2  # section 3.3: k=2, n=5, alpha=1e-4 per square, beta=0.75
    with pytest.raises(ValueError, match=re.escape("must be at least 63x63 for AlexNet")):
        models.alexnet(input_shape=(32, 32, 3), rngs=nnx.Rngs(0))
    for side in (224, 259):  # the last map 5x5 and 7x7
        with pytest.raises(ValueError, match=re.escape("must give AlexNet's 6x6 last map (227x227 to 258x258")):
            models.alexnet(input_shape=(side, 227, 3), variant="paper", rngs=nnx.Rngs(0))
    nnx.eval_shape(lambda: models.alexnet(input_shape=(258, 258, 3), variant="paper", rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=re.escape("`variant` must be 'torchvision' or 'paper', got '2012'")):
        models.alexnet(variant="2012", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("lowering_name", ["reference", "patches", "auto"])
@pytest.mark.parametrize("make, shape", [
    (models.mnist_sequential, (20, 20, 1)),
    (models.mnist_functional, (20, 20, 1)),
    (models.xo_net, (9, 9, 1)),
])
@pytest.mark.slow
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


@pytest.mark.parametrize("lowering_name", ["reference", "auto"])
@pytest.mark.parametrize("variant, shape", [("torchvision", (63, 63, 3)), ("paper", (227, 227, 3))])
@pytest.mark.slow
def test_alexnet_gives_per_example_outputs_and_gradients_under_vmap(variant, shape, lowering_name):
    """As above, for both AlexNets: per-example gradients with respect to the input and to
    every convolution's weights (what each lowering computes; the 57M dense weights,
    lowering-free, would only cost memory). On XLA's lowering and on the CPU default, which
    takes patches where they pay; "patches" alone (48 s of the suite) is covered layer by
    layer, every layer AlexNet uses among them, in tests/test_nn.py's vmap test."""
    model = models.alexnet(input_shape=shape, num_classes=3, variant=variant, rngs=nnx.Rngs(0))
    model.eval()
    conv_param = lambda path, value: isinstance(model.layers[path[1]], nn.Conv)
    graphdef, convs, rest = nnx.split(model, conv_param, ...)
    xs = jnp.asarray(np.random.default_rng(0).uniform(size=(2, *shape)), jnp.float32) * 4  # LRN's sums matter

    @jax.jit  # the dense weights an argument, not 57M constants to compile
    def run(convs, rest, xs):
        logits = lambda c, x: nnx.merge(graphdef, c, rest)(x)
        grad = jax.grad(lambda c, x: jnp.sum(jnp.sin(logits(c, x))), argnums=(0, 1))
        alone = jax.lax.map(lambda e: grad(convs, e[None]), xs)
        return logits(convs, xs), jax.vmap(logits, in_axes=(None, 0))(convs, xs), jax.vmap(grad, (None, 0))(convs, xs), alone

    with cnnjax.lowering.use(conv=lowering_name, maxpool=lowering_name, avgpool=lowering_name):
        batched, vmapped, per_example, alone = run(convs, rest, xs)
    chex.assert_shape(vmapped, (2, 3))
    np.testing.assert_allclose(vmapped, batched, rtol=1e-4, atol=1e-5)
    leaves, alone_leaves = jax.tree.leaves(per_example), jax.tree.leaves(alone)
    assert len(leaves) == len(alone_leaves) == 11  # five kernels, five biases, the input
    for got, want in zip(leaves, alone_leaves, strict=True):
        want = np.reshape(want, np.shape(got))  # the input's gradient alone keeps its batch axis of one
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6 * np.abs(want).max())
        assert np.abs(want).max() > 0


@pytest.mark.slow
def test_the_spoken_digit_networks_give_logits_of_their_documented_shapes():
    """The slide's "Sound" row, now in the package: a (61, 40, 1) spectrogram and an 8,000-sample
    waveform each give 10 logits; "max over time" reads a recording of any length alike."""
    rngs = nnx.Rngs(0)
    spectro = models.spectrogram_cnn((61, 40, 1), rngs=rngs)
    spectro.eval()
    assert spectro(jnp.zeros((2, 61, 40, 1))).shape == (2, 10)
    flat = models.spectrogram_cnn((61, 40, 1), over_time="flatten", num_classes=3, rngs=rngs)
    flat.eval()
    assert flat(jnp.zeros((1, 61, 40, 1))).shape == (1, 3)
    wave = models.waveform_cnn((8000, 1), rngs=rngs)
    wave.eval()
    assert wave(jnp.zeros((2, 8000, 1))).shape == (2, 10)
    with pytest.raises(ValueError, match=re.escape("`over_time` must be 'max' or 'flatten', got 'mean'")):
        models.spectrogram_cnn((61, 40, 1), over_time="mean", rngs=rngs)
