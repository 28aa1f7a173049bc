"""What ``fit``, ``evaluate`` and ``predict`` accept, decided and checked once, here.

Every kind of data each takes, and what it becomes:

- **Arrays**: an ``(inputs, targets)`` pair of NumPy arrays (a memory map stays one), JAX
  arrays, lists or torch tensors; ``predict`` takes the inputs alone.
- **A random-access source**: inputs with ``shape``, ``dtype`` and ``source[indices]``
  (h5py, zarr, grain-style), read a batch slice at a time (:func:`is_source`).
- **A stream of batches** (:func:`is_stream`): any other iterable (a torch ``DataLoader``,
  a generator, a list of batches), each batch an ``(inputs, targets)`` pair or a dict
  under one of :data:`STREAM_KEYS` (tensorflow-datasets, grain), torch tensors read
  through ``.numpy()``; ``predict`` also takes batches of inputs alone
  (:func:`is_input_stream`). A stream's batches may differ in size and in their axes'
  sizes (sentences bucketed by length), not in their number of axes
  (:func:`check_stream_shape`); each example shape compiles its own step.

Inputs are floating point, or integer ids for a model that declares them
(:func:`check_input_dtype`); targets are numbers, one per example (:func:`check_data`),
that the objective can score against the model's outputs (:func:`check_fit`). Each check
runs before anything compiles and each message is written once, here.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import _checks, losses
from ._objective import Objective


def empty_stream(name: str) -> ValueError:
    """The error for a stream that gave no batch."""
    return ValueError(f"`{name}` is an empty stream: it gave no batch.")


STREAM_KEYS = (("image", "label"), ("x", "y"), ("inputs", "targets"))
"""The ``(inputs, targets)`` keys of a stream's dict batches (tensorflow-datasets and grain
give ``{"image", "label"}``)."""


def to_numpy(a) -> np.ndarray:
    """An array, list or torch tensor (read through ``.numpy()``) as a NumPy array."""
    return np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)


def is_source(x: Any) -> bool:
    """Whether ``x`` is a random-access source read lazily (an h5py or zarr dataset, a
    grain-style source with ``shape`` and ``dtype``) rather than an array to convert."""
    return (not isinstance(x, (np.ndarray, jax.Array)) and hasattr(x, "__getitem__")
            and isinstance(getattr(x, "shape", None), tuple) and hasattr(x, "dtype"))


def takes_integers(model: Any) -> bool:
    """Whether ``model`` takes integer inputs (token ids): it says so with an integer
    ``input_dtype`` attribute, as :class:`cnnjax.models.SentenceCNN` does (Keras' ``Input(dtype=)``)."""
    dtype = getattr(model, "input_dtype", None)
    return dtype is not None and np.issubdtype(np.dtype(dtype), np.integer)


def check_input_dtype(model: Any, name: str, dtype: Any) -> None:
    """Floating-point inputs for a model of images or sound; integer ids for a model that
    declares them (:func:`takes_integers`): the other kind is refused, naming ``name``."""
    dtype = np.dtype(dtype)
    if takes_integers(model):
        if not np.issubdtype(dtype, np.integer):
            raise TypeError(f"`{name}` inputs must be integer ids for this model (its input_dtype is "
                            f"{np.dtype(model.input_dtype).name}), got {dtype}.")
    elif not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"`{name}` inputs must be floating point, got {dtype}; scale images first, "
            f"e.g. `cnnjax.data.to_float_images(images)` (uint8 -> float32 in [0, 1]). (A model that takes "
            f"integer ids says so with an integer `input_dtype` attribute, as models.sentence_cnn does.)"
        )


def check_data(name: str, pair: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)`` checked: float (or integer) inputs, N of each, N > 0; which
    kind of inputs the model takes is :func:`check_input_dtype`'s check. Targets become NumPy
    arrays; inputs too, unless they are a NumPy array already (a memory map stays one) or
    a random-access source (shape, dtype, ``source[indices]``), which training reads a
    batch slice at a time."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"`{name}` must be an (inputs, targets) pair of arrays, got {type(pair).__name__}.")
    inputs = pair[0] if is_source(pair[0]) else np.asarray(pair[0])
    targets = np.asarray(pair[1])
    if not (np.issubdtype(inputs.dtype, np.floating) or np.issubdtype(inputs.dtype, np.integer)):
        raise TypeError(f"`{name}` inputs must be floating point (or integer ids, for a model that takes them), "
                        f"got {inputs.dtype}.")
    if not (np.issubdtype(targets.dtype, np.number) or targets.dtype == np.bool_):
        raise TypeError(f"`{name}` targets must be numbers, got dtype {targets.dtype}.")
    if len(inputs.shape) < 1 or targets.ndim < 1 or inputs.shape[0] != len(targets):
        raise ValueError(
            f"`{name}` must hold N inputs and N targets (first axis N), got inputs {inputs.shape} "
            f"and targets {targets.shape}."
        )
    if len(targets) == 0:
        raise ValueError(f"`{name}` is empty.")
    if np.issubdtype(targets.dtype, np.integer):
        info = np.iinfo(np.int32)
        if targets.dtype.itemsize > 4 or targets.dtype == np.uint32:  # would wrap on the cast below
            bad = np.flatnonzero((targets < info.min) | (targets > info.max))
            if len(bad):
                raise ValueError(f"`{name}` targets must fit in int32, got {targets.flat[bad[0]]} at index "
                                 f"{np.unravel_index(bad[0], targets.shape)[0]} (dtype {targets.dtype}).")
        targets = targets.astype(np.int32)
    elif np.issubdtype(targets.dtype, np.floating) and targets.dtype != np.float32:
        targets = targets.astype(np.float32)
    return inputs, targets


UNSCALED_SAMPLE = 256
"""Rows :func:`warn_if_unscaled` reads, spread evenly over the inputs."""


def warn_if_unscaled(name: str, inputs: Any, stacklevel: int = 3) -> None:
    """Warns (once per call) when ``inputs`` look like unscaled pixels: every value read a
    whole number, none negative, some above 1 (as ``uint8`` images cast to float without
    ``/ 255``). Such inputs train far worse (the lecture's model: loss 107 against 2.3
    after one epoch) and nothing else fails. Reads :data:`UNSCALED_SAMPLE` rows of a NumPy
    array or memory map; another random-access source is not read (each process reads
    only its own slices of it)."""
    if not isinstance(inputs, np.ndarray) or not np.issubdtype(inputs.dtype, np.floating):
        return
    n = inputs.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, UNSCALED_SAMPLE)).astype(np.int64))
    sample = np.asarray(inputs[rows])
    sample = sample[np.isfinite(sample)]
    if sample.size and sample.min() >= 0 and sample.max() > 1 and np.all(sample == np.round(sample)):
        warnings.warn(
            f"`{name}` inputs look unscaled: whole numbers from {sample.min():g} to {sample.max():g} in the "
            f"{len(rows)} rows read. Images train best in [0, 1]: `cnnjax.data.to_float_images(uint8_images)` "
            f"or `x / 255`.", UserWarning, stacklevel=stacklevel)


def warn_not_finite(name: str, where: str) -> None:
    """Warns that ``name``'s inputs hold NaN or infinity, first at ``where``: their loss and
    metrics come out NaN (NaN in is NaN out), and training's guard does not watch them."""
    warnings.warn(f"`{name}` inputs hold NaN or infinity, first in {where}: its loss and metrics will be NaN. "
                  "Clean or drop those examples (np.isfinite(x).all(axis=(1, 2, 3)) marks the good ones).",
                  UserWarning, stacklevel=4)


def output_shape(model: nnx.Module, inputs: np.ndarray, name: str) -> jax.ShapeDtypeStruct:
    """The model's output for one example of ``inputs``, as a shape (nothing is computed);
    inputs of a kind the model does not take (integer or floating) are refused first."""
    check_input_dtype(model, name, inputs.dtype)
    example = jax.ShapeDtypeStruct((1, *inputs.shape[1:]), inputs.dtype if np.issubdtype(inputs.dtype, np.integer)
                                   else jnp.float32)
    graphdef, variables = nnx.split(model)  # called functionally: a model may update its state
    try:
        return jax.eval_shape(lambda v, x: nnx.merge(graphdef, v)(x), variables, example)
    except (ValueError, TypeError) as e:
        if "no `rngs` argument was provided to Dropout" in str(e):
            raise ValueError(
                "The model's Dropout has no random stream of its own: fit, evaluate and predict call model(x) and "
                "switch modes with model.train() and model.eval(), so Dropout must draw from a stream given at "
                "construction, nnx.Dropout(rate, rngs=rngs) (cnnjax.nn.Dropout takes one too); fit then carries it "
                "through every step and checkpoint. A `rngs=` argument of __call__ is not passed.") from e
        raise ValueError(f"`{name}` inputs of shape {inputs.shape} do not fit the model: {e}") from e


def check_fit(obj: Objective, outputs: jax.ShapeDtypeStruct, name: str, targets: np.ndarray) -> None:
    """Checks, before anything compiles, that ``obj`` can score the model's ``outputs``
    (for one example) against ``name``'s targets, and that class-index targets are in range."""
    example = jax.ShapeDtypeStruct((1, *targets.shape[1:]), targets.dtype)
    if obj.class_indices:
        if not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(
                f"`{name}` targets must be integer class indices for the default loss "
                f"(sparse categorical cross-entropy), got dtype {targets.dtype}; give `loss=` for "
                f"other targets (e.g. loss='categorical_crossentropy' for one-hot rows, 'mse' for regression)."
            )
        if len(outputs.shape) != targets.ndim + 1:
            raise ValueError(
                f"The model returns outputs of shape {tuple(outputs.shape)} for one example, which do not "
                f"hold class scores for `{name}` targets of shape {targets.shape[1:]} per example: "
                f"expected outputs of shape (1, {', '.join(map(str, targets.shape[1:] + ('classes',)))})."
            )
    try:
        jax.eval_shape(obj.per_example, outputs, example)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"The objective cannot score the model's outputs of shape {tuple(outputs.shape)} against "
            f"`{name}` targets of shape {targets.shape[1:]} per example ({targets.dtype}): {e}"
        ) from e
    if obj.class_indices:
        classes = outputs.shape[-1]
        losses.check_labels(targets, classes, f"`{name}` targets", f" for a model with {classes} outputs")


def is_stream(data) -> bool:
    """Whether ``data`` is a stream of batches (an iterable of pairs or dicts) rather than an
    ``(inputs, targets)`` pair of arrays."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _is_batch(data[0]):
        return False
    return not (isinstance(data, dict) or hasattr(data, "shape") or not hasattr(data, "__iter__"))


def _is_batch(item) -> bool:
    return isinstance(item, dict) or (isinstance(item, (tuple, list)) and len(item) == 2
                                      and all(hasattr(a, "shape") for a in item))


def is_input_stream(inputs) -> bool:
    """A stream of batches to predict: a list of ``(inputs, targets)`` pairs or dicts, or any
    other iterable that is not an array (a list of arrays or numbers is one array, as
    ``np.asarray`` reads it)."""
    if isinstance(inputs, (list, tuple)):
        first = inputs[0] if inputs else None
        return isinstance(first, dict) or (isinstance(first, (list, tuple)) and len(first) >= 2
                                           and all(hasattr(a, "shape") for a in first))
    return hasattr(inputs, "__iter__") and not hasattr(inputs, "shape") and not isinstance(inputs, (str, bytes, dict))


def as_batch(batch, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch of a stream as NumPy ``(inputs, targets)``: a pair, or a dict with one of
    :data:`STREAM_KEYS`; torch tensors are read through ``.numpy()``."""
    if isinstance(batch, dict):
        keys = next((k for k in STREAM_KEYS if k[0] in batch and k[1] in batch), None)
        if keys is None:
            raise TypeError(f"{where} is a dict with keys {sorted(batch)}; expected one of "
                            f"{', '.join(f'{a!r}/{b!r}' for a, b in STREAM_KEYS)}.")
        batch = (batch[keys[0]], batch[keys[1]])
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"{where} must be an (inputs, targets) pair or a dict of them, got {type(batch).__name__}.")
    return to_numpy(batch[0]), to_numpy(batch[1])


def stream_batch(batch, where: str, name: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """:func:`as_batch`, then checked as ``fit`` checks arrays (of ``name``); errors say which batch."""
    x, y = as_batch(batch, where)
    try:
        return check_data(name, (x, y))
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def stream_inputs(batch, where: str) -> np.ndarray:
    """A stream batch's inputs: the batch itself (an array), the first of an ``(inputs,
    targets[, ...])`` tuple, or a dict's inputs (one of :data:`STREAM_KEYS`'
    first keys); torch tensors are read through ``.numpy()``."""
    if isinstance(batch, dict):
        key = next((a for a, _ in STREAM_KEYS if a in batch), None)
        if key is None:
            raise TypeError(f"{where} is a dict with keys {sorted(batch)}; expected its inputs under one of "
                            f"{', '.join(repr(a) for a, _ in STREAM_KEYS)}.")
        batch = batch[key]
    elif isinstance(batch, (tuple, list)):
        if not batch:
            raise TypeError(f"{where} is an empty {type(batch).__name__}; expected inputs or (inputs, targets).")
        batch = batch[0]
    x = to_numpy(batch)
    if x.dtype == object:
        raise TypeError(f"{where} holds {type(batch).__name__}, not an array of inputs.")
    return x


SHAPES_WARNED = 16  # a stream of more example shapes than this is warned about: each compiles its own program


def check_stream_shape(x: np.ndarray, first: tuple, where: str, size: int | None = None) -> None:
    """Refuses a stream's batch ``x`` with another number of axes per example than the first
    batch's ``first`` example shape, or more than ``size`` examples. The axes' sizes may
    differ from the first batch's (sentences bucketed by length): each new example shape
    compiles its own program."""
    if x.ndim != len(first) + 1 or (size is not None and len(x) > size):
        most = "" if size is None else f"at most {size} "
        raise ValueError(f"{where} holds inputs of shape {x.shape}; every batch must hold {most}examples of "
                         f"{len(first)} axes, as the first batch's {first} do (their sizes may differ: each "
                         "example shape compiles its own step).")


def warn_many_shapes(shapes: set, name: str) -> None:
    """Warns once, when a stream has given one example shape more than :data:`SHAPES_WARNED`."""
    if len(shapes) == SHAPES_WARNED + 1:
        warnings.warn(f"The `{name}` stream has given batches of {len(shapes)} example shapes; each compiles its own "
                      "program. Pad its batches to a few lengths (cnnjax.text.bucket_by_length for sentences).",
                      stacklevel=4)


def pad_batch(x: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, w)`` with ``size`` rows: the batch's rows (weight 1), then zero rows of weight 0,
    which count in no sum, so every batch of a stream has one shape and its step compiles once."""
    more = size - len(x)
    w = np.concatenate([np.ones(len(x), np.float32), np.zeros(more, np.float32)])
    pad = lambda a: np.concatenate([a, np.zeros((more, *a.shape[1:]), a.dtype)]) if more else a
    return pad(x), pad(y), w


class Stream:
    """``train`` given as a stream of batches: its first batch (read to check the data and
    size the compiled step) and each epoch's iterator."""

    def __init__(self, train, steps_per_epoch):
        self.train = train
        self.one_shot = isinstance(train, Iterator)  # an iterator (a generator) is read on, epoch after epoch
        iterator = iter(train)  # the first epoch's: one iter() per epoch, as a PyTorch loop makes
        first = next(iterator, None)
        if first is None:
            raise empty_stream("train")
        x, y = stream_batch(first, "The first batch of the `train` stream")
        self.first, self.batch_size = (x, y), len(x)
        self._first_epoch = itertools.chain([first], iterator)
        length = len(train) if hasattr(train, "__len__") else None
        self.steps = (_checks.positive_int(steps_per_epoch, "steps_per_epoch") if steps_per_epoch is not None
                      else length)

    def batches(self, epoch: int):
        """The epoch's batches: first the iterator the first batch came from; then a new
        ``iter()`` each epoch, or, for an iterator, the rest of it."""
        if self._first_epoch is not None:
            batches, self._first_epoch = self._first_epoch, None
            return batches
        return self.train if self.one_shot else iter(self.train)

    @staticmethod
    def of(train, batch_size, steps_per_epoch, loop, validation_split) -> Stream | None:
        """A :class:`Stream` if ``train`` is one (not an ``(inputs, targets)`` pair), else None."""
        if not is_stream(train):
            if steps_per_epoch is not None:
                raise ValueError("`steps_per_epoch` is for a stream of batches; arrays' epochs are their length.")
            return None
        for name, value in (("batch_size", batch_size), ("validation_split", validation_split)):
            if value is not None:
                raise ValueError(f"`{name}` is for arrays: a stream of batches brings its own batches.")
        if loop == "scan":
            raise ValueError("A stream of batches trains in the Python loop; `loop='scan'` needs arrays.")
        if jax.process_count() > 1:
            raise ValueError("A stream of batches trains in one process; across processes give arrays or a "
                             "random-access source.")
        return Stream(train, steps_per_epoch)


def split_last(train: Any, fraction: Any, validation: Any) -> tuple[tuple, tuple]:
    """Keras' ``validation_split``: the last ``fraction`` of ``train`` held out, unshuffled."""
    if validation is not None:
        raise ValueError("Give `validation` or `validation_split`, not both.")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"`validation_split` must be a fraction in (0, 1), got {fraction!r}.")
    if not (isinstance(train, (tuple, list)) and len(train) == 2):
        raise TypeError(f"`train` must be an (inputs, targets) pair of arrays, got {type(train).__name__}.")
    inputs, targets = train
    if not isinstance(inputs, np.ndarray) and not hasattr(inputs, "__array__"):
        raise TypeError(f"`validation_split` needs `train` inputs that are arrays or memory maps, got "
                        f"{type(inputs).__name__}; give `validation=` instead.")
    n = len(inputs)
    split = int(n * (1 - fraction))  # Keras' rule
    if not 0 < split < n:
        raise ValueError(f"`validation_split`={fraction} of {n} examples leaves an empty training or validation set.")
    return (inputs[:split], targets[:split]), (inputs[split:], targets[split:])


def checked_validation(model, obj, outputs, inputs, validation, stream: bool):
    """``validation`` checked against the model and the training inputs (``stream``: the first
    batch of a stream, whose example shape other batches need not share): ``(inputs, targets,
    None)`` for arrays, ``(None, None, iterator)`` for a stream (its first batch read and
    checked, then put back), ``(None, None, None)`` for none."""
    if validation is None:
        return None, None, None
    val_inputs = val_targets = val_iterator = None
    if is_stream(validation):
        if isinstance(validation, Iterator):
            raise TypeError("A `validation` stream is evaluated after every epoch, so it must iterate anew each "
                            "time (a list, a DataLoader), not be an iterator or generator.")
        val_iterator = iter(validation)  # the first validation's: one iter() per epoch, after train's
        first = next(val_iterator, None)
        if first is None:
            raise empty_stream("validation")
        val_x, val_y = stream_batch(first, "The first batch of the `validation` stream", "validation")
        val_iterator = itertools.chain([first], val_iterator)
    else:
        val_inputs, val_targets = val_x, val_y = check_data("validation", validation)
    check_input_dtype(model, "validation", val_x.dtype)
    if val_inputs is not None:
        warn_if_unscaled("validation", val_inputs, stacklevel=5)
    if val_x.shape[1:] != inputs.shape[1:]:
        if not stream or val_x.ndim != inputs.ndim:
            raise ValueError(f"`validation` inputs have shape {val_x.shape[1:]} per example but "
                             f"`train` inputs have {inputs.shape[1:]}.")
        try:  # a stream's batches may differ in their axes' sizes (sentences bucketed by length)
            output_shape(model, val_x, "validation")
        except (TypeError, ValueError) as e:
            raise type(e)(f"`validation` inputs have shape {val_x.shape[1:]} per example, the first training "
                          f"batch {inputs.shape[1:]}, and the model cannot take them: {e}") from None
    check_fit(obj, outputs, "validation", val_y)
    return val_inputs, val_targets, val_iterator


@dataclasses.dataclass
class TrainingData:
    """What ``fit`` was given to train and validate on, checked (:func:`training_data`)."""

    source: Stream | None  # a stream of batches, or None for arrays
    inputs: Any  # the arrays (or a stream's first batch)
    targets: np.ndarray
    outputs: jax.ShapeDtypeStruct  # the model's output for one example
    batch_size: int
    validation: Any  # as given, or the held-out part of validation_split
    val_inputs: Any
    val_targets: Any
    val_iterator: Any

    @property
    def n(self) -> int | None:
        """The training examples (None for a stream)."""
        return self.inputs.shape[0] if self.source is None else None


def training_data(model, obj: Objective, train, validation, *, batch_size, steps_per_epoch, loop,
                  validation_split) -> TrainingData:
    """``fit``'s ``train`` and ``validation`` decided (arrays, a random-access source or a
    stream), checked against the model and the objective, before anything compiles."""
    source = Stream.of(train, batch_size, steps_per_epoch, loop, validation_split)  # reads a stream's first batch
    batch_size = _checks.positive_int(64 if batch_size is None else batch_size, "batch_size") if source is None \
        else source.batch_size
    if validation_split is not None:
        train, validation = split_last(train, validation_split, validation)
    inputs, targets = check_data("train", train) if source is None else source.first
    try:
        outputs = output_shape(model, inputs, "train")  # refuses inputs of a kind the model does not take
    except TypeError as e:
        if source is None:
            raise
        raise TypeError(f"The first batch of the `train` stream: {e}") from None
    warn_if_unscaled("train", inputs, stacklevel=4)  # at fit's caller
    check_fit(obj, outputs, "train", targets)
    val_inputs, val_targets, val_iterator = checked_validation(model, obj, outputs, inputs, validation,
                                                               source is not None)
    if source is None and batch_size > inputs.shape[0]:
        raise ValueError(f"`batch_size` {batch_size} is larger than the {inputs.shape[0]} training examples.")
    return TrainingData(source, inputs, targets, outputs, batch_size, validation, val_inputs, val_targets,
                        val_iterator)
