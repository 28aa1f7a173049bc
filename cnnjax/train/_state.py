"""The training state: a model's variables, the optimizer's state, and how to run them.

A flax ``nnx.Module`` holds its variables as Python attributes; a compiled step needs
them as arrays. :func:`create_state` splits the model once (``nnx.split``) into its
structure (the *graphdef*) and its variables, as flax's own ``TrainState`` pattern does,
and keeps two structures: the model in training mode (Dropout on, BatchNorm using and
updating batch statistics) and in evaluation mode (``model.eval()``), so a step never
depends on the mode the user's model happens to be in.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from .. import _checks
from .._modes import mode_preserved
from ._cpu import tune_cpu_memory
from ._objective import Objective, objective
from ._optimizers import DEFAULT_OPTIMIZER


def check_model(model: Any) -> nnx.Module:
    """Returns ``model`` if it is an ``nnx.Module`` that can be called as ``model(x)``, or
    raises ``TypeError`` saying what it is or what to change."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"`model` must be a flax.nnx Module (e.g. cnnjax.models.mnist_functional(rngs=nnx.Rngs(0))), "
                        f"got {type(model).__name__}: {model!r:.80}.")
    try:
        parameters = list(inspect.signature(model.__call__).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the call itself will tell
        return model
    needed = [p.name for p in parameters[1:] if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                                     p.POSITIONAL_OR_KEYWORD,
                                                                                     p.KEYWORD_ONLY)]
    if needed:
        raise TypeError(
            f"`model` is called as model(x), but {type(model).__name__}.__call__ also requires "
            f"{', '.join(f'`{n}`' for n in needed)}. Training and evaluation switch modes with model.train() and "
            f"model.eval() (Dropout and BatchNorm follow them) and Dropout draws from its own stream "
            f"(nnx.Dropout(rate, rngs=rngs)): give {'them defaults' if len(needed) > 1 else 'it a default'}, "
            f"or wrap the model in an nnx.Module whose __call__ takes x alone.")
    return model


def graphdefs(model: nnx.Module) -> tuple[Any, Any]:
    """The model's structure in training mode and in evaluation mode; ``model`` is unchanged."""
    with mode_preserved(model):
        model.train()
        train = nnx.graphdef(model)
        model.eval()
        return train, nnx.graphdef(model)


def has_batch_state(model_state: Any) -> bool:
    """Whether non-parameter variables other than random-number streams are present (e.g.
    BatchNorm's statistics): variables that every example of a batch moves."""
    is_var = lambda v: isinstance(v, nnx.Variable)
    return any(not isinstance(v, nnx.RngState) for v in jax.tree.leaves(model_state, is_leaf=is_var))


@struct.dataclass
class TrainState:
    """Everything a training step reads and writes; a pytree, so it passes through ``jit``.

    Attributes:
      params: the model's ``nnx.Param`` variables (an ``nnx.State``).
      rest: the model's other variables (an ``nnx.State``: batch statistics, random
        number streams; often empty).
      opt_state: the optimizer's state.
      step: number of steps taken (int32 scalar).
      graphdef, eval_graphdef: static: the model's structure in training and in
        evaluation mode.
      tx: static: the optax optimizer.
      objective: static: the loss and metrics (:class:`~cnnjax.train.Objective`).
      compute_dtype: static: e.g. ``bfloat16`` (``None``: the parameters' dtype).
      microbatches: static: how many parts each batch is split into.
    """

    params: Any
    rest: Any
    opt_state: Any
    step: jax.Array
    graphdef: Any = struct.field(pytree_node=False)
    eval_graphdef: Any = struct.field(pytree_node=False)
    tx: Any = struct.field(pytree_node=False)
    objective: Objective = struct.field(pytree_node=False)
    compute_dtype: Any = struct.field(pytree_node=False, default=None)
    microbatches: int = struct.field(pytree_node=False, default=1)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """``("loss", *metrics)``: the names of the values every step reports."""
        return self.objective.names


def create_state(model: nnx.Module, optimizer: optax.GradientTransformation | None = None, *,
                 loss: Any = None, metrics: Any = None, compute_dtype: Any = None,
                 microbatches: int = 1) -> TrainState:
    """The training state of ``model`` (not modified) for ``optimizer`` (default
    :func:`~cnnjax.train.rmsprop`).

    Args:
      model: any ``nnx.Module``.
      optimizer: any optax transformation (schedules included).
      loss, metrics: the objective, as :func:`~cnnjax.train.objective` takes them;
        default sparse categorical cross-entropy and accuracy.
      compute_dtype: e.g. ``jnp.bfloat16`` to compute in bfloat16 while parameters and
        optimizer state stay float32 (for GPUs and TPUs).
      microbatches: split every batch into this many equal parts, each differentiated
        on its own, and sum their gradients: the same update up to float rounding (see
        :func:`~cnnjax.train.auto_microbatches`). Needs a model whose only variables
        are parameters: batch statistics or random streams would be computed per part.
    """
    tune_cpu_memory()
    tx = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"`optimizer` must be an optax.GradientTransformation, got {tx!r}.")
    obj = loss if isinstance(loss, Objective) and metrics is None else objective(loss, metrics)
    microbatches = _checks.positive_int(microbatches, "microbatches")
    train_graphdef, eval_graphdef = graphdefs(model)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    if microbatches > 1 and jax.tree.leaves(rest):
        kinds = {type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable))}
        raise ValueError(
            f"`microbatches`={microbatches} needs a model whose only variables are parameters; "
            f"this one also has {sorted(kinds)}, which would be computed per part of the batch. "
            "Use microbatches=1."
        )
    # jitted: one small program instead of one compiled operation per parameter shape
    opt_state = jax.jit(tx.init)(params)
    return TrainState(params, rest, opt_state, jnp.zeros((), jnp.int32), train_graphdef, eval_graphdef,
                      tx, obj, None if compute_dtype is None else jnp.dtype(compute_dtype), microbatches)


__all__ = ["TrainState", "create_state"]
