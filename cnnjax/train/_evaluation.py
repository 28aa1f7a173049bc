"""Using a trained model: its loss and metrics on a dataset, and its predictions.

Both run the model in evaluation mode (Dropout off, BatchNorm on its running
statistics) whatever mode the model is in, and leave the model as it was.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax
from jax.typing import ArrayLike

from .. import _checks, data
from .._activations import softmax
from .._modes import mode_preserved
from ._cpu import tune_cpu_memory
from ._inputs import (
    check_data,
    check_fit,
    check_input_dtype,
    check_stream_shape,
    empty_stream,
    is_input_stream,
    is_stream,
    output_shape,
    pad_batch,
    stream_batch,
    stream_inputs,
    warn_if_unscaled,
    warn_many_shapes,
    warn_not_finite,
)
from ._objective import objective
from ._placement import Placement, Rows
from ._state import TrainState, check_model, create_state
from ._steps import eval_step, outputs_of

_NO_OPTIMIZER = optax.identity()  # one object: evaluation states share their compiled programs


@jax.jit
def evaluate_batches(state: TrainState, xs, ys, w) -> jax.Array:
    """Means over the examples of every batch ``(xs[i], ys[i])`` (weights ``w[i]``), in eval
    mode: ``(len(metric_names),)``."""
    def body(total, row):
        metrics = eval_step(state, row)
        means = jnp.stack([metrics[k] for k in state.metric_names])
        return total + means * jnp.sum(row[2]), None

    total, _ = lax.scan(body, jnp.zeros(len(state.metric_names), jnp.float32), (xs, ys, w))
    return total / jnp.maximum(jnp.sum(w), 1.0)


class Evaluator:
    """A dataset placed once for repeated evaluation (``fit``'s validation after every epoch),
    as batches split across the devices: each device holds its slices only, and each
    process reads only its devices' examples."""

    def __init__(self, placement: Placement, inputs: np.ndarray, targets: np.ndarray, batch_size: int,
                 name: str = "validation"):
        if isinstance(inputs, np.ndarray) and np.issubdtype(inputs.dtype, np.floating) and inputs.size:
            bad = np.flatnonzero(~np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1))
            if len(bad):
                warn_not_finite(name, f"example {int(bad[0])}, in batch {int(bad[0]) // batch_size} of "
                                      f"{batch_size}")
        idx, w = data.batch_plan(inputs.shape[0], batch_size, shuffle=False)
        self._args = tuple(placement.batched(a, 1) for a in (Rows(inputs, idx), Rows(targets, idx), w))

    def __call__(self, state: TrainState) -> dict[str, float]:
        """The means for ``state``, which must be on the same placement."""
        values = np.asarray(evaluate_batches(state, *self._args))
        return dict(zip(state.metric_names, map(float, values), strict=True))


_eval_step = jax.jit(eval_step)


class StreamEvaluator:
    """A stream of ``(inputs, targets)`` batches (as :func:`~cnnjax.train.fit` takes them)
    evaluated batch by batch, iterated anew on every call; each batch padded to the first
    one's size with zero-weight examples, so the step compiles once.

    Args:
      placement: the mesh the batches are split across.
      stream: a re-iterable stream (a list, a ``DataLoader``); an iterator is read once.
      name: what errors call it (``"test"``, ``"validation"``).
      check: called with the first batch's ``(inputs, targets)`` before anything runs.
      first_iterator: the iterator the first call reads (one already begun to check the
        stream's first batch), so that each call makes one ``iter()`` at most.
    """

    def __init__(self, placement: Placement, stream, name: str, check=None, first_iterator=None):
        self.placement, self.stream, self.name, self.check = placement, stream, name, check
        self._next, self._warned = first_iterator, False

    def __call__(self, state: TrainState) -> dict[str, float]:
        totals, count, size, warned = np.zeros(len(state.metric_names)), 0, None, self._warned
        batches, self._next = (self._next if self._next is not None else self.stream), None
        for k, batch in enumerate(batches):
            where = f"Batch {k} of the `{self.name}` stream"
            x, y = stream_batch(batch, where, self.name)
            if size is None:
                if self.check is not None:
                    self.check(x, y)
                size, shape = -(-len(x) // self.placement.size) * self.placement.size, x.shape[1:]
                shapes = {shape}
            check_stream_shape(x, shape, where, size)
            shapes.add(x.shape[1:])
            warn_many_shapes(shapes, self.name)
            if not warned and np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
                warned = True
                warn_not_finite(self.name, f"batch {k} of the stream")
            n = len(x)
            x, y, w = pad_batch(x, y, size)
            means = _eval_step(state, tuple(self.placement.batched(a, 0) for a in (x, y, w)))
            totals += np.array([float(means[m]) for m in state.metric_names]) * n
            count += n
        self._warned = warned  # once a fit, not after every epoch
        if count == 0:
            raise empty_stream(self.name)
        return dict(zip(state.metric_names, (totals / count).tolist(), strict=True))


def evaluate(model: nnx.Module, test: tuple[np.ndarray, np.ndarray], *, batch_size: int | None = None,
             loss: Any = None, metrics: Any = None, compute_dtype: Any = None,
             devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
    """The loss and metrics of ``model`` on ``(inputs, targets)``, in evaluation mode.

    Args:
      model: any ``nnx.Module``.
      test: ``(inputs, targets)`` as :func:`~cnnjax.train.fit` takes them, arrays or a
        stream of batches (the stream's own batches are used; ``batch_size`` is for arrays).
      batch_size: examples per batch, a multiple of the device count; default 256
        rounded up to one.
      loss, metrics: as ``fit`` takes them (default cross-entropy and accuracy).
      compute_dtype: e.g. ``jnp.bfloat16``.
      devices: devices to split batches across (default: all).

    Returns:
      ``{"loss": ..., **metrics}``: means over the examples.
    """
    check_model(model)
    tune_cpu_memory()
    obj = objective(loss, metrics)
    if is_stream(test):
        if batch_size is not None:
            raise ValueError("`batch_size` is for arrays: a stream of batches brings its own batches.")
        placement = Placement.over(devices)
        state = placement.replicated(create_state(model, _NO_OPTIMIZER, loss=obj, compute_dtype=compute_dtype))
        check = lambda x, y: check_fit(obj, output_shape(model, x, "test"), "test", y)
        return StreamEvaluator(placement, test, "test", check)(state)
    inputs, targets = check_data("test", test)
    warn_if_unscaled("test", inputs)
    check_fit(obj, output_shape(model, inputs, "test"), "test", targets)
    placement = Placement.over(devices)
    batch_size = placement.default_batch_size(batch_size)
    state = placement.replicated(create_state(model, _NO_OPTIMIZER, loss=obj, compute_dtype=compute_dtype))
    return Evaluator(placement, inputs, targets, batch_size, "test")(state)


def bucket(n: int, batch_size: int) -> int:
    """The batch a call on ``n`` examples is padded to: the next power of two, at most
    ``batch_size``; so calls on any number of examples compile at most
    ``log2(batch_size) + 2`` shapes."""
    return min(batch_size, 1 << max(n - 1, 0).bit_length())


class Predictor:
    """A model's predictions, called again and again with little Python per call.

    ``Predictor(model)(inputs)`` equals ``predict(model, inputs)``. It reads the model's
    structure once and its weights on every call, so training the model between calls
    (``fit``, ``nnx.update``) is seen; after changing the model's structure (adding or
    replacing a layer or a variable), make a new one. Batches are padded to a power of
    two (:func:`bucket`), so a stream of calls on varying small batches compiles a few
    shapes only.

    Args:
      model: any ``nnx.Module``; run in evaluation mode, left in its mode.
      batch_size: examples per compiled call (default 256).
      probabilities: apply a softmax over the last axis (a classifier's logits into class
        probabilities); by default the model's outputs are returned as they are.
      compute_dtype: e.g. ``jnp.bfloat16``.

    Example::

        predictor = cnnjax.train.Predictor(model)
        for image in stream:                  # one (28, 28, 1) image at a time
            logits = predictor(image[None])[0]
    """

    def __init__(self, model: nnx.Module, *, batch_size: int | None = None, probabilities: bool = False,
                 compute_dtype: Any = None, logits: Any = None):
        check_model(model)
        _check_probabilities(probabilities, logits)
        tune_cpu_memory()
        self._model = model  # what inputs it takes (check_input_dtype)
        self.batch_size = 256 if batch_size is None else _checks.positive_int(batch_size, "batch_size")
        with mode_preserved(model):
            model.eval()
            graphdef, variables = nnx.split(model)  # the model's own Variable objects
        params_first = lambda pair: not isinstance(pair[1], nnx.Param)
        pairs = sorted(nnx.to_flat_state(variables), key=params_first)
        self._variables = [v for _, v in pairs]
        paths = tuple(path for path, _ in pairs)
        n_params = sum(isinstance(v, nnx.Param) for v in self._variables)
        self._forward = _forward(graphdef, paths[:n_params], paths[n_params:],
                                 None if compute_dtype is None else jnp.dtype(compute_dtype), probabilities)

    def __call__(self, inputs: ArrayLike) -> np.ndarray:
        """The outputs for ``inputs (N, *input_shape)``, float32 ``(N, ...)``; or for a stream of
        batches (see :func:`predict`), every batch's outputs in the stream's order."""
        if is_input_stream(inputs):
            return self._stream(inputs)
        inputs = np.asarray(inputs)
        check_input_dtype(self._model, "predict", inputs.dtype)
        if inputs.ndim == 0:
            raise ValueError("`inputs` must be an array (N, *input_shape), got a scalar.")
        values = [v.get_raw_value() for v in self._variables]
        out = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            pad = bucket(len(chunk), self.batch_size) - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            out.append(np.asarray(self._forward(values, chunk))[: len(chunk) - pad])
        if not out:
            shape = jax.eval_shape(self._forward, values, jax.ShapeDtypeStruct((1, *inputs.shape[1:]), inputs.dtype))
            return np.zeros((0, *shape.shape[1:]), np.float32)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _stream(self, stream) -> np.ndarray:
        out, shape = [], None
        for k, batch in enumerate(stream):
            where = f"Batch {k} of the `inputs` stream"
            x = stream_inputs(batch, where)
            if x.ndim == 0:
                raise ValueError(f"{where} holds inputs of shape {x.shape}; every batch must hold examples of "
                                 "shape (N, *input_shape).")
            if shape is None:
                shape, shapes = x.shape[1:], set()
            check_stream_shape(x, shape, where)
            shapes.add(x.shape[1:])
            warn_many_shapes(shapes, "inputs")
            try:
                out.append(self(x))
            except (TypeError, ValueError) as e:
                raise type(e)(f"{where}: {e}") from None
            if out[-1].shape[1:] != out[0].shape[1:]:
                raise ValueError(f"{where} gives outputs of shape {out[-1].shape}, the first batch "
                                 f"{out[0].shape}: a stream's outputs are joined along the first axis, so each "
                                 "example's must have one shape.")
        if not out:
            raise empty_stream("inputs")
        return np.concatenate(out)


def _check_probabilities(probabilities: Any, logits: Any) -> None:
    if logits is not None:
        raise TypeError(f"`logits`={logits!r} is no longer an argument: predict returns the model's outputs as they "
                        "are (a classifier's logits), as Keras' and Flax's do; pass probabilities=True for a softmax "
                        "over the last axis.")
    if not isinstance(probabilities, bool):
        raise TypeError(f"`probabilities` must be a bool, got {probabilities!r}.")


@functools.lru_cache(maxsize=64)
def _forward(graphdef, param_paths, rest_paths, compute_dtype, probabilities):
    """The jitted forward of a model structure, ``f(values, x)``: one per structure, so
    every Predictor of one model shares its compiled programs."""

    def forward(values, x):
        params = nnx.from_flat_state(list(zip(param_paths, values[:len(param_paths)], strict=True)))
        rest = nnx.from_flat_state(list(zip(rest_paths, values[len(param_paths):], strict=True)))
        out, _ = outputs_of(graphdef, params, rest, compute_dtype, x)
        if not probabilities:
            return out
        if out.ndim < 2 or out.shape[-1] < 2:
            raise ValueError(f"`probabilities=True` takes a softmax over the last axis of the model's outputs, but "
                             f"they have shape {tuple(out.shape)} (batch first): a softmax over fewer than two "
                             "outputs is 1 whatever the model says. Leave it False for a regression model.")
        return softmax(out)

    return jax.jit(forward)


def predict(model: nnx.Module, inputs: ArrayLike, *, batch_size: int | None = None, probabilities: bool = False,
            compute_dtype: Any = None, logits: Any = None) -> np.ndarray:
    """The model's outputs for ``inputs``, batch by batch, in evaluation mode.

    Args:
      model: any ``nnx.Module``.
      inputs: float array ``(N, *input_shape)``, or a stream of batches (as Keras'
        ``predict`` takes a generator): an iterable such as a generator, a torch
        ``DataLoader`` or a tf.data/grain dataset, of arrays, ``(inputs, targets)`` tuples
        (targets ignored) or dicts with ``"image"``, ``"x"`` or ``"inputs"``; every batch
        of the same example shape.
      batch_size: examples per call (default 256).
      probabilities: turn a classifier's logits into class probabilities (a softmax over
        the last axis); refused for outputs with fewer than two values per example. By
        default the model's outputs are returned as they are, as Keras' ``predict`` and
        a Flax model's call give them.
      compute_dtype: e.g. ``jnp.bfloat16``.
      logits: refused (it was the old way to ask for the raw outputs, now the default).

    Returns:
      ``float32`` array ``(N, ...)``: ``(N, num_classes)`` logits for the lecture's models.

    For many calls on a few examples each, :class:`Predictor` reads the model's
    structure once instead of on every call.
    """
    return Predictor(model, batch_size=batch_size, probabilities=probabilities, compute_dtype=compute_dtype,
                     logits=logits)(inputs)


__all__ = ["Predictor", "evaluate", "predict"]
