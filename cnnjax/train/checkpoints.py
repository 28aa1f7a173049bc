"""Checkpoints: saving and resuming training runs with orbax, one home for both.

A checkpoint's arrays are a tree any orbax user can read::

    {"params":      {"conv1": {"kernel": ..., "bias": ...}, ...},   # by path in the model
     "model_state": {...},   # batch statistics, random streams (keys as their uint32 data)
     "opt_state":   ...,     # the optax state
     "step":        ...}

and its JSON record says where the run stands (epoch, segment, running sums, History),
with a fingerprint of the settings that must match to resume.

Orbax writes each checkpoint to a temporary directory and renames it into place when
complete, so a run killed mid-save leaves the previous checkpoints intact and never a
half-written one. Beside the record each checkpoint keeps the structure of its tree
(every array's path, shape and dtype) and a SHA-256 digest of its arrays' bytes; a
restore checks both. So a checkpoint damaged later (a truncated file, a flipped byte, a
missing directory, a full disk) is told apart from one of another model: the first is
caught when read, and :meth:`Checkpointer.restore_newest` warns, naming it, and falls
back to the newest one that reads; the second is a ``ValueError`` naming the first array
that differs.

- :class:`Checkpointer`: ``(arrays, record)`` pairs in a directory, the last K kept (for
  custom loops);
- :class:`ModelCheckpoint`: the callback :func:`~cnnjax.train.fit` wires from
  ``checkpoint_dir=`` and ``resume=True``;
- :func:`restore`: a checkpoint of ``fit`` back into a model;
- :class:`DirectoryLock`: one run per directory at a time.

Orbax is imported on first use: importing cnnjax stays fast.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from ._callbacks import MonitorCallback
from ._fingerprint import differences
from ._state import TrainState, check_model, create_state


@functools.cache
def _orbax():
    import orbax.checkpoint as ocp

    logging.getLogger("absl").addFilter(_quiet_failed_writes)
    return ocp


def _quiet_failed_writes(record: logging.LogRecord) -> bool:
    """Drops the traceback that each of orbax's writer threads logs when a write fails (a full
    disk: one per thread, over a hundred lines): the same error reaches :meth:`Checkpointer.save`,
    which raises it as one ``OSError`` naming the folder."""
    return "_SignalingThread.run() raised an exception" not in record.getMessage()


class CheckpointError(ValueError):
    """No checkpoint in the directory could be read; the message lists each one's failure."""


class DamagedCheckpoint(OSError):
    """A checkpoint whose files are missing, unreadable or not what was saved (its digest)."""


class DirectoryInUse(RuntimeError):
    """Another process (or another run in this one) holds the directory's lock."""


class DirectoryLock:
    """An exclusive lock on a run directory, held from :meth:`acquire` to :meth:`release`.

    The lock is ``flock`` on ``<directory>/.lock``, which names the holder (process id,
    host, start time). The kernel drops it when the holder exits, however it exits, so a
    killed run never leaves a stale lock; a second run (another process, or another
    thread of this one) is refused at once. ``flock`` is local to one machine: on a
    network file system, two machines may both get it.

    Example::

        with DirectoryLock("runs/demo"):
            ...  # write the run's files
    """

    NAME = ".lock"

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.path.abspath(os.fspath(directory))
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, self.NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DirectoryInUse(f"{self.directory} is in use by {holder}; wait for that run to end, or use "
                                 "another directory.") from None
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


_INTEGRITY = "cnnjax_integrity"  # the record's key for the tree's structure and digest


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def structure(tree: Any) -> list[list]:
    """Every array of ``tree`` as ``[path, shape, dtype]``, in tree order (JSON-able)."""
    return [[path, list(np.shape(leaf)), str(np.dtype(leaf.dtype))] for path, leaf in _leaves(tree)]


def _host_bytes(leaf: Any) -> bytes | None:
    """The bytes of one array as this process holds it whole, or None (sharded across processes)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if not leaf.is_fully_replicated:
            return None
        leaf = leaf.addressable_data(0)
    return np.ascontiguousarray(np.asarray(leaf)).tobytes()


def digest(tree: Any) -> str | None:
    """SHA-256 of ``tree``'s paths, shapes, dtypes and array bytes; None if an array is split
    across processes (no process holds it whole)."""
    h = hashlib.sha256()
    for path, leaf in _leaves(tree):
        data = _host_bytes(leaf)
        if data is None:
            return None
        h.update(f"{path}|{list(np.shape(leaf))}|{np.dtype(leaf.dtype)}|{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()


def _first_difference(saved: list[list], expected: list[list]) -> str | None:
    """Where two structures differ, in words; None if they are equal."""
    for (path, shape, dtype), (want_path, want_shape, want_dtype) in zip(saved, expected, strict=True):
        if path != want_path:
            return f"it holds {path} where this model and optimizer have {want_path}"
        if (shape, dtype) != (want_shape, want_dtype):
            return f"{path} has shape {tuple(shape)} and dtype {dtype}, expected {tuple(want_shape)} and {want_dtype}"
    if len(saved) != len(expected):
        return f"it holds {len(saved)} arrays, this model and optimizer {len(expected)}"
    return None


class Checkpointer:
    """Saves and restores ``(arrays, record)`` pairs under ``directory``, keeping the last ``keep``.

    Args:
      directory: where checkpoints live, one subdirectory per step (created if missing).
      keep: how many of the most recent checkpoints to keep.
      lock: hold the directory's :class:`DirectoryLock` until :meth:`close` (a writer
        does; a second writer is refused with :class:`DirectoryInUse`).

    Example::

        ckpt = Checkpointer("runs/demo/checkpoints", keep=3)
        ckpt.save(step, {"params": params, "step": step}, {"epoch": 2})
        tree, record = ckpt.restore(like={"params": params, "step": step})
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, lock: bool = False):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"`keep` must be a positive int, got {keep!r}.")
        self.directory = os.path.abspath(os.fspath(directory))
        # the writer's lock: one process of a run takes it (process 0 across processes)
        self._lock = DirectoryLock(self.directory).acquire() if lock and jax.process_index() == 0 else None
        ocp = _orbax()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
            item_names=("state", "record"),
        )
        self._unfinished: set[int] = set()  # steps whose save failed, cleaned up on close()
        self._quiet: Callable[[], None] | None = None  # undoes _quiet_late_writes, on close()

    def steps(self) -> list[int]:
        """The steps that have a complete checkpoint, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def save(self, step: int, tree: Any, record: dict[str, Any]) -> None:
        """Writes ``tree`` (a pytree of arrays: dicts by name) and the JSON-able ``record``
        at ``step``, atomically."""
        if _INTEGRITY in record:
            raise ValueError(f"`record` must not use the key {_INTEGRITY!r}, which holds the checkpoint's digest.")
        stored = {**record, _INTEGRITY: {"structure": structure(tree), "sha256": digest(tree)}}
        ocp = _orbax()
        quiet = _quiet_late_writes()  # a failed write's others still in flight report into a closed loop
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(state=ocp.args.StandardSave(tree), record=ocp.args.JsonSave(stored)),
                force=True,
            )
            self._manager.wait_until_finished()
        except ValueError as e:  # TensorStore reports a failed write (a full disk) as ValueError
            code = re.search(r"os_error_code='?(\d+)", str(e))
            if code is None:
                quiet()
                raise
            if self._quiet is None:
                self._quiet = quiet  # until close(), when the late writes have stopped
            else:
                quiet()
            self._unfinished.add(int(step))  # removed on close(), when orbax's writers have stopped
            errno_ = int(code.group(1))
            raise OSError(errno_, f"{os.strerror(errno_)}: the checkpoint of step {int(step)} could not be "
                                  f"written", self.directory) from e
        except BaseException:
            quiet()
            raise
        quiet()

    def _remove_unfinished(self, settle: float = 0.3, most: float = 3.0) -> None:
        """Removes what failed saves left (orbax's ``<step>.orbax-checkpoint-tmp*`` folders):
        nothing half-written stays beside the checkpoints that are whole. TensorStore's
        writes still in flight when orbax gave up can make such a folder again after it is
        removed, so it is removed until none has come back for ``settle`` seconds (at most
        ``most``)."""
        if not self._unfinished:
            return
        deadline, quiet_since = time.monotonic() + most, None
        while True:
            removed = False
            for name in os.listdir(self.directory):
                if any(name.startswith(f"{step}.orbax-checkpoint-tmp") for step in self._unfinished):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
                    removed = True
            now = time.monotonic()
            if removed or quiet_since is None:
                quiet_since = now
            if now - quiet_since >= settle or now >= deadline:
                break
            time.sleep(0.02)
        self._unfinished.clear()

    def path(self, step: int) -> str:
        """The directory of the checkpoint at ``step``."""
        return os.path.join(self.directory, str(int(step)))

    def record(self, step: int | None = None) -> dict[str, Any]:
        """The JSON record of the checkpoint at ``step`` (default: the newest)."""
        record = self._stored_record(step)
        record.pop(_INTEGRITY, None)
        return record

    def _stored_record(self, step: int | None) -> dict[str, Any]:
        step = self._step(step)
        try:
            out = self._manager.restore(step, args=_orbax().args.Composite(record=_orbax().args.JsonRestore()))
        except json.JSONDecodeError as e:
            raise DamagedCheckpoint(f"damaged record in {self.path(step)}: {e}") from e
        if not isinstance(out["record"], dict):
            raise DamagedCheckpoint(f"damaged record in {self.path(step)}: not a JSON object")
        return dict(out["record"])

    def _step(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {self.directory}.")
        return step

    def restore(self, step: int | None = None, *, like: Any) -> tuple[Any, dict[str, Any]]:
        """Reads the checkpoint at ``step`` (default: the newest).

        Args:
          step: which checkpoint.
          like: a tree of arrays (or ``jax.ShapeDtypeStruct``) of the expected structure,
            shapes, dtypes and shardings; the restored arrays take their shardings.

        Raises:
          FileNotFoundError: if there is no checkpoint.
          ValueError: if the stored tree does not match ``like`` (another model or
            optimizer), naming the first array that differs.
          DamagedCheckpoint: an ``OSError``, if files are missing or unreadable or the
            arrays are not the bytes that were saved.
        """
        step = self._step(step)
        record = self._stored_record(step)
        integrity = record.pop(_INTEGRITY, None)
        target = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=getattr(a, "sharding", None)), like)
        mismatch = lambda why: ValueError(
            f"The checkpoint at step {step} in {self.directory} does not match this model and optimizer: {why}")
        if integrity is not None:
            difference = _first_difference(integrity["structure"], structure(target))
            if difference is not None:
                raise mismatch(difference)
        if not os.path.isdir(os.path.join(self.path(step), "state")):
            raise DamagedCheckpoint(f"the checkpoint {self.path(step)} is incomplete: its arrays (state/) are missing")
        try:
            ocp = _orbax()
            out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        except (ValueError, KeyError) as e:
            if integrity is not None:  # the structure matched: the files are at fault
                raise DamagedCheckpoint(f"the checkpoint {self.path(step)} cannot be read: {e}") from e
            raise mismatch(e) from e
        got = jax.tree_util.tree_flatten_with_path(out["state"])[0]
        for (path, a), b in zip(got, jax.tree.leaves(target), strict=True):
            if tuple(np.shape(a)) != tuple(b.shape):
                raise mismatch(f"{jax.tree_util.keystr(path)} has shape {tuple(np.shape(a))}, "
                               f"expected {tuple(b.shape)}.")
        if integrity is not None and integrity.get("sha256") is not None:
            found = digest(out["state"])
            if found is not None and found != integrity["sha256"]:
                raise DamagedCheckpoint(f"the arrays of {self.path(step)} are not the ones saved (SHA-256 "
                                        f"{found[:12]}..., saved {integrity['sha256'][:12]}...)")
        return out["state"], record

    def restore_newest(self, *, like: Any, accept: Callable[[dict[str, Any]], None] | None = None
                       ) -> tuple[int, Any, dict[str, Any]] | None:
        """The newest checkpoint that reads: ``(step, tree, record)``, or None if there is none.

        A damaged checkpoint is skipped with a warning naming its directory, and the one
        before it is tried.

        Args:
          like: as :meth:`restore`.
          accept: called with each record before its arrays are read; it raises (e.g.
            ValueError for a checkpoint of another run) to stop the search.

        Raises:
          CheckpointError: if checkpoints exist but none of them reads.
          ValueError: from ``accept``, or if the arrays do not match ``like``.
        """
        failures = []
        for step in reversed(self.steps()):
            try:
                record = self.record(step)
            except Exception as e:  # noqa: BLE001 -- orbax and TensorStore raise many kinds
                failures.append(self._skip(step, e))
                continue
            if accept is not None:
                accept(record)
            try:
                tree, record = self.restore(step, like=like)
            except ValueError:
                raise
            except Exception as e:  # noqa: BLE001
                failures.append(self._skip(step, e))
                continue
            return step, tree, record
        if failures:
            raise CheckpointError(f"No checkpoint in {self.directory} could be read: " + "; ".join(failures)
                                  + f". To start afresh, move or delete {self.directory} (or train without resume).")
        return None

    def set_aside(self, step: int) -> str:
        """Renames the checkpoint at ``step`` to ``<step>.unreadable`` (kept for inspection,
        no longer a step), so that the step can be written again; returns the new path."""
        target, n = f"{self.path(step)}.unreadable", 1
        while os.path.exists(target):
            n += 1
            target = f"{self.path(step)}.unreadable-{n}"
        os.rename(self.path(step), target)
        self._manager.reload()
        return target

    def _skip(self, step: int, error: Exception) -> str:
        reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}"
        warnings.warn(f"Skipping the checkpoint {self.path(step)}, which cannot be read ({reason}); "
                      "trying the one before it.", stacklevel=3)
        return f"{self.path(step)} ({reason})"

    def close(self) -> None:
        self._manager.close()
        self._remove_unfinished()
        if self._quiet is not None:
            self._quiet()
            self._quiet = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _is_closed_loop_report(unraisable: Any) -> bool:
    """Whether ``unraisable`` (what ``sys.unraisablehook`` gets) is a write of TensorStore's
    finishing into orbax's closed event loop: ``RuntimeError('Event loop is closed')``, raised
    by ``asyncio``'s ``call_soon_threadsafe`` called from TensorStore's C++ thread (no Python
    frame above it, no object)."""
    if unraisable.object is not None or unraisable.exc_type is not RuntimeError \
            or str(unraisable.exc_value) != "Event loop is closed":
        return False
    frames = traceback.extract_tb(unraisable.exc_traceback)
    return bool(frames) and frames[0].name == "call_soon_threadsafe" \
        and frames[0].filename.endswith(os.path.join("asyncio", "base_events.py"))


def _quiet_late_writes() -> Callable[[], None]:
    """Drops :func:`_is_closed_loop_report`'s reports, passing every other one to the hook
    that was there, and :func:`_unretrieved_write_error`'s log records, until the function
    it returns is called (:meth:`Checkpointer.close`, once the late writes have stopped
    making folders). When a write fails (a full disk), orbax closes its event loop while
    TensorStore's other writes are in flight; each that finishes reports the closed loop
    through ``sys.unraisablehook``, a traceback on stderr (up to 222 of them, by timing),
    although :meth:`Checkpointer.save` already raises the one ``OSError`` that says what
    happened and nothing else is lost."""
    previous = sys.unraisablehook
    asyncio_log = logging.getLogger("asyncio")

    def hook(unraisable):
        if not _is_closed_loop_report(unraisable):
            previous(unraisable)

    def undo() -> None:
        if sys.unraisablehook is hook:  # not if something else has replaced it since
            sys.unraisablehook = previous
        asyncio_log.removeFilter(_unretrieved_write_error)

    sys.unraisablehook = hook
    asyncio_log.addFilter(_unretrieved_write_error)
    return undo


def _unretrieved_write_error(record: logging.LogRecord) -> bool:
    """False (drop it) for asyncio's "Task exception was never retrieved" about a write
    TensorStore could not make (a ``ValueError`` carrying ``os_error_code``, or saying
    "Error writing" into an unfinished checkpoint's ``.orbax-checkpoint-tmp`` folder, as a
    refused ``.zarray`` does): orbax's other write tasks, whose error
    :meth:`Checkpointer.save`'s ``OSError`` has already reported."""
    error = record.exc_info[1] if record.exc_info else None
    text = str(error)
    failed_write = "os_error_code=" in text or ("Error writing" in text and ".orbax-checkpoint-tmp" in text)
    return not (str(record.msg).startswith("Task exception was never retrieved") and isinstance(error, ValueError)
                and failed_write)


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


class ModelCheckpoint(MonitorCallback):
    """Saves the run to ``directory`` after every epoch (and every segment with
    ``every_segment``), keeping the last ``keep``; with ``resume``, continues from the
    newest checkpoint that reads (a damaged newest one is skipped with a warning).

    :func:`~cnnjax.train.fit` wires it from ``checkpoint_dir``, ``keep_checkpoints``,
    ``resume`` and ``steps_per_segment``, and places it after every other callback, so it
    saves what they decided (and never a state :class:`~cnnjax.train.TerminateOnNaN`
    refused).

    Given in ``callbacks=`` with ``save_best_only=True`` it is Keras' best-model checkpoint:
    it saves only after an epoch whose ``monitor`` value improves on every earlier one (a
    :class:`~cnnjax.train.MonitorCallback`: ``mode``, ``min_delta``), so ``directory`` holds
    the best epochs (the newest ``keep``) and :func:`restore` loads the best. It never
    restores the run's state: ``resume=True`` lets it add to the best checkpoints of a run
    that ``fit``'s own ``checkpoint_dir`` resumes (the best so far is found again in the
    restored History). ``fit`` closes every ``ModelCheckpoint`` when it ends; a new run
    takes a new one.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, every_segment: bool = False,
                 resume: bool = False, save_best_only: bool = False, monitor: str = "val_loss", mode: str = "auto",
                 min_delta: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        if not isinstance(save_best_only, bool):
            raise TypeError(f"`save_best_only` must be a bool, got {save_best_only!r}.")
        if save_best_only and every_segment:
            raise ValueError("`save_best_only` saves after an epoch whose monitored value improved; it cannot also "
                             "save `every_segment` (give one of them).")
        self.checkpointer = Checkpointer(directory, keep=keep, lock=True)
        self.every_segment, self.resume, self.save_best_only, self.closed = every_segment, resume, save_best_only, False
        if not resume and self.checkpointer.steps():
            self.close()
            raise ValueError(f"`checkpoint_dir` {self.checkpointer.directory} already holds checkpoints (steps "
                             f"{self.checkpointer.steps()}); pass `resume=True` to continue that run, or give an "
                             "empty directory.")

    def set_run(self, run) -> None:
        if self.closed:
            raise ValueError(f"This ModelCheckpoint of {self.checkpointer.directory} was closed by the fit that used "
                             "it; give each fit a new one (resume=True to continue in the same directory).")
        super().set_run(run)

    def on_train_begin(self, logs=None):
        self.reset()
        if not self.resume:
            return
        run = self.run
        if self.save_best_only:  # never restores the run: only checks the checkpoints are this run's
            if self.checkpointer.steps():
                self._same_run(self.checkpointer.record())
            return
        found = self.checkpointer.restore_newest(like=state_tree(run.state), accept=self._same_run)
        if found is None:
            return
        step, tree, record = found
        for newer in [s for s in self.checkpointer.steps() if s > step]:  # unreadable: kept aside, rewritten
            kept = self.checkpointer.set_aside(newer)
            warnings.warn(f"The unreadable checkpoint of step {newer} is kept as {kept}; training resumes "
                          f"from step {step}.", stacklevel=2)
        run.resume(from_tree(run.state, tree), record)

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
        self.checkpointer.save(int(run.state.step), state_tree(run.state),
                               {"fingerprint": run.fingerprint, **run.position()})

    def replay(self, epoch, record):
        value = record.get(self.monitor)
        if self.save_best_only and value is not None and self.is_improvement(value):
            self.improve(value, epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_segment and self.run.steps_done < self.run.steps_per_epoch:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        if not self.save_best_only:
            self.save()
            return
        value = self.current(logs)
        if value is not None and self.is_improvement(value):
            self.improve(value, epoch)
            self.save()

    def close(self) -> None:
        self.closed = True
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


__all__ = ["CheckpointError", "Checkpointer", "DamagedCheckpoint", "DirectoryInUse", "DirectoryLock",
           "ModelCheckpoint", "restore"]
