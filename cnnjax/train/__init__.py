"""Backpropagation: training any flax.nnx model with JIT-compiled Optax steps.

The lecture's Keras code, and its cnnjax equivalent::

    model.compile(optimizer='rmsprop', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(train_images, train_labels, epochs=5, batch_size=64,
                        validation_data=(test_images, test_labels))

    history = cnnjax.train.fit(model, (train_images, train_labels), epochs=5, batch_size=64,
                               validation=(test_images, test_labels))

The parts, one module each; the two public ones (``checkpoints``, ``distributed``) are
namespaces of their own, the others private, their names re-exported here:

- ``_inputs.py``: what ``fit``, ``evaluate`` and ``predict`` accept (arrays, random-access
  sources, streams of batches), decided and checked once.
- ``_objective.py``: :func:`objective`, the loss and metrics (any ``fn(outputs, targets)``).
- ``_optimizers.py``: Keras' RMSprop as optax, the max-norm constraint, the learning rate.
- ``_state.py``: :class:`TrainState` (the model split into structure and variables, in
  training and evaluation mode) and :func:`create_state`.
- ``_steps.py``: :func:`train_step`, :func:`eval_step`, :func:`predict_step` -- pure,
  jitted, what ``fit`` runs and what a custom loop calls.
- ``_placement.py``: the device mesh and how arrays go onto it.
- ``_runner.py``: an epoch's steps in segments, on-device (``lax.scan``) or in a Python loop.
- ``_callbacks.py``: progress, History, NaN guard, the monitors (EarlyStopping, ReduceLROnPlateau).
- :mod:`~cnnjax.train.checkpoints`: orbax checkpoints of named state trees, resume,
  ``ModelCheckpoint``, the run directory's lock (orbax imported on first use).
- ``_fingerprint.py``: what makes a run that run (settings, data, optimizer, loss),
  recorded in its checkpoints and checked on resume.
- ``_cpu.py``: CPU tuning (malloc, micro-batches).
- ``_fit.py`` and ``_evaluation.py``: :func:`fit`, ``evaluate``, ``predict`` and
  :class:`Predictor` (many small calls).
- :mod:`~cnnjax.train.distributed`: training across processes (one per host or GPU):
  :func:`~cnnjax.train.distributed.initialize` on every process, then ``fit`` as usual;
  every process holds the same dataset and seed and feeds its own devices' slices of
  each global batch, so 2 processes of 1 device compute what 1 process of 2 devices does.
"""

from . import checkpoints, distributed
from ._callbacks import (
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
from ._cpu import auto_microbatches, tune_cpu_memory
from ._evaluation import Predictor, evaluate, predict
from ._fit import fit
from ._objective import Objective, objective
from ._optimizers import DEFAULT_OPTIMIZER, learning_rate, max_norm, per_epoch, rmsprop, set_learning_rate
from ._runner import choose_loop, epoch_steps
from ._state import TrainState, create_state
from ._steps import eval_step, predict_step, train_step
from .checkpoints import ModelCheckpoint, restore

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
