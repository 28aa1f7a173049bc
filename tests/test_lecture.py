"""The lecture's hand-computed numbers, reproduced through cnnjax's public API.

Printed values are compared by the lecture's own rule (truncate to two decimals; see
``lecture_tables``), on whole hundredths, with no tolerance.
"""

import chex
import jax
import jax.numpy as jnp
import lecture_tables as T
import numpy as np
import pytest

import cnnjax

NAMES = ("backslash", "x", "slash")

pytestmark = pytest.mark.usefixtures("each_lowering")


def x_batch(image=T.X_IMAGE):
    return jnp.asarray(image)[None, :, :, None]


def feature_kernel():
    return jnp.stack([jnp.asarray(f) for f in T.FEATURES], axis=-1)[:, :, None, :]


def responses(image=T.X_IMAGE):
    y = cnnjax.conv(x_batch(image), feature_kernel(), normalize=True)
    chex.assert_shape(y, (1, 7, 7, 3))
    return np.asarray(y[0])


def test_packaged_lecture_data_equals_the_slides():
    np.testing.assert_array_equal(cnnjax.lecture.X_IMAGE, T.X_IMAGE)
    np.testing.assert_array_equal(cnnjax.lecture.features(), np.asarray(feature_kernel()))
    np.testing.assert_array_equal(cnnjax.lecture.batch(T.X_IMAGE), np.asarray(x_batch()))


@pytest.mark.parametrize("channel", range(3), ids=NAMES)
def test_response_maps(channel):
    """9x9 X (*) 3x3 feature = the lecture's 7x7 response map."""
    got = T.cut_to_hundredths(responses()[:, :, channel])
    np.testing.assert_array_equal(got, T.RESPONSES[channel])


def test_response_maps_are_ninths():
    """Each score is (matches - mismatches) / 9: an odd number of ninths in [-1, 1]."""
    ninths = responses() * 9
    np.testing.assert_array_equal(np.round(ninths), ninths)
    assert set(np.round(ninths).astype(int).ravel()) <= {-9, -7, -5, -3, -1, 1, 3, 5, 7, 9}


def test_worked_windows():
    y = responses()
    # "= 7/9 = 0.77": the top-left window matches the backslash in 8 pixels of 9. The
    # slide's products per row sum to 1, 3 and 3; it writes the last product of the
    # third row as (1 . -1), which contradicts its own row sum of 3: it is (1 . 1).
    products = T.X_IMAGE[:3, :3] * T.BACKSLASH
    np.testing.assert_array_equal(products.sum(axis=1), [1, 3, 3])
    assert round(y[0, 0, 0] * 9) == 7 and T.cut_to_hundredths(y[0, 0, 0]) == 77
    # "(1 + 1 - 1 + 1 + 1 + 1 - 1 + 1 + 1) / 9 = .55": the products table of that slide is
    # the centre window of the X against the backslash.
    np.testing.assert_array_equal(
        T.X_IMAGE[3:6, 3:6] * T.BACKSLASH, T.pixels("1 1 -1\n1 1 1\n-1 1 1")
    )
    assert round(y[3, 3, 0] * 9) == 5 and T.cut_to_hundredths(y[3, 3, 0]) == 55
    # "... / 9 = 1": a perfect match. (The slide writes eight 1s over 9; the products
    # table beside it has nine.)
    np.testing.assert_array_equal(T.X_IMAGE[1:4, 1:4] * T.BACKSLASH, np.ones((3, 3)))
    assert y[1, 1, 0] == 1.0
    # The review questions' windows: -0.11 and 0.33 in the first row.
    assert T.cut_to_hundredths(y[0, 1, 0]) == -11 and T.cut_to_hundredths(y[0, 3, 0]) == 33


def test_review_question_flipped_corner_scores_one():
    """Review question: with the top-left pixel set to +1, the '?' cell becomes 1.00."""
    image = T.X_IMAGE.copy()
    image[0, 0] = 1.0
    flipped, original = responses(image), responses()
    assert flipped[0, 0, 0] == 1.0
    changed = np.argwhere(flipped[:, :, 0] != original[:, :, 0])
    np.testing.assert_array_equal(changed, [[0, 0]])


def test_typos_in_the_reprinted_maps_are_single_cells():
    """Two reprints of a map each differ from the computed map in exactly one cell.

    - "Convolution layer" (and the ReLU slide's input) prints the slash map with row 1,
      column 6 as 0.11; the original slash map, and the ReLU'd map printed from it
      (0 at that cell), have -0.11.
    - "Max Pooling, Stride is 2" prints the backslash map with row 0, column 5 as 0.11;
      every other print of that map has -0.11.
    """
    y = T.cut_to_hundredths(responses())
    for printed, channel, cell in [
        (T.RESPONSE_SLASH_AS_PRINTED_IN_CONV_LAYER_SLIDE, 2, (1, 6)),
        (T.RESPONSE_BACKSLASH_AS_PRINTED_IN_STRIDE_SLIDE, 0, (0, 5)),
    ]:
        wrong = np.argwhere(printed != y[:, :, channel])
        np.testing.assert_array_equal(wrong, [cell])
        assert y[cell][channel] == -11 and printed[cell] == 11


@pytest.mark.parametrize("channel", range(3), ids=NAMES)
def test_relu_maps(channel):
    got = T.cut_to_hundredths(cnnjax.relu(responses())[:, :, channel])
    np.testing.assert_array_equal(got, T.RELUS[channel])
    assert (np.asarray(cnnjax.relu(responses())) >= 0).all()


@pytest.mark.parametrize("relu_first", [True, False], ids=["relu-then-pool", "pool-raw-maps"])
def test_pooled_maps(relu_first):
    """2x2 windows, stride 2, ceiling of 7/2: 7x7 -> 4x4, on raw or ReLU'd maps alike."""
    y = jnp.asarray(responses())[None]
    y = cnnjax.relu(y) if relu_first else y
    pooled = cnnjax.maxpool(y, window=2, stride=2, ceil_mode=True)
    chex.assert_shape(pooled, (1, 4, 4, 3))
    for channel in range(3):
        got = T.cut_to_hundredths(pooled[0, :, :, channel])
        np.testing.assert_array_equal(got, T.POOLED[channel])


def test_pool_walkthrough_first_row():
    """The slide walks the window along the top row: 1.00, 0.33, 0.55, 0.33."""
    pooled = cnnjax.maxpool(jnp.asarray(responses())[None], 2, ceil_mode=True)
    np.testing.assert_array_equal(T.cut_to_hundredths(pooled[0, 0, :, 0]), [100, 33, 55, 33])


def test_deep_stacking_maps():
    """conv -> relu -> pool, then pool again: the three 2x2 maps."""
    x = x_batch()
    y = cnnjax.maxpool(cnnjax.relu(cnnjax.conv(x, feature_kernel(), normalize=True)), 2, ceil_mode=True)
    y = cnnjax.maxpool(y, 2)
    chex.assert_shape(y, (1, 2, 2, 3))
    for channel in range(3):
        np.testing.assert_array_equal(T.cut_to_hundredths(y[0, :, :, channel]), T.DEEP[channel])


def test_keras_arithmetic_of_the_sequential_cnn():
    """The lecture's Keras table: shapes from 28 - 3 + 1 = 26 on, params from 32 * 9 + 32.

    Each row's shape is what the pure functions return for arrays of the Keras layer's
    weight shapes; each row's parameter count is the size of those weights.
    """
    layers = [  # (kind, weight shapes, printed output shape, printed params)
        ("conv", (3, 3, 1, 32), (26, 26, 32), 320),
        ("pool", None, (13, 13, 32), 0),
        ("conv", (3, 3, 32, 64), (11, 11, 64), 18496),
        ("pool", None, (5, 5, 64), 0),
        ("conv", (3, 3, 64, 64), (3, 3, 64), 36928),
        ("flatten", None, (576,), 0),
        ("dense", (576, 64), (64,), 36928),
        ("dense", (64, 10), (10,), 650),
    ]
    x = jax.ShapeDtypeStruct((7, 28, 28, 1), jnp.float32)
    total = 0
    for kind, w_shape, shape, params in layers:
        if kind == "conv":
            w = jax.ShapeDtypeStruct(w_shape, jnp.float32)
            b = jax.ShapeDtypeStruct(w_shape[-1:], jnp.float32)
            x = jax.eval_shape(lambda x, w, b: cnnjax.relu(cnnjax.conv(x, w, b)), x, w, b)
        elif kind == "dense":
            w = jax.ShapeDtypeStruct(w_shape, jnp.float32)
            b = jax.ShapeDtypeStruct(w_shape[-1:], jnp.float32)
            x = jax.eval_shape(cnnjax.dense, x, w, b)
        elif kind == "pool":
            x = jax.eval_shape(cnnjax.maxpool, x)
        else:
            x = jax.eval_shape(cnnjax.flatten, x)
        assert x.shape == (7, *shape), kind
        n_params = 0 if w_shape is None else int(np.prod(w_shape)) + w_shape[-1]
        assert n_params == params, (kind, w_shape)
        total += n_params
    assert total == 93_322
