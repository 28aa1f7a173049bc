"""The one place that chooses how conv and maxpool lower to XLA, and the paths' equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import conv_configs, make, pool_configs
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnjax
from cnnjax import lowering, models

PATHS = [name for name in lowering.available("conv") if name != "reference"]
# winograd lowers 3x3 stride-1 convolutions only (its own tests are below); elsewhere it is auto
GENERAL_PATHS = [name for name in PATHS if name != "winograd"]


def test_registry_and_defaults():
    assert lowering.available("conv") == ("reference", "patches", "auto", "winograd")  # winograd: conv only
    for op in ("conv", "maxpool", "avgpool"):
        assert set(lowering.available(op)) - {"winograd"} == {"reference", "patches", "auto"}
        assert lowering.default(op, "cpu") == "auto"
        assert lowering.default(op, "gpu") == lowering.default(op, "tpu") == "reference"
        assert lowering.current(op) == lowering.default(op)


def test_override_is_scoped_nested_and_keys_the_jit_cache():
    f = jax.jit(lambda x: cnnjax.conv(x, jnp.ones((3, 3, 1, 1))))
    x = jnp.ones((1, 5, 5, 1))
    count = lambda: f.lower(x).as_text().count("convolution(")
    with lowering.use(conv="reference"):
        assert lowering.current("conv") == "reference" and count() == 1
        with lowering.use(conv="patches"):
            assert lowering.current("conv") == "patches" and count() == 0
        assert lowering.current("conv") == "reference" and count() == 1
    with lowering.use(conv="patches"):
        assert count() == 0


def test_lowerings_receive_normalised_arguments():
    calls = []
    original = lowering.get("conv", "gpu")
    lowering.register("conv", "spy", lambda *a: calls.append(a[2:]) or original(*a))
    try:
        with lowering.use(conv="spy"):
            cnnjax.conv(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), padding="same")
    finally:
        lowering.register("conv", "spy", None)
    assert calls == [((1, 1), ((1, 1), (1, 1)), (1, 1), 1)]  # stride, padding pairs, dilation, groups
    assert "spy" not in lowering.available("conv")
    with pytest.raises(ValueError, match="`name` 'patches' is a built-in lowering of 'conv'"):
        lowering.register("conv", "patches", original)


@pytest.mark.slow
def test_an_export_for_cpu_and_cuda_holds_each_platforms_lowering():
    """Of a training gradient, on any machine: the CUDA branch is the native convolution,
    the CPU branch the patches matmul, and running it here gives the jitted function's
    gradients."""
    model = cnnjax.models.mnist_functional(rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    f = jax.jit(jax.grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) ** 2)))
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype(np.float32)
    exported = jax.export.export(f, platforms=["cpu", "cuda"])(params, x)
    text = exported.mlir_module()
    assert exported.platforms == ("cpu", "cuda")
    assert "stablehlo.convolution" in text and "stablehlo.select_and_scatter" in text  # CUDA: cuDNN's forms
    assert "stablehlo.dot_general" in text and "stablehlo.case" in text  # CPU: patches, chosen by platform
    for got, want in zip(jax.tree.leaves(exported.call(params, x)), jax.tree.leaves(f(params, x)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    cpu_only = f.trace(params, x).lower(lowering_platforms=("cpu",))
    assert "stablehlo.convolution" not in cpu_only.as_text()  # lowered for one platform: its form only
    assert "conditional" not in f.lower(params, x).compile().as_text()  # for one platform the switch folds away


def _has_native_conv(fn, *args) -> bool:
    """Whether ``fn`` lowered for a CPU (from any machine) holds XLA's own convolution."""
    return "stablehlo.convolution" in jax.jit(fn).trace(*args).lower(lowering_platforms=("cpu",)).as_text()


def test_auto_runs_xla_forward_and_patches_derivatives():
    """The CPU default: a forward pass lowers to XLA's convolution; its gradient, JVP and
    second derivative to the patches matmuls (no convolution at all)."""
    x = jnp.ones((2, 12, 12, 2))
    k = jnp.ones((3, 3, 2, 4))
    f = lambda x, k: jnp.sum(cnnjax.maxpool(cnnjax.conv(x, k), 2) ** 2)
    assert lowering.current("conv", "cpu") == "auto"
    assert _has_native_conv(f, x, k)
    assert not _has_native_conv(jax.grad(f, argnums=(0, 1)), x, k)
    assert not _has_native_conv(lambda x, k: jax.jvp(lambda k: f(x, k), (k,), (k,)), x, k)
    assert not _has_native_conv(jax.hessian(lambda k: f(x, k)), k)


@pytest.mark.parametrize("x_shape, kernel_shape, stride, forms", [
    ((8, 28, 28, 1), (3, 3, 1, 32), 1, ("reference", "patches")),  # the lecture's conv1
    ((8, 5, 5, 64), (3, 3, 64, 128), 1, ("patches", "patches")),  # conv3: 3x3 = 9 output positions
    ((8, 16, 16, 16, 8), (3, 3, 3, 8, 16), 1, ("patches", "patches")),  # 3-D
    ((8, 4096, 16), (9, 16, 32), 1, ("reference", "reference")),  # 1-D
    ((8, 224, 224, 3), (11, 11, 3, 64), 4, ("reference", "reference")),  # 121 taps
    ((8, 112, 112, 3), (7, 7, 3, 64), 2, ("reference", "patches")),  # 49 taps
])
def test_auto_forms_by_shape(x_shape, kernel_shape, stride, forms):
    n = len(kernel_shape) - 2
    assert lowering.auto.conv_forms(x_shape, kernel_shape, (stride,) * n, ((0, 0),) * n, (1,) * n) == forms
    x, k = jnp.zeros(x_shape), jnp.zeros(kernel_shape)
    f = lambda x, k: jnp.sum(cnnjax.conv(x, k, stride=stride))
    assert _has_native_conv(f, x, k) == (forms[0] == "reference")
    assert _has_native_conv(jax.grad(f, argnums=1), x, k) == (forms[1] == "reference")


def test_auto_differentiates_only_what_varies():
    """A frozen kernel or constant input has a symbolic-zero tangent: the derivative form
    is run on the varying argument alone, and gradients match the reference's."""
    rng = np.random.default_rng(0)
    x, k = rng.standard_normal((2, 9, 9, 3)).astype(np.float32), rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    f = lambda x, k: jnp.sum(jnp.tanh(cnnjax.conv(x, k)))
    for argnums in (0, 1):
        g = jax.grad(f, argnums=argnums)
        np.testing.assert_allclose(on("auto", g, x, k), on("reference", g, x, k), rtol=1e-4, atol=1e-5)
    outer = lambda k: jnp.sum(jax.grad(f)(x, k) ** 2)  # d/dk of a gradient in x: a mixed second derivative
    np.testing.assert_allclose(on("auto", jax.grad(outer), k), on("reference", jax.grad(outer), k),
                               rtol=1e-4, atol=1e-4)


def test_runs_well_in_scan_reads_the_traced_program():
    """A training step whose CPU program holds XLA's convolution (the reference lowering,
    or flax's own nnx.Conv) is not scanned on a CPU; other platforms' branches do not count."""
    step = lambda conv: jax.make_jaxpr(jax.grad(lambda k: jnp.sum(conv(jnp.ones((2, 6, 6, 1)), k))))(
        jnp.ones((3, 3, 1, 2)))
    ours = step(cnnjax.conv)
    assert lowering.runs_well_in_scan(ours, "cpu") and lowering.runs_well_in_scan(ours, "gpu")
    with lowering.use(conv="reference"):
        native = step(cnnjax.conv)
    assert not lowering.runs_well_in_scan(native, "cpu") and lowering.runs_well_in_scan(native, "gpu")
    flax_conv = nnx.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0))
    traced = jax.make_jaxpr(jax.grad(lambda m, x: jnp.sum(m(x))))(flax_conv, jnp.ones((2, 6, 6, 1)))
    assert not lowering.runs_well_in_scan(traced, "cpu")


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="`op` must be one of"):
        lowering.available("dense")
    with pytest.raises(ValueError, match="`conv` lowering must be one of"):
        with lowering.use(conv="cudnn-magic"):
            pass


def on(path, fn, *args):
    ops = [op for op in ("conv", "maxpool", "avgpool") if path in lowering.available(op)]
    with lowering.use(**dict.fromkeys(ops, path)):
        return jax.jit(fn)(*args)


@pytest.mark.parametrize("path", GENERAL_PATHS)
@settings(max_examples=10, deadline=None)
@given(cfg=conv_configs(), normalize=st.booleans())
@pytest.mark.slow
def test_conv_paths_agree_values_and_gradients(path, cfg, normalize):
    x, k, b = make(cfg)
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], normalize=normalize)
    w = np.random.default_rng(cfg["seed"] + 1).standard_normal(
        jax.eval_shape(lambda: cnnjax.conv(x, k, b, **kw)).shape).astype(np.float32)
    f = lambda x, k, b: cnnjax.conv(x, k, b, **kw)
    loss = lambda x, k, b: jnp.sum(f(x, k, b) * w)
    grads = lambda x, k, b: jax.grad(loss, argnums=(0, 1, 2))(x, k, b)
    np.testing.assert_allclose(on(path, f, x, k, b), on("reference", f, x, k, b), rtol=1e-5, atol=1e-5)
    for got, want in zip(on(path, grads, x, k, b), on("reference", grads, x, k, b), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", GENERAL_PATHS)
@settings(max_examples=10, deadline=None)
@given(cfg=pool_configs())
@pytest.mark.slow
def test_maxpool_paths_agree_values_and_gradients(path, cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal((2, *cfg["sizes"], cfg["channels"])).astype(np.float32)
    x = np.round(x, 1)  # many ties: the gradient must go to the same (first) maximum
    kw = dict(padding=cfg["padding"], ceil_mode=cfg["ceil_mode"])
    f = lambda x: cnnjax.maxpool(x, cfg["window"], cfg["stride"], **kw)
    w = rng.standard_normal(jax.eval_shape(f, x).shape).astype(np.float32)
    g = lambda x: jax.grad(lambda x: jnp.sum(f(x) * w))(x)
    np.testing.assert_array_equal(on(path, f, x), on("reference", f, x))
    # an input that is the maximum of several overlapping windows sums their weights, in an
    # order that differs between paths (the last bit may differ); a tie routed elsewhere
    # would move a whole weight
    np.testing.assert_allclose(on(path, g, x), on("reference", g, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.slow
def test_a_training_step_agrees_across_paths(path):
    """Three RMSprop steps of the lecture's functional CNN give the same parameters."""
    model = models.mnist_functional(rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tx = optax.rmsprop(1e-3, decay=0.9, eps=1e-7, eps_in_sqrt=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 16, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, (3, 16)).astype(np.int32)

    def train(params):
        opt = tx.init(params)
        for i in range(3):
            loss = lambda p, xi=x[i], yi=y[i]: cnnjax.sparse_categorical_crossentropy(nnx.merge(graphdef, p)(xi), yi)
            grads = jax.grad(loss)(params)
            updates, opt = tx.update(grads, opt, params)
            params = optax.apply_updates(params, updates)
        return params

    got, want = on(path, train, params), on("reference", train, params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", GENERAL_PATHS)
@pytest.mark.slow
def test_hessians_of_the_lecture_model_agree_across_paths(path):
    """jax.hessian of the functional CNN's loss for one image: with respect to the image
    (784 x 784), and with respect to a 3x3x4x4 block of the second convolution's kernel (the whole
    kernel's Hessian, 18,432 squared, would not fit a unit test)."""
    model = models.mnist_functional(rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(1, 28, 28, 1)).astype(np.float32)
    y = np.array([3], np.int32)
    loss = lambda p, x: cnnjax.sparse_categorical_crossentropy(nnx.merge(graphdef, p)(x), y)

    def block_loss(params, x, block):
        p = jax.tree.map(lambda a: a, params)
        p["conv2"]["kernel"][...] = p["conv2"]["kernel"][...].at[:, :, :4, :4].set(block)
        return loss(p, x)

    def hessians(params, x, block):  # arguments, not constants: nothing for XLA to fold
        return jax.hessian(lambda x: loss(params, x))(x), jax.hessian(lambda b: block_loss(params, x, b))(block)

    block = params["conv2"]["kernel"][...][:, :, :4, :4]
    got, want = on(path, hessians, params, x, block), on("reference", hessians, params, x, block)
    for a, b in zip(got, want, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        scale = np.abs(b).max()
        assert scale > 0
        assert np.abs(a - b).max() <= 1e-4 * scale, (np.abs(a - b).max(), scale)


def test_patches_stacks_taps_in_concatenates_of_at_most_eight():
    """XLA:CPU fuses no concatenate of more than 8 operands; a 3x3 window (9 taps) or a
    window of 11 along one axis must still stack its taps in fusible groups."""
    import re

    for kernel_shape in [(3, 3, 2, 4), (11, 1, 2, 4), (2, 9, 1, 1)]:
        x = jnp.ones((1, 16, 12, kernel_shape[2]))
        k = jnp.ones(kernel_shape)
        with lowering.use(conv="patches", maxpool="patches"):
            text = jax.jit(lambda x, k: cnnjax.maxpool(cnnjax.conv(x, k), (3, 1))).lower(x, k).as_text()
        concats = re.findall(r"stablehlo\.concatenate ([^:]*) :", text)
        assert concats, kernel_shape
        assert max(len(c.split(",")) - 1 for c in concats) <= 8, kernel_shape  # one "dim = d" part


@pytest.mark.parametrize("path", GENERAL_PATHS)
@pytest.mark.slow
def test_long_windows_agree_across_paths(path):
    """Windows with more than 8 taps along an axis (grouped stacking) agree with the reference."""
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((2, 13, 12, 2)), 1).astype(np.float32)
    k = rng.standard_normal((11, 2, 2, 3)).astype(np.float32)
    f = lambda x, k: jnp.sum(cnnjax.maxpool(cnnjax.conv(x, k, padding="SAME"), (9, 1)) ** 2)
    g = jax.grad(f, argnums=(0, 1))
    np.testing.assert_allclose(on(path, f, x, k), on("reference", f, x, k), rtol=1e-5)
    for got, want in zip(on(path, g, x, k), on("reference", g, x, k), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", GENERAL_PATHS)
def test_maxpool_nan_and_minus_infinity_windows_agree(path):
    """A window holding a NaN pools to NaN; a window of -inf pools to -inf, on every path."""
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 0, 1, 0] = np.nan
    x[0, 2:, 2:, 0] = -np.inf
    f = lambda x: cnnjax.maxpool(x, 2)
    np.testing.assert_array_equal(on(path, f, x), on("reference", f, x))
    assert np.isnan(on(path, f, x)[0, 0, 0, 0]) and on(path, f, x)[0, 1, 1, 0] == -np.inf


def test_return_indices_are_chosen_at_the_seam_like_every_lowered_operation():
    """maxpool(return_indices=True) asks the seam for "maxpool_indices" (it used to call a
    private function of the patches lowering directly): a lowering registered for it and
    chosen with use() is what answers, with the arguments the built-in ones get."""
    seen = []

    def marked(x, window, stride, padding, dilation):
        seen.append((x.shape, window, stride, padding, dilation))
        return jnp.full((x.shape[0], 2, 2, x.shape[-1]), 7, jnp.int32)

    cnnjax.lowering.register("maxpool_indices", "marked", marked)
    try:
        x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        _, built_in = cnnjax.maxpool(x, 2, return_indices=True)
        with cnnjax.lowering.use(maxpool_indices="marked"):
            y, indices = cnnjax.maxpool(x, 2, return_indices=True)
    finally:
        cnnjax.lowering.register("maxpool_indices", "marked", None)
    assert built_in[0, :, :, 0].tolist() == [[5, 7], [13, 15]]  # each window's maximum, row-major in 4x4
    assert indices.tolist() == [[[[7], [7]], [[7], [7]]]] and y[0, :, :, 0].tolist() == [[5.0, 7.0], [13.0, 15.0]]
    assert seen == [((1, 4, 4, 1), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1))]
    assert cnnjax.lowering.available("maxpool_indices") == ("reference", "patches", "auto")


@pytest.mark.parametrize("x_shape, channels, padding", [
    ((2, 7, 9, 3), 4, ((0, 0), (0, 0))),  # odd output sizes: a last tile half used
    ((2, 8, 8, 3), 5, ((1, 1), (1, 1))),  # SAME
    ((1, 5, 6, 2), 3, ((2, 0), (0, 1))),  # asymmetric padding
    ((3, 28, 28, 1), 8, ((0, 0), (0, 0))),  # the lecture's first layer
    ((1, 3, 3, 2), 2, ((0, 0), (0, 0))),  # one output
])
def test_winograd_agrees_with_xla_values_and_both_gradients(x_shape, channels, padding):
    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal((3, 3, x_shape[-1], channels)).astype(np.float32)
    f = lambda x, k: cnnjax.conv(x, k, padding=padding)
    w = rng.standard_normal(jax.eval_shape(f, x, k).shape).astype(np.float32)
    grads = lambda x, k: jax.grad(lambda x, k: jnp.sum(f(x, k) * w), argnums=(0, 1))(x, k)
    with lowering.use(conv="winograd"):
        text = jax.jit(f).lower(x, k).as_text()
    assert "convolution(" not in text  # computed by the transforms and matmuls, not XLA's convolution
    np.testing.assert_allclose(on("winograd", f, x, k), on("reference", f, x, k), rtol=1e-5, atol=1e-5)
    for got, want in zip(on("winograd", grads, x, k), on("reference", grads, x, k), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_winograd_rounding_stays_within_its_bound():
    """Against a float64 loop: each output within 8 eps sum |x| |w| over its window (the
    transforms add up to four terms each way), on inputs whose products cancel."""
    from numpy_reference import conv as numpy_conv

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 10, 10, 16)) * np.exp(rng.uniform(-3, 3, (2, 10, 10, 16)))).astype(np.float32)
    k = rng.standard_normal((3, 3, 16, 8)).astype(np.float32)
    with lowering.use(conv="winograd"):
        got = np.asarray(jax.jit(cnnjax.conv)(x, k), np.float64)
    exact = numpy_conv(x, k, (1, 1), ((0, 0), (0, 0)), (1, 1))
    scale = numpy_conv(np.abs(x), np.abs(k), (1, 1), ((0, 0), (0, 0)), (1, 1))
    error = np.abs(got - exact) / scale
    assert error.max() <= 8 * np.finfo(np.float32).eps, error.max()


def test_winograd_leaves_other_convolutions_to_auto():
    x, k = jnp.ones((1, 20, 20, 2)), jnp.ones((3, 3, 2, 2))
    for kw in (dict(stride=2), dict(dilation=2), dict()):
        kernel = k if kw else jnp.ones((5, 5, 2, 2))
        with lowering.use(conv="winograd"):
            got = jax.jit(lambda x, kernel, kw=kw: cnnjax.conv(x, kernel, **kw)).lower(x, kernel).as_text()
        with lowering.use(conv="auto"):
            want = jax.jit(lambda x, kernel, kw=kw: cnnjax.conv(x, kernel, **kw)).lower(x, kernel).as_text()
        assert got == want and got.count("convolution(") == 1
