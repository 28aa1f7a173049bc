"""What training minimises and reports: a loss and named metrics, one value per example.

The lecture compiles its model with ``loss='sparse_categorical_crossentropy'`` and
``metrics=['accuracy']``; that is the default here too. Any other objective is a function
``fn(outputs, targets) -> values`` whose values have the batch as their first axis:

- shape ``(N,)``: one value per example;
- shape ``(N, ...)``: per pixel, per time step...; averaged over the trailing axes, so
  each example counts once whatever its size.

Training takes weighted means over examples (a weight of 0 leaves an example out), so
the epoch's loss is the mean over its examples, as Keras reports it.

cnnjax's own functions (``cnnjax.losses.mean_squared_error``, ...) may be given as they
are: they are taken per example. Names resolve as in Keras: ``"sparse_categorical_crossentropy"``,
``"categorical_crossentropy"``, ``"mean_squared_error"`` (``"mse"``),
``"mean_absolute_error"`` (``"mae"``) and, as a metric, ``"accuracy"`` (integer class
targets, or one-hot / soft targets of the outputs' shape).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .. import losses

PerExample = Callable[[jax.Array, jax.Array], jax.Array]


def _none(fn):
    return lambda outputs, targets: fn(outputs, targets, reduction="none")


def _accuracy(outputs, targets):
    """Sparse or categorical accuracy, chosen by the targets as Keras' ``"accuracy"`` is."""
    if jnp.issubdtype(jnp.asarray(targets).dtype, jnp.integer):
        return losses.accuracy(outputs, targets, reduction="none")
    return losses.categorical_accuracy(outputs, targets, reduction="none")


# The one table of cnnjax's losses and metrics: each function with its names. As objectives
# they give one value per example (cnnjax's functions reduce to a mean by default).
_NAMED: tuple[tuple[Callable, tuple[str, ...]], ...] = (
    (losses.sparse_categorical_crossentropy, ("sparse_categorical_crossentropy",)),
    (losses.categorical_crossentropy, ("categorical_crossentropy",)),
    (losses.mean_squared_error, ("mean_squared_error", "mse")),
    (losses.mean_absolute_error, ("mean_absolute_error", "mae")),
    (losses.accuracy, ()),  # the name "accuracy" picks sparse or categorical by the targets
    (losses.categorical_accuracy, ()),
)
_OWN: dict[Callable, PerExample] = {fn: _none(fn) for fn, _ in _NAMED}
_LOSSES: dict[str, PerExample] = {name: _OWN[fn] for fn, names in _NAMED for name in names}
_METRICS: dict[str, PerExample] = {**_LOSSES, "accuracy": _accuracy}
_CLASS_INDEX_LOSSES = {_OWN[losses.sparse_categorical_crossentropy]}
DEFAULT_LOSS = "sparse_categorical_crossentropy"


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """A loss and named metrics, each ``fn(outputs, targets)`` with one value per example.

    Build one with :func:`objective`. Hashable by identity, so it can sit in a
    :class:`~cnnjax.train.TrainState` as static data: one compiled step per objective.

    Attributes:
      loss: the function minimised.
      metrics: ``(name, fn)`` pairs reported beside ``"loss"``.
      class_indices: whether targets are integer class indices into the outputs' last
        axis (the default loss); their range is then checked before training.
    """

    loss: PerExample
    metrics: tuple[tuple[str, PerExample], ...]
    class_indices: bool

    @property
    def names(self) -> tuple[str, ...]:
        """``("loss", *metric names)``: the order of :meth:`per_example`'s values."""
        return ("loss", *(name for name, _ in self.metrics))

    def per_example(self, outputs, targets) -> jax.Array:
        """Every value for every example: shape ``(len(names), N)``."""
        values = [self.loss(outputs, targets), *(fn(outputs, targets) for _, fn in self.metrics)]
        return jnp.stack([_per_example(v, outputs.shape[0], name) for name, v in zip(self.names, values, strict=True)])

    def weighted_means(self, outputs, targets, weights) -> jax.Array:
        """Weighted means over the batch, shape ``(len(names),)``; a batch of weight 0 gives 0."""
        values = self.per_example(outputs, targets)
        return jnp.sum(values * weights, axis=1) / jnp.maximum(jnp.sum(weights), 1.0)


def _per_example(values, n: int, name: str):
    values = jnp.asarray(values)
    if values.ndim == 0 or values.shape[0] != n:
        raise ValueError(
            f"The {name} function must return one value per example (shape ({n}, ...)), got shape "
            f"{tuple(values.shape)}; a reduced value cannot be weighted per example "
            "(cnnjax's losses take reduction='none')."
        )
    return jnp.mean(values.reshape(n, -1).astype(jnp.float32), axis=1)


def _resolve(fn: Any, what: str, table: Mapping[str, PerExample]) -> PerExample:
    if isinstance(fn, str):
        if fn not in table:
            raise ValueError(f"`{what}` must be a function or one of {sorted(table)}, got {fn!r}.")
        return table[fn]
    if not callable(fn):
        raise TypeError(f"`{what}` must be a function fn(outputs, targets) or a name, got {fn!r}.")
    if isinstance(fn, functools.partial) and fn.func in _OWN and not fn.args:
        # functools.partial(losses.sparse_categorical_crossentropy, label_smoothing=0.1): per example too
        if fn.keywords.get("reduction", "none") != "none":
            raise ValueError(f"`{what}` is {fn!r}: an objective takes one value per example, so leave "
                             "`reduction` out (fit and evaluate take the weighted mean over examples).")
        per_example = _none(functools.partial(fn.func, **{k: v for k, v in fn.keywords.items() if k != "reduction"}))
        if fn.func is losses.sparse_categorical_crossentropy:
            _CLASS_INDEX_LOSSES.add(per_example)
        return per_example
    return _OWN.get(fn, fn)


_CACHE: dict[Any, Objective] = {}


def objective(loss: str | PerExample | None = None,
              metrics: Mapping[str, str | PerExample] | Sequence[str] | None = None) -> Objective:
    """The :class:`Objective` for ``fit``/``evaluate``'s ``loss`` and ``metrics`` arguments.

    The same arguments give the same object, so repeated ``fit``/``evaluate`` calls reuse
    their compiled programs.

    Args:
      loss: a name (see the module docstring) or ``fn(outputs, targets) -> (N, ...)``;
        default sparse categorical cross-entropy on logits.
      metrics: ``{"name": fn or name}``, or a list of names; default ``["accuracy"]``
        with the default loss, and none with any other loss.

    Raises:
      ValueError, TypeError: for an unknown name or a value that is not a function.
    """
    key = (loss, tuple(metrics.items()) if isinstance(metrics, Mapping) else
           tuple(metrics) if isinstance(metrics, (list, tuple)) else metrics)
    try:
        return _CACHE[key]
    except TypeError:  # unhashable arguments: build afresh
        return _build(loss, metrics)
    except KeyError:
        return _CACHE.setdefault(key, _build(loss, metrics))


def _build(loss, metrics) -> Objective:
    loss_fn = _resolve(DEFAULT_LOSS if loss is None else loss, "loss", _LOSSES)
    if metrics is None:
        metrics = ["accuracy"] if loss is None else []
    if isinstance(metrics, str):
        raise TypeError(f"`metrics` must be a dict or a list of names, got the string {metrics!r}; use [{metrics!r}].")
    if isinstance(metrics, Mapping):
        pairs = list(metrics.items())
    elif isinstance(metrics, Sequence):
        pairs = [(name, name) for name in metrics]
    else:
        raise TypeError(f"`metrics` must be a dict {{name: fn}} or a list of names, got {metrics!r}.")
    resolved = []
    for name, fn in pairs:
        if not isinstance(name, str) or not name or name == "loss" or name.startswith("val_"):
            raise ValueError(f"`metrics` names must be strings other than 'loss' and 'val_...', got {name!r}.")
        resolved.append((name, _resolve(fn, f"metrics[{name!r}]", _METRICS)))
    return Objective(loss_fn, tuple(resolved), loss_fn in _CLASS_INDEX_LOSSES)


__all__ = ["Objective", "objective"]
