"""``model.summary()`` as in Keras, plus the forward FLOPs Keras does not show.

Shapes come from ``jax.eval_shape`` (abstract evaluation: no FLOPs are spent and no
memory is allocated for activations). Parameter counts come from the layers' ``nnx``
variables; ``Param`` variables are trainable, any other variable is not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from . import _checks
from ._capture import capture, snake_case
from .nn import Sequential


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a layer call."""

    name: str
    type: str
    output_shape: tuple  # batch axis shown as None
    params: int
    flops: int  # forward, per example, 2 x multiply-adds


@dataclasses.dataclass(frozen=True)
class Summary:
    """A model's summary; ``str(summary)`` is the Keras-format table."""

    name: str
    rows: tuple[Row, ...]
    trainable_params: int
    non_trainable_params: int
    trainable_bytes: int
    non_trainable_bytes: int

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def total_flops(self) -> int:
        """Forward FLOPs per example over all layers (2 x multiply-adds)."""
        return sum(r.flops for r in self.rows)

    def __str__(self) -> str:
        header = ("Layer (type)", "Output Shape", "Param #", "FLOPs")
        cells = [(f"{r.name} ({r.type})", _shape(r.output_shape), f"{r.params:,}", _flops(r.flops)) for r in self.rows]
        widths = [max(len(header[i]), *(len(c[i]) for c in cells)) + 2 for i in range(4)]
        width = sum(widths) + 1

        def line(c):
            return (" " + c[0].ljust(widths[0]) + c[1].ljust(widths[1])
                    + c[2].rjust(widths[2] - 2).ljust(widths[2]) + c[3].rjust(widths[3] - 2)).rstrip()

        out = [f'Model: "{self.name}"', "_" * width, line(header), "=" * width]
        for i, c in enumerate(cells):
            out.append(line(c))
            out.append("_" * width if i < len(cells) - 1 else "=" * width)
        total_bytes = self.trainable_bytes + self.non_trainable_bytes
        out += [
            f"Total params: {self.total_params:,} ({_bytes(total_bytes)})",
            f"Trainable params: {self.trainable_params:,} ({_bytes(self.trainable_bytes)})",
            f"Non-trainable params: {self.non_trainable_params:,} ({_bytes(self.non_trainable_bytes)})",
            f"Forward FLOPs per example: {self.total_flops:,} ({_flops(self.total_flops)})",
            "_" * width,
        ]
        return "\n".join(out)


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _bytes(n: int) -> str:
    """Keras' size format: 1024-based, two decimals."""
    size, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.2f} {unit}"


def _flops(n: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _count(module) -> tuple[int, int, int, int]:
    """(trainable, non-trainable) parameter counts and bytes of ``module``'s variables;
    random-number streams (Dropout's key and counter) are no parameters, as in Keras."""
    counts = [0, 0, 0, 0]
    for _, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Variable) and not isinstance(var, nnx.RngState):
            value = var[...]
            if not hasattr(value, "shape"):
                continue
            size = _checks.prod(value.shape)
            k = 0 if isinstance(var, nnx.Param) else 1
            counts[k] += size
            counts[k + 2] += size * jnp.dtype(value.dtype).itemsize
    return tuple(counts)


def summary(model, input_shape: Sequence[int], *, dtype: Any = jnp.float32, name: str | None = None,
            show_input: bool | None = None) -> Summary:
    """The Keras-format summary of ``model`` for inputs of ``input_shape``.

    Args:
      model: an ``nnx.Module`` (or any callable) built from :mod:`cnnjax.nn` layers.
      input_shape: the shape of one example, without the batch axis, e.g. ``(28, 28, 1)``.
      dtype: input dtype for the shape inference.
      name: the model's name in the title (default: snake case of its class).
      show_input: add an ``input_layer (InputLayer)`` first row, as Keras does for
        functional models. Default: True unless ``model`` is a :class:`~cnnjax.nn.Sequential`.

    Returns:
      A :class:`Summary`; ``print(summary(...))`` shows the table. Each row's
      output shape has ``None`` for the batch axis; ``Param #`` counts that layer's
      variables; ``FLOPs`` is its forward cost per example (2 x multiply-adds:
      conv and dense layers; pooling, ReLU and flatten count 0).

    Example:
      >>> from flax import nnx
      >>> from cnnjax import models, summary
      >>> s = summary(models.mnist_functional(rngs=nnx.Rngs(0)), (28, 28, 1))
      >>> s.total_params, s.rows[-1].output_shape, s.rows[-1].params
      (104202, (None, 10), 11530)
    """
    if not isinstance(input_shape, Sequence) or not input_shape:
        raise ValueError(
            f"`input_shape` must be the shape of one example without the batch axis, e.g. "
            f"(28, 28, 1), got {input_shape!r}."
        )
    shape = _checks.positive_tuple(tuple(input_shape), len(input_shape), "input_shape")
    rows = []
    if show_input if show_input is not None else not isinstance(model, Sequential):
        rows.append(Row("input_layer", "InputLayer", (None, *shape), 0, 0))
    _, calls = capture(model, jax.ShapeDtypeStruct((1, *shape), dtype))
    for call in calls:
        trainable, non_trainable, _, _ = _count(call.layer)
        flops = call.layer.flops(call.input.shape, call.output.shape) if hasattr(call.layer, "flops") else 0
        rows.append(Row(call.name, type(call.layer).__name__, (None, *call.output.shape[1:]),
                        trainable + non_trainable, flops))
    trainable, non_trainable, t_bytes, n_bytes = _count(model)
    title = name or snake_case(type(model).__name__)
    return Summary(title, tuple(rows), trainable, non_trainable, t_bytes, n_bytes)


def print_summary(model, input_shape: Sequence[int], **kwargs) -> Summary:
    """Prints :func:`summary` and returns it."""
    s = summary(model, input_shape, **kwargs)
    print(s)
    return s


__all__ = ["Row", "Summary", "print_summary", "summary"]
