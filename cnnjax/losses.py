"""Losses and metrics: how wrong the network is, in a number backpropagation can use.

The lecture's error is "predicted answer minus right answer"; a classifier trained by
gradient descent measures it with the cross-entropy between the softmax of its scores
(logits) and the right class. These are thin, checked wrappers over optax.

Regression has :func:`mean_squared_error` and :func:`mean_absolute_error`, which average
over the last axis as Keras does (one value per example for targets of shape ``(N, D)``).

Keras names are kept so the lecture's ``loss='sparse_categorical_crossentropy'`` (integer
labels) and ``loss='categorical_crossentropy'`` (one-hot labels) map one to one. Both
take *logits*: the softmax is applied inside, in a numerically stable way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from . import _checks

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(values, reduction: str):
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {_REDUCTIONS}, got {reduction!r}.")


def _check_logits_labels(logits, labels):
    logits = _checks.as_array(logits, "logits")
    labels = _checks.as_array(labels, "labels")
    _checks.check_floating(logits, "logits")
    if logits.ndim < 1:
        raise ValueError("`logits` must have shape (..., num_classes), got a scalar.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"`labels` must be integer class indices, got dtype {labels.dtype}; for one-hot "
            "targets use `categorical_crossentropy`."
        )
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"`labels` must have shape {tuple(logits.shape[:-1])} to match `logits` of shape "
            f"{tuple(logits.shape)}, got {tuple(labels.shape)}."
        )
    return logits, labels


def _check_same_shape(predictions, targets, name: str = "predictions"):
    predictions = _checks.as_array(predictions, name)
    targets = _checks.as_array(targets, "targets")
    _checks.check_floating(predictions, name)
    if predictions.ndim < 1:
        raise ValueError(f"`{name}` must have at least one axis ({'classes' if name == 'logits' else 'values'} last), "
                         "got a scalar.")
    if targets.shape != predictions.shape:
        raise ValueError(
            f"`targets` must have the shape of `{name}` {tuple(predictions.shape)}, got {tuple(targets.shape)}."
        )
    return predictions, targets


def check_labels(labels: ArrayLike, num_classes: int, name: str = "`labels`", context: str = "") -> None:
    """Raises ``ValueError`` naming the first label outside ``[0, num_classes)`` and its index:
    the one check of class indices that the losses, :func:`cnnjax.train.fit` and the
    experiments share.

    Args:
      labels: concrete integer class indices of any shape (NumPy or JAX).
      num_classes: the number of classes.
      name: what the message calls them, e.g. ``"`train` targets"``.
      context: words after the range, e.g. ``" for a model with 10 outputs"``.

    >>> check_labels(np.array([0, 3, 4]), 4)
    Traceback (most recent call last):
    ...
    ValueError: `labels` must be class indices in [0, 4), got 4 at index 2.
    """
    values = np.asarray(labels)
    bad = np.flatnonzero((values < 0) | (values >= num_classes))
    if len(bad):
        index = np.unravel_index(bad[0], values.shape)
        where = tuple(int(i) for i in index) if values.ndim > 1 else int(index[0])
        raise ValueError(f"{name} must be class indices in [0, {num_classes}){context}, got {values[index]} at "
                         f"index {where}.")


def _labels_in_range(labels, classes: int):
    """:func:`check_labels` when ``labels`` are concrete; under a transformation (jit) the mask
    of valid labels instead, so the caller can turn the invalid ones into NaN (never a
    finite, wrong value)."""
    if not isinstance(labels, jax.core.Tracer):
        check_labels(labels, classes)
        return None
    return (labels >= 0) & (labels < classes)


def _smoothing(label_smoothing: Any) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0 <= label_smoothing <= 1:
        raise ValueError(f"`label_smoothing` must be a number in [0, 1], got {label_smoothing!r}.")
    return float(label_smoothing)


def _nan_where_invalid(values, valid):
    return values if valid is None else jnp.where(valid, values, jnp.nan)


def sparse_categorical_crossentropy(logits: ArrayLike, labels: ArrayLike, *, reduction: str = "mean",
                                    weight: ArrayLike | None = None, ignore_index: int | None = None,
                                    label_smoothing: float = 0.0) -> jax.Array:
    """Softmax cross-entropy with integer labels (Keras' ``sparse_categorical_crossentropy``;
    with ``weight``, ``ignore_index`` and ``label_smoothing``,
    ``torch.nn.functional.cross_entropy``'s values).

    Args:
      logits: scores of shape ``(..., num_classes)``.
      labels: integer classes of shape ``(...)``, each in ``[0, num_classes)`` or
        ``ignore_index``.
      reduction: ``"mean"`` (default, as Keras), ``"sum"``, or ``"none"`` for the
        per-example losses of shape ``(...)``. With ``weight`` or ``ignore_index``, the
        mean is PyTorch's: the weighted losses' sum over the weights of the labels not
        ignored.
      weight: optional ``(num_classes,)`` weight of each class: an example's loss is
        multiplied by its label's weight (rare classes counted more).
      ignore_index: a label value that contributes nothing (loss 0, not counted in the
        mean): per-pixel labels' "unlabelled" class, e.g. 255 or -100.
      label_smoothing: ``eps`` in ``[0, 1]``: the target is ``1 - eps`` on the label plus
        ``eps / num_classes`` on every class (PyTorch's ``label_smoothing`` and Keras'
        for one-hot targets: the two definitions agree). With ``weight``, the smoothed
        part weighs each class by its own weight, as PyTorch does.

    Returns:
      The loss, a scalar unless ``reduction="none"``.

    Raises:
      ValueError: if a (concrete) label is outside ``[0, num_classes)``, naming it and
        its index, or ``label_smoothing`` is outside ``[0, 1]``. Under ``jit`` the labels
        are not known in advance: an out-of-range label's loss is NaN, never a finite value.

    Example: perfect confidence in the right class costs nothing.

    >>> import jax.numpy as jnp
    >>> from cnnjax import losses
    >>> float(losses.sparse_categorical_crossentropy(jnp.array([[0.0, 0.0]]), jnp.array([1])))
    0.693...
    """
    _check_reduction(reduction)
    logits, labels = _check_logits_labels(logits, labels)
    classes = logits.shape[-1]
    if ignore_index is not None and not _checks.is_int(ignore_index):
        raise TypeError(f"`ignore_index` must be an int, got {ignore_index!r}.")
    if weight is not None:
        weight = _checks.as_array(weight, "weight")
        _checks.check_floating(weight, "weight")
        if weight.shape != (classes,):
            raise ValueError(f"`weight` must have shape ({classes},), one weight per class, got {tuple(weight.shape)}.")
    eps = _smoothing(label_smoothing)
    if weight is None and ignore_index is None:
        valid = _labels_in_range(labels, classes)
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        if eps:
            per_example = (1 - eps) * per_example + eps * jnp.mean(-jax.nn.log_softmax(logits), axis=-1)
        return _reduce(_nan_where_invalid(per_example, valid), reduction)
    kept = labels != ignore_index if ignore_index is not None else jnp.ones(labels.shape, bool)
    safe = jnp.where(kept, labels, 0)  # an ignored label indexes nothing
    valid = _labels_in_range(np.where(np.asarray(kept), np.asarray(labels), 0) if not isinstance(
        labels, jax.core.Tracer) else safe, classes)
    w = jnp.where(kept, weight[safe] if weight is not None else 1.0, 0.0).astype(logits.dtype)
    losses = w * optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    if eps:  # PyTorch: (1 - eps) w[y] (-log p_y) + eps / K sum_k w[k] (-log p_k)
        smooth = -jax.nn.log_softmax(logits) * (weight if weight is not None else 1.0)
        losses = (1 - eps) * losses + eps * jnp.mean(smooth, axis=-1)
    per_example = _nan_where_invalid(jnp.where(kept, losses, 0.0), valid)  # ignored: 0, whatever its logits
    if reduction == "mean":
        return jnp.sum(per_example) / jnp.sum(w)
    return _reduce(per_example, reduction)


def categorical_crossentropy(logits: ArrayLike, targets: ArrayLike, *, reduction: str = "mean",
                             label_smoothing: float = 0.0) -> jax.Array:
    """Softmax cross-entropy with one-hot or soft targets (Keras' ``categorical_crossentropy``).

    Args:
      logits: scores of shape ``(..., num_classes)``.
      targets: class probabilities of the same shape (e.g. one-hot rows).
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      label_smoothing: ``eps`` in ``[0, 1]``: the targets become ``targets * (1 - eps) +
        eps / num_classes`` (Keras' ``label_smoothing``; PyTorch's for probability targets).

    Returns:
      The loss, a scalar unless ``reduction="none"``.
    """
    _check_reduction(reduction)
    logits, targets = _check_same_shape(logits, targets, "logits")
    _checks.check_floating(targets, "targets")
    eps = _smoothing(label_smoothing)
    if eps:
        targets = targets * (1 - eps) + eps / targets.shape[-1]
    per_example = optax.softmax_cross_entropy(logits, targets)
    return _reduce(per_example, reduction)


def accuracy(logits: ArrayLike, labels: ArrayLike, *, reduction: str = "mean") -> jax.Array:
    """Fraction of examples whose highest score is the right class.

    Args:
      logits: scores of shape ``(..., num_classes)``.
      labels: integer classes of shape ``(...)``.
      reduction: ``"mean"`` (fraction correct), ``"sum"`` (count correct) or ``"none"``
        (a 0/1 float per example).

    Returns:
      float32 scalar unless ``reduction="none"``.

    Raises:
      ValueError: if a (concrete) label is outside ``[0, num_classes)``; under ``jit``
        such a label counts as NaN.
    """
    _check_reduction(reduction)
    logits, labels = _check_logits_labels(logits, labels)
    valid = _labels_in_range(labels, logits.shape[-1])
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return _reduce(_nan_where_invalid(correct, valid), reduction)


def mean_squared_error(predictions: ArrayLike, targets: ArrayLike, *, reduction: str = "mean") -> jax.Array:
    """Mean of ``(predictions - targets) ** 2`` over the last axis (Keras' ``mean_squared_error``).

    Args:
      predictions, targets: float arrays of the same shape ``(..., D)``.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (values of shape ``(...)``).

    >>> import jax.numpy as jnp
    >>> float(mean_squared_error(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]])))
    2.5
    """
    _check_reduction(reduction)
    predictions, targets = _check_same_shape(predictions, targets)
    return _reduce(jnp.mean(optax.squared_error(predictions, targets.astype(predictions.dtype)), axis=-1), reduction)


def mean_absolute_error(predictions: ArrayLike, targets: ArrayLike, *, reduction: str = "mean") -> jax.Array:
    """Mean of ``|predictions - targets|`` over the last axis (Keras' ``mean_absolute_error``).

    >>> import jax.numpy as jnp
    >>> float(mean_absolute_error(jnp.array([[1.0, -2.0]]), jnp.array([[0.0, 0.0]])))
    1.5
    """
    _check_reduction(reduction)
    predictions, targets = _check_same_shape(predictions, targets)
    return _reduce(jnp.mean(jnp.abs(predictions - targets.astype(predictions.dtype)), axis=-1), reduction)


def categorical_accuracy(logits: ArrayLike, targets: ArrayLike, *, reduction: str = "mean") -> jax.Array:
    """Fraction of examples whose highest score is the class with the highest target
    (one-hot or soft targets; Keras' ``categorical_accuracy``).

    >>> import jax.numpy as jnp
    >>> float(categorical_accuracy(jnp.array([[0.1, 0.9], [0.8, 0.2]]), jnp.array([[0.0, 1.0], [0.0, 1.0]])))
    0.5
    """
    _check_reduction(reduction)
    logits, targets = _check_same_shape(logits, targets, "logits")
    correct = (jnp.argmax(logits, axis=-1) == jnp.argmax(targets, axis=-1)).astype(jnp.float32)
    return _reduce(correct, reduction)
