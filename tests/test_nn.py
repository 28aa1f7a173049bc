"""cnnjax.nn layers: each is its pure function plus parameters, with Keras' defaults."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import cnnjax
from cnnjax import models, nn


@pytest.mark.slow
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
@pytest.mark.slow
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


class _Unhashable:
    """An initializer object that cannot key a cache (eq without hash)."""

    __hash__ = None

    def __call__(self, key, shape, dtype):
        return jax.random.normal(key, shape, dtype) * 0.1


@pytest.mark.parametrize("init", [nn.default_kernel_init, jax.nn.initializers.he_normal(),
                                  jax.nn.initializers.truncated_normal(0.02), _Unhashable()],
                         ids=["glorot_uniform", "he_normal", "truncated_normal", "unhashable"])
@pytest.mark.slow
def test_layers_draw_exactly_what_their_initializer_draws(init):
    """The weights equal the initializer called with the layer's keys (nnx.Rngs(0): the
    first key for the kernel, the next for the bias), built again (a cached program) or
    inside a jitted constructor (there XLA may fold the initializer's constants: 1e-6),
    and an abstract build has their shapes."""
    rngs, bias_init = nnx.Rngs(0), jax.nn.initializers.normal(0.5)
    want_kernel = init(rngs.params(), (3, 3, 2, 5), jnp.float32)
    want_bias = bias_init(rngs.params(), (5,), jnp.float32)
    make = lambda: nn.Conv(2, 5, 3, kernel_init=init, bias_init=bias_init, rngs=nnx.Rngs(0))
    for layer in (make(), make()):
        np.testing.assert_array_equal(layer.kernel[...], want_kernel)
        np.testing.assert_array_equal(layer.bias[...], want_bias)
    traced = nnx.jit(make)()
    np.testing.assert_allclose(traced.kernel[...], want_kernel, rtol=1e-6)
    np.testing.assert_allclose(traced.bias[...], want_bias, rtol=1e-6)
    assert nnx.eval_shape(make).kernel.get_raw_value().shape == (3, 3, 2, 5)


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


def test_capture_leaves_the_model_unchanged_and_returns_its_own_layers():
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.Conv(1, 2, 3, rngs=rngs), nn.BatchNorm(2, rngs=rngs), nn.Flatten())
    model.train()  # BatchNorm would update its running mean
    x = jnp.arange(50.0).reshape(2, 5, 5, 1)
    y, calls = nn.capture(model, x)
    np.testing.assert_array_equal(model[1].mean[...], np.zeros(2))
    assert [c.layer for c in calls] == [model[0], model[1], model[2]] and calls[1].layer is model[1]
    np.testing.assert_allclose(y, model(x), rtol=1e-6)  # the plain call, which does update the mean
    assert np.abs(model[1].mean[...]).sum() > 0
    _, shapes = nn.capture(model, jax.ShapeDtypeStruct((4, 5, 5, 1), jnp.float32))
    assert [c.output.shape for c in shapes] == [(4, 3, 3, 2), (4, 3, 3, 2), (4, 18)]
    assert [c.input.shape for c in shapes][0] == (4, 5, 5, 1)


def test_capture_of_a_plain_function():
    rngs = nnx.Rngs(0)
    conv, pool = nn.Conv(1, 2, 3, rngs=rngs), nn.MaxPool()
    y, calls = nn.capture(lambda x: pool(conv(x)), jnp.ones((1, 6, 6, 1)))
    assert [c.name for c in calls] == ["conv", "max_pool"] and calls[0].layer is conv
    np.testing.assert_array_equal(calls[1].output, y)


@pytest.mark.parametrize("make, error, message", [
    (lambda r: nn.Conv(0, 2, 3, rngs=r), ValueError, "`in_features` must be positive, got 0"),
    (lambda r: nn.Conv(1, 2.0, 3, rngs=r), TypeError, "`out_features` must be an int, got 2.0"),
    (lambda r: nn.Conv(1, 2, "3", rngs=r), TypeError, "`kernel_size` must be an int or a sequence of ints, got '3'"),
    (lambda r: nn.Conv(1, 2, (3, 0), rngs=r), ValueError, "`kernel_size` must be positive, got (3, 0)"),
    (lambda r: nn.Conv(1, 2, 3, padding="full", rngs=r), ValueError, "`padding` must be 'VALID', 'SAME'"),
    (lambda r: nn.Conv(1, 2, 3, activation="tanh", rngs=r), ValueError, "`activation` must be None, a callable, or one of"),
    (lambda r: nn.Dense(3, -1, rngs=r), ValueError, "`out_features` must be positive, got -1"),
    (lambda r: nn.Dense(8, 4, rngs=None), TypeError, "`rngs` must be an nnx.Rngs for the initialisers, e.g. "
                                                      "rngs=nnx.Rngs(0), got None"),
    (lambda r: nn.Conv(1, 2, 3, rngs=0), TypeError, "`rngs` must be an nnx.Rngs for the initialisers"),
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


def modern_cnn(rngs):
    """A small modern CNN written from cnnjax.nn alone."""
    return nn.Sequential(
        nn.Conv(1, 8, 3, padding="SAME", use_bias=False, rngs=rngs), nn.BatchNorm(8, rngs=rngs), nn.ReLU(),
        nn.Conv(8, 8, 3, groups=8, rngs=rngs), nn.Conv(8, 16, 1, rngs=rngs),  # depthwise-separable
        nn.AvgPool(2), nn.Dropout(0.5, rngs=rngs), nn.ConvTranspose(16, 4, 2, stride=2, rngs=rngs),
        nn.GlobalMaxPool(), nn.Dense(4, 3, rngs=rngs))


def test_a_modern_cnn_from_cnnjax_nn_alone_and_its_summary():
    """Parameter counts as Keras counts them (hand-computed): BatchNorm 4 * C, 2 * C non-trainable;
    a depthwise 3x3 conv 9 * C + C; a transposed conv window * C_out * C_in + C_out."""
    model = modern_cnn(nnx.Rngs(0, dropout=1))
    table = cnnjax.summary(model, (12, 12, 1))
    rows = [(r.name, r.type, r.output_shape, r.params) for r in table.rows]
    assert rows == [
        ("conv", "Conv", (None, 12, 12, 8), 72),
        ("batch_norm", "BatchNorm", (None, 12, 12, 8), 32),
        ("re_lu", "ReLU", (None, 12, 12, 8), 0),
        ("conv_1", "Conv", (None, 10, 10, 8), 9 * 8 + 8),
        ("conv_2", "Conv", (None, 10, 10, 16), 8 * 16 + 16),
        ("avg_pool", "AvgPool", (None, 5, 5, 16), 0),
        ("dropout", "Dropout", (None, 5, 5, 16), 0),
        ("conv_transpose", "ConvTranspose", (None, 10, 10, 4), 2 * 2 * 4 * 16 + 4),
        ("global_max_pool", "GlobalMaxPool", (None, 4), 0),
        ("dense", "Dense", (None, 3), 15),
    ]
    assert table.non_trainable_params == 16 and table.total_params == sum(r[3] for r in rows)


@pytest.mark.slow
def test_new_layers_are_their_pure_functions():
    rngs = nnx.Rngs(0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 4)), jnp.float32)
    conv = nn.Conv(4, 8, 3, groups=2, rngs=rngs)
    chex.assert_shape(conv.kernel[...], (3, 3, 2, 8))
    np.testing.assert_array_equal(conv(x), cnnjax.conv(x, conv.kernel[...], conv.bias[...], groups=2))
    up = nn.ConvTranspose(4, 6, 3, stride=2, output_padding=1, groups=2, rngs=rngs)
    chex.assert_shape(up.kernel[...], (3, 3, 3, 4))
    np.testing.assert_array_equal(up(x), cnnjax.conv_transpose(x, up.kernel[...], up.bias[...], stride=2,
                                                               output_padding=1, groups=2))
    np.testing.assert_array_equal(nn.AvgPool(3, 2, padding=1, count_include_pad=False)(x),
                                  cnnjax.avgpool(x, 3, 2, padding=1, count_include_pad=False))
    np.testing.assert_array_equal(nn.GlobalAvgPool()(x), cnnjax.global_avgpool(x))
    assert isinstance(nn.BatchNorm(4, rngs=rngs), nnx.BatchNorm) and isinstance(nn.Dropout(0.1), nnx.Dropout)


@pytest.mark.slow
def test_a_modern_cnn_trains_with_fit_and_keeps_its_mode():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(48, 12, 12, 1)).astype(np.float32)
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3))).astype(np.int32)
    model = modern_cnn(nnx.Rngs(0, dropout=1))
    h = cnnjax.train.fit(model, (x, y), epochs=2, batch_size=16, validation=(x, y), verbose=0)
    assert np.all(np.isfinite(h.history["loss"])) and model.layers[6].deterministic is False


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.Conv(4, 6, 3, groups=4, rngs=nnx.Rngs(0)), ValueError, "`groups`=4 must divide `in_features`=4 and `out_features`=6"),
    (lambda: nn.ConvTranspose(3, 4, 3, groups=2, rngs=nnx.Rngs(0)), ValueError, "`groups`=2 must divide `in_features`=3"),
    (lambda: nn.AvgPool(2, count_include_pad="no"), TypeError, "`count_include_pad` must be None or a bool, got 'no'"),
    (lambda: nn.GlobalMaxPool(spatial_dims=0), ValueError, "`spatial_dims` must be positive, got 0"),
])
def test_new_layer_errors(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make()


def _layers_of_rank(n, rngs):
    """One of every cnnjax.nn layer with ``n`` spatial dims, each with the input channels it takes."""
    k = (3,) * n
    window = 2 if n == 2 else (2,) * n  # an int window is the 2-D one
    norm = nn.BatchNorm(3, rngs=rngs)
    norm.mean[...], norm.var[...] = jnp.array([0.1, -0.2, 0.3]), jnp.array([1.5, 0.5, 2.0])
    return [
        nn.Conv(3, 4, k, padding="SAME", activation="relu", rngs=rngs),
        nn.Conv(3, 6, k, stride=2, dilation=1, groups=3, rngs=rngs),
        nn.ConvTranspose(3, 4, k, stride=2, output_padding=1, rngs=rngs),
        nn.MaxPool(window, ceil_mode=True),
        nn.MaxPool((3,) * n, 1, padding=1),
        nn.AvgPool(window, padding="SAME", count_include_pad=True),
        nn.AvgPool((3,) * n, 2, padding=1, count_include_pad=False),
        nn.AdaptiveAvgPool(3 if n == 2 else (3,) * n),
        nn.AdaptiveMaxPool((2,) * n),
        nn.GlobalAvgPool(spatial_dims=n),
        nn.GlobalMaxPool(spatial_dims=n),
        nn.Flatten(spatial_dims=n),
        nn.ReLU(),
        nn.LocalResponseNorm(3, alpha=1.0),
        nn.Dense(3, 5, activation="relu", rngs=rngs),
        norm,
        nn.Dropout(0.5, rngs=rngs),
    ]


@pytest.mark.parametrize("lowering_name", ["reference", "patches", "auto"])
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.slow
def test_every_layer_gives_under_vmap_over_examples_what_the_batch_gives(n, lowering_name):
    """Per-example transforms (``jax.vmap`` of a layer, or of its gradient, over single examples)
    give the batched call's outputs and each example's own gradient, in evaluation mode."""
    rngs = nnx.Rngs(0, dropout=1)
    xs = jnp.asarray(np.random.default_rng(n).normal(size=(3, *(5,) * n, 3)), jnp.float32)
    layers = _layers_of_rank(n, rngs)
    for layer in layers:
        layer.eval()

    @jax.jit  # one program for every layer: the suite runs on 2 cores
    def run(xs):
        out = []
        for layer in layers:
            loss = lambda e, layer=layer: jnp.sum(jnp.sin(layer(e)))
            alone = jax.lax.map(jax.grad(lambda e, loss=loss: loss(e[None])), xs)
            out.append((layer(xs), jax.vmap(layer)(xs), jax.vmap(jax.grad(loss))(xs), alone))
        return out

    with cnnjax.lowering.use(conv=lowering_name, maxpool=lowering_name, avgpool=lowering_name):
        results = run(xs)
    for layer, (batched, per_example, grads, alone) in zip(layers, results, strict=True):
        name = type(layer).__name__
        chex.assert_shape(per_example, batched.shape)
        np.testing.assert_allclose(per_example, batched, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(grads, alone, rtol=1e-5, atol=1e-6, err_msg=name)
        assert np.abs(np.asarray(grads)).sum() > 0, name


def test_a_layer_reads_an_input_of_its_rank_plus_one_as_one_example():
    """An int window is 2-D: one (25, 25, 3) image pools as an image, not as 25 signals."""
    image = jnp.ones((25, 25, 3))
    chex.assert_shape(nn.MaxPool(2, stride=1)(image), (24, 24, 3))
    chex.assert_shape(nn.AvgPool(2)(image), (12, 12, 3))
    chex.assert_shape(nn.Flatten()(jnp.ones((7, 7, 64))), (3136,))
    chex.assert_shape(nn.GlobalAvgPool()(image), (3,))
    chex.assert_shape(nn.MaxPool((2,))(jnp.ones((4, 10, 3))), (4, 5, 3))  # a 1-D batch


@pytest.mark.parametrize("layer, shape, message", [
    (lambda: nn.MaxPool(2), (4, 10, 3, 2, 1), "with 2 spatial dims to match `window`=(2, 2), got shape (4, 10, 3, 2, 1)"),
    (lambda: nn.Flatten(), (4, 10), "with 2 spatial dims (`spatial_dims`=2), got shape (4, 10)"),
    (lambda: nn.GlobalMaxPool(spatial_dims=1), (2, 4, 4, 3), "with 1 spatial dims (`spatial_dims`=1), got shape (2, 4, 4, 3)"),
])
def test_an_input_of_neither_rank_is_refused(layer, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        layer()(jnp.ones(shape))


def test_layer_ranks_are_checked_when_built():
    with pytest.raises(ValueError, match=re.escape("`stride` must be an int or a sequence of 2 ints (one per spatial dimension), got (1,)")):
        nn.MaxPool(2, (1,))
    with pytest.raises(TypeError, match=re.escape("`spatial_dims` must be an int, got None")):
        nn.Flatten(spatial_dims=None)


@pytest.mark.slow
def test_an_error_inside_a_model_names_the_layer_and_the_shapes_that_led_there():
    rngs = nnx.Rngs(0)
    model = nn.Sequential(nn.Conv(1, 4, 3, padding="SAME", activation="relu", rngs=rngs), nn.MaxPool(2),
                          nn.Conv(4, 8, 3, rngs=rngs), nn.Flatten(), nn.Dense(8 * 7 * 7, 2, rngs=rngs))
    with pytest.raises(ValueError, match=re.escape(
            "`x` must have shape (..., 392) to match `kernel` of shape (392, 2), got (1, 128). [in layer dense (Dense, "
            "layers[4]) of the Sequential; shapes on the way: input (1, 12, 12, 1) -> conv (1, 12, 12, 4) -> max_pool "
            "(1, 6, 6, 4) -> conv_1 (1, 4, 4, 8) -> flatten (1, 128)]")):
        model(jnp.zeros((1, 12, 12, 1)))  # a 12x12 input where the model was sized for 18x18
    outer = nn.Sequential(nn.ReLU(), model)
    with pytest.raises(ValueError, match=re.escape("got (1, 128). [in layer dense (Dense, layers[4]) of the "
                                                   "Sequential; shapes on the way: input (1, 12, 12, 1) ->")):
        outer(jnp.zeros((1, 12, 12, 1)))  # the innermost Sequential names it
    functional = models.mnist_functional(rngs=rngs)
    with pytest.raises(ValueError, match=re.escape("got (2, 2048). [in a Dense layer given shape (2, 2048)]")):
        functional(jnp.zeros((2, 30, 30, 1)))
    with pytest.raises(TypeError, match=re.escape("[in a MaxPool layer given shape (1, 4, 4, 1)]")):
        nn.MaxPool(2)(jnp.zeros((1, 4, 4, 1), jnp.complex64))
