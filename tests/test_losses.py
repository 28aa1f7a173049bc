"""Losses and accuracy against hand-written formulas."""

import re

import jax
import jax.numpy as jnp
import jax.test_util as jtu
import numpy as np
import pytest

import cnnjax
from cnnjax import losses


def np_cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    log_z = np.log(np.exp(logits).sum(-1))
    return log_z - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


def test_sparse_matches_formula():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 6)
    per = np_cross_entropy(logits, labels)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(logits, labels), per.mean(), rtol=1e-5)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(logits, labels, reduction="sum"), per.sum(), rtol=1e-5)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(logits, labels, reduction="none"), per, rtol=1e-5)


def test_categorical_equals_sparse_on_one_hot():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    one_hot = np.eye(3, dtype=np.float32)[labels]
    np.testing.assert_allclose(cnnjax.categorical_crossentropy(logits, one_hot),
                               cnnjax.sparse_categorical_crossentropy(logits, labels), rtol=1e-6)


def test_lecture_backprop_example():
    """The lecture's X column: right answer 1, actual answer 0.92 -> error -0.08, and the
    cross-entropy gradient with respect to the logits is exactly that error."""
    p_x = 0.92
    logits = jnp.log(jnp.array([p_x, 1 - p_x]))
    g = jax.grad(lambda z: losses.sparse_categorical_crossentropy(z[None], jnp.array([0])))(logits)
    np.testing.assert_allclose(g[0], p_x - 1.0, atol=1e-6)


@pytest.mark.slow
def test_loss_gradients():
    with jax.enable_x64(True):
        logits = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4)))
        labels = jnp.array([0, 3, 1])
        jtu.check_grads(lambda z: losses.sparse_categorical_crossentropy(z, labels), (logits,), order=2)


def test_accuracy():
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = jnp.array([1, 0, 0, 0])
    assert float(cnnjax.accuracy(logits, labels)) == 0.75
    assert float(cnnjax.accuracy(logits, labels, reduction="sum")) == 3.0


@pytest.mark.parametrize("fn", [losses.sparse_categorical_crossentropy, losses.accuracy])
def test_out_of_range_labels_raise_on_concrete_arrays_and_give_nan_under_jit(fn):
    logits = jnp.zeros((3, 4))
    for bad, index in ((4, 2), (-1, 2)):
        labels = jnp.array([0, 3, bad])
        with pytest.raises(ValueError, match=re.escape(f"`labels` must be class indices in [0, 4), got {bad} at index {index}")):
            fn(logits, labels)
        per_example = np.asarray(jax.jit(lambda z, y: fn(z, y, reduction="none"))(logits, labels))
        assert np.isfinite(per_example[:2]).all() and np.isnan(per_example[2])
        assert np.isnan(float(jax.jit(fn)(logits, labels)))
    with pytest.raises(ValueError, match=re.escape("got 9 at index (1, 0)")):  # per-pixel labels
        fn(jnp.zeros((2, 2, 4)), jnp.array([[0, 1], [9, 2]]))


def test_regression_losses_and_categorical_accuracy_against_numpy():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(4, 3, 5)).astype(np.float32), rng.normal(size=(4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(losses.mean_squared_error(p, t, reduction="none"), ((p - t) ** 2).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(losses.mean_absolute_error(p, t, reduction="none"), np.abs(p - t).mean(-1), rtol=1e-6)
    assert float(losses.mean_squared_error(p, t)) == pytest.approx(float(((p - t) ** 2).mean()), rel=1e-6)
    soft = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], np.float32)
    logits = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 1.0]], np.float32)
    # argmax of soft targets: 1, 0, 0 (the first of a tie)
    np.testing.assert_array_equal(losses.categorical_accuracy(logits, soft, reduction="none"), [1.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: losses.sparse_categorical_crossentropy(jnp.ones((2, 3)), jnp.array([0.0, 1.0])),
         TypeError, "`labels` must be integer class indices, got dtype float32"),
        (lambda: losses.sparse_categorical_crossentropy(jnp.ones((2, 3)), jnp.array([0, 1, 2])),
         ValueError, "`labels` must have shape (2,) to match `logits` of shape (2, 3), got (3,)"),
        (lambda: losses.sparse_categorical_crossentropy(jnp.ones((2, 3)), jnp.array([0, 1]), reduction="avg"),
         ValueError, "`reduction` must be one of ('mean', 'sum', 'none'), got 'avg'"),
        (lambda: losses.categorical_crossentropy(jnp.ones((2, 3)), jnp.ones((2, 2))),
         ValueError, "`targets` must have the shape of `logits` (2, 3), got (2, 2)"),
        (lambda: losses.accuracy(jnp.ones((2, 3), jnp.int32), jnp.array([0, 1])),
         TypeError, "`logits` must have a floating-point dtype"),
        (lambda: losses.mean_squared_error(jnp.ones((2, 3)), jnp.ones((3, 2))),
         ValueError, "`targets` must have the shape of `predictions` (2, 3), got (3, 2)"),
        (lambda: losses.mean_absolute_error(jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3))),
         TypeError, "`predictions` must have a floating-point dtype"),
        (lambda: losses.sparse_categorical_crossentropy(jnp.ones((2, 3)), np.array(["cat", "dog"])),
         TypeError, "`labels` must be an array of numbers, got dtype <U3"),
        (lambda: losses.mean_squared_error(jnp.ones((1, 2)), np.array([["a", "b"]], object)),
         TypeError, "`targets` must be an array of numbers, got dtype object"),
        (lambda: losses.mean_squared_error(jnp.array(1.0), jnp.array(2.0)),
         ValueError, "`predictions` must have at least one axis (values last), got a scalar"),
        (lambda: losses.categorical_crossentropy(jnp.array(1.0), jnp.array(1.0)),
         ValueError, "`logits` must have at least one axis (classes last), got a scalar"),
        (lambda: losses.categorical_accuracy(jnp.ones((2, 3)), jnp.ones((2,))),
         ValueError, "`targets` must have the shape of `logits` (2, 3), got (2,)"),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


@pytest.mark.slow
def test_class_weights_and_an_ignored_label_give_pytorchs_cross_entropy():
    """torch.nn.functional.cross_entropy(logits, labels, weight=w, ignore_index=-100), from its
    definition: each loss -log softmax(x)[y] times w[y], ignored labels left out of the sum and
    of the weights that divide it."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 3, -100, 1, 3, 2])
    w = np.array([0.5, 2.0, 1.0, 3.0], np.float32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    kept = labels != -100
    each = np.where(kept, -log_p[np.arange(6), np.where(kept, labels, 0)] * w[np.where(kept, labels, 0)], 0.0)
    mean = each.sum() / w[labels[kept]].sum()
    got = losses.sparse_categorical_crossentropy(logits, labels, weight=w, ignore_index=-100)
    np.testing.assert_allclose(got, mean, rtol=1e-6)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(logits, labels, weight=w, ignore_index=-100,
                                                                      reduction="none"), each, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda x, y: losses.sparse_categorical_crossentropy(
        x, y, ignore_index=-100))(logits, labels), -log_p[np.arange(6)[kept], labels[kept]].mean(), rtol=1e-6)
    nan_ignored = logits.copy()
    nan_ignored[2] = np.nan  # an ignored pixel's scores do not matter
    assert np.isfinite(losses.sparse_categorical_crossentropy(nan_ignored, labels, ignore_index=-100))
    g = jax.grad(lambda x: losses.sparse_categorical_crossentropy(x, labels, weight=w, ignore_index=-100))(logits)
    assert np.all(np.asarray(g)[2] == 0) and np.all(np.isfinite(g))
    with pytest.raises(ValueError, match=re.escape("`labels` must be class indices in [0, 4), got -100 at index 2")):
        losses.sparse_categorical_crossentropy(logits, labels, weight=w)  # not ignored without ignore_index
    with pytest.raises(ValueError, match=re.escape("`weight` must have shape (4,), one weight per class, got (3,)")):
        losses.sparse_categorical_crossentropy(logits, labels, weight=w[:3], ignore_index=-100)


@pytest.mark.slow
def test_label_smoothing_is_pytorchs_and_keras_definition():
    """PyTorch's documented cross_entropy with label_smoothing=eps (class indices): (1 - eps)
    w[y] (-log p_y) + eps / K sum_k w[k] (-log p_k), the mean over the kept labels' weights;
    Keras' CategoricalCrossentropy(label_smoothing=eps): one-hot rows y (1 - eps) + eps / K.
    The two agree on one-hot targets; both from their formulas in NumPy."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 3, -100, 1, 2])
    w = np.array([0.5, 2.0, 1.0, 3.0], np.float32)
    log_p = np.asarray(logits, np.float64) - np.log(np.exp(np.asarray(logits, np.float64)).sum(-1, keepdims=True))
    eps, kept = 0.2, labels != -100
    safe = np.where(kept, labels, 0)
    each = np.where(kept, (1 - eps) * w[safe] * -log_p[np.arange(5), safe] + eps / 4 * (w * -log_p).sum(-1), 0.0)
    got = losses.sparse_categorical_crossentropy(logits, labels, weight=w, ignore_index=-100, label_smoothing=eps)
    np.testing.assert_allclose(got, each.sum() / w[safe][kept].sum(), rtol=1e-6)
    plain = (1 - eps) * -log_p[np.arange(5), np.abs(labels) % 4] - eps * log_p.mean(-1)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(logits, np.abs(labels) % 4, label_smoothing=eps,
                                                                      reduction="none"), plain, rtol=1e-6)
    one_hot = np.eye(4, dtype=np.float32)[np.abs(labels) % 4]
    keras = -(one_hot * (1 - eps) + eps / 4) * log_p  # Keras: the smoothed one-hot rows
    np.testing.assert_allclose(losses.categorical_crossentropy(logits, one_hot, label_smoothing=eps, reduction="none"),
                               keras.sum(-1), rtol=1e-6)
    np.testing.assert_allclose(keras.sum(-1), plain, rtol=1e-6)  # the two definitions agree
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match=re.escape(f"`label_smoothing` must be a number in [0, 1], got {bad!r}")):
            losses.sparse_categorical_crossentropy(logits, np.abs(labels) % 4, label_smoothing=bad)


@pytest.mark.slow
def test_label_smoothing_equals_torch_itself():
    torch = pytest.importorskip("torch", reason="the comparison with PyTorch itself needs torch (CI installs it)")
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(7, 5)).astype(np.float32)
    labels = np.array([0, 1, 4, 2, 3, -100, 1])
    w = rng.uniform(0.5, 2, 5).astype(np.float32)
    for eps in (0.0, 0.1, 0.3):
        for kw in ({}, {"weight": w}, {"ignore_index": -100}, {"weight": w, "ignore_index": -100}):
            y = labels if "ignore_index" in kw else np.abs(labels) % 5
            want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(y), label_smoothing=eps, **{
                k: torch.tensor(v) if k == "weight" else v for k, v in kw.items()})
            got = losses.sparse_categorical_crossentropy(logits, y, label_smoothing=eps, **kw)
            np.testing.assert_allclose(got, want.item(), rtol=1e-5, err_msg=f"eps={eps}, {sorted(kw)}")
        one_hot = np.eye(5, dtype=np.float32)[np.abs(labels) % 5]
        want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(one_hot), label_smoothing=eps)
        np.testing.assert_allclose(losses.categorical_crossentropy(logits, one_hot, label_smoothing=eps), want.item(),
                                   rtol=1e-5)
