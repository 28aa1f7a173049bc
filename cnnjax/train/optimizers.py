"""The optimizer the lecture compiles with (``optimizer='rmsprop'``), as optax."""

from __future__ import annotations

from typing import Any

import jax
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


__all__ = ["DEFAULT_OPTIMIZER", "learning_rate", "rmsprop"]
