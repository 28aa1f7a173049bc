"""Saving and resuming training runs: named state trees in orbax checkpoints.

A checkpoint's arrays are a tree any orbax user can read::

    {"params":      {"conv1": {"kernel": ..., "bias": ...}, ...},   # by path in the model
     "model_state": {...},   # batch statistics, random streams (keys as their uint32 data)
     "opt_state":   ...,     # the optax state
     "step":        ...}

and its record says where the run stands (epoch, segment, running sums, History), with a
fingerprint of the settings that must match to resume.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import optax
from flax import nnx

from .callbacks import Callback
from .fingerprint import differences
from .state import TrainState, check_model, create_state


def _is_key(a) -> bool:
    return isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def state_tree(state: TrainState) -> dict[str, Any]:
    """``state`` as a tree of named plain arrays (random keys as their data)."""
    keys_as_data = lambda a: jax.random.key_data(a) if _is_key(a) else a
    return {"params": nnx.to_pure_dict(state.params),
            "model_state": jax.tree.map(keys_as_data, nnx.to_pure_dict(state.rest)),
            "opt_state": state.opt_state, "step": state.step}


def from_tree(state: TrainState, tree: dict[str, Any]) -> TrainState:
    """``state`` with the arrays of ``tree`` (from :func:`state_tree`) put in."""
    params, rest = jax.tree.map(lambda a: a, state.params), jax.tree.map(lambda a: a, state.rest)
    like = nnx.to_pure_dict(state.rest)
    model_state = jax.tree.map(
        lambda data, old: jax.random.wrap_key_data(data, impl=jax.random.key_impl(old)) if _is_key(old) else data,
        tree["model_state"], like)
    nnx.replace_by_pure_dict(params, tree["params"])
    nnx.replace_by_pure_dict(rest, model_state)
    return state.replace(params=params, rest=rest, opt_state=tree["opt_state"], step=tree["step"])


class ModelCheckpoint(Callback):
    """Saves the run to ``directory`` after every epoch (and every segment with
    ``every_segment``), keeping the last ``keep``; with ``resume``, continues from the
    newest checkpoint that reads (a damaged newest one is skipped with a warning).

    :func:`~cnnjax.train.fit` wires it from ``checkpoint_dir``, ``keep_checkpoints``,
    ``resume`` and ``steps_per_segment``, and places it after every other callback, so it
    saves what they decided (and never a state :class:`~cnnjax.train.TerminateOnNaN`
    refused).
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, every_segment: bool = False,
                 resume: bool = False):
        from ..checkpoint import Checkpointer  # orbax is imported on first use

        self.checkpointer = Checkpointer(directory, keep=keep, lock=True)
        self.every_segment, self.resume = every_segment, resume
        if not resume and self.checkpointer.steps():
            self.close()
            raise ValueError(f"`checkpoint_dir` {self.checkpointer.directory} already holds checkpoints (steps "
                             f"{self.checkpointer.steps()}); pass `resume=True` to continue that run, or give an "
                             "empty directory.")

    def on_train_begin(self, logs=None):
        if not self.resume:
            return
        run = self.run
        found = self.checkpointer.restore_newest(like=state_tree(run.state), accept=self._same_run)
        if found is None:
            return
        step, tree, record = found
        for newer in [s for s in self.checkpointer.steps() if s > step]:  # unreadable: kept aside, rewritten
            kept = self.checkpointer.set_aside(newer)
            warnings.warn(f"The unreadable checkpoint of step {newer} is kept as {kept}; training resumes "
                          f"from step {step}.", stacklevel=2)
        run.set_state(from_tree(run.state, tree))
        run.history.epochs[:] = record["history"]
        run.epoch, run.segment, run.steps_done = record["epoch"], record["segment"], record["steps_done"]
        run.totals = dict(record["totals"])

    def _same_run(self, record: dict[str, Any]) -> None:
        changed = differences(record.get("fingerprint") or {}, self.run.fingerprint)
        if changed or not isinstance(record.get("fingerprint"), dict):
            raise ValueError(
                f"The checkpoint in {self.checkpointer.directory} is from a different run: "
                f"{', '.join(changed) or 'it records no settings'}. Use another `checkpoint_dir`, or the run's own "
                "settings, data, optimizer and loss to resume it."
            )

    def save(self) -> None:
        run = self.run
        self.checkpointer.save(int(run.state.step), state_tree(run.state), {
            "fingerprint": run.fingerprint, "history": run.history.epochs, "epoch": run.epoch,
            "segment": run.segment, "steps_done": run.steps_done, "totals": run.totals})

    def on_train_batch_end(self, batch, logs=None):
        if self.every_segment and self.run.steps_done < self.run.steps_per_epoch:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def close(self) -> None:
        self.checkpointer.close()


def restore(model: nnx.Module, checkpoint_dir: str | os.PathLike, *,
            optimizer: optax.GradientTransformation | None = None, step: int | None = None) -> dict[str, Any]:
    """Loads a checkpoint written by :func:`~cnnjax.train.fit` into ``model`` in place.

    Args:
      model: a model of the same architecture as the one trained.
      checkpoint_dir: the ``checkpoint_dir`` given to ``fit``.
      optimizer: the optimizer of that run, if not the default (its state's structure
        must match; the learning rate does not matter).
      step: which checkpoint (default: the newest that reads).

    Returns:
      The checkpoint's record: ``epoch`` (epochs completed), ``history`` (per-epoch
      metrics), and where in the data order the run stood.

    Raises:
      FileNotFoundError: if ``checkpoint_dir`` holds no checkpoint.
      ValueError: if the checkpoint does not fit ``model`` and ``optimizer``.
    """
    from ..checkpoint import Checkpointer

    state = create_state(check_model(model), optimizer)
    ckpt = Checkpointer(checkpoint_dir)
    try:
        if step is None:
            found = ckpt.restore_newest(like=state_tree(state))
            if found is None:
                raise FileNotFoundError(f"No checkpoint in {ckpt.directory}.")
            _, tree, record = found
        else:
            tree, record = ckpt.restore(step, like=state_tree(state))
    finally:
        ckpt.close()
    state = from_tree(state, tree)
    nnx.update(model, jax.device_put(jax.device_get(state.params)), jax.device_put(jax.device_get(state.rest)))
    return record


__all__ = ["ModelCheckpoint", "from_tree", "restore", "state_tree"]
