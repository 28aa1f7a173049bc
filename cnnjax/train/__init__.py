"""Backpropagation: training any flax.nnx model with JIT-compiled Optax steps.

The lecture's Keras code, and its cnnjax equivalent::

    model.compile(optimizer='rmsprop', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(train_images, train_labels, epochs=5, batch_size=64,
                        validation_data=(test_images, test_labels))

    history = cnnjax.train.fit(model, (train_images, train_labels), epochs=5, batch_size=64,
                               validation=(test_images, test_labels))

The parts, one module each:

- ``_objective.py``: :func:`objective`, the loss and metrics (any ``fn(outputs, targets)``).
- :mod:`~cnnjax.train.optimizers`: Keras' RMSprop as optax, and the max-norm constraint.
- :mod:`~cnnjax.train.state`: :class:`TrainState` (the model split into structure and
  variables, in training and evaluation mode) and :func:`create_state`.
- :mod:`~cnnjax.train.steps`: :func:`train_step`, :func:`eval_step`, :func:`predict_step`
  -- pure, jitted, what ``fit`` runs and what a custom loop calls.
- :mod:`~cnnjax.train.placement`: the device mesh and how arrays go onto it.
- :mod:`~cnnjax.train.runner`: an epoch's steps in segments, on-device (``lax.scan``)
  or in a Python loop.
- :mod:`~cnnjax.train.callbacks`: progress, History, NaN guard, EarlyStopping.
- :mod:`~cnnjax.train.checkpoints`: orbax checkpoints of named state trees, resume,
  the run directory's lock (orbax imported on first use).
- :mod:`~cnnjax.train.fingerprint`: what makes a run that run (settings, data, optimizer,
  loss), recorded in its checkpoints and checked on resume.
- :mod:`~cnnjax.train.cpu`: CPU tuning (malloc, micro-batches).
- ``_fit.py`` and :mod:`~cnnjax.train.evaluation`: :func:`fit`, ``evaluate``,
  ``predict`` and :class:`Predictor` (many small calls).

- :mod:`~cnnjax.train.distributed`: training across processes (one per host or GPU):
  :func:`~cnnjax.train.distributed.initialize` on every process, then ``fit`` as usual;
  every process holds the same dataset and seed and feeds its own devices' slices of
  each global batch, so 2 processes of 1 device compute what 1 process of 2 devices does.
"""

from . import checkpoints, distributed
from ._fit import fit
from ._objective import Objective, objective
from .callbacks import (
    Callback,
    EarlyStopping,
    History,
    LambdaCallback,
    MonitorCallback,
    ProgressBar,
    ReduceLROnPlateau,
    Run,
    StopTraining,
    TerminateOnNaN,
)
from .checkpoints import ModelCheckpoint, restore
from .cpu import auto_microbatches, tune_cpu_memory
from .evaluation import Predictor, evaluate, predict
from .optimizers import DEFAULT_OPTIMIZER, learning_rate, max_norm, per_epoch, rmsprop, set_learning_rate
from .runner import choose_loop, epoch_steps
from .state import TrainState, create_state
from .steps import eval_step, predict_step, train_step

__all__ = [
    "DEFAULT_OPTIMIZER",
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "MonitorCallback",
    "Objective",
    "Predictor",
    "ProgressBar",
    "ReduceLROnPlateau",
    "Run",
    "StopTraining",
    "TerminateOnNaN",
    "TrainState",
    "auto_microbatches",
    "checkpoints",
    "choose_loop",
    "create_state",
    "distributed",
    "epoch_steps",
    "eval_step",
    "evaluate",
    "fit",
    "learning_rate",
    "max_norm",
    "objective",
    "per_epoch",
    "predict",
    "predict_step",
    "restore",
    "rmsprop",
    "set_learning_rate",
    "train_step",
    "tune_cpu_memory",
]
