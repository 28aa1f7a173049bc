"""The epoch runner: an epoch's steps, cut into segments, run on the device(s).

Two loops run the same :func:`~cnnjax.train.train_step`:

- **On-device epochs** (``"scan"``): the dataset is placed on the device(s) once; each
  epoch sends only the shuffled batch indices, and a segment's steps run inside one
  compiled ``lax.scan`` with no Python in between. Across processes each segment's
  batches are sent instead, each process reading and sending only its own devices'
  slices of them (:class:`~cnnjax.train._placement.Rows`), so no process needs the
  examples of the others.
- **A Python loop of jitted steps** (``"python"``), batches gathered on the host: for
  data too large for the device, or lowerings that run slowly inside a scan.
- **A stream of batches** (:class:`StreamRunner`): the Python loop over whatever an
  iterable yields (a torch ``DataLoader``, a generator), each batch padded to the first
  one's size so the step compiles once per example shape (sentences bucketed by length
  give a few shapes: :func:`cnnjax.text.bucket_by_length`).

An epoch is cut into equal segments (about a tenth of an epoch, a divisor of the step
count where one is near): between segments the host updates the progress bar, checks
that nothing became NaN, and may save a checkpoint. The last, partial batch is padded
with zero-weight examples, and a segment the steps do not fill is padded with skipped
steps, so every segment has the same shape and the whole run compiles once. A model
whose variables every example moves (BatchNorm statistics) gets its partial batch run
at its own size instead, so that padding never touches its state.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _checks, data, lowering
from ._inputs import check_stream_shape, pad_batch, stream_batch, warn_many_shapes
from ._placement import Placement, Rows, fits_on_device
from ._state import TrainState
from ._steps import all_finite, train_step


def default_segment(steps: int) -> int:
    """About a tenth of an epoch: the divisor of ``steps`` nearest ``steps / 10`` within a
    factor of 2, so that every segment is full; else ``ceil(steps / 10)``."""
    target = max(1, math.ceil(steps / 10))
    divisors = [d for d in range(max(1, target // 2), 2 * target + 1) if steps % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d)) if divisors else target


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """One epoch's batches: ``idx``/``w`` of shape ``(segments, segment, batch)``, ``valid``
    ``(segments, segment)`` (False: a skipped step), and the indices of a last partial
    batch run at its own size (``remainder``, or None)."""

    idx: np.ndarray
    w: np.ndarray
    valid: np.ndarray
    remainder: np.ndarray | None

    @property
    def segments(self) -> int:
        """Segments to run: the rows of ``idx``, and the remainder batch as one more."""
        return len(self.idx) + (self.remainder is not None)


def run_length(epochs: int | None, steps: int | None,
               steps_per_epoch: int | None) -> tuple[int, int | None, int | None]:
    """``(epochs, steps, last_steps)`` of a run given ``epochs`` or ``steps`` (exactly one):
    ``steps`` makes ``ceil(steps / steps_per_epoch)`` epochs whose last runs ``last_steps``
    (None when the run is given in epochs)."""
    if steps is None:
        return _checks.positive_int(epochs, "epochs"), None, None
    steps = _checks.positive_int(steps, "steps")
    if steps_per_epoch is None:
        raise ValueError("`steps` with a stream of unknown length needs `steps_per_epoch`.")
    epochs = -(-steps // steps_per_epoch)
    return epochs, steps, steps - (epochs - 1) * steps_per_epoch


def segment_length(steps_per_segment: int | None, n: int | None, batch_size: int, steps_per_epoch: int | None,
                   pad_remainder: bool) -> int:
    """The steps of one segment: ``steps_per_segment``, or about a tenth of an epoch's full
    steps (:func:`default_segment`; a partial last batch that is not padded runs on its own;
    a stream of unknown length counts as 100 steps), at most an epoch."""
    full_steps = steps_per_epoch - (n % batch_size != 0 and not pad_remainder) if n is not None \
        else (steps_per_epoch or 100)
    return min(_checks.positive_int(steps_per_segment or default_segment(full_steps), "steps_per_segment"),
               max(full_steps, 1))


def epoch_steps(n: int, batch_size: int) -> int:
    """The steps of an epoch of ``n`` examples: its full batches and a last, partial one (what
    :func:`cnnjax.data.batch_plan` gives and :func:`plan_epoch` runs, padded or not)."""
    return -(-n // batch_size)


def plan_epoch(n: int, batch_size: int, segment: int, *, seed: int, epoch: int, shuffle: bool,
               pad_remainder: bool = True, max_steps: int | None = None) -> EpochPlan:
    """The :class:`EpochPlan` of epoch ``epoch`` (batches of :func:`cnnjax.data.batch_plan`),
    cut to its first ``max_steps`` batches if given (a step budget ending mid-epoch)."""
    idx, w = data.batch_plan(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
    if max_steps is not None and max_steps < len(idx):
        idx, w = idx[:max_steps], w[:max_steps]
    remainder = None
    if not pad_remainder and w[-1].sum() < batch_size:
        remainder, idx, w = idx[-1][: int(w[-1].sum())], idx[:-1], w[:-1]
    steps = len(idx)
    rows = math.ceil(steps / segment) * segment
    valid = np.arange(rows) < steps
    idx = np.concatenate([idx, np.zeros((rows - steps, batch_size), np.int32)])
    w = np.concatenate([w, np.zeros((rows - steps, batch_size), np.float32)])
    shape = (rows // segment, segment)
    return EpochPlan(idx.reshape(*shape, batch_size), w.reshape(*shape, batch_size), valid.reshape(shape), remainder)


def _guarded(state: TrainState, batch):
    state, metrics = train_step(state, batch)
    return state, (jnp.stack([metrics[k] for k in state.metric_names]), all_finite(state))


def _scan_steps(state, rows, valid, batch_of):
    """One step per row of ``rows`` (a tuple of arrays) inside one ``lax.scan``, on the batch
    ``batch_of(row)``; rows with ``valid=False`` are skipped.

    ``valid=None`` means every row is a step: the scan then runs the step with no
    ``lax.cond`` around it, which is faster on a CPU; :func:`default_segment` makes that
    the usual case.
    """
    step = lambda state, row: _guarded(state, batch_of(row))
    if valid is None:
        return lax.scan(step, state, rows)
    skipped = lambda s: (s, (jnp.zeros(len(s.metric_names), jnp.float32), jnp.array(True)))
    return lax.scan(lambda state, r: lax.cond(r[1], lambda s: step(s, r[0]), skipped, state), state, (rows, valid))


@jax.jit
def _scan_segment(state, inputs, targets, idx, w, valid):
    """A segment's steps on the whole dataset on the device, batches picked by ``idx``."""
    return _scan_steps(state, (idx, w), valid, lambda r: (inputs[r[0]], targets[r[0]], r[1]))


@jax.jit
def _scan_batches(state, xs, ys, w, valid):
    """A segment's steps on its batches ``(steps, batch, ...)``, sent for this segment."""
    return _scan_steps(state, (xs, ys, w), valid, lambda r: r)


_python_step = jax.jit(_guarded)


def choose_loop(nbytes: int, device: jax.Device | None = None, *, step=None) -> str:
    """The loop :func:`~cnnjax.train.fit` uses with ``loop="auto"``: ``"scan"`` or ``"python"``.

    Scans when the data (``nbytes``) takes at most half the device's memory and the
    traced training step ``step`` (a jaxpr; ``None`` skips this check) runs well inside
    a scan on that platform (:func:`cnnjax.lowering.runs_well_in_scan`: on a CPU, no
    XLA convolution, e.g. from ``flax.nnx.Conv`` or a 1-D :func:`cnnjax.conv`).
    """
    device = device or jax.devices()[0]
    if step is not None and not lowering.runs_well_in_scan(step, device.platform):
        return "python"
    return "scan" if fits_on_device(nbytes, device) else "python"


def trace_step(state: TrainState, batch_size: int, inputs: np.ndarray, targets: np.ndarray,
               placement: Placement | None = None):
    """The jaxpr of one training step on a batch of ``batch_size``, split across
    ``placement``'s devices if given (nothing is compiled). The trace is cached: the
    epoch's program, which holds the same step on the same batch types, reuses it
    instead of tracing the model again."""
    spec = lambda a: jax.ShapeDtypeStruct((batch_size, *a.shape[1:]), a.dtype)
    batch = (spec(inputs), spec(targets), jax.ShapeDtypeStruct((batch_size,), jnp.float32))
    if placement is not None:
        batch = tuple(placement.spec(b, 0) for b in batch)
    return _python_step.trace(state, batch).jaxpr


@dataclasses.dataclass
class SegmentResult:
    """What one segment did: per-step metric means ``(steps, len(names))``, examples per
    step, and whether the state was finite after each step; ``seconds`` of device time."""

    values: np.ndarray
    counts: np.ndarray
    finite: np.ndarray
    seconds: float


class ArrayRunner:
    """Runs the segments of an epoch of in-memory arrays with one loop on one placement (a
    stream's epochs: :class:`StreamRunner`).

    Args:
      loop: ``"scan"`` or ``"python"``.
      placement: the mesh the batch is split across.
      inputs, targets: the whole training set, on the host.
    """

    def __init__(self, loop: str, placement: Placement, inputs: np.ndarray, targets: np.ndarray):
        self.loop, self.placement = loop, placement
        self.inputs, self.targets = inputs, targets
        # one process: the dataset on the device once; several: each segment's own slices
        self._scan = _scan_segment if jax.process_count() == 1 else _scan_batches
        if loop == "scan" and self._scan is _scan_segment:
            # read once: arrays and memory maps as they are, other sources through Rows
            # (an index of every row would copy an array before placing it)
            whole = lambda a: a if isinstance(a, np.ndarray) else Rows(a, np.arange(a.shape[0]))
            self._device_data = placement.replicated((whole(inputs), whole(targets)))

    def _place(self, x, axis: int | None, spec: bool):
        """``x`` placed (batched along ``axis``, or replicated for None), or with ``spec`` only
        described, for compiling without reading any example."""
        p = self.placement
        if spec:
            return p.spec(x, axis)
        return p.replicated(x) if axis is None else p.batched(x, axis)

    def _segment_args(self, state, plan: EpochPlan, s: int, spec: bool = False):
        valid = None if plan.valid.all() else self._place(plan.valid[s], None, spec)
        if self._scan is _scan_segment:
            return (state, *self._device_data, *(self._place(a, 1, spec) for a in (plan.idx[s], plan.w[s])), valid)
        ix = plan.idx[s]
        rows = (Rows(self.inputs, ix), Rows(self.targets, ix), plan.w[s])
        return (state, *(self._place(a, 1, spec) for a in rows), valid)

    def _step_batch(self, plan: EpochPlan, s: int, j: int, spec: bool = False):
        ix = plan.idx[s, j]
        return tuple(self._place(a, 0, spec) for a in (Rows(self.inputs, ix), Rows(self.targets, ix), plan.w[s, j]))

    def _remainder_batch(self, plan: EpochPlan, spec: bool = False):
        # whole on every device: a batch of any size, no padding rows
        ix = plan.remainder
        rows = (Rows(self.inputs, ix), Rows(self.targets, ix), np.ones(len(ix), np.float32))
        return tuple(self._place(a, None, spec) for a in rows)

    def compile(self, state: TrainState, plan: EpochPlan) -> float:
        """Compiles the programs ``plan`` needs, ahead of the first call, reading no
        example; returns seconds."""
        t = time.perf_counter()
        if self.loop == "scan" and len(plan.idx):
            self._scan.lower(*self._segment_args(state, plan, 0, spec=True)).compile()
        elif len(plan.idx):
            _python_step.lower(state, self._step_batch(plan, 0, 0, spec=True)).compile()
        if plan.remainder is not None:
            _python_step.lower(state, self._remainder_batch(plan, spec=True)).compile()
        return time.perf_counter() - t

    def run(self, state: TrainState, plan: EpochPlan, s: int) -> tuple[TrainState, SegmentResult]:
        """Runs segment ``s`` of ``plan`` from ``state``."""
        t = time.perf_counter()
        if s == len(plan.idx):  # the remainder batch
            state, (values, finite) = _python_step(state, self._remainder_batch(plan))
            values, finite, counts = np.asarray(values)[None], np.asarray(finite)[None], [len(plan.remainder)]
        elif self.loop == "scan":
            state, (values, finite) = self._scan(*self._segment_args(state, plan, s))
            keep = plan.valid[s]
            values, finite, counts = np.asarray(values)[keep], np.asarray(finite)[keep], plan.w[s][keep].sum(1)
        else:
            rows = []
            for j in np.flatnonzero(plan.valid[s]):
                state, row = _python_step(state, self._step_batch(plan, s, j))
                rows.append(row)
            values = np.stack([np.asarray(v) for v, _ in rows]).reshape(len(rows), -1)
            finite = np.array([bool(f) for _, f in rows])
            counts = plan.w[s][plan.valid[s]].sum(1)
        return state, SegmentResult(values.astype(np.float64), np.asarray(counts, np.float64), finite,
                                    time.perf_counter() - t)


@dataclasses.dataclass
class StreamPlan:
    """One epoch of a stream: its batches drawn ``segment`` at a time from ``batches`` (an
    iterator), at most ``steps`` of them (None: until the stream ends)."""

    batches: object
    steps: int | None
    segment: int

    @property
    def segments(self) -> int:
        return math.ceil(self.steps / self.segment) if self.steps is not None else 2**62


class StreamRunner:
    """Runs an epoch of a stream of batches (a Python loop of jitted steps): each batch is
    padded to ``batch_size`` with zero-weight examples (``pad``), or run at its own size
    for a model whose variables every example moves, and split across the devices.

    A batch larger than ``batch_size``, or whose examples have another number of axes than
    the first batch's, is refused, naming it; each example shape compiles its own step.
    """

    def __init__(self, placement: Placement, batch_size: int, example_shape: tuple, pad: bool, first):
        self.loop, self.placement, self.batch_size = "python", placement, batch_size
        self.example_shape, self.pad, self.first = example_shape, pad, first
        self.steps_seen, self.shapes = 0, {example_shape}

    def _batch(self, batch, spec: bool = False):
        x, y = batch
        n = len(x)
        x, y, w = pad_batch(x, y, self.batch_size if self.pad else n)
        place = (lambda a: self.placement.spec(a, 0)) if spec else (lambda a: self.placement.batched(a, 0))
        if len(x) % self.placement.size:  # a batch of its own size that does not split: whole on every device
            place = (lambda a: self.placement.spec(a, None)) if spec else self.placement.replicated
        return tuple(place(a) for a in (x, y, w)), n

    def checked(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """A batch as ``check_data`` checks the arrays of ``fit`` (float inputs, N targets),
        with the first batch's number of axes and at most its size."""
        where = f"Batch {self.steps_seen} of the `train` stream"
        x, y = stream_batch(batch, where)
        check_stream_shape(x, self.example_shape, where, self.batch_size)
        first = self.first[0].dtype
        if np.issubdtype(x.dtype, np.integer) != np.issubdtype(first, np.integer):
            raise TypeError(f"{where} holds inputs of dtype {x.dtype}; the first batch's are {first}, and every "
                            "batch must hold the same kind (integer ids or floating point).")
        return x, y

    def compile(self, state: TrainState, plan=None) -> float:
        """Compiles the step for the first batch's shapes, ahead of the first call."""
        t = time.perf_counter()
        _python_step.lower(state, self._batch(self.first, spec=True)[0]).compile()
        return time.perf_counter() - t

    def run(self, state: TrainState, plan: StreamPlan, s: int) -> tuple[TrainState, SegmentResult]:
        """The next ``plan.segment`` batches of the stream (fewer where it ends: an empty
        result once it has ended)."""
        t = time.perf_counter()
        rows, counts = [], []
        limit = plan.segment if plan.steps is None else min(plan.segment, plan.steps - s * plan.segment)
        for _ in range(limit):
            batch = next(plan.batches, None)
            if batch is None:
                break
            x, y = self.checked(batch)
            placed, n = self._batch((x, y))
            if x.shape[1:] in self.shapes:
                state, row = _python_step(state, placed)
            else:  # a new example shape: its step is traced now, and a model that cannot take it says so
                try:
                    state, row = _python_step(state, placed)
                except (TypeError, ValueError) as e:
                    raise type(e)(f"Batch {self.steps_seen} of the `train` stream holds inputs of shape {x.shape}, "
                                  f"the first batch {self.first[0].shape}, and the model cannot take them: {e}"
                                  ) from None
                self.shapes.add(x.shape[1:])
                warn_many_shapes(self.shapes, "train")
            self.steps_seen += 1
            rows.append(row)
            counts.append(n)
        names = len(state.metric_names)
        values = (np.stack([np.asarray(v) for v, _ in rows]).reshape(len(rows), -1) if rows
                  else np.zeros((0, names)))
        finite = np.array([bool(f) for _, f in rows], bool)
        return state, SegmentResult(values.astype(np.float64), np.asarray(counts, np.float64), finite,
                                    time.perf_counter() - t)


__all__ = ["SegmentResult", "choose_loop"]
