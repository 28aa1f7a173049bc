"""Checkpoints with orbax: atomic saves of a training run, the last K kept, resumable.

A checkpoint holds the arrays of a training state (parameters, other model variables,
optimizer state, step counter) and a JSON record of where the run stands (epoch,
position in the epoch, data-order seed, metrics so far). Orbax writes each checkpoint
to a temporary directory and renames it into place when complete, so a run killed
mid-save leaves the previous checkpoints intact and never a half-written one.

:func:`cnnjax.train.fit` uses this through ``checkpoint_dir=`` and ``resume=True``;
the class is public for custom loops.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores ``(arrays, record)`` pairs under ``directory``, keeping the last ``keep``.

    Args:
      directory: where checkpoints live, one subdirectory per step (created if missing).
      keep: how many of the most recent checkpoints to keep.

    Example::

        ckpt = Checkpointer("runs/demo/checkpoints", keep=3)
        ckpt.save(step, jax.tree.leaves(state), {"epoch": 2})
        leaves, record = ckpt.restore(like=jax.tree.leaves(state))
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"`keep` must be a positive int, got {keep!r}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
            item_names=("arrays", "record"),
        )

    def steps(self) -> list[int]:
        """The steps that have a complete checkpoint, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def save(self, step: int, arrays: list[Any], record: dict[str, Any]) -> None:
        """Writes ``arrays`` (a list of arrays) and the JSON-able ``record`` at ``step``, atomically."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                arrays=ocp.args.StandardSave(list(arrays)), record=ocp.args.JsonSave(record)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, step: int | None = None, *, like: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Reads the checkpoint at ``step`` (default: the newest).

        Args:
          step: which checkpoint.
          like: arrays (or ``jax.ShapeDtypeStruct``) of the expected shapes, dtypes and
            shardings; the restored arrays take their shardings.

        Raises:
          FileNotFoundError: if there is no checkpoint.
          ValueError: if the stored arrays do not match ``like``.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {self.directory}.")
        target = [
            jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=getattr(a, "sharding", None)) for a in like
        ]
        try:
            out = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    arrays=ocp.args.StandardRestore(target), record=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError) as e:
            raise ValueError(
                f"The checkpoint at step {step} in {self.directory} does not match this model "
                f"and optimizer: {e}"
            ) from e
        arrays = list(out["arrays"])
        for i, (got, want) in enumerate(zip(arrays, target)):
            if tuple(got.shape) != tuple(want.shape):
                raise ValueError(
                    f"The checkpoint at step {step} in {self.directory} does not match this "
                    f"model and optimizer: array {i} has shape {tuple(got.shape)}, expected "
                    f"{tuple(want.shape)}."
                )
        return arrays, dict(out["record"])

    def close(self) -> None:
        self._manager.close()


__all__ = ["Checkpointer"]
