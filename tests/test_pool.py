"""cnnjax.maxpool against a NumPy loop reference (floor, ceil, SAME), gradients and errors."""

import math
import re

import chex
import jax
import jax.numpy as jnp
import jax.test_util as jtu
import numpy as np
import numpy_reference as ref
import pytest
from helpers import pool_configs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnjax

pytestmark = pytest.mark.usefixtures("each_lowering")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=pool_configs())
@pytest.mark.slow
def test_matches_numpy_reference(cfg):
    x = np.random.default_rng(cfg["seed"]).standard_normal((2, *cfg["sizes"], cfg["channels"]))
    x = x.astype(np.float32)
    got = cnnjax.maxpool(x, cfg["window"], cfg["stride"], padding=cfg["padding"],
                         ceil_mode=cfg["ceil_mode"])
    want = ref.maxpool(x, cfg["window"], cfg["strides"], cfg["pads"], cfg["ceil_mode"])
    chex.assert_shape(got, want.shape)
    np.testing.assert_array_equal(np.asarray(got), want.astype(np.float32))


@pytest.mark.parametrize(
    "size, window, stride, ceil_mode, expected",
    [
        (7, 2, None, True, 4),   # the lecture: ceiling of 7/2
        (7, 2, None, False, 3),  # Keras MaxPooling2D 'valid'
        (11, 2, None, False, 5),  # the lecture's Keras table: 11 -> 5
        (26, 2, None, False, 13),
        (6, 2, None, True, 3),   # nothing hangs over: ceil == floor
        (5, 3, 2, True, 2),
        (6, 3, 2, True, 3),      # last window starts at 4 < 6, covers 4..5
    ],
)
@pytest.mark.slow
def test_output_sizes(size, window, stride, ceil_mode, expected):
    y = cnnjax.maxpool(jnp.zeros((1, size, size, 1)), window, stride, ceil_mode=ceil_mode)
    chex.assert_shape(y, (1, expected, expected, 1))


def test_ceil_mode_drops_a_window_starting_in_the_padding():
    """PyTorch's rule: size 5, window 2, stride 2, pad 1 -> ceil((7-2)/2)+1 = 4, but the 4th
    window would start at padded index 6 = size + low, wholly in the high padding: 3."""
    y = cnnjax.maxpool(jnp.zeros((1, 5, 1)), 2, 2, padding=1, ceil_mode=True)
    chex.assert_shape(y, (1, 3, 1))


def test_same_gives_ceil_of_size_over_stride():
    chex.assert_shape(cnnjax.maxpool(jnp.zeros((1, 7, 9, 2)), 3, 2, padding="SAME"), (1, 4, 5, 2))


def test_stride_defaults_to_window():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(cnnjax.maxpool(x)[0, :, :, 0], [[5.0, 7.0], [13.0, 15.0]])
    np.testing.assert_array_equal(cnnjax.maxpool(x, 2, 1)[0, 0, :, 0], [5.0, 6.0, 7.0])


@pytest.mark.slow
def test_gradients():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.permutation(7 * 6 * 2).reshape(1, 7, 6, 2) / 10.0)  # no ties
        f = lambda x: cnnjax.maxpool(x, (2, 3), (2, 2), padding=[(1, 0), (0, 1)], ceil_mode=True)
        jtu.check_grads(f, (x,), order=1, modes=("fwd", "rev"), eps=1e-3)


@pytest.mark.parametrize("shape, window, stride", [
    ((1, 8, 3), (2,), (2,)),            # 1-D, windows tile the input
    ((1, 7, 3), (3,), (2,)),            # 1-D, overlapping
    ((1, 6, 5, 2), (2, 2), (2, 2)),     # 2-D, the lecture's pooling
    ((1, 6, 5, 2), (3, 2), (1, 2)),     # 2-D, overlapping in one dimension
    ((1, 4, 4, 4, 1), (2, 2, 2), (2, 2, 2)),  # 3-D
])
@pytest.mark.slow
def test_second_derivatives(shape, window, stride, each_lowering):
    """Forward-over-reverse, reverse-over-reverse and forward-over-forward, against finite differences.

    In float64, except XLA's max-pool on GPUs: its second derivative (JAX's
    select_and_gather_add) packs value and tangent into one 64-bit word, so float64 runs
    there at reduced precision (JAX warns) while float32 is exact; it is checked in float32.
    """
    rng = np.random.default_rng(0)
    x64 = not (each_lowering == "reference" and jax.default_backend() == "gpu")
    with jax.enable_x64(x64):
        x = jnp.asarray(rng.permutation(int(np.prod(shape))).reshape(shape) / 10.0)  # no ties
        f = lambda x: cnnjax.maxpool(x, window, stride) ** 3
        tolerance = dict(eps=1e-5) if x64 else dict(eps=1e-2, atol=1e-2, rtol=1e-2)  # finite differences in float32
        jtu.check_grads(f, (x,), order=2, modes=("fwd", "rev"), **tolerance)


@pytest.mark.slow
def test_second_derivatives_with_ties_route_to_the_first_maximum():
    """Tied windows: the Hessian of sum(maxpool(x)^3) is 6 * max on the first maximum's diagonal only."""
    x = jnp.array([[2.0, 2.0, 1.0, 3.0], [0.0, 2.0, 3.0, 3.0]]).reshape(1, 2, 4, 1)
    h = jax.hessian(lambda x: jnp.sum(cnnjax.maxpool(x, 2) ** 3))(x).reshape(8, 8)
    expected = np.zeros((8, 8))
    expected[0, 0] = 6 * 2.0  # window 1: the first 2.0 (row-major) wins
    expected[3, 3] = 6 * 3.0  # window 2: the first 3.0 (row 0, column 3) wins
    np.testing.assert_array_equal(np.asarray(h), expected)


def test_gradient_under_jit():
    """Under jit the gradient still goes to each window's maximum on every lowering (on the
    reference one, reduce_window must still be seen as a max once traced)."""
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    g = jax.jit(jax.grad(lambda x: cnnjax.maxpool(x, 2, ceil_mode=True).sum()))(x)
    np.testing.assert_array_equal(g[0, :, :, 0], [[0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [0, 1, 0, 1]])


@pytest.mark.slow
def test_gradient_goes_to_the_maximum():
    x = jnp.array([[0.1, 0.9], [0.3, 0.2]]).reshape(1, 2, 2, 1)
    g = jax.grad(lambda x: cnnjax.maxpool(x).sum())(x)
    np.testing.assert_array_equal(g[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_jit_and_eager_agree(transform):
    x = np.random.default_rng(3).standard_normal((2, 7, 7, 3)).astype(np.float32)
    got = transform(lambda x: cnnjax.maxpool(x, 2, ceil_mode=True))(x)
    np.testing.assert_array_equal(np.asarray(got), ref.maxpool(x, (2, 2), (2, 2), ((0, 0),) * 2, True))


def test_vmap():
    x = jnp.arange(2 * 16.0).reshape(2, 1, 4, 4, 1)
    got = jax.vmap(cnnjax.maxpool)(x)
    np.testing.assert_array_equal(got[1, 0, :, :, 0], [[21.0, 23.0], [29.0, 31.0]])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.int32, jnp.uint8])
@pytest.mark.slow
def test_keeps_dtype_and_padding_never_wins(dtype):
    x = jnp.array([[3, 1, 2]], dtype).reshape(1, 3, 1) - (0 if dtype == jnp.uint8 else 5)
    y = cnnjax.maxpool(x, 2, padding="SAME")
    assert y.dtype == dtype
    np.testing.assert_array_equal(np.asarray(y[0, :, 0]), np.asarray(x[0, [0, 2], 0]))


def test_empty_batch():
    chex.assert_shape(cnnjax.maxpool(jnp.zeros((0, 7, 7, 3)), 2, ceil_mode=True), (0, 4, 4, 3))


X = np.zeros((1, 7, 7, 2), np.float32)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(x=X[0, 0]), ValueError, "`x` must have rank >= 3 with layout (N, *spatial, C) for an int `window`"),
        (dict(window=0), ValueError, "`window` must be positive, got 0"),
        (dict(window=(2, 2, 2, 2, 2)), ValueError,
         "`x` must have shape (N, *spatial, C) or (*spatial, C) with 5 spatial dims to match `window`=(2, 2, 2, 2, 2)"),
        (dict(stride=-2), ValueError, "`stride` must be positive, got -2"),
        (dict(stride="2"), TypeError, "`stride` must be an int or a sequence of 2 ints, got '2'"),
        (dict(padding="ceil"), ValueError, "`padding` must be 'VALID', 'SAME', an int, or 2 (low, high) pairs, got 'ceil'"),
        (dict(window=8), ValueError, "output size would be zero or negative: spatial dim 0 has size 7 (padded 7) but the pooling window spans 8"),
        (dict(window=8, ceil_mode=True), ValueError, "output size would be zero or negative"),
        (dict(ceil_mode="yes"), TypeError, "`ceil_mode` must be a bool, got 'yes'"),
        (dict(x=X.astype(bool)), TypeError, "`x` must have a real numeric dtype, got bool"),
        (dict(padding=2), ValueError,
         "`padding` must be at most half the window on each side (window 2 // 2 = 1 in spatial dim 0), got (2, 2)"),
        (dict(window=3, padding=[(0, 1), (0, 2)]), ValueError, "got (0, 2) there from padding=[(0, 1), (0, 2)]"),
        (dict(x=None), TypeError, "`x` must be an array, got NoneType: None"),
    ],
)
def test_errors_name_the_argument(kwargs, error, message):
    args = dict(x=X, window=2, stride=None)
    args.update(kwargs)
    x, window, stride = args.pop("x"), args.pop("window"), args.pop("stride")
    with pytest.raises(error, match=re.escape(message)):
        cnnjax.maxpool(x, window, stride, **args)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=pool_configs(), count_include_pad=st.sampled_from([None, True, False]))
@pytest.mark.slow
def test_avgpool_matches_numpy_reference(cfg, count_include_pad):
    x = np.random.default_rng(cfg["seed"]).standard_normal((2, *cfg["sizes"], cfg["channels"])).astype(np.float32)
    got = cnnjax.avgpool(x, cfg["window"], cfg["stride"], padding=cfg["padding"], ceil_mode=cfg["ceil_mode"],
                         count_include_pad=count_include_pad)
    # by default 'SAME' does not count its padding (Keras) and explicit padding does (PyTorch)
    include = cfg["padding"] != "same" if count_include_pad is None else count_include_pad
    want = ref.avgpool(x, cfg["window"], cfg["strides"], cfg["pads"], cfg["ceil_mode"], include)
    chex.assert_shape(got, want.shape)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_avgpool_gradients_and_the_lecture_window():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(cnnjax.avgpool(x, 2)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 6, 2)))
        jtu.check_grads(lambda x: cnnjax.avgpool(x, 3, 2, padding=1, ceil_mode=True) ** 2, (x,), order=2,
                        modes=("fwd", "rev"))


@pytest.mark.slow
def test_global_pools():
    x = np.random.default_rng(0).normal(size=(3, 4, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(cnnjax.global_avgpool(x), x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(cnnjax.global_maxpool(x), x.max(axis=(1, 2)))
    np.testing.assert_array_equal(cnnjax.global_maxpool(x[0], spatial_dims=2), x[0].max(axis=(0, 1)))
    g = jax.grad(lambda x: cnnjax.global_maxpool(x).sum())(jnp.ones((1, 2, 2, 1)))  # ties: the first maximum
    np.testing.assert_array_equal(g[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])
    h = jax.hessian(lambda x: jnp.sum(cnnjax.global_maxpool(x) ** 3))(jnp.array([[[1.0], [3.0], [3.0]]]))
    np.testing.assert_array_equal(np.asarray(h).reshape(3, 3), np.diag([0.0, 18.0, 0.0]))
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.random.default_rng(1).permutation(24).reshape(2, 3, 4, 1) / 7.0)
        jtu.check_grads(lambda x: cnnjax.global_maxpool(x) ** 3, (x64,), order=2, modes=("fwd", "rev"), eps=1e-5)
    with pytest.raises(ValueError, match=re.escape("with 2 spatial dims (`spatial_dims`=2), got shape (4,)")):
        cnnjax.global_avgpool(jnp.ones(4), spatial_dims=2)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("name", ["maxpool", "avgpool", "global_maxpool", "global_avgpool"])
@pytest.mark.slow
def test_an_example_alone_pools_as_inside_its_batch(n, name):
    """jax.vmap over single examples gives what the batched call gives."""
    xs = np.random.default_rng(n).normal(size=(3, *(6,) * n, 2)).astype(np.float32)
    fn = getattr(cnnjax, name)
    if name.startswith("global"):
        f = lambda x: fn(x, spatial_dims=n)
    else:
        f = lambda x: fn(x, (2,) * n, padding=[(1, 0)] * n, ceil_mode=True)
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(xs)), np.asarray(f(xs)), rtol=1e-6)


def test_an_int_window_needs_a_batch_and_says_how_to_pool_one_example():
    with pytest.raises(ValueError, match=re.escape("for an int `window` (give the window per spatial dimension")):
        cnnjax.maxpool(jnp.ones((4, 4)), 2)
    with pytest.raises(ValueError, match=re.escape("with 2 spatial dims to match `window`=(2, 2), got shape (4, 4)")):
        cnnjax.avgpool(jnp.ones((4, 4)), (2, 2))
    with pytest.raises(TypeError, match=re.escape("`x` must have a floating-point dtype")):
        cnnjax.avgpool(jnp.ones((1, 4, 4, 1), jnp.int32), 2)


@pytest.mark.parametrize("lowering_name", ["reference", "patches", "auto"])
@pytest.mark.parametrize("shape", [(1, 4, 4, 1), (1, 28, 28, 8), (2, 9, 9, 9, 8)])
@pytest.mark.slow
def test_nan_in_is_nan_out(lowering_name, shape):
    """A window holding NaN pools to NaN on every lowering, small and large (XLA:CPU's max
    drops NaN in inputs of 4,096 elements or more), eagerly and jitted; the other windows
    are untouched."""
    x = np.zeros(shape, np.float32)
    x[(0,) * x.ndim] = np.nan
    x[-1, *(-2,) * (x.ndim - 2), -1] = np.nan
    want = ref.maxpool(x, (2,) * (x.ndim - 2), (2,) * (x.ndim - 2), ((0, 0),) * (x.ndim - 2), False)
    assert np.isnan(want).sum() == 2  # the NumPy loop's max propagates NaN
    with cnnjax.lowering.use(maxpool=lowering_name):
        for f in (lambda x: cnnjax.maxpool(x, 2), jax.jit(lambda x: cnnjax.maxpool(x, 2))):
            np.testing.assert_array_equal(np.asarray(f(x)), want)
        np.testing.assert_array_equal(np.isnan(cnnjax.global_maxpool(x)), np.isnan(x).any(axis=tuple(range(1, x.ndim - 1))))


def test_global_maxpool_of_an_empty_batch_or_map():
    chex.assert_shape(cnnjax.global_maxpool(jnp.zeros((0, 3, 3, 2))), (0, 2))
    with pytest.raises(ValueError, match=re.escape("at least one position to take a maximum over, got shape (2, 0, 3, 2)")):
        cnnjax.global_maxpool(jnp.zeros((2, 0, 3, 2)))


@pytest.mark.slow
def test_avgpool_same_padding_counted_when_asked_as_flax_counts_it():
    """``count_include_pad=True`` with 'SAME' is honoured: flax.linen.avg_pool (which counts
    padding by default) is the independent reference; the default follows Keras."""
    import flax.linen

    x = jnp.arange(98.0).reshape(1, 7, 7, 2) ** 2
    for stride in (1, 2):
        flax_counted = flax.linen.avg_pool(x, (3, 3), (stride, stride), "SAME")
        flax_uncounted = flax.linen.avg_pool(x, (3, 3), (stride, stride), "SAME", count_include_pad=False)
        assert float(jnp.abs(flax_counted - flax_uncounted).max()) > 100  # the two rules differ here
        counted = cnnjax.avgpool(x, 3, stride, padding="SAME", count_include_pad=True)
        np.testing.assert_allclose(counted, flax_counted, rtol=1e-6)
        np.testing.assert_allclose(cnnjax.avgpool(x, 3, stride, padding="SAME"), flax_uncounted, rtol=1e-6)
        np.testing.assert_allclose(cnnjax.avgpool(x, 3, stride, padding="SAME", count_include_pad=False),
                                   flax_uncounted, rtol=1e-6)


def test_avgpool_divisor_override_divides_every_window_sum_by_it():
    """PyTorch's ``divisor_override``: sums by hand, divided by the number given."""
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_allclose(cnnjax.avgpool(x, 2, divisor_override=3)[0, :, :, 0],
                               np.array([[10.0, 18.0], [42.0, 50.0]]) / 3, rtol=1e-6)
    ones = jnp.ones((1, 3, 1))  # windows over one zero of padding, three cells, one zero: sums 2, 3, 2
    np.testing.assert_allclose(cnnjax.avgpool(ones, 3, 1, padding=1, divisor_override=2)[0, :, 0], [1.0, 1.5, 1.0])
    np.testing.assert_allclose(cnnjax.nn.AvgPool((3,), 1, padding=1, divisor_override=2)(ones)[0, :, 0],
                               [1.0, 1.5, 1.0])
    with pytest.raises(ValueError, match=re.escape("`divisor_override` must be positive, got 0")):
        cnnjax.avgpool(x, 2, divisor_override=0)


@pytest.mark.parametrize("sizes, window, stride, padding, dilation, ceil_mode", [
    ((9,), (3,), (1,), 0, (2,), False),
    ((8, 7), (2, 3), (1, 2), 1, (2, 1), False),
    ((9, 9), (3, 3), (2, 2), 1, (2, 2), True),
    ((5, 6, 5), (2, 2, 2), (1, 2, 1), 0, (2, 1, 3), False),
    ((10, 10), (3, 3), (3, 3), "SAME", (2, 2), False),
])
@pytest.mark.slow
def test_dilated_maxpool_matches_the_numpy_loop_with_first_maximum_gradients(sizes, window, stride, padding, dilation,
                                                                            ceil_mode):
    """PyTorch's ``dilation``: a window's cells ``dilation`` apart, padding at most half the window."""
    x = np.random.default_rng(len(sizes)).standard_normal((2, *sizes, 3)).astype(np.float32)
    got = cnnjax.maxpool(x, window, stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    n = len(sizes)
    pads = cnnjax._checks.padding_pairs(padding, n, sizes, window, stride, dilation)  # SAME's, as XLA computes it
    want = ref.maxpool(x, window, stride, pads, ceil_mode, dilation)
    chex.assert_shape(got, want.shape)
    np.testing.assert_array_equal(np.asarray(got), want.astype(np.float32))
    f = lambda x: cnnjax.maxpool(x, window, stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode) ** 2
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.random.default_rng(7).permutation(2 * math.prod(sizes)).reshape(2, *sizes, 1) / 9.0)
        jtu.check_grads(f, (x64,), order=1, modes=("fwd", "rev"), eps=1e-5)


@pytest.mark.slow
def test_dilated_maxpool_nan_layer_and_padding_rule():
    x = np.zeros((1, 64, 64, 8), np.float32)
    x[0, 0, 0, 0] = np.nan
    y = np.asarray(cnnjax.maxpool(x, 2, 1, dilation=2))
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y).sum() == 1  # the one window holding it
    layer = cnnjax.nn.MaxPool(3, 1, padding=1, dilation=2)  # span 5: 6 + 2 - 5 + 1 = 4
    chex.assert_shape(layer(jnp.ones((1, 6, 6, 1))), (1, 4, 4, 1))
    with pytest.raises(ValueError, match=re.escape("`padding` must be at most half the window")):
        cnnjax.maxpool(jnp.ones((1, 6, 6, 1)), 3, 1, padding=2, dilation=2)  # PyTorch refuses it too
    with pytest.raises(ValueError, match=re.escape("`dilation` must be positive, got 0")):
        cnnjax.maxpool(jnp.ones((1, 6, 6, 1)), 3, dilation=0)


@pytest.mark.parametrize("sizes, window, stride, padding, dilation, ceil_mode", [
    ((4, 4), (2, 2), None, 0, (1, 1), False),
    ((5, 7), (3, 3), (2, 2), 1, (1, 1), True),
    ((9,), (3,), (2,), 1, (2,), False),
    ((4, 5, 4), (2, 2, 2), (1, 2, 1), 0, (1, 1, 2), False),
])
@pytest.mark.slow
def test_return_indices_are_pytorchs_and_max_unpool_puts_each_maximum_back(sizes, window, stride, padding, dilation,
                                                                           ceil_mode):
    x = np.round(np.random.default_rng(len(sizes)).standard_normal((2, *sizes, 3)), 1).astype(np.float32)  # ties
    x[0, 1] = np.nan  # NaN wins its windows
    y, indices = cnnjax.maxpool(x, window, stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                                return_indices=True)
    n = len(sizes)
    strides = window if stride is None else stride
    pads = cnnjax._checks.padding_pairs(padding, n, sizes, window, strides, dilation)
    want = ref.maxpool_indices(x, window, strides, pads, ceil_mode, dilation)
    assert indices.dtype == jnp.int32
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_array_equal(np.asarray(y), ref.maxpool(x, window, strides, pads, ceil_mode, dilation).astype(
        np.float32))
    restored = np.asarray(cnnjax.max_unpool(y, indices, window, stride, padding=padding, output_size=sizes))
    flat = restored.reshape(2, -1, 3)
    got = np.take_along_axis(flat, np.asarray(indices).reshape(2, -1, 3), axis=1)
    np.testing.assert_array_equal(got, np.asarray(y).reshape(2, -1, 3))  # every maximum where it came from
    chosen = np.zeros(flat.shape, bool)
    np.put_along_axis(chosen, np.asarray(indices).reshape(2, -1, 3), True, axis=1)
    assert np.all(flat[~chosen] == 0)  # zeros elsewhere


@pytest.mark.slow
def test_max_unpool_by_hand_its_gradient_and_errors():
    x = jnp.array([[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 7.0, 8.0]]).reshape(1, 2, 4, 1)
    y, i = cnnjax.maxpool(x, 2, return_indices=True)
    np.testing.assert_array_equal(i[0, :, :, 0], [[1, 7]])  # 5 at (0, 1), 8 at (1, 3)
    np.testing.assert_array_equal(cnnjax.max_unpool(y, i, 2)[0, :, :, 0], [[0, 5, 0, 0], [0, 0, 0, 8]])
    g = jax.grad(lambda v: jnp.sum(cnnjax.max_unpool(v, i, 2) * jnp.arange(8.0).reshape(1, 2, 4, 1)))(y)
    np.testing.assert_array_equal(g[0, :, :, 0], [[1.0, 7.0]])  # the gather of the scatter
    with pytest.raises(ValueError, match=re.escape("`indices` must be in [0, 8) for an output of spatial shape (2, 4)")):
        cnnjax.max_unpool(y, i + 8, 2)
    with pytest.raises(ValueError, match=re.escape("`output_size` must be the 2 spatial sizes of the output, got "
                                                   "(1, 2, 4, 1)")):
        cnnjax.max_unpool(y, i, 2, output_size=(1, 2, 4, 1))  # a whole shape is not read as its last two sizes
    with pytest.raises(ValueError, match=re.escape("`indices` must be integers of `x`'s shape (1, 1, 2, 1)")):
        cnnjax.max_unpool(y, i.astype(jnp.float32), 2)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.slow
def test_narrow_floats_are_pooled_in_float32_and_cast_back(dtype, each_lowering):
    """A 64x64 mean of U(0, 1) in bfloat16 read 0.0625 when its sum stayed in bfloat16 (it
    stops growing at 256), and a float16 32x32 sum of 1000s overflowed to inf. Each pool adds
    up in float32, forward and gradient, on every lowering; the NumPy float64 mean is the
    reference, to the dtype's rounding. (The patches lowering stacks a slice per tap, so it
    pools 4x4 windows here; 16 values of 6000 add up past float16's 65,504 too.)"""
    w = 64 if each_lowering == "reference" else 4
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 64, 64, 3)), dtype)
    exact = np.asarray(x, np.float64)  # the values as the dtype holds them
    tol = dict(rtol=1e-2, atol=1e-3)
    means = exact.reshape(2, 64 // w, w, 64 // w, w, 3).mean(axis=(2, 4))
    for got in (cnnjax.avgpool(x, w), cnnjax.nn.AvgPool(w)(x), cnnjax.adaptive_avgpool(x, 64 // w)):
        assert got.dtype == dtype
        np.testing.assert_allclose(np.asarray(got, np.float64), means, **tol)
    np.testing.assert_allclose(np.asarray(cnnjax.global_avgpool(x), np.float64), exact.mean(axis=(1, 2)), **tol)
    big = jnp.full((1, w, w, 1), 6000.0, dtype)
    assert float(cnnjax.avgpool(big, w)[0, 0, 0, 0]) == float(big[0, 0, 0, 0])  # not inf
    assert float(cnnjax.global_avgpool(big)[0, 0]) == float(big[0, 0, 0, 0])
    g = jax.grad(lambda v: cnnjax.avgpool(v, w).astype(jnp.float32).sum())(x)
    assert g.dtype == dtype
    np.testing.assert_allclose(np.asarray(g, np.float64), 1 / w**2, rtol=1e-3)


def test_auto_differentiates_a_large_window_with_xlas_own_pool():
    """The patches form stacks one slice per tap: a 32x32 window's gradient compiled for over a
    minute on a CPU. ``auto`` gives windows of more than MAX_PATCH_TAPS taps XLA's own
    reduce_window derivative, so the traced gradient holds no slice per tap."""
    from cnnjax.lowering import auto

    assert auto.pool_derivatives((8, 8)) == "patches" and auto.pool_derivatives((9, 8)) == "reference"
    x = jnp.ones((1, 32, 32, 4))

    def slices(op, window):
        with cnnjax.lowering.use(**{op: "auto"}):
            jaxpr = jax.make_jaxpr(jax.grad(lambda v: getattr(cnnjax, op)(v, window).sum()))(x)
        return str(jaxpr).count(" slice[")

    for op in ("avgpool", "maxpool"):
        assert slices(op, 32) == 0, op
        assert slices(op, 2) >= 4, op  # small windows keep the patches derivative: a slice per tap


def test_max_unpool_under_jit_never_puts_a_value_in_another_cell():
    """Eagerly, indices outside [0, cells) are refused; traced, -1 counted from the end (the last
    cell) and 99 was dropped without a word. Now the map of each example and channel holding an
    invalid index is NaN throughout, and the others are untouched."""
    x = jnp.arange(1.0, 9.0).reshape(2, 1, 2, 2)  # two examples, (1, 2) pooled maps, two channels
    i = jnp.array([[[[0, 1], [3, 2]]], [[[-1, 0], [99, 3]]]])  # example 1: channel 0 holds -1 and 99
    y = jax.jit(lambda v, j: cnnjax.max_unpool(v, j, 2))(x, i)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 0, 0, 3]] + [[0, 0, 0, 0]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[0, 2, 4, 0]] + [[0, 0, 0, 0]])
    assert np.isnan(y[1, :, :, 0]).all()
    np.testing.assert_array_equal(y[1, :, :, 1], [[6, 0, 0, 8]] + [[0, 0, 0, 0]])
    with pytest.raises(ValueError, match=re.escape("`indices` must be in [0, 8)")):
        cnnjax.max_unpool(x, i, 2)


@pytest.mark.slow
def test_every_max_picks_pytorchs_cell_at_ties_and_nans(each_lowering):
    """By hand, as PyTorch's CPU kernels scan a window (``if (val > max || isnan(val))``): among
    equal maxima the first, row-major over the whole window; among NaNs the last. The adaptive
    pool reduced one axis after the other and sent the gradient of [[0, 1], [1, 0]] to (1, 0).
    (The reference lowering differentiates with XLA's select_and_scatter, which routes a NaN
    window's gradient its own way: the value is NaN there whatever the route.)"""
    ties = jnp.array([[0.0, 1.0], [1.0, 0.0]]).reshape(1, 2, 2, 1)
    nans = jnp.array([[np.nan, 1.0], [np.nan, 0.0]]).reshape(1, 2, 2, 1)
    first = [0.0, 1.0, 0.0, 0.0]
    def routed(pool, x):  # where a cotangent of 1 goes, whatever the value (NaN included)
        y, pullback = jax.vjp(pool, x)
        return pullback(jnp.ones_like(y))[0].ravel()

    maxpool = lambda v: cnnjax.maxpool(v, 2)
    for pool in (maxpool, lambda v: cnnjax.adaptive_maxpool(v, 1), cnnjax.global_maxpool):
        np.testing.assert_array_equal(routed(pool, ties), first)
        if pool is not maxpool or each_lowering != "reference":
            np.testing.assert_array_equal(routed(pool, nans), [0.0, 0.0, 1.0, 0.0])
    assert int(cnnjax.maxpool(ties, 2, return_indices=True)[1].ravel()[0]) == 1
    assert int(cnnjax.maxpool(nans, 2, return_indices=True)[1].ravel()[0]) == 2
