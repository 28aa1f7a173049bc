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
from scripts import load

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
    chex.assert_shape(jitted(state, x[:1]), (1, 10))  # compiled, not an eager op at a time: the suite's time
    chex.assert_shape(jitted(state, x[:0]), (0, 10))
    m16 = make(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # same seed: same float32 params
    y16 = nnx.jit(lambda m, x: m(x))(m16, x.astype(jnp.bfloat16))
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


@pytest.mark.parametrize("lowering_name", ["reference", "patches", "auto"])
@pytest.mark.parametrize("variant, shape", [("torchvision", (63, 63, 3)), ("paper", (227, 227, 3))])
def test_alexnet_gives_per_example_outputs_and_gradients_under_vmap(variant, shape, lowering_name):
    """As above, for both AlexNets on every lowering: per-example gradients with respect to the
    input and to every convolution's weights (what each lowering computes; the 57M dense
    weights, lowering-free, would only cost memory)."""
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


def _torch_forward(layout, state, x_nchw):
    """What PyTorch computes, written with jax.lax in its own layouts: NCHW maps, OIHW
    weights (grouped: ``feature_group_count``), ``x @ W.T + b``, channels-first flattening,
    its adaptive average pool and local response normalisation (NumPy loops)."""
    x = jnp.asarray(x_nchw, jnp.float32)
    for op, *args in layout:
        if op == "conv":
            name, stride, pad, *groups = args
            x = jax.lax.conv_general_dilated(x, jnp.asarray(state[f"{name}.weight"], jnp.float32), (stride,) * 2,
                                             [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                             feature_group_count=groups[0] if groups else 1)
            x = x + jnp.asarray(state[f"{name}.bias"], jnp.float32)[None, :, None, None]
        elif op == "relu":
            x = jnp.maximum(x, 0)
        elif op == "maxpool":
            k, s = args
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, s, s), "VALID")
        elif op == "lrn":  # the NumPy loop, on the channel axis moved last
            x = jnp.moveaxis(jnp.asarray(ref.local_response_norm(np.moveaxis(np.asarray(x), 1, -1), *args),
                                         jnp.float32), -1, 1)
        elif op == "adaptive":
            x = jnp.moveaxis(jnp.asarray(ref.adaptive_pool(jnp.moveaxis(x, 1, -1), (args[0],) * 2, np.mean)), -1, 1)
        elif op == "flatten":
            x = x.reshape(x.shape[0], -1)  # (C, H, W) order
        else:
            x = x @ jnp.asarray(state[f"{args[0]}.weight"], jnp.float32).T + jnp.asarray(state[f"{args[0]}.bias"])
    return np.asarray(x)


def _random_state(layout, shapes, rng):
    state = {}
    for (_op, *args), shape in zip([o for o in layout if o[0] in ("conv", "linear")], shapes, strict=True):
        fan_in = int(np.prod(shape[1:]))
        state[f"{args[0]}.weight"] = (rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32)
        state[f"{args[0]}.bias"] = rng.normal(size=shape[0]).astype(np.float32) * 0.1
    return state


def test_pytorch_weights_give_pytorchs_logits():
    """A PyTorch-style network (conv, pool, conv, flatten, two linear layers; weights OIHW and
    (out, in), flattening channels first) against the same network in cnnjax, channels last."""
    layout = [("conv", "features.0", 1, 1), ("relu",), ("maxpool", 2, 2), ("conv", "features.3", 2, 0), ("relu",),
              ("flatten",), ("linear", "classifier.0"), ("relu",), ("linear", "classifier.2")]
    state = _random_state(layout, [(6, 3, 3, 3), (5, 6, 3, 3), (7, 5 * 3 * 3), (4, 7)], np.random.default_rng(0))
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.Conv(3, 6, 3, padding=1, activation="relu", rngs=rngs), nn.MaxPool(2),
                          nn.Conv(6, 5, 3, stride=2, activation="relu", rngs=rngs), nn.Flatten(),
                          nn.Dense(45, 7, activation="relu", rngs=rngs), nn.Dense(7, 4, rngs=rngs))
    x = np.random.default_rng(1).normal(size=(2, 3, 14, 14)).astype(np.float32)  # NCHW, as PyTorch takes it
    assert models.load_torch_weights(model, state, input_shape=(14, 14, 3)) is model
    np.testing.assert_allclose(model(jnp.moveaxis(x, 1, -1)), _torch_forward(layout, state, x), rtol=1e-5, atol=1e-5)


def test_torchvision_alexnet_weights_give_its_logits():
    layout = [("conv", "features.0", 4, 2), ("relu",), ("maxpool", 3, 2), ("conv", "features.3", 1, 2), ("relu",),
              ("maxpool", 3, 2), ("conv", "features.6", 1, 1), ("relu",), ("conv", "features.8", 1, 1), ("relu",),
              ("conv", "features.10", 1, 1), ("relu",), ("maxpool", 3, 2), ("adaptive", 6), ("flatten",),
              ("linear", "classifier.1"), ("relu",), ("linear", "classifier.4"), ("relu",), ("linear", "classifier.6")]
    shapes = [(64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3),
              (4096, 9216), (4096, 4096), (10, 4096)]
    state = _random_state(layout, shapes, np.random.default_rng(0))  # torchvision's names and shapes, 10 classes
    model = models.alexnet(input_shape=(127, 127, 3), num_classes=10, rngs=nnx.Rngs(0))  # 3x3 -> 6x6 adaptively
    models.load_torch_weights(model, state)
    model.eval()  # Dropout off, as torch's model.eval()
    x = np.random.default_rng(1).uniform(size=(2, 3, 127, 127)).astype(np.float32)
    np.testing.assert_allclose(model(jnp.moveaxis(x, 1, -1)), _torch_forward(layout, state, x), rtol=1e-4, atol=1e-5)


def test_the_papers_alexnet_loads_pytorch_weights_with_groups_and_normalisation():
    """The paper's AlexNet written in PyTorch (Conv2d groups=2, LocalResponseNorm(5, 5e-4, 0.75, 2)):
    its grouped kernels (out, in / groups, kh, kw) load and give its logits."""
    layout = [("conv", "features.0", 4, 0), ("relu",), ("lrn", 5, 5e-4, 0.75, 2.0), ("maxpool", 3, 2),
              ("conv", "features.4", 1, 2, 2), ("relu",), ("lrn", 5, 5e-4, 0.75, 2.0), ("maxpool", 3, 2),
              ("conv", "features.8", 1, 1), ("relu",), ("conv", "features.10", 1, 1, 2), ("relu",),
              ("conv", "features.12", 1, 1, 2), ("relu",), ("maxpool", 3, 2), ("flatten",),
              ("linear", "classifier.1"), ("relu",), ("linear", "classifier.4"), ("relu",), ("linear", "classifier.6")]
    shapes = [(96, 3, 11, 11), (256, 48, 5, 5), (384, 256, 3, 3), (384, 192, 3, 3), (256, 192, 3, 3),
              (4096, 9216), (4096, 4096), (10, 4096)]
    state = _random_state(layout, shapes, np.random.default_rng(2))
    model = models.alexnet(variant="paper", num_classes=10, rngs=nnx.Rngs(0))
    models.load_torch_weights(model, state)
    model.eval()
    x = np.random.default_rng(3).uniform(size=(2, 3, 227, 227)).astype(np.float32) * 4  # LRN's sums matter
    np.testing.assert_allclose(model(jnp.moveaxis(x, 1, -1)), _torch_forward(layout, state, x), rtol=1e-4, atol=1e-5)


def test_pytorch_weights_errors():
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.Conv(3, 6, 3, rngs=rngs), nn.Flatten(), nn.Dense(6 * 4 * 4, 2, rngs=rngs))
    state = {"0.weight": np.ones((6, 3, 3, 3)), "0.bias": np.ones(6), "2.weight": np.ones((2, 96)),
             "2.bias": np.ones(2)}
    before = np.asarray(model.layers[0].kernel[...]).copy()
    with pytest.raises(ValueError, match=re.escape("`state_dict` holds 1 modules with weights (0) but the model has 2 "
                                                   "layers with weights (conv, dense)")):
        models.load_torch_weights(model, {k: v for k, v in state.items() if k.startswith("0.")}, input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match=re.escape("`state_dict`'s 2.weight of shape (2, 95) does not fit the dense "
                                                   "layer's kernel (96, 2) (as PyTorch's layout: (2, 96))")):
        models.load_torch_weights(model, {**state, "2.weight": np.ones((2, 95))}, input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match=re.escape("holds batch-norm statistics ('1.running_mean')")):
        models.load_torch_weights(model, {**state, "1.running_mean": np.zeros(6)}, input_shape=(6, 6, 3))
    np.testing.assert_array_equal(model.layers[0].kernel[...], before)  # nothing half-loaded


def test_equinox_weights_give_equinoxs_outputs():
    """Equinox's "CNN on MNIST" tutorial network (channels first, MaxPool2d of stride 1, jnp.ravel),
    and the same network in cnnjax (both as experiments/ports.py builds them): its weights loaded
    with load_equinox_weights, the same log-probabilities."""
    ports = load("experiments", "ports")
    original = ports.equinox_cnn(jax.random.key(0))
    ported = ports.equinox_port(original)  # nn.Sequential, filled by models.load_equinox_weights
    x = np.random.default_rng(0).uniform(size=(4, 1, 28, 28)).astype(np.float32)  # Equinox's (C, H, W) examples
    want = jax.vmap(original)(jnp.asarray(x))
    got = jax.nn.log_softmax(ported(jnp.moveaxis(x, 1, -1)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match=re.escape("`eqx_model` holds no equinox.nn.Conv or Linear layer")):
        models.load_equinox_weights(ported, [jax.nn.relu], input_shape=(28, 28, 1))
