"""``fit``: Keras' ``model.fit`` for any flax.nnx model, wired from the parts of this package."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .. import _checks
from ._callbacks import Callback, CallbackList, History, ProgressBar, Run, TerminateOnNaN, as_callback
from ._cpu import auto_microbatches
from ._evaluation import Evaluator, StreamEvaluator
from ._fingerprint import data_digest, identity
from ._inputs import TrainingData, is_stream, training_data
from ._objective import objective
from ._optimizers import DEFAULT_OPTIMIZER, learning_rate
from ._placement import Placement
from ._runner import (
    ArrayRunner,
    EpochPlan,
    StreamPlan,
    StreamRunner,
    choose_loop,
    epoch_steps,
    plan_epoch,
    run_length,
    segment_length,
    trace_step,
)
from ._state import check_model, create_state, has_batch_state
from .checkpoints import ModelCheckpoint


def fit(
    model: nnx.Module,
    train: tuple[np.ndarray, np.ndarray] | Iterable,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    steps_per_epoch: int | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    validation_split: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    loss: Any = None,
    metrics: Any = None,
    seed: int = 0,
    shuffle: bool = True,
    verbose: int = 1,
    loop: str = "auto",
    steps_per_segment: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    keep_checkpoints: int = 3,
    resume: bool = False,
    compute_dtype: Any = None,
    devices: Sequence[jax.Device] | None = None,
    callbacks: Sequence[Callback | Any] = (),
    microbatches: int | None = None,
    record_steps: bool = False,
) -> History:
    """Trains ``model`` in place, like Keras' ``model.fit``, and returns its :class:`History`.

    The model trains in training mode (Dropout on, BatchNorm updating its statistics)
    and is validated in evaluation mode; its own mode is left as it was. Randomness
    inside the model (Dropout masks) comes from its own ``nnx.Rngs`` streams, carried
    through every step and checkpoint: a different mask each step, and the same run for
    the same model seed and ``seed``.

    Args:
      model: any ``nnx.Module``, e.g. ``cnnjax.models.mnist_functional``.
      train: ``(inputs, targets)``: float inputs ``(N, *input_shape)``; targets ``(N, ...)``
        as the loss takes them (default: integer class indices ``(N,)``). Inputs may be a
        memory map (``np.load(path, mmap_mode="r")``) or any random-access source with
        ``shape``, ``dtype`` and ``source[indices]`` (h5py, zarr, grain-style): across
        processes each process then reads only its own devices' slices of every batch.
        Or a **stream of batches**: any iterable of ``(inputs, targets)`` pairs or
        ``{"image": ..., "label": ...}`` dicts (a torch ``DataLoader``, a grain or
        tensorflow-datasets loader, a generator, a list), NumPy arrays or torch tensors,
        channels last. Each epoch iterates it again (an iterator is read on); its batches
        train in the Python loop, each padded to the first batch's size (or, for a model
        with batch statistics, run at its own). Batches may differ in their axes' sizes,
        not in their number (sentences bucketed by length, ``cnnjax.text.bucket_by_length``):
        each example shape compiles its own step. A stream brings its own order and batch
        size (``batch_size``, ``seed`` and ``shuffle`` are for arrays); a checkpointed
        stream resumes at the start of the next epoch. Its first batch is checked as
        arrays are; a later batch's class labels are checked inside the step: one out of
        range makes the loss NaN, which stops training naming the step.
      epochs: number of passes over ``train`` (the total, also when resuming).
      steps: instead of ``epochs``, the number of optimizer steps in all (as the Flax and
        Equinox tutorials train): whole epochs, then the first batches of one more; that
        last epoch's record covers the steps it ran. A run resumes with the same ``steps``.
      batch_size: global batch size (default 64); the last batch of an epoch may be
        smaller, as in Keras.
      steps_per_epoch: a stream's batches per epoch (default: its ``len()``, else until it
        ends); needed with ``steps`` for a stream without a length.
      validation: optional ``(inputs, targets)`` evaluated after every epoch: arrays, or a
        stream of batches that iterates anew each time (a list, a ``DataLoader``).
      validation_split: instead of ``validation``, hold out this fraction of ``train``,
        its *last* examples before any shuffling (as Keras' ``validation_split``; for a
        random held-out set, :func:`cnnjax.data.split_validation`). ``train`` must be
        arrays (or memory maps) for this.
      optimizer: any optax transformation; default Keras' RMSprop (:func:`rmsprop`).
      loss: a name or ``fn(outputs, targets) -> (N, ...)`` values per example (see
        :mod:`cnnjax.train.objective`); default sparse categorical cross-entropy.
      metrics: ``{"name": fn or name}`` or a list of names; default ``["accuracy"]``
        with the default loss, none with another.
      seed: fixes the data order (a permutation per ``(seed, epoch)``).
      shuffle: shuffle each epoch.
      verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
      loop: ``"auto"``, ``"scan"`` (epochs on the device) or ``"python"`` (see
        :mod:`cnnjax.train._runner`).
      steps_per_segment: steps between visits of the host (progress, NaN checks,
        callbacks' ``on_train_batch_end``, checkpoints); default about a tenth of an epoch.
      checkpoint_dir: save checkpoints here (after every segment when
        ``steps_per_segment`` is given, and after every epoch), with the run's
        fingerprint (:mod:`cnnjax.train._fingerprint`: its digest of the data reads a
        random-access source's 1,024 sampled rows once).
      keep_checkpoints: how many recent checkpoints to keep.
      resume: continue from the newest readable checkpoint in ``checkpoint_dir``, if any;
        the result equals an uninterrupted run's bit for bit on CPU.
      compute_dtype: e.g. ``jnp.bfloat16``: compute in bfloat16, parameters float32.
      devices: devices to train on (default: all); the batch is split across them.
      callbacks: :class:`Callback` objects (e.g. :class:`EarlyStopping`), or functions
        called with each epoch's record.
      microbatches: split each batch into this many parts (see :func:`create_state`);
        default :func:`auto_microbatches` (4 on one CPU device), or 1 for models with
        variables other than parameters.
      record_steps: also keep every optimizer step's loss and metrics (on its batch) in
        ``History.steps`` / ``History.step_history``, as a PyTorch loop logs each batch's
        loss; the steps still run in segments, so this costs nothing on the device.

    Returns:
      The :class:`History`; the model holds the trained parameters.

    Raises:
      ValueError, TypeError: on bad arguments or data, before anything is compiled.
      FloatingPointError: if the loss, a parameter or a model variable becomes NaN or
        infinite, naming the step; the model keeps the last finite state, and no
        checkpoint holds a later one.
    """
    check_model(model)
    _check_settings(epochs, steps, verbose, loop, resume, checkpoint_dir, record_steps)
    user_callbacks = [as_callback(c) for c in callbacks]
    obj = objective(loss, metrics)
    data = training_data(model, obj, train, validation, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
                         loop=loop, validation_split=validation_split)
    source, inputs, targets, n, batch_size = data.source, data.inputs, data.targets, data.n, data.batch_size
    steps_per_epoch = epoch_steps(n, batch_size) if source is None else source.steps
    epochs, steps, last_steps = run_length(epochs, steps, steps_per_epoch)
    placement = Placement.over(devices)
    placement.check_batch_size(batch_size)
    rest = nnx.state(model, nnx.Not(nnx.Param))
    pad_remainder = not has_batch_state(rest)  # padding rows must not move batch statistics
    segment = segment_length(steps_per_segment, n, batch_size, steps_per_epoch, pad_remainder)
    if microbatches is None:
        microbatches = 1 if jax.tree.leaves(rest) else auto_microbatches(batch_size, placement.devices)
    if batch_size % _checks.positive_int(microbatches, "microbatches"):
        raise ValueError(f"`batch_size` {batch_size} must be a multiple of `microbatches`={microbatches}.")

    state = placement.replicated(create_state(model, optimizer, loss=obj, compute_dtype=compute_dtype,
                                              microbatches=microbatches))
    if source is not None:
        loop = "python"
    elif loop == "auto":
        nbytes = math.prod(inputs.shape) * np.dtype(inputs.dtype).itemsize + targets.nbytes
        loop = choose_loop(nbytes, placement.devices[0],
                           step=trace_step(state, batch_size, inputs, targets, placement))
    fingerprint = {"batch_size": batch_size, "seed": seed, "shuffle": shuffle, "n": n, "segment": segment,
                   "params": [list(np.shape(p)) for p in jax.tree.leaves(state.params)],
                   "compute_dtype": None if compute_dtype is None else jnp.dtype(compute_dtype).name,
                   **({"steps": steps} if steps is not None else {}),
                   **(_what_resume_checks(inputs, targets, obj, optimizer) if checkpoint_dir is not None else {})}
    run = Run(model, state, epochs, steps_per_epoch, History(record_steps=record_steps), fingerprint)
    checkpoint = (ModelCheckpoint(checkpoint_dir, keep=keep_checkpoints, resume=resume,
                                  every_segment=steps_per_segment is not None and source is None)
                  if checkpoint_dir is not None else None)
    hooks = CallbackList([TerminateOnNaN(), ProgressBar(verbose), run.history, *user_callbacks,
                          *([checkpoint] if checkpoint else [])], run)
    validate = _validator(data, placement)
    if source is None:
        runner = ArrayRunner(loop, placement, inputs, targets)
        plan = lambda epoch: plan_epoch(n, batch_size, segment, seed=seed, epoch=epoch, shuffle=shuffle,
                                        pad_remainder=pad_remainder,
                                        max_steps=last_steps if epoch == epochs - 1 else None)
    else:
        runner = StreamRunner(placement, batch_size, tuple(inputs.shape[1:]), pad_remainder, (inputs, targets))
        plan = lambda epoch: StreamPlan(source.batches(epoch), last_steps if epoch == epochs - 1 and last_steps
                                        else steps_per_epoch, segment)
    try:
        hooks.on_train_begin()
        if run.epoch >= epochs:  # resumed from a checkpoint of a run that has done them all
            warnings.warn(f"resume=True: {checkpoint.checkpointer.directory} holds a run that has trained {run.epoch} "
                          f"epochs, and epochs={epochs}: nothing is left to train; the model gets its final "
                          f"weights (give more epochs to train on).", stacklevel=2)
        run.history.compile_seconds = runner.compile(run.state, plan(run.epoch) if source is None else None)
        while run.epoch < epochs and not run.stop_training:
            _train_epoch(run, runner, plan(run.epoch), hooks, validate)
        hooks.on_train_end()
    finally:  # the newest finite state, off the mesh: the model is usable as before
        nnx.update(model, *jax.device_put(jax.device_get((run.last_good.params, run.last_good.rest))))
        for callback in [*user_callbacks, *([checkpoint] if checkpoint else [])]:  # their directories' locks too
            if isinstance(callback, ModelCheckpoint) and not callback.closed:
                callback.close()
    return run.history


def _check_settings(epochs, steps, verbose, loop, resume, checkpoint_dir, record_steps) -> None:
    if (epochs is None) == (steps is None):
        raise ValueError(f"Give exactly one of `epochs` and `steps`, got epochs={epochs!r}, steps={steps!r}.")
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}.")
    if loop not in ("auto", "scan", "python"):
        raise ValueError(f"`loop` must be 'auto', 'scan' or 'python', got {loop!r}.")
    if resume and checkpoint_dir is None:
        raise ValueError("`resume=True` needs `checkpoint_dir`.")
    if not isinstance(record_steps, bool):
        raise TypeError(f"`record_steps` must be a bool, got {record_steps!r}.")


def _validator(data: TrainingData, placement: Placement) -> Evaluator | StreamEvaluator | None:
    """What scores ``data``'s validation after every epoch (None without one)."""
    if data.validation is None:
        return None
    if is_stream(data.validation):
        return StreamEvaluator(placement, data.validation, "validation", first_iterator=data.val_iterator)
    return Evaluator(placement, data.val_inputs, data.val_targets, data.batch_size)


def _what_resume_checks(inputs, targets, obj, optimizer) -> dict:
    """Besides the settings: the data, the loss and the optimizer (:mod:`cnnjax.train._fingerprint`)."""
    return {"data": data_digest(inputs, targets), "loss": identity(obj.loss),
            "optimizer": identity(DEFAULT_OPTIMIZER if optimizer is None else optimizer)}


def _train_epoch(run: Run, runner: ArrayRunner | StreamRunner, plan: EpochPlan | StreamPlan, hooks: CallbackList,
                 validate: Evaluator | StreamEvaluator | None) -> None:
    """Runs the rest of epoch ``run.epoch``, validates, and records it."""
    epoch, t0, device_seconds, examples = run.epoch, time.perf_counter(), 0.0, 0.0
    hooks.on_epoch_begin(epoch)
    for s in range(run.segment, plan.segments):
        state, result = runner.run(run.state, plan, s)
        if not len(result.values):  # a stream has ended
            if run.steps_done == 0:
                warnings.warn(f"The stream of `train` batches gave none for epoch {epoch + 1}: training stops "
                              "there (give `steps_per_epoch`, or a stream that each epoch iterates anew).",
                              stacklevel=3)
                run.stop_training = True
                return
            break
        run.segment_done(state, s, result)
        device_seconds, examples = device_seconds + result.seconds, examples + float(result.counts.sum())
        hooks.on_train_batch_end(run.steps_done - 1, run.means())
        run.state_is_finite()
        if run.stop_training:
            break
    record = {"epoch": epoch + 1, **run.means()}
    if validate is not None:
        record.update({f"val_{k}": v for k, v in validate(run.state).items()})
    rate = learning_rate(run.state.opt_state)
    if rate is not None:
        record["learning_rate"] = rate
    record.update(seconds=time.perf_counter() - t0, images_per_s=examples / max(device_seconds, 1e-9))
    run.epoch_done()
    hooks.on_epoch_end(epoch, record)


__all__ = ["fit"]
