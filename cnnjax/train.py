"""Backpropagation: training the lecture's networks with JIT-compiled Optax steps.

The lecture's Keras code, and its cnnjax equivalent::

    model.compile(optimizer='rmsprop', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(train_images, train_labels, epochs=5, batch_size=64,
                        validation_data=(test_images, test_labels))

    history = cnnjax.train.fit(model, (train_images, train_labels), epochs=5, batch_size=64,
                               validation=(test_images, test_labels))

Underneath is a pure step, ``train_step(state, batch) -> (state, metrics)``, compiled
with ``jax.jit``, that a researcher can call directly. :func:`fit` runs it the fastest
way the machine allows:

- **On-device epochs** (``loop="scan"``): the dataset is placed on the device(s) once;
  each epoch sends only the shuffled batch indices, and the steps run inside a compiled
  ``lax.scan`` with no Python in between. An epoch is cut into equal segments (for the
  progress bar, NaN checks and checkpoints), about a tenth of an epoch and, where the
  epoch's step count allows, a divisor of it; the last, partial batch is padded with
  zero-weight examples and, otherwise, the last segment with skipped steps, so every
  segment has the same shape and the whole run compiles once.
- **Micro-batches** on one CPU device: each batch is split into 4 independent parts
  whose gradients add up (see :func:`auto_microbatches`).
- **A Python loop of jitted steps** (``loop="python"``), batches gathered on the host:
  for data too large for the device.

``loop="auto"`` (the default) scans when the data fits in device memory, except on CPU
with the reference convolution, which XLA runs ~6x slower inside a scan than in a loop
(measured in ``benchmarks/train_throughput.py``).

All local devices are used by default: a ``jax.sharding.Mesh`` over the batch axis, the
parameters replicated, every batch split across devices. One device is the same code
path with a mesh of one. ``batch_size`` is the global batch. For several hosts, call
``jax.distributed.initialize()`` first on every host and give every host the same
dataset and seed: each host feeds its own devices' slices of each global batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import _checks, _memory, data, lowering
from .activations import softmax
from .losses import sparse_categorical_crossentropy


def rmsprop(learning_rate: float | optax.Schedule = 1e-3, rho: float = 0.9, epsilon: float = 1e-7) -> optax.GradientTransformation:
    """Keras' RMSprop defaults, as optax: ``v = rho v + (1 - rho) g^2``, ``w -= lr g / (sqrt(v) + eps)``.

    Epsilon is added outside the square root, as in Keras 2 / ``tf.keras`` (which
    produced the lecture's printed run). Keras 3 adds it inside (``sqrt(v + eps)``);
    the two differ only while ``v`` is near zero.
    """
    return optax.rmsprop(learning_rate, decay=rho, eps=epsilon, eps_in_sqrt=False)


DEFAULT_OPTIMIZER = rmsprop()
"""The optimizer :func:`fit` uses when none is given. One shared object, so that repeated
``fit`` calls reuse their compiled steps."""


@struct.dataclass
class TrainState:
    """Everything a training step reads and writes; a pytree, so it passes through ``jit``.

    Attributes:
      params: the model's ``nnx.Param`` variables (an ``nnx.State``).
      rest: the model's other variables (an ``nnx.State``, often empty).
      opt_state: the optimizer's state.
      step: number of steps taken (int32 scalar).
      graphdef, tx, compute_dtype, microbatches: static: the model's structure, the
        optax optimizer, the compute dtype (``None``: the parameters' dtype), and how
        many parts each batch is split into (see :func:`create_state`).
    """

    params: Any
    rest: Any
    opt_state: Any
    step: jax.Array
    graphdef: Any = struct.field(pytree_node=False)
    tx: Any = struct.field(pytree_node=False)
    compute_dtype: Any = struct.field(pytree_node=False, default=None)
    microbatches: int = struct.field(pytree_node=False, default=1)


def create_state(model: nnx.Module, optimizer: optax.GradientTransformation | None = None, *,
                 compute_dtype: Any = None, microbatches: int = 1) -> TrainState:
    """The training state of ``model`` (not modified) for ``optimizer`` (default :func:`rmsprop`).

    Args:
      model: an ``nnx.Module`` returning logits.
      optimizer: any optax transformation (schedules included).
      compute_dtype: e.g. ``jnp.bfloat16`` to compute in bfloat16 while parameters and
        optimizer state stay float32 (for GPUs and TPUs).
      microbatches: split every batch into this many equal parts, each differentiated
        on its own, and sum their gradients: the same update up to float rounding. On
        a CPU the independent parts run side by side on its threads, and each part's
        activations stay in cache (:func:`fit` picks this itself; see
        :func:`auto_microbatches`). Needs a model without non-parameter state (such as
        batch statistics), which would otherwise be computed per part.
    """
    tune_cpu_memory()
    tx = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"`optimizer` must be an optax.GradientTransformation, got {tx!r}.")
    microbatches = _checks.positive_int(microbatches, "microbatches")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if microbatches > 1 and jax.tree.leaves(rest):
        kinds = {type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable))}
        raise ValueError(
            f"`microbatches`={microbatches} needs a model whose only variables are parameters; "
            f"this one also has {sorted(kinds)}, which would be computed per part of the batch. "
            "Use microbatches=1."
        )
    return TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32), graphdef, tx,
                      None if compute_dtype is None else jnp.dtype(compute_dtype), microbatches)


def auto_microbatches(batch_size: int, devices: Sequence[jax.Device] | None = None) -> int:
    """How many parts :func:`fit` splits each batch into: 4 on a single CPU device when
    ``batch_size`` is a multiple of 4 and at least 32, else 1.

    Measured on a 2-core CPU (the lecture's functional CNN, batch 64): 4 parts of 16
    train 15-20% faster than one batch of 64 (2 parts about as fast, 8 parts slower).
    Accelerators run one large batch best, and several devices already split the batch.
    """
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) == 1 and devices[0].platform == "cpu" and batch_size % 4 == 0 and batch_size >= 32:
        return 4
    return 1


def tune_cpu_memory() -> bool:
    """On a CPU backend with glibc, keeps freed memory for reuse (see ``cnnjax._memory``).

    XLA:CPU frees a step's temporaries after every call; with glibc's defaults each call
    then pays page faults on tens of MB, and a jitted training step runs at half speed.
    :func:`create_state`, :func:`fit`, :func:`evaluate` and :func:`predict` call this;
    custom loops around :func:`train_step` get it from :func:`create_state`. Set
    ``CNNJAX_NO_MALLOC_TUNING=1`` to opt out. Returns whether the tuning is in effect.
    """
    if jax.default_backend() != "cpu":
        return False
    return _memory.keep_freed_memory()


def _logits(graphdef, params, rest, compute_dtype, x):
    if compute_dtype is not None:
        cast = lambda a: a.astype(compute_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
        params, x = jax.tree.map(cast, params), x.astype(compute_dtype)
    rest = jax.tree.map(lambda a: a, rest)  # variables of this trace, so the model may update them
    model = nnx.merge(graphdef, params, rest)
    logits = model(x).astype(jnp.float32)
    return logits, nnx.state(model, nnx.Not(nnx.Param))


def _sums(logits, y, w):
    """Weighted loss sum, correct count and weight sum: the quantities epochs add up."""
    per_example = sparse_categorical_crossentropy(logits, y, reduction="none")
    correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
    return jnp.stack([jnp.sum(per_example * w), jnp.sum(correct * w), jnp.sum(w)])


def _step(state: TrainState, x, y, w):
    """One optimizer step on a weighted batch; returns the new state and ``[loss_sum, correct, count]``.

    The loss is the weighted mean over the whole batch; with ``state.microbatches`` = k
    the batch is cut into k parts whose gradients (of their share of that mean) add up.
    """
    k = state.microbatches
    if x.shape[0] % k:
        raise ValueError(f"The batch of {x.shape[0]} examples does not split into `microbatches`={k} equal parts.")
    total = jnp.maximum(jnp.sum(w), 1.0)

    def loss_fn(params, x, y, w):
        logits, rest = _logits(state.graphdef, params, state.rest, state.compute_dtype, x)
        sums = _sums(logits, y, w)
        return sums[0] / total, (sums, rest)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    m = x.shape[0] // k
    grads = sums = None
    for part in range(k):  # independent parts: XLA may run them side by side
        cut = slice(part * m, (part + 1) * m)
        (_, (part_sums, rest)), part_grads = grad_fn(state.params, x[cut], y[cut], w[cut])
        grads = part_grads if grads is None else jax.tree.map(jnp.add, grads, part_grads)
        sums = part_sums if sums is None else sums + part_sums
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, rest=rest, opt_state=opt_state, step=state.step + 1), sums


def _means(sums):
    return {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2]}


def _batch(batch):
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise TypeError(f"`batch` must be (images, labels) or (images, labels, weights), got {type(batch).__name__}.")
    x, y = batch[0], batch[1]
    w = batch[2] if len(batch) == 3 else jnp.ones(jnp.shape(y), jnp.float32)
    return x, y, w


@jax.jit
def train_step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    """One jitted training step.

    Args:
      state: from :func:`create_state`.
      batch: ``(images, labels)`` or ``(images, labels, weights)``; images
        ``(B, *input_shape)`` float, labels ``(B,)`` int, weights ``(B,)`` float
        (0 excludes an example).

    Returns:
      The new state and ``{"loss", "accuracy"}``, weighted means over the batch.
    """
    state, sums = _step(state, *_batch(batch))
    return state, _means(sums)


@jax.jit
def eval_step(state: TrainState, batch) -> dict[str, jax.Array]:
    """Loss and accuracy of ``state``'s model on ``batch`` (as :func:`train_step`), no update."""
    x, y, w = _batch(batch)
    logits, _ = _logits(state.graphdef, state.params, state.rest, state.compute_dtype, x)
    return _means(_sums(logits, y, w))


def _run_segment_impl(state, images, labels, idx, w, valid):
    """``len(idx)`` steps inside one ``lax.scan``; rows with ``valid=False`` are skipped.

    ``valid=None`` means every row is a step: the scan then runs the step with no
    ``lax.cond`` around it (measured: 6% faster on a 2-core CPU). :func:`fit` cuts an
    epoch into equal segments where it can, so only an epoch that cannot be cut evenly
    pays for the ``cond``.
    """
    if valid is None:
        return lax.scan(lambda state, inputs: _step(state, images[inputs[0]], labels[inputs[0]], inputs[1]),
                        state, (idx, w))

    def body(state, inputs):
        ix, wi, v = inputs
        return lax.cond(
            v,
            lambda s: _step(s, images[ix], labels[ix], wi),
            lambda s: (s, jnp.zeros(3, jnp.float32)),
            state,
        )

    return lax.scan(body, state, (idx, w, valid))


_run_segment = jax.jit(_run_segment_impl)
_run_step = jax.jit(_step)


@functools.partial(jax.jit, static_argnames=("graphdef", "compute_dtype"))
def _eval_batches(graphdef, compute_dtype, params, rest, images, labels, idx, w):
    def body(total, inputs):
        ix, wi = inputs
        logits, _ = _logits(graphdef, params, rest, compute_dtype, images[ix])
        return total + _sums(logits, labels[ix], wi), None

    total, _ = lax.scan(body, jnp.zeros(3, jnp.float32), (idx, w))
    return total


@functools.partial(jax.jit, static_argnames=("graphdef", "compute_dtype"))
def _predict_batch(graphdef, compute_dtype, params, rest, x):
    return _logits(graphdef, params, rest, compute_dtype, x)[0]


# ------------------------------------------------------------------------ placement


@dataclasses.dataclass(frozen=True)
class _Placement:
    """How arrays go onto the mesh: replicated, or split along the batch axis."""

    mesh: Mesh

    @property
    def size(self) -> int:
        return self.mesh.size

    def replicated(self, x):
        return _put(x, NamedSharding(self.mesh, P()))

    def batched(self, x, axis: int = 0):
        spec = [None] * np.ndim(x)
        spec[axis] = "batch"
        return _put(x, NamedSharding(self.mesh, P(*spec)))


def _put(x, sharding):
    """Places a host array that every process holds in full; works for one host or many."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _mesh(devices: Sequence[jax.Device] | None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("`devices` must not be empty.")
    return Mesh(np.array(devices), ("batch",))


def _fits_on_device(nbytes: int, device: jax.Device) -> bool:
    """Whether ``nbytes`` takes at most half of the device's memory (host RAM for CPUs)."""
    limit = None
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # platforms without memory stats
        limit = None
    if limit is None:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return nbytes <= limit // 2


def choose_loop(nbytes: int, device: jax.Device | None = None) -> str:
    """The loop :func:`fit` uses with ``loop="auto"``: ``"scan"`` or ``"python"``.

    Scans when the data takes at most half the device's memory, except on CPU with the
    reference convolution lowering (XLA:CPU's native convolution is ~6x slower inside
    a scan than in a loop of jitted steps).
    """
    device = device or jax.devices()[0]
    if device.platform == "cpu" and lowering.current("conv", "cpu") == "reference":
        return "python"
    return "scan" if _fits_on_device(nbytes, device) else "python"


# ------------------------------------------------------------------------------ fit


@dataclasses.dataclass
class History:
    """What :func:`fit` returns: one record per epoch.

    Each record has ``epoch`` (1-based), ``loss``, ``accuracy``, ``val_loss`` and
    ``val_accuracy`` (when validating), ``seconds`` (wall time of the epoch, validation
    included) and ``images_per_s`` (training examples per second of training time).
    """

    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    compile_seconds: float = 0.0
    """Seconds spent compiling the training program (0 when it was already compiled)."""

    @property
    def history(self) -> dict[str, list[float]]:
        """Keras' ``History.history``: metric name -> list over epochs."""
        keys = [k for k in (self.epochs[0] if self.epochs else {}) if k != "epoch"]
        return {k: [e[k] for e in self.epochs] for k in keys}


def _check_data(name: str, pair: Any):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"`{name}` must be an (images, labels) pair of arrays, got {type(pair).__name__}.")
    images, labels = np.asarray(pair[0]), np.asarray(pair[1])
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(
            f"`{name}` images must be floating point, got {images.dtype}; scale them first, "
            f"e.g. `cnnjax.data.to_float_images(images)` (uint8 -> float32 in [0, 1])."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"`{name}` labels must be integer class indices, got {labels.dtype}.")
    if labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"`{name}` must hold N images and N labels of shape (N,), got images "
            f"{images.shape} and labels {labels.shape}."
        )
    if len(labels) == 0:
        raise ValueError(f"`{name}` is empty.")
    return images, labels.astype(np.int32)


def _check_label_range(name: str, labels: np.ndarray, num_classes: int) -> None:
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"`{name}` labels must be in [0, {num_classes}) for a model with {num_classes} "
            f"outputs, got labels from {labels.min()} to {labels.max()}."
        )


def _num_classes(model, images: np.ndarray, name: str) -> int:
    example = jax.ShapeDtypeStruct((1, *images.shape[1:]), jnp.float32)
    graphdef, variables = nnx.split(model)  # called functionally: a model may update its state
    try:
        out = jax.eval_shape(lambda v, x: nnx.merge(graphdef, v)(x), variables, example)
    except (ValueError, TypeError) as e:
        raise ValueError(f"`{name}` images of shape {images.shape} do not fit the model: {e}") from e
    if len(out.shape) != 2:
        raise ValueError(f"The model must return logits of shape (N, classes), got {out.shape}.")
    return out.shape[-1]


def _default_segment(steps: int) -> int:
    """About a tenth of an epoch: the divisor of ``steps`` nearest ``steps / 10`` within a
    factor of 2, so that every segment is full; else ``ceil(steps / 10)``."""
    target = max(1, math.ceil(steps / 10))
    divisors = [d for d in range(max(1, target // 2), 2 * target + 1) if steps % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d)) if divisors else target


def _epoch_plan(n: int, batch_size: int, segment: int, *, seed: int, epoch: int, shuffle: bool):
    """An epoch's steps as arrays of shape (segments, segment, ...): indices, weights, valid."""
    batches = data.batch_indices(n, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
    steps = len(batches)
    n_segments = math.ceil(steps / segment)
    idx = np.zeros((n_segments * segment, batch_size), np.int32)
    w = np.zeros((n_segments * segment, batch_size), np.float32)
    for i, b in enumerate(batches):
        idx[i, : len(b)], w[i, : len(b)] = b, 1.0
    valid = np.arange(n_segments * segment) < steps
    shape = (n_segments, segment)
    return steps, idx.reshape(*shape, batch_size), w.reshape(*shape, batch_size), valid.reshape(shape)


def _padded_batches(n: int, batch_size: int):
    """Evaluation batches in order, the last padded with zero weights: (idx, w), each (steps, batch)."""
    steps = math.ceil(n / batch_size)
    _, idx, w, _ = _epoch_plan(n, batch_size, steps, seed=0, epoch=0, shuffle=False)
    return idx[0], w[0]


def fit(
    model: nnx.Module,
    train: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int = 64,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    optimizer: optax.GradientTransformation | None = None,
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
    callbacks: Sequence[Callable[[dict[str, float]], None]] = (),
    microbatches: int | None = None,
) -> History:
    """Trains ``model`` in place, like Keras' ``model.fit``, and returns its :class:`History`.

    Args:
      model: an ``nnx.Module`` returning logits, e.g. ``cnnjax.models.mnist_functional``.
      train: ``(images, labels)``: float images ``(N, *input_shape)``, int labels ``(N,)``.
      epochs: number of passes over ``train`` (the total, also when resuming).
      batch_size: global batch size; the last batch of an epoch may be smaller, as in Keras.
      validation: optional ``(images, labels)`` evaluated after every epoch.
      optimizer: any optax transformation; default Keras' RMSprop (:func:`rmsprop`).
      seed: fixes the data order (a permutation per ``(seed, epoch)``); the same seed
        gives the same run.
      shuffle: shuffle each epoch.
      verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
      loop: ``"auto"``, ``"scan"`` (epochs on the device) or ``"python"``.
      steps_per_segment: steps between progress updates, NaN checks and (with
        ``checkpoint_dir``) checkpoints; default about a tenth of an epoch. Each segment is
        one call of the compiled program, which costs a few milliseconds.
      checkpoint_dir: save checkpoints here (after every segment when
        ``steps_per_segment`` is given, and after every epoch).
      keep_checkpoints: how many recent checkpoints to keep.
      resume: continue from the newest checkpoint in ``checkpoint_dir``, if any; the
        result equals an uninterrupted run's bit for bit on CPU.
      compute_dtype: e.g. ``jnp.bfloat16``: compute in bfloat16, parameters float32.
      devices: devices to train on (default: all); the batch is split across them.
      callbacks: functions called with each epoch's record (raise to stop training).
      microbatches: split each batch into this many parts (see :func:`create_state`);
        default :func:`auto_microbatches` (4 on one CPU device), or 1 for models with
        non-parameter state. Changes only float rounding, not the update.

    Returns:
      The :class:`History`; the model holds the trained parameters.

    Raises:
      ValueError, TypeError: on bad arguments or data, before anything is compiled.
      FloatingPointError: if the loss becomes NaN or infinite, naming the step; the
        model keeps the last good parameters and no checkpoint is written past them.
    """
    epochs = _checks.positive_int(epochs, "epochs")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}.")
    if loop not in ("auto", "scan", "python"):
        raise ValueError(f"`loop` must be 'auto', 'scan' or 'python', got {loop!r}.")
    if resume and checkpoint_dir is None:
        raise ValueError("`resume=True` needs `checkpoint_dir`.")
    images, labels = _check_data("train", train)
    num_classes = _num_classes(model, images, "train")
    _check_label_range("train", labels, num_classes)
    if validation is not None:
        val_images, val_labels = _check_data("validation", validation)
        if val_images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"`validation` images have shape {val_images.shape[1:]} per example but `train` "
                f"images have {images.shape[1:]}."
            )
        _check_label_range("validation", val_labels, num_classes)
    n = len(images)
    if batch_size > n:
        raise ValueError(f"`batch_size` {batch_size} is larger than the {n} training examples.")
    placement = _Placement(_mesh(devices))
    if batch_size % placement.size:
        raise ValueError(
            f"`batch_size` {batch_size} must be a multiple of the {placement.size} devices it is "
            f"split across (e.g. {placement.size * max(1, round(batch_size / placement.size))})."
        )
    steps_per_epoch = math.ceil(n / batch_size)
    segment = steps_per_segment or _default_segment(steps_per_epoch)
    segment = min(_checks.positive_int(segment, "steps_per_segment"), steps_per_epoch)
    if loop == "auto":
        loop = choose_loop(images.nbytes + labels.nbytes, placement.mesh.devices.flat[0])

    if microbatches is None:
        has_state = bool(jax.tree.leaves(nnx.state(model, nnx.Not(nnx.Param))))
        microbatches = 1 if has_state else auto_microbatches(batch_size, list(placement.mesh.devices.flat))
    microbatches = _checks.positive_int(microbatches, "microbatches")
    if batch_size % microbatches:
        raise ValueError(f"`batch_size` {batch_size} must be a multiple of `microbatches`={microbatches}.")
    state = create_state(model, optimizer, compute_dtype=compute_dtype, microbatches=microbatches)
    state = jax.tree.map(placement.replicated, state)
    if loop == "scan":
        dev_images, dev_labels = placement.replicated(images), placement.replicated(labels)
    if validation is not None:
        val_idx, val_w = _padded_batches(len(val_images), batch_size)
        dev_val = (placement.replicated(val_images), placement.replicated(val_labels),
                   placement.batched(val_idx, 1), placement.batched(val_w, 1))

    fingerprint = {"batch_size": batch_size, "seed": seed, "shuffle": shuffle, "n": n,
                   "segment": segment, "params": [list(np.shape(p)) for p in jax.tree.leaves(state.params)]}
    if checkpoint_dir is not None:
        from .checkpoint import Checkpointer  # orbax, imported only when checkpointing

        ckpt = Checkpointer(checkpoint_dir, keep=keep_checkpoints)
    else:
        ckpt = None
    history, start_epoch, start_segment, acc = History(), 0, 0, np.zeros(3)
    if ckpt is not None and resume and ckpt.latest_step() is not None:
        leaves, record = ckpt.restore(like=jax.tree.leaves(state))
        if record["fingerprint"] != fingerprint:
            raise ValueError(
                f"The checkpoint in {ckpt.directory} is from a different run ({record['fingerprint']}); "
                f"this run is {fingerprint}. Use another `checkpoint_dir` or the same settings."
            )
        state = jax.tree.unflatten(jax.tree.structure(state), leaves)
        history = History(record["history"])
        start_epoch, start_segment, acc = record["epoch"], record["segment"], np.asarray(record["acc"])

    def save(epoch_index, next_segment, acc):
        if ckpt is not None:
            ckpt.save(int(state.step), jax.tree.leaves(state),
                      {"fingerprint": fingerprint, "history": history.epochs, "epoch": epoch_index,
                       "segment": next_segment, "acc": [float(a) for a in acc]})

    def segment_args(idx, w, valid, s):
        return (state, dev_images, dev_labels, placement.batched(idx[s], 1),
                placement.batched(w[s], 1), None if valid.all() else placement.replicated(valid[s]))

    def step_args(idx, w, s, j):
        return (state, placement.batched(images[idx[s, j]]), placement.batched(labels[idx[s, j]]),
                placement.batched(w[s, j]))

    # Compile ahead of time to report its cost; the jit calls below then hit the cache.
    _, idx0, w0, valid0 = _epoch_plan(n, batch_size, segment, seed=seed, epoch=start_epoch, shuffle=shuffle)
    tc = time.perf_counter()
    if loop == "scan":
        _run_segment.lower(*segment_args(idx0, w0, valid0, 0)).compile()
    else:
        _run_step.lower(*step_args(idx0, w0, 0, 0)).compile()
    history.compile_seconds = time.perf_counter() - tc

    last_good = state
    try:
        for epoch in range(start_epoch, epochs):
            steps, idx, w, valid = _epoch_plan(n, batch_size, segment, seed=seed, epoch=epoch, shuffle=shuffle)
            bar = _progress(verbose, steps, epoch, epochs)
            bar.update(min(start_segment * segment, steps))
            t0, train_seconds, trained = time.perf_counter(), 0.0, 0.0
            for s in range(start_segment, len(idx)):
                ts = time.perf_counter()
                if loop == "scan":
                    state, sums = _run_segment(*segment_args(idx, w, valid, s))
                    sums = np.asarray(sums)
                else:
                    rows = []
                    for j in np.flatnonzero(valid[s]):
                        state, row = _run_step(*step_args(idx, w, s, j))
                        rows.append(row)
                    sums = np.stack([np.asarray(r) for r in rows]) if rows else np.zeros((0, 3))
                train_seconds += time.perf_counter() - ts
                bad = np.flatnonzero(~np.isfinite(sums[:, 0]))
                if len(bad):
                    batch_no = s * segment + int(bad[0])
                    step_no = int(last_good.step) + int(bad[0]) + 1
                    raise FloatingPointError(
                        f"The loss became {sums[bad[0], 0]} at step {step_no} (epoch {epoch + 1}, "
                        f"batch {batch_no + 1} of {steps}). Training stopped; the model keeps the "
                        f"parameters of step {int(last_good.step)}"
                        + (f", and the last checkpoint in {ckpt.directory} is kept." if ckpt else ".")
                    )
                acc = acc + sums.sum(axis=0)
                trained += float(sums[:, 2].sum())  # examples, not padding; a resumed epoch counts its part
                last_good = state
                bar.update(int(valid[s].sum()))
                bar.set_postfix(loss=f"{acc[0] / acc[2]:.4f}", accuracy=f"{acc[1] / acc[2]:.4f}", refresh=False)
                if steps_per_segment is not None and s + 1 < len(idx):
                    save(epoch, s + 1, acc)
            record = {"epoch": epoch + 1, "loss": float(acc[0] / acc[2]), "accuracy": float(acc[1] / acc[2])}
            if validation is not None:
                vs = np.asarray(_eval_batches(state.graphdef, state.compute_dtype, state.params, state.rest, *dev_val))
                record.update(val_loss=float(vs[0] / vs[2]), val_accuracy=float(vs[1] / vs[2]))
            record.update(seconds=time.perf_counter() - t0, images_per_s=trained / max(train_seconds, 1e-9))
            history.epochs.append(record)
            _finish(bar, verbose, record, epoch, epochs)
            start_segment, acc = 0, np.zeros(3)
            save(epoch + 1, 0, acc)
            for callback in callbacks:
                callback(dict(record))
    finally:
        # back to the default device, off the mesh: the model is usable as before
        nnx.update(model, jax.device_put(jax.device_get(last_good.params)),
                   jax.device_put(jax.device_get(last_good.rest)))
        if ckpt is not None:
            ckpt.close()
    return history


def _progress(verbose: int, steps: int, epoch: int, epochs: int):
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="step", disable=verbose != 1,
                dynamic_ncols=True, leave=True)


def _finish(bar, verbose: int, record: dict, epoch: int, epochs: int) -> None:
    metrics = {k: f"{v:.4f}" for k, v in record.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    bar.set_postfix(metrics, refresh=True)
    bar.close()
    if verbose == 2:
        line = " - ".join(f"{k}: {v}" for k, v in metrics.items())
        print(f"Epoch {epoch + 1}/{epochs} - {record['seconds']:.1f}s - {line} - {record['images_per_s']:.0f} images/s")


def restore(model: nnx.Module, checkpoint_dir: str | os.PathLike, *, optimizer: optax.GradientTransformation | None = None,
            step: int | None = None) -> dict[str, Any]:
    """Loads a checkpoint written by :func:`fit` into ``model`` in place.

    Args:
      model: a model of the same architecture as the one trained.
      checkpoint_dir: the ``checkpoint_dir`` given to :func:`fit`.
      optimizer: the optimizer of that run, if not the default (its state's structure
        must match; the learning rate does not matter).
      step: which checkpoint (default: the newest).

    Returns:
      The checkpoint's record: ``epoch`` (epochs completed), ``history`` (per-epoch
      metrics), and where in the data order the run stood.

    Raises:
      FileNotFoundError: if ``checkpoint_dir`` holds no checkpoint.
      ValueError: if the checkpoint does not fit ``model`` and ``optimizer``.
    """
    from .checkpoint import Checkpointer

    state = create_state(model, optimizer)
    ckpt = Checkpointer(checkpoint_dir)
    try:
        leaves, record = ckpt.restore(step, like=jax.tree.leaves(state))
    finally:
        ckpt.close()
    state = jax.tree.unflatten(jax.tree.structure(state), leaves)
    nnx.update(model, state.params, state.rest)
    return record


# ------------------------------------------------------------------- evaluate / predict


def evaluate(model: nnx.Module, test: tuple[np.ndarray, np.ndarray], *, batch_size: int = 256,
             compute_dtype: Any = None, devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``(images, labels)``: ``{"loss", "accuracy"}``."""
    batch_size = _checks.positive_int(batch_size, "batch_size")
    tune_cpu_memory()
    images, labels = _check_data("test", test)
    _check_label_range("test", labels, _num_classes(model, images, "test"))
    placement = _Placement(_mesh(devices))
    batch_size = math.ceil(batch_size / placement.size) * placement.size
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    idx, w = _padded_batches(len(images), batch_size)
    dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)
    sums = np.asarray(_eval_batches(
        graphdef, dtype, jax.tree.map(placement.replicated, params), jax.tree.map(placement.replicated, rest),
        placement.replicated(images), placement.replicated(labels), placement.batched(idx, 1), placement.batched(w, 1),
    ))
    return {"loss": float(sums[0] / sums[2]), "accuracy": float(sums[1] / sums[2])}


def predict(model: nnx.Module, images: np.ndarray, *, batch_size: int = 256, logits: bool = False,
            compute_dtype: Any = None) -> np.ndarray:
    """Class probabilities (softmax of the logits, or the logits) for ``images``, batch by batch.

    Returns:
      ``float32`` array of shape ``(N, num_classes)``.
    """
    batch_size = _checks.positive_int(batch_size, "batch_size")
    tune_cpu_memory()
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"`images` must be floating point, got {images.dtype}.")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pad = batch_size - len(chunk) if len(images) > batch_size else 0
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        y = _predict_batch(graphdef, dtype, params, rest, chunk)
        out.append(np.asarray(y)[: len(chunk) - pad])
    result = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return result if logits else np.asarray(softmax(result))


__all__ = [
    "DEFAULT_OPTIMIZER",
    "History",
    "TrainState",
    "auto_microbatches",
    "choose_loop",
    "create_state",
    "eval_step",
    "evaluate",
    "fit",
    "predict",
    "restore",
    "rmsprop",
    "train_step",
    "tune_cpu_memory",
]
