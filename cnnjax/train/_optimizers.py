"""The optimizer the lecture compiles with (``optimizer='rmsprop'``), as optax; Keras'
``MaxNorm`` constraint (Kim (2014)'s l2 constraint) as an optax transformation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def rmsprop(learning_rate: float | optax.Schedule = 1e-3, rho: float = 0.9,
            epsilon: float = 1e-7) -> optax.GradientTransformation:
    """Keras' RMSprop defaults, as optax: ``v = rho v + (1 - rho) g^2``, ``w -= lr g / (sqrt(v) + eps)``.

    Epsilon is added outside the square root, as in Keras 2 / ``tf.keras`` (which
    produced the lecture's printed run). Keras 3 adds it inside (``sqrt(v + eps)``);
    the two differ only while ``v`` is near zero.

    The hyperparameters live in the optimizer's state (``optax.inject_hyperparams``), so
    :func:`learning_rate` can read the rate in use, schedules included, and
    :func:`cnnjax.train.fit` logs it every epoch.
    """
    factory = optax.inject_hyperparams(optax.rmsprop, static_args=("eps_in_sqrt",))
    return factory(learning_rate=learning_rate, decay=rho, eps=epsilon, eps_in_sqrt=False)


DEFAULT_OPTIMIZER = rmsprop()
"""The optimizer :func:`cnnjax.train.fit` uses when none is given. One shared object, so
that repeated ``fit`` calls reuse their compiled steps."""


def learning_rate(opt_state: Any) -> float | None:
    """The learning rate an optimizer state holds, or None when it holds none.

    Optimizers built with ``optax.inject_hyperparams`` (such as :func:`rmsprop`) keep
    their hyperparameters in their state; for a schedule it is the rate of the last step.
    """
    is_injected = lambda s: isinstance(s, optax.InjectHyperparamsState | optax.InjectStatefulHyperparamsState)
    for node in jax.tree.leaves(opt_state, is_leaf=is_injected):
        if is_injected(node) and "learning_rate" in node.hyperparams:
            return float(np.asarray(jax.device_get(node.hyperparams["learning_rate"])))
    return None


def set_learning_rate(opt_state: Any, rate: float) -> Any:
    """``opt_state`` with the learning rate it holds replaced by ``rate`` (every
    ``optax.inject_hyperparams`` state's ``"learning_rate"``, its dtype and placement kept);
    what :class:`~cnnjax.train.ReduceLROnPlateau` changes. A rate that follows a schedule is
    computed anew at the next step.

    Raises:
      ValueError: if the state holds no learning rate (an optimizer not built with
        ``optax.inject_hyperparams``), or ``rate`` is not a finite number >= 0.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not np.isfinite(rate) or rate < 0:
        raise ValueError(f"`rate` must be a finite number >= 0, got {rate!r}.")
    if learning_rate(opt_state) is None:
        raise ValueError("`opt_state` holds no learning rate to change: build the optimizer with "
                         "optax.inject_hyperparams, e.g. optax.inject_hyperparams(optax.adam)(learning_rate=1e-3) "
                         "(cnnjax.train.rmsprop does).")
    is_injected = lambda s: isinstance(s, optax.InjectHyperparamsState | optax.InjectStatefulHyperparamsState)

    def replace(node):
        if not is_injected(node) or "learning_rate" not in node.hyperparams:
            return node
        old = node.hyperparams["learning_rate"]
        new = jnp.asarray(rate, dtype=jnp.result_type(old))
        if isinstance(old, jax.Array):
            new = jax.device_put(new, old.sharding)
        return node._replace(hyperparams={**node.hyperparams, "learning_rate": new})

    return jax.tree.map(replace, opt_state, is_leaf=is_injected)


def per_epoch(schedule: Callable[[Any], Any], steps_per_epoch: int) -> optax.Schedule:
    """An optax schedule (a function of the step) from one of the epoch: the rate of epoch
    ``step // steps_per_epoch`` (0-based), as a PyTorch scheduler stepped once an epoch
    gives it. PyTorch's ``StepLR(optimizer, step_size=1, gamma=0.7)`` over Adadelta at 1.0::

        steps = cnnjax.train.epoch_steps(len(x), batch_size=64)
        optimizer = optax.adadelta(train.per_epoch(lambda epoch: 1.0 * 0.7 ** epoch, steps))

    Args:
      schedule: ``fn(epoch) -> rate``, with ``epoch`` an integer array (jnp operations).
      steps_per_epoch: optimizer steps in an epoch (:func:`~cnnjax.train.epoch_steps`
        for arrays; ``len(loader)`` for a DataLoader).
    """
    if not callable(schedule):
        raise TypeError(f"`schedule` must be a function of the epoch, got {schedule!r}.")
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, (int, np.integer)) or steps_per_epoch < 1:
        raise ValueError(f"`steps_per_epoch` must be an int >= 1, got {steps_per_epoch!r}.")
    steps = int(steps_per_epoch)
    return lambda step: schedule(step // steps)


def max_norm(limit: float, where: Callable[[str], bool], *, axis: int = 0) -> optax.GradientTransformation:
    """Keeps weight vectors within an l2 norm, as Keras' ``MaxNorm`` constraint and Kim
    (2014)'s "rescale w to have ||w|| = s whenever ||w|| > s after a gradient descent step".

    Chain it after the optimizer, ``optax.chain(optax.adadelta(1.0), max_norm(3.0, where))``:
    it changes each update so that the parameters after the step are the parameters the
    optimizer gave, each vector (the slices along ``axis``: for a dense kernel ``(in, out)``
    and ``axis=0``, each output's incoming weights) scaled down to norm ``limit`` when it is
    longer. Other parameters are untouched.

    Args:
      limit: the largest norm, > 0.
      where: called with each parameter's path, e.g. ``"classifier/kernel"``; True for the
        parameters to constrain.
      axis: the axis each vector runs along.
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not np.isfinite(limit) or limit <= 0:
        raise ValueError(f"`limit` must be a finite number > 0, got {limit!r}.")
    if not callable(where):
        raise TypeError(f"`where` must be a callable taking a parameter's path, e.g. "
                        f"lambda path: path.endswith('kernel'), got {where!r}.")

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("max_norm needs the parameters: call the optimizer's update with `params`.")

        def project(path, u, p):
            if not where(_path_name(path)):
                return u
            new = p + u
            norms = jnp.sqrt(jnp.sum(jnp.square(new), axis=axis, keepdims=True))
            scale = jnp.minimum(1, limit / jnp.maximum(norms, jnp.finfo(new.dtype).tiny))
            return new * scale - p

        return jax.tree_util.tree_map_with_path(project, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _path_name(path) -> str:
    """``"classifier/kernel"`` for a tree path (dict keys, attributes, indices)."""
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
    return "/".join(n for n in names if n != "value")


__all__ = ["DEFAULT_OPTIMIZER", "learning_rate", "max_norm", "per_epoch", "rmsprop", "set_learning_rate"]
