"""Backpropagation as one compiled step: ``train_step(state, batch) -> (state, metrics)``.

The lecture's slide: "Error = predicted answer - right answer", and the error flows back
into the features. Here the error is the objective's loss, its gradient with respect to
every parameter comes from ``jax.grad``, and the optax optimizer turns gradients into an
update. :func:`~cnnjax.train.fit` runs exactly these steps (inside a ``lax.scan`` or in a
Python loop); a researcher can call them directly::

    state = cnnjax.train.create_state(model)
    for images, labels in cnnjax.data.batches(x, y, 64, epoch=epoch):
        state, metrics = cnnjax.train.train_step(state, (images, labels))
    nnx.update(model, state.params, state.rest)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ._state import TrainState


def outputs_of(graphdef, params, rest, compute_dtype, x):
    """The model's outputs for ``x`` (float32 when floating) and its variables after the call."""
    if compute_dtype is not None:
        cast = lambda a: a.astype(compute_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
        params, x = jax.tree.map(cast, params), x.astype(compute_dtype)
    rest = jax.tree.map(lambda a: a, rest)  # variables of this trace, so the model may update them
    model = nnx.merge(graphdef, params, rest)
    out = model(x)
    if jnp.issubdtype(out.dtype, jnp.floating):
        out = out.astype(jnp.float32)
    return out, nnx.state(model, nnx.Not(nnx.Param))


def _batch(batch):
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise TypeError(f"`batch` must be (inputs, targets) or (inputs, targets, weights), got {type(batch).__name__}.")
    x, y = batch[0], batch[1]
    w = batch[2] if len(batch) == 3 else jnp.ones(jnp.shape(x)[:1], jnp.float32)
    return x, y, w


def _metrics(state: TrainState, means) -> dict[str, jax.Array]:
    return dict(zip(state.metric_names, means, strict=True))


@jax.jit
def train_step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a batch, in training mode.

    Args:
      state: from :func:`~cnnjax.train.create_state`.
      batch: ``(inputs, targets)`` or ``(inputs, targets, weights)``: inputs
        ``(B, *input_shape)``, targets ``(B, ...)`` as the objective takes them, weights
        ``(B,)`` float (0 excludes an example).

    Returns:
      The new state and ``{"loss", *metrics}``: weighted means over the batch, computed
      with the parameters before the update.

    With ``state.microbatches`` = k the batch is cut into k parts whose gradients (of
    their share of the batch's mean loss) add up to the whole batch's gradient.
    """
    x, y, w = _batch(batch)
    k = state.microbatches
    if x.shape[0] % k:
        raise ValueError(f"The batch of {x.shape[0]} examples does not split into `microbatches`={k} equal parts.")
    total = jnp.maximum(jnp.sum(w), 1.0)

    def loss_fn(params, rest, x, y, w, total):
        out, rest = outputs_of(state.graphdef, params, rest, state.compute_dtype, x)
        sums = jnp.sum(state.objective.per_example(out, y) * w, axis=1)
        return sums[0] / total, (sums, rest)

    # jitted so that the parts, all of one shape, share one trace of the model
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    m = x.shape[0] // k
    grads = sums = None
    for part in range(k):  # independent parts: XLA may run them side by side
        cut = slice(part * m, (part + 1) * m)
        (_, (part_sums, rest)), part_grads = grad_fn(state.params, state.rest, x[cut], y[cut], w[cut], total)
        grads = part_grads if grads is None else jax.tree.map(jnp.add, grads, part_grads)
        sums = part_sums if sums is None else sums + part_sums
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = state.replace(params=params, rest=rest, opt_state=opt_state, step=state.step + 1)
    return new, _metrics(state, sums / total)


@jax.jit
def eval_step(state: TrainState, batch) -> dict[str, jax.Array]:
    """``{"loss", *metrics}`` of ``state``'s model on ``batch`` (as :func:`train_step`
    takes it), in evaluation mode, with no update."""
    x, y, w = _batch(batch)
    out, _ = outputs_of(state.eval_graphdef, state.params, state.rest, state.compute_dtype, x)
    return _metrics(state, state.objective.weighted_means(out, y, w))


@jax.jit
def predict_step(state: TrainState, inputs: jax.Array) -> jax.Array:
    """The model's outputs for ``inputs``, in evaluation mode."""
    return outputs_of(state.eval_graphdef, state.params, state.rest, state.compute_dtype, inputs)[0]


def all_finite(state: TrainState) -> jax.Array:
    """Whether every floating-point parameter and model variable of ``state`` is finite."""
    leaves = [a for a in jax.tree.leaves((state.params, state.rest)) if jnp.issubdtype(a.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves])) if leaves else jnp.array(True)


__all__ = ["eval_step", "predict_step", "train_step"]
