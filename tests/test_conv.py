"""cnnjax.conv against a NumPy loop reference, gradients, dtypes, transforms and errors."""

import re

import chex
import jax
import jax.numpy as jnp
import jax.test_util as jtu
import numpy as np
import numpy_reference as ref
import pytest
from helpers import conv_configs, make
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnjax

pytestmark = pytest.mark.usefixtures("each_lowering")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(), normalize=st.booleans())
@pytest.mark.slow
def test_matches_numpy_reference(cfg, normalize):
    x, k, b = make(cfg)
    got = cnnjax.conv(x, k, b, stride=cfg["stride"], padding=cfg["padding"],
                      dilation=cfg["dilation"], normalize=normalize)
    want = ref.conv(x, k, cfg["stride"], cfg["pads"], cfg["dilation"])
    if normalize:
        want = want / (np.prod(cfg["window"]) * cfg["c_in"])
    want = want + b
    chex.assert_shape(got, want.shape)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_same_gives_ceil_of_size_over_stride():
    x = jnp.zeros((1, 7, 8, 10, 1))
    k = jnp.zeros((3, 2, 4, 1, 2))
    chex.assert_shape(cnnjax.conv(x, k, padding="SAME", stride=(2, 3, 4)), (1, 4, 3, 3, 2))


def test_no_kernel_flip():
    """Cross-correlation, as every framework: a one-hot kernel shifts, it does not mirror."""
    x = jnp.arange(5.0).reshape(1, 5, 1)
    k = jnp.array([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    np.testing.assert_array_equal(cnnjax.conv(x, k)[0, :, 0], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.slow
def test_gradients(normalize):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2, 6, 5, 2)))
        k = jnp.asarray(rng.standard_normal((3, 2, 2, 3)))
        b = jnp.asarray(rng.standard_normal((3,)))
        f = lambda x, k, b: cnnjax.conv(x, k, b, stride=(2, 1), padding=[(1, 0), (0, 2)],
                                        dilation=(1, 2), normalize=normalize)
        jtu.check_grads(f, (x, k, b), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_jit_and_eager_agree(transform):
    x, k, b = make(dict(batch=2, sizes=(6, 6), c_in=2, window=(3, 3), c_out=4, seed=1))
    conv = transform(lambda x, k, b: cnnjax.conv(x, k, b, padding="same", stride=2))
    want = ref.conv(x, k, (2, 2), ((0, 1), (0, 1)), (1, 1)) + b
    np.testing.assert_allclose(np.asarray(conv(x, k, b)), want, rtol=1e-5, atol=1e-5)


def test_vmap_over_a_leading_axis():
    x, k, _ = make(dict(batch=3, sizes=(5, 5), c_in=1, window=(2, 2), c_out=2, seed=2))
    xs = np.stack([x, x * 2])
    got = jax.vmap(lambda x: cnnjax.conv(x, k))(xs)
    # a batch of 2 is a different matmul than a batch of 1: the sums may round differently
    np.testing.assert_allclose(np.asarray(got[1]), 2 * np.asarray(cnnjax.conv(x, k)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.slow
def test_keeps_dtype(dtype):
    x = jnp.ones((1, 4, 4, 2), dtype)
    k = jnp.ones((3, 3, 2, 1), dtype)
    y = cnnjax.conv(x, k, jnp.ones((1,), dtype), normalize=True)
    assert y.dtype == dtype
    np.testing.assert_array_equal(np.asarray(y, np.float32), 2.0)


def test_empty_batch():
    chex.assert_shape(cnnjax.conv(jnp.zeros((0, 5, 5, 1)), jnp.zeros((3, 3, 1, 4))), (0, 3, 3, 4))


X = np.zeros((1, 5, 5, 2), np.float32)
K = np.zeros((3, 3, 2, 4), np.float32)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(x=X[0, 0]), ValueError, "`x` must have rank 4 with layout (N, S0, S1, C_in) (or one example without N)"),
        (dict(kernel=K[0]), ValueError, "`x` must have rank 3"),
        (dict(kernel=K[..., 0]), ValueError, "`x` must have rank 3"),
        (dict(kernel=np.zeros((3, 4))), ValueError, "`kernel` must have rank >= 3"),
        (dict(kernel=np.zeros((3, 3, 3, 4), np.float32)), ValueError, "`x` has 2 input channels"),
        (dict(bias=np.zeros(3, np.float32)), ValueError, "`bias` must have shape (4,) to match C_out=4"),
        (dict(stride=0), ValueError, "`stride` must be positive, got 0"),
        (dict(stride=(1, -1)), ValueError, "`stride` must be positive, got (1, -1)"),
        (dict(stride=(1, 1, 1)), ValueError, "`stride` must be an int or a sequence of 2 ints"),
        (dict(stride=1.5), TypeError, "`stride` must be an int or a sequence of 2 ints, got 1.5"),
        (dict(dilation=0), ValueError, "`dilation` must be positive, got 0"),
        (dict(padding="full"), ValueError, "`padding` must be 'VALID', 'SAME', an int, or 2 (low, high) pairs, got 'full'"),
        (dict(padding=-1), ValueError, "`padding` must be non-negative, got -1"),
        (dict(padding=[(1, 1)]), ValueError, "`padding` must give one entry per spatial dimension (2)"),
        (dict(padding=[(1, 1, 1), (0, 0)]), TypeError, "`padding` entries must be ints or (low, high) pairs"),
        (dict(kernel=np.zeros((6, 3, 2, 4), np.float32)), ValueError, "output size would be zero or negative: spatial dim 0 has size 5"),
        (dict(dilation=3), ValueError, "output size would be zero or negative"),
        (dict(kernel=K.astype(np.int32)), TypeError, "`kernel` must have a floating-point dtype"),
        (dict(x=X.astype(np.uint8)), TypeError, "`x` must have a floating-point dtype"),
        (dict(bias=np.zeros(4, np.int32)), TypeError, "`bias` must have a floating-point dtype"),
        (dict(normalize=1), TypeError, "`normalize` must be a bool, got 1"),
        (dict(x="image"), TypeError, "`x` must be an array, got str"),
        (dict(x=None), TypeError, "`x` must be an array, got NoneType: None"),
        (dict(kernel={"w": 1}), TypeError, "`kernel` must be an array, got dict"),
        (dict(x=X[..., :0], kernel=K[:, :, :0]), ValueError,
         "`kernel` must have a non-empty window and channels, got shape (3, 3, 0, 4)"),
    ],
)
def test_errors_name_the_argument(kwargs, error, message):
    args = dict(x=X, kernel=K, bias=None)
    args.update(kwargs)
    x, kernel, bias = args.pop("x"), args.pop("kernel"), args.pop("bias")
    with pytest.raises(error, match=re.escape(message)):
        cnnjax.conv(x, kernel, bias, **args)


def test_padding_pads_more_than_a_zero_size_window():
    """A window that fits only because of padding is accepted (size 2 + 1 + 1 >= 3)."""
    chex.assert_shape(cnnjax.conv(jnp.ones((1, 2, 1)), jnp.ones((3, 1, 1)), padding=1), (1, 2, 1))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(), groups=st.sampled_from([1, 2, 3]), depthwise=st.booleans())
@pytest.mark.slow
def test_grouped_and_depthwise_match_numpy_reference(cfg, groups, depthwise):
    c_in = groups * cfg["c_in"]
    c_out = c_in if depthwise else groups * cfg["c_out"]
    groups = c_in if depthwise else groups
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal((cfg["batch"], *cfg["sizes"], c_in)).astype(np.float32)
    k = rng.standard_normal((*cfg["window"], c_in // groups, c_out)).astype(np.float32)
    got = cnnjax.conv(x, k, stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=groups)
    want = ref.grouped_conv(x, k, cfg["stride"], cfg["pads"], cfg["dilation"], groups)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n, stride, padding, output_padding, dilation, groups", [
    (1, 2, 1, 1, 1, 1),
    (2, (2, 1), ((1, 0), (0, 2)), (1, 0), 1, 2),
    (2, 3, 0, 2, 2, 1),
    (3, 2, 1, 0, 1, 1),
    (1, 1, 0, 1, 2, 1),  # output_padding below the dilation, not the stride (PyTorch's rule)
    (2, 2, 1, 2, 3, 1),
])
@pytest.mark.slow
def test_conv_transpose_is_the_scatter_and_the_input_gradient_of_conv(n, stride, padding, output_padding,
                                                                       dilation, groups):
    rng = np.random.default_rng(n)
    c_in, c_out = 2 * groups, 3 * groups
    x = rng.standard_normal((2, *(3,) * n, c_in)).astype(np.float32)
    k = rng.standard_normal((*(3,) * n, c_out // groups, c_in)).astype(np.float32)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = cnnjax.conv_transpose(x, k, output_padding=output_padding, **kw)
    tup = lambda v: (v,) * n if isinstance(v, int) else tuple(v)
    pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in (tup(padding) if isinstance(padding, int)
                                                                        else padding))
    want = ref.conv_transpose(x, k, tup(stride), pads, tup(output_padding), tup(dilation), groups)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-4)
    if all(op < s for op, s in zip(tup(output_padding), tup(stride), strict=True)):
        # the vector-Jacobian product of the convolution with the same kernel
        _, vjp = jax.vjp(lambda z: cnnjax.conv(z, k, **kw), jnp.zeros(y.shape, jnp.float32))
        np.testing.assert_allclose(np.asarray(vjp(x)[0]), np.asarray(y), rtol=1e-5, atol=1e-5)


def test_conv_transpose_output_padding_below_the_dilation_gives_pytorchs_values():
    """torch.nn.functional.conv_transpose1d(ones(1, 1, 4), ones(1, 1, 3), dilation=2, output_padding=1)."""
    y = cnnjax.conv_transpose(jnp.ones((1, 4, 1)), jnp.ones((3, 1, 1)), dilation=2, output_padding=1)
    np.testing.assert_array_equal(y[0, :, 0], [1, 1, 2, 2, 2, 2, 1, 1, 0])


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
@pytest.mark.slow
def test_an_example_alone_convolves_as_inside_its_batch(n, op):
    """jax.vmap over single examples gives what the batched call gives (the kernel fixes the rank)."""
    rng = np.random.default_rng(n)
    xs = rng.standard_normal((3, *(5,) * n, 2)).astype(np.float32)
    k = rng.standard_normal((*(3,) * n, 2, 4)).astype(np.float32)
    f = (lambda x: cnnjax.conv(x, k, stride=2, padding=1)) if op == "conv" else (
        lambda x: cnnjax.conv_transpose(x, k[..., :2], stride=2, padding=1))
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(xs)), np.asarray(f(xs)), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_per_example_gradients_with_vmap_grad():
    """The README's snippet: vmap(grad) over single examples equals one gradient per example."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, 6, 6, 1)).astype(np.float32)
    k = rng.standard_normal((3, 3, 1, 2)).astype(np.float32)
    loss = lambda k, x: jnp.sum(cnnjax.maxpool(cnnjax.relu(cnnjax.conv(x, k)), (2, 2)) ** 2)
    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0))(k, xs)
    for i in range(4):
        np.testing.assert_allclose(per_example[i], jax.grad(loss)(k, xs[i]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call, error, message", [
    (lambda: cnnjax.conv(X, K[..., :1, :], groups=3), ValueError, "`groups`=3 must divide the 2 input channels"),
    (lambda: cnnjax.conv(X, K, groups=2), ValueError,
     "`x` has 2 input channels (last axis of shape (1, 5, 5, 2)) but `kernel` expects 4 = 2 per group x groups=2"),
    (lambda: cnnjax.conv(X, K, groups=0), ValueError, "`groups` must be positive, got 0"),
    (lambda: cnnjax.conv_transpose(X, K), ValueError, "`x` has 2 input channels but `kernel` (3, 3, 2, 4) expects 4"),
    (lambda: cnnjax.conv_transpose(X, K[..., :2], stride=2, output_padding=2), ValueError,
     "`output_padding` must be smaller than `stride` or `dilation` in every dimension (PyTorch's rule), got 2 >= "
     "max(2, 1) in dimension 0"),
    (lambda: cnnjax.conv_transpose(X, K[..., :2], padding="same"), ValueError, "`padding` 'SAME' is ambiguous"),
    (lambda: cnnjax.conv_transpose(X, K[..., :2], padding=4), ValueError, "output size would be zero or negative"),
    (lambda: cnnjax.conv_transpose(X, K[..., :2], output_padding=-1), ValueError, "`output_padding` must be non-negative"),
])
def test_new_argument_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_channels_first_input_is_named_with_the_shape_given_and_the_axis_to_move():
    kernel = jnp.zeros((3, 3, 1, 32))
    with pytest.raises(ValueError, match=re.escape(
            "`x` has 28 input channels (last axis of shape (8, 1, 28, 28)) but `kernel` expects 1 (axis -2 of shape "
            "(3, 3, 1, 32)); it looks channels-first (PyTorch's NCHW): cnnjax is channels-last (..., H, W, C), move "
            "the axis with `jnp.moveaxis(x, 1, -1)`.")):
        cnnjax.conv(jnp.zeros((8, 1, 28, 28)), kernel)
    with pytest.raises(ValueError, match=re.escape("(last axis of shape (3, 32, 32)) but `kernel` expects 3 (axis -2 of "
                                                   "shape (3, 3, 3, 8)); it looks channels-first")):
        cnnjax.conv(jnp.zeros((3, 32, 32)), jnp.zeros((3, 3, 3, 8)))  # one example: the shape as given
    with pytest.raises(ValueError, match=r"\(axis -2 of shape \(3, 3, 3, 8\)\)\.$"):  # no hint when it is not that
        cnnjax.conv(jnp.zeros((1, 32, 32, 5)), jnp.zeros((3, 3, 3, 8)))
