"""Using a trained model: its loss and metrics on a dataset, and its predictions.

Both run the model in evaluation mode (Dropout off, BatchNorm on its running
statistics) whatever mode the model is in, and leave the model as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from .. import data
from ..activations import softmax
from . import cpu
from .. import _checks
from .objective import check_data, check_fit, objective
from .placement import Placement
from .state import TrainState, create_state
from .steps import eval_step, predict_step

_NO_OPTIMIZER = optax.identity()  # one object: evaluation states share their compiled programs


def output_shape(model: nnx.Module, inputs: np.ndarray, name: str) -> jax.ShapeDtypeStruct:
    """The model's output for one example of ``inputs``, as a shape (nothing is computed)."""
    example = jax.ShapeDtypeStruct((1, *inputs.shape[1:]), jnp.float32)
    graphdef, variables = nnx.split(model)  # called functionally: a model may update its state
    try:
        return jax.eval_shape(lambda v, x: nnx.merge(graphdef, v)(x), variables, example)
    except (ValueError, TypeError) as e:
        raise ValueError(f"`{name}` inputs of shape {inputs.shape} do not fit the model: {e}") from e


@jax.jit
def evaluate_batches(state: TrainState, inputs, targets, idx, w) -> jax.Array:
    """Means over the examples of every batch ``idx[i]`` (weights ``w[i]``), in eval mode:
    ``(len(metric_names),)``."""
    def body(total, row):
        ix, wi = row
        metrics = eval_step(state, (inputs[ix], targets[ix], wi))
        means = jnp.stack([metrics[k] for k in state.metric_names])
        return total + means * jnp.sum(wi), None

    total, _ = lax.scan(body, jnp.zeros(len(state.metric_names), jnp.float32), (idx, w))
    return total / jnp.maximum(jnp.sum(w), 1.0)


class Evaluator:
    """A dataset placed once for repeated evaluation (``fit``'s validation after every epoch)."""

    def __init__(self, placement: Placement, inputs: np.ndarray, targets: np.ndarray, batch_size: int):
        idx, w = data.batch_plan(len(inputs), batch_size, shuffle=False)
        self._args = (*placement.replicated((inputs, targets)), placement.batched(idx, 1), placement.batched(w, 1))

    def __call__(self, state: TrainState) -> dict[str, float]:
        """The means for ``state``, which must be on the same placement."""
        values = np.asarray(evaluate_batches(state, *self._args))
        return dict(zip(state.metric_names, map(float, values)))


def evaluate(model: nnx.Module, test: tuple[np.ndarray, np.ndarray], *, batch_size: int | None = None,
             loss: Any = None, metrics: Any = None, compute_dtype: Any = None,
             devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
    """The loss and metrics of ``model`` on ``(inputs, targets)``, in evaluation mode.

    Args:
      model: any ``nnx.Module``.
      test: ``(inputs, targets)`` as :func:`~cnnjax.train.fit` takes them.
      batch_size: examples per batch, a multiple of the device count; default 256
        rounded up to one.
      loss, metrics: as ``fit`` takes them (default cross-entropy and accuracy).
      compute_dtype: e.g. ``jnp.bfloat16``.
      devices: devices to split batches across (default: all).

    Returns:
      ``{"loss": ..., **metrics}``: means over the examples.
    """
    cpu.tune_cpu_memory()
    obj = objective(loss, metrics)
    inputs, targets = check_data("test", test)
    check_fit(obj, output_shape(model, inputs, "test"), "test", targets)
    placement = Placement.over(devices)
    batch_size = placement.default_batch_size(batch_size)
    state = placement.replicated(create_state(model, _NO_OPTIMIZER, loss=obj, compute_dtype=compute_dtype))
    return Evaluator(placement, inputs, targets, batch_size)(state)


def predict(model: nnx.Module, inputs: np.ndarray, *, batch_size: int | None = None, logits: bool = False,
            compute_dtype: Any = None) -> np.ndarray:
    """The model's outputs for ``inputs``, batch by batch, in evaluation mode.

    Args:
      model: any ``nnx.Module``.
      inputs: float array ``(N, *input_shape)``.
      batch_size: examples per call (default 256).
      logits: return the model's raw outputs; by default a classifier's logits are
        turned into class probabilities (softmax over the last axis).
      compute_dtype: e.g. ``jnp.bfloat16``.

    Returns:
      ``float32`` array ``(N, ...)``: ``(N, num_classes)`` for the lecture's models.
    """
    cpu.tune_cpu_memory()
    batch_size = 256 if batch_size is None else _checks.positive_int(batch_size, "batch_size")
    inputs = np.asarray(inputs)
    if not np.issubdtype(inputs.dtype, np.floating):
        raise TypeError(f"`inputs` must be floating point, got {inputs.dtype}.")
    state = create_state(model, _NO_OPTIMIZER, compute_dtype=compute_dtype)
    out = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        pad = batch_size - len(chunk) if len(inputs) > batch_size else 0
        if pad:  # one shape for every call: one compile
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(predict_step(state, chunk))[: len(chunk) - pad])
    result = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return result if logits else np.asarray(softmax(result))


__all__ = ["Evaluator", "evaluate", "evaluate_batches", "output_shape", "predict"]
