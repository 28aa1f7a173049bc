"""Callbacks: what happens around the steps of :func:`~cnnjax.train.fit`, with Keras' names.

A callback subclasses :class:`Callback` and overrides the hooks it needs:
``on_train_begin``, ``on_epoch_begin``, ``on_train_batch_end`` (after every *segment* of
steps that ran on the device in one go: the host sees the run only then),
``on_epoch_end`` and ``on_train_end``. ``self.run`` is the :class:`Run` in progress:
its model, its current :class:`~cnnjax.train.TrainState`, its :class:`History`.

To stop training, set ``self.run.stop_training = True`` or raise :class:`StopTraining`
from a hook: the current epoch is finished (a stop during an epoch ends it early), the
remaining callbacks of that hook still run (so checkpoints are saved), and ``fit``
returns the History.

``fit`` wires its own callbacks around the user's: :class:`TerminateOnNaN` first (so
nothing sees a broken state), then :class:`ProgressBar` and :class:`History`, the
user's callbacks in their order, and :class:`~cnnjax.train.ModelCheckpoint` last.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
from flax import nnx

from ._runner import SegmentResult
from ._state import TrainState


class StopTraining(Exception):  # noqa: N818 -- Keras-style name for a control-flow signal
    """Raised by a callback to end training cleanly; ``fit`` returns the History."""


@dataclasses.dataclass(eq=False)
class Run:
    """A training run as callbacks see it.

    Attributes:
      model: the user's model (updated when ``fit`` returns).
      state: the newest training state.
      last_good: the newest state known to be finite (what ``fit`` leaves in the model
        if training fails).
      history: the :class:`History` of the epochs done.
      epochs, steps_per_epoch: the run's length.
      epoch: the epoch in progress (0-based); after ``on_epoch_end``, the epochs done.
      segment: the next segment of the epoch to run.
      steps_done: the steps of the epoch done so far.
      totals: running sums of the epoch: ``{name: sum of value * examples}`` and
        ``"examples"``.
      last_segment: the :class:`~cnnjax.train._runner.SegmentResult` just run.
      fingerprint: what must match for a checkpoint to resume this run.
      stop_training: set it to end training after the current segment.
    """

    model: nnx.Module
    state: TrainState
    epochs: int
    steps_per_epoch: int
    history: History
    fingerprint: dict[str, Any]
    last_good: TrainState | None = None
    epoch: int = 0
    segment: int = 0
    steps_done: int = 0
    totals: dict[str, float] = dataclasses.field(default_factory=dict)
    last_segment: SegmentResult | None = None
    stop_training: bool = False

    def __post_init__(self):
        if self.last_good is None:
            self.last_good = self.state
        if not self.totals:
            self.totals = self.empty_totals()

    def set_state(self, state: TrainState) -> None:
        """Continues the run from ``state`` (restored from a checkpoint, or the best epoch's):
        it becomes the newest state and the newest finite one."""
        self.state = self.last_good = state

    def segment_done(self, state: TrainState, segment: int, result: SegmentResult) -> None:
        """Segment ``segment`` of the epoch ran, leaving ``state``; its steps count in the epoch."""
        self.state, self.segment, self.steps_done = state, segment + 1, self.steps_done + len(result.values)
        self.add(result)

    def state_is_finite(self) -> None:
        """The callbacks passed the newest state: it is what ``fit`` leaves if training fails later."""
        self.last_good = self.state

    def epoch_done(self) -> None:
        """On to the next epoch, from its first segment, with empty running sums."""
        self.epoch, self.segment, self.steps_done, self.totals = self.epoch + 1, 0, 0, self.empty_totals()

    def position(self) -> dict[str, Any]:
        """Where the run stands, as a checkpoint records it (JSON): the epochs' History, the
        epoch, segment and steps done, the running sums."""
        return {"history": self.history.epochs, "epoch": self.epoch, "segment": self.segment,
                "steps_done": self.steps_done, "totals": self.totals,
                **({"steps": self.history.steps} if self.history.record_steps else {})}

    def resume(self, state: TrainState, position: dict[str, Any]) -> None:
        """Continues from a checkpoint: its ``state`` and its record's :meth:`position`."""
        self.set_state(state)
        self.history.epochs[:] = position["history"]
        self.history.steps[:] = position.get("steps", []) if self.history.record_steps else []
        self.epoch, self.segment, self.steps_done = position["epoch"], position["segment"], position["steps_done"]
        self.totals = dict(position["totals"])

    def empty_totals(self) -> dict[str, float]:
        return {**dict.fromkeys(self.state.metric_names, 0.0), "examples": 0.0}

    def add(self, result: SegmentResult) -> None:
        """Adds a segment's steps to the epoch's running sums."""
        self.last_segment = result
        for i, name in enumerate(self.state.metric_names):
            self.totals[name] += float(np.sum(result.values[:, i] * result.counts))
        self.totals["examples"] += float(result.counts.sum())

    def means(self) -> dict[str, float]:
        """The epoch's running means: ``{"loss": ..., *metrics}``."""
        n = max(self.totals["examples"], 1.0)
        return {name: self.totals[name] / n for name in self.state.metric_names}


class Callback:
    """Base class: every hook does nothing. ``self.run`` is set before ``on_train_begin``."""

    run: Run

    def set_run(self, run: Run) -> None:
        self.run = run

    def on_train_begin(self, logs: dict | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """After a segment; ``batch`` is the 0-based index in the epoch of its last batch,
        ``logs`` the epoch's running means."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """``logs`` is the epoch's record, as :class:`History` keeps it."""

    def on_train_end(self, logs: dict | None = None) -> None: ...


class LambdaCallback(Callback):
    """A callback from functions, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(logs))``."""

    def __init__(self, **hooks: Callable):
        for name, fn in hooks.items():
            if not (name.startswith("on_") and hasattr(Callback, name)):
                raise ValueError(f"LambdaCallback got an unknown hook {name!r}.")
            setattr(self, name, fn)


def as_callback(obj: Any) -> Callback:
    """A :class:`Callback`, or a function of one epoch's record wrapped as one."""
    if isinstance(obj, Callback):
        return obj
    if callable(obj):
        return LambdaCallback(on_epoch_end=lambda epoch, logs: obj(dict(logs)))
    raise TypeError(f"`callbacks` must hold Callback objects or functions of a record, got {obj!r}.")


class CallbackList:
    """Calls each hook on every callback in order; :class:`StopTraining` sets the run's
    ``stop_training`` and lets the remaining callbacks run."""

    def __init__(self, callbacks: Iterable[Callback], run: Run):
        self.callbacks = list(callbacks)
        self.run = run
        for c in self.callbacks:
            c.set_run(run)

    def _call(self, hook: str, *args) -> None:
        for c in self.callbacks:
            try:
                getattr(c, hook)(*args)
            except StopTraining:
                self.run.stop_training = True

    def on_train_begin(self):
        self._call("on_train_begin", {})

    def on_epoch_begin(self, epoch):
        self._call("on_epoch_begin", epoch, {})

    def on_train_batch_end(self, batch, logs):
        self._call("on_train_batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs):
        self._call("on_epoch_end", epoch, logs)

    def on_train_end(self):
        self._call("on_train_end", {})


@dataclasses.dataclass(eq=False)
class History(Callback):
    """What :func:`~cnnjax.train.fit` returns: one record per epoch.

    Each record has ``epoch`` (1-based), ``loss`` and each metric, ``val_loss`` and
    ``val_<metric>`` (when validating), ``learning_rate`` (when the optimizer holds one,
    as :func:`~cnnjax.train.rmsprop` does), ``seconds`` (wall time of the epoch,
    validation included) and ``images_per_s`` (training examples per second of device
    time).
    """

    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    compile_seconds: float = 0.0
    """Seconds spent compiling the training program (0 when it was already compiled)."""
    record_steps: bool = False
    """Whether :attr:`steps` is kept (``fit(record_steps=True)``)."""
    steps: list[dict[str, float]] = dataclasses.field(default_factory=list)
    """With ``record_steps``: one record per optimizer step, ``step`` (1-based, over the
    run), ``epoch`` (1-based), ``loss`` and each metric on that step's batch; kept in
    checkpoints, so a resumed run has them all."""

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras' ``History.history``: metric name -> list over epochs."""
        keys = [k for k in (self.epochs[0] if self.epochs else {}) if k != "epoch"]
        return {k: [e[k] for e in self.epochs] for k in keys}

    @property
    def step_history(self) -> dict[str, list[float]]:
        """:attr:`steps` as :attr:`history` gives epochs: metric name -> list over steps."""
        keys = [k for k in (self.steps[0] if self.steps else {}) if k not in ("step", "epoch")]
        return {k: [s[k] for s in self.steps] for k in keys}

    def on_train_batch_end(self, batch, logs=None):
        if self.record_steps:
            names, segment = self.run.state.metric_names, self.run.last_segment
            for row in np.asarray(segment.values):
                self.steps.append({"step": len(self.steps) + 1, "epoch": self.run.epoch + 1,
                                   **{name: float(v) for name, v in zip(names, row, strict=True)}})

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


class ProgressBar(Callback):
    """A tqdm bar per epoch (``verbose=1``) or one line per epoch (``verbose=2``), in process 0."""

    def __init__(self, verbose: int = 1):
        self.verbose = verbose
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        run = self.run
        self._bar = tqdm(total=run.steps_per_epoch, desc=f"Epoch {epoch + 1}/{run.epochs}", unit="step",
                         disable=self.verbose != 1 or jax.process_index() != 0, dynamic_ncols=True, leave=True)
        self._bar.update(run.steps_done)

    def on_train_batch_end(self, batch, logs=None):
        self._bar.update(len(self.run.last_segment.values))
        self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        shown = {k: f"{v:.4f}" for k, v in logs.items() if k not in ("epoch", "seconds", "images_per_s")}
        self._bar.set_postfix(shown, refresh=True)
        self._bar.close()
        if self.verbose == 2 and jax.process_index() == 0:  # across processes: one line, not one per process
            line = " - ".join(f"{k}: {v}" for k, v in shown.items())
            print(f"Epoch {epoch + 1}/{self.run.epochs} - {logs['seconds']:.1f}s - {line} - "
                  f"{logs['images_per_s']:.0f} images/s")


class TerminateOnNaN(Callback):
    """Stops training with ``FloatingPointError`` when a step's loss, or any parameter or
    model variable after a step, is NaN or infinite; the error names the step.

    ``fit`` places it first, so no other callback (a checkpoint) sees the broken state,
    and leaves the newest finite state (``run.last_good``) in the model.
    """

    def on_train_batch_end(self, batch, logs=None):
        run, result = self.run, self.run.last_segment
        bad = np.flatnonzero(~(np.isfinite(result.values[:, 0]) & result.finite))
        if not len(bad):
            return
        i = int(bad[0])
        good_step = int(run.last_good.step)
        what = (f"the loss became {result.values[i, 0]}" if not np.isfinite(result.values[i, 0])
                else "a parameter or model variable became NaN or infinite")
        first_batch = batch + 1 - len(result.values)
        raise FloatingPointError(
            f"At step {good_step + i + 1} (epoch {run.epoch + 1}, batch {first_batch + i + 1} of "
            f"{run.steps_per_epoch}) {what}. Training stopped; the model keeps the parameters of step "
            f"{good_step}, and no checkpoint holds a later state."
        )


class MonitorCallback(Callback):
    """A callback that watches one value of each epoch's record, as Keras' ``MonitorCallback``:
    the best value so far, and the epochs since it. :class:`EarlyStopping` and
    :class:`ReduceLROnPlateau` build on it.

    Args:
      monitor: the record's key to watch, e.g. ``"val_loss"`` or ``"val_accuracy"``.
      mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracies, else min).
      min_delta: the least change that counts as an improvement (its sign is ignored).
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be the name of a record's key, e.g. 'val_loss', got {monitor!r}.")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"`mode` must be 'auto', 'min' or 'max', got {mode!r}.")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not np.isfinite(min_delta):
            raise ValueError(f"`min_delta` must be a finite number, got {min_delta!r}.")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.sign = 1.0 if mode == "min" else -1.0
        self.reset()

    def reset(self) -> None:
        """Nothing seen yet: the best is the worst possible value."""
        self.best, self.best_epoch, self.wait, self._replayed = np.inf, None, 0, False

    def on_epoch_begin(self, epoch, logs=None):
        """Before the first epoch this callback sees, the epochs the run has already trained (a
        run resumed from a checkpoint: its History is restored by now) go through
        :meth:`replay`, so that a resumed run continues as one that never stopped."""
        if not self._replayed:
            self._replayed = True
            for i, record in enumerate(self.run.history.epochs[:epoch]):
                self.replay(i, record)

    def replay(self, epoch: int, record: dict) -> None:
        """What an epoch already trained does to this callback's own state; nothing by default."""

    def current(self, logs: dict) -> float | None:
        """The monitored value of ``logs``; None (with a warning) when the records lack it."""
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"{type(self).__name__} monitors {self.monitor!r}, which the records do not hold "
                          f"(they hold {sorted(logs)}).", stacklevel=3)
        return value

    def is_improvement(self, value: float) -> bool:
        """``value`` beats the best by more than ``min_delta`` (NaN never does)."""
        return bool(self.sign * value < self.best - self.min_delta)

    def improve(self, value: float, epoch: int) -> None:
        self.best, self.best_epoch, self.wait = self.sign * value, epoch, 0

    @property
    def best_value(self) -> float:
        """The best monitored value so far, in the record's own sign (inf or -inf before any)."""
        return self.sign * self.best


class EarlyStopping(MonitorCallback):
    """Stops training when a monitored value has stopped improving (Keras' ``EarlyStopping``).

    Args:
      monitor: the record's key to watch, e.g. ``"val_loss"`` or ``"val_accuracy"``.
      min_delta: the least change that counts as an improvement.
      patience: epochs without improvement after which training stops.
      mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracies, else min).
      restore_best_weights: when training ends, early or not, put back the training state
        of the best epoch (as Keras 3 does; its weights are what ``fit`` leaves in the model).
      start_from_epoch: epochs to wait before watching.
    """

    def __init__(self, monitor: str = "val_loss", *, min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__(monitor, mode, min_delta)
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"`patience` must be a non-negative int, got {patience!r}.")
        self.patience, self.restore_best_weights = patience, restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        self.reset()
        self.best_state, self.stopped_epoch = None, None

    def on_epoch_end(self, epoch, logs=None):
        current = self.current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self.is_improvement(current):
            self.improve(current, epoch)
            if self.restore_best_weights:
                self.best_state = self.run.state
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            raise StopTraining

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_state is not None:
            self.run.set_state(self.best_state)


class ReduceLROnPlateau(MonitorCallback):
    """Lowers the learning rate when a monitored value has stopped improving (Keras'
    ``ReduceLROnPlateau``, its names and defaults).

    After ``patience`` epochs without an improvement the rate becomes ``max(rate * factor,
    min_lr)``; then ``cooldown`` epochs pass before epochs without improvement count again.
    The rate lives in the optimizer's state, so the optimizer must be built with
    ``optax.inject_hyperparams`` (as :func:`~cnnjax.train.rmsprop` is) and with a constant
    rate: a rate that follows a schedule is refused once the schedule overrides it. A run
    resumed from a checkpoint continues exactly: the rate is in the checkpoint, and the
    callback's own counters are replayed from the restored History.

    Args:
      monitor: the record's key to watch.
      factor: the rate is multiplied by it, in (0, 1).
      patience: epochs without improvement before the rate is lowered.
      verbose: 1 prints a line when it lowers the rate.
      mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracies, else min).
      min_delta: the least change that counts as an improvement.
      cooldown: epochs after a lowering during which none is counted.
      min_lr: the rate is never lowered below it.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"`factor` must be a number in (0, 1): the rate is multiplied by it, got {factor!r}.")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative int, got {value!r}.")
        if isinstance(min_lr, bool) or not isinstance(min_lr, (int, float)) or not np.isfinite(min_lr) or min_lr < 0:
            raise ValueError(f"`min_lr` must be a finite number >= 0, got {min_lr!r}.")
        self.factor, self.patience, self.verbose = float(factor), patience, verbose
        self.cooldown, self.min_lr = cooldown, float(min_lr)

    def on_train_begin(self, logs=None):
        from ._optimizers import learning_rate

        if learning_rate(self.run.state.opt_state) is None:
            raise ValueError("ReduceLROnPlateau needs an optimizer that holds its learning rate in its state: "
                             "build it with optax.inject_hyperparams, e.g. "
                             "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3) (cnnjax.train.rmsprop does).")
        self.reset()
        self.cooldown_counter, self.set_to = 0, None

    def replay(self, epoch, record):
        self._step(epoch, record, record.get("learning_rate"))  # its rate was set then, and checkpointed

    def on_epoch_end(self, epoch, logs=None):
        from ._optimizers import learning_rate, set_learning_rate

        rate = logs.get("learning_rate")
        if self.set_to is not None and rate is not None and np.float32(rate) != np.float32(self.set_to):
            raise ValueError(f"ReduceLROnPlateau set the learning rate to {self.set_to:g}, but epoch {epoch + 1} "
                             f"trained at {rate:g}: the optimizer's rate follows a schedule, which overrides it "
                             "every step. Give the optimizer a constant rate, or keep the schedule without "
                             "ReduceLROnPlateau.")
        self.set_to = None
        lowered = self._step(epoch, logs, learning_rate(self.run.state.opt_state))
        if lowered is not None:
            state = self.run.state
            self.run.set_state(state.replace(opt_state=set_learning_rate(state.opt_state, lowered)))
            self.set_to = lowered
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {lowered:g}.")

    def _step(self, epoch: int, logs: dict, rate: float | None) -> float | None:
        """Keras' rule for one epoch's record: the new rate when it lowers it, else None. The
        same for an epoch replayed from the History (whose rate is not set again)."""
        current = self.current(logs)
        if current is None:
            return None
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.is_improvement(current):
            self.improve(current, epoch)
            return None
        if self.cooldown_counter > 0:
            return None
        self.wait += 1
        if self.wait < self.patience or rate is None or not np.float32(rate) > np.float32(self.min_lr):
            return None
        self.cooldown_counter, self.wait = self.cooldown, 0
        return max(rate * self.factor, self.min_lr)


__all__ = ["Callback", "EarlyStopping", "History", "LambdaCallback", "MonitorCallback", "ProgressBar",
           "ReduceLROnPlateau", "Run", "StopTraining", "TerminateOnNaN"]
