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
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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


def _is_source(x: Any) -> bool:
    """Whether ``x`` is a random-access source read lazily (an h5py or zarr dataset, a
    grain-style source with ``shape`` and ``dtype``) rather than an array to convert."""
    return (not isinstance(x, (np.ndarray, jax.Array)) and hasattr(x, "__getitem__")
            and isinstance(getattr(x, "shape", None), tuple) and hasattr(x, "dtype"))


def takes_integers(model: Any) -> bool:
    """Whether ``model`` takes integer inputs (token ids): it says so with an integer
    ``input_dtype`` attribute, as :class:`cnnjax.models.SentenceCNN` does (Keras' ``Input(dtype=)``)."""
    dtype = getattr(model, "input_dtype", None)
    return dtype is not None and np.issubdtype(np.dtype(dtype), np.integer)


def check_input_dtype(model: Any, name: str, dtype: Any) -> None:
    """Floating-point inputs for a model of images or sound; integer ids for a model that
    declares them (:func:`takes_integers`): the other kind is refused, naming ``name``."""
    dtype = np.dtype(dtype)
    if takes_integers(model):
        if not np.issubdtype(dtype, np.integer):
            raise TypeError(f"`{name}` inputs must be integer ids for this model (its input_dtype is "
                            f"{np.dtype(model.input_dtype).name}), got {dtype}.")
    elif not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"`{name}` inputs must be floating point, got {dtype}; scale images first, "
            f"e.g. `cnnjax.data.to_float_images(images)` (uint8 -> float32 in [0, 1]). (A model that takes "
            f"integer ids says so with an integer `input_dtype` attribute, as models.sentence_cnn does.)"
        )


def check_data(name: str, pair: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` checked: float (or integer) inputs, N of each, N > 0; which
    kind of inputs the model takes is :func:`check_input_dtype`'s check. Targets become NumPy
    arrays; inputs too, unless they are a NumPy array already (a memory map stays one) or
    a random-access source (shape, dtype, ``source[indices]``), which training reads a
    batch slice at a time."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"`{name}` must be an (inputs, targets) pair of arrays, got {type(pair).__name__}.")
    inputs = pair[0] if _is_source(pair[0]) else np.asarray(pair[0])
    targets = np.asarray(pair[1])
    if not (np.issubdtype(inputs.dtype, np.floating) or np.issubdtype(inputs.dtype, np.integer)):
        raise TypeError(f"`{name}` inputs must be floating point (or integer ids, for a model that takes them), "
                        f"got {inputs.dtype}.")
    if not (np.issubdtype(targets.dtype, np.number) or targets.dtype == np.bool_):
        raise TypeError(f"`{name}` targets must be numbers, got dtype {targets.dtype}.")
    if len(inputs.shape) < 1 or targets.ndim < 1 or inputs.shape[0] != len(targets):
        raise ValueError(
            f"`{name}` must hold N inputs and N targets (first axis N), got inputs {inputs.shape} "
            f"and targets {targets.shape}."
        )
    if len(targets) == 0:
        raise ValueError(f"`{name}` is empty.")
    if np.issubdtype(targets.dtype, np.integer):
        info = np.iinfo(np.int32)
        if targets.dtype.itemsize > 4 or targets.dtype == np.uint32:  # would wrap on the cast below
            bad = np.flatnonzero((targets < info.min) | (targets > info.max))
            if len(bad):
                raise ValueError(f"`{name}` targets must fit in int32, got {targets.flat[bad[0]]} at index "
                                 f"{np.unravel_index(bad[0], targets.shape)[0]} (dtype {targets.dtype}).")
        targets = targets.astype(np.int32)
    elif np.issubdtype(targets.dtype, np.floating) and targets.dtype != np.float32:
        targets = targets.astype(np.float32)
    return inputs, targets


UNSCALED_SAMPLE = 256
"""Rows :func:`warn_if_unscaled` reads, spread evenly over the inputs."""


def warn_if_unscaled(name: str, inputs: Any) -> None:
    """Warns (once per call) when ``inputs`` look like unscaled pixels: every value read a
    whole number, none negative, some above 1 (as ``uint8`` images cast to float without
    ``/ 255``). Such inputs train far worse (the lecture's model: loss 107 against 2.3
    after one epoch) and nothing else fails. Reads :data:`UNSCALED_SAMPLE` rows of a NumPy
    array or memory map; another random-access source is not read (each process reads
    only its own slices of it)."""
    if not isinstance(inputs, np.ndarray) or not np.issubdtype(inputs.dtype, np.floating):
        return
    n = inputs.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, UNSCALED_SAMPLE)).astype(np.int64))
    sample = np.asarray(inputs[rows])
    sample = sample[np.isfinite(sample)]
    if sample.size and sample.min() >= 0 and sample.max() > 1 and np.all(sample == np.round(sample)):
        warnings.warn(
            f"`{name}` inputs look unscaled: whole numbers from {sample.min():g} to {sample.max():g} in the "
            f"{len(rows)} rows read. Images train best in [0, 1]: `cnnjax.data.to_float_images(uint8_images)` "
            f"or `x / 255`.", UserWarning, stacklevel=3)


def check_fit(obj: Objective, outputs: jax.ShapeDtypeStruct, name: str, targets: np.ndarray) -> None:
    """Checks, before anything compiles, that ``obj`` can score the model's ``outputs``
    (for one example) against ``name``'s targets, and that class-index targets are in range."""
    example = jax.ShapeDtypeStruct((1, *targets.shape[1:]), targets.dtype)
    if obj.class_indices:
        if not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(
                f"`{name}` targets must be integer class indices for the default loss "
                f"(sparse categorical cross-entropy), got dtype {targets.dtype}; give `loss=` for "
                f"other targets (e.g. loss='categorical_crossentropy' for one-hot rows, 'mse' for regression)."
            )
        if len(outputs.shape) != targets.ndim + 1:
            raise ValueError(
                f"The model returns outputs of shape {tuple(outputs.shape)} for one example, which do not "
                f"hold class scores for `{name}` targets of shape {targets.shape[1:]} per example: "
                f"expected outputs of shape (1, {', '.join(map(str, targets.shape[1:] + ('classes',)))})."
            )
    try:
        jax.eval_shape(obj.per_example, outputs, example)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"The objective cannot score the model's outputs of shape {tuple(outputs.shape)} against "
            f"`{name}` targets of shape {targets.shape[1:]} per example ({targets.dtype}): {e}"
        ) from e
    if obj.class_indices:
        classes = outputs.shape[-1]
        losses.check_labels(targets, classes, f"`{name}` targets", f" for a model with {classes} outputs")


__all__ = ["Objective", "objective"]
