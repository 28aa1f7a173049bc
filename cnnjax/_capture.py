"""Recording a model's layer calls: :func:`capture` (the one way cnnjax reads layer outputs:
the summary, the response maps, the weight ports) and the Keras-style names of layers.

Every layer of :mod:`cnnjax.nn` hands its call to :func:`report` (``Layer.__call__``); while
a capture runs, a hook records it (and may put another output in its place); outside one,
a layer call costs nothing extra. Re-exported by :mod:`cnnjax.nn` (``nn.capture``,
``nn.Call``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
from flax import nnx

# While a capture runs: ``hook(layer, x, y) -> y`` sees every layer call (and may stand in for its output)
_recorder: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("cnnjax_nn_recorder", default=None)


def report(layer, x, y):
    """Hands a layer's call to :func:`capture` (or another hook), if one is recording; returns
    ``y``, or what the hook puts in its place."""
    hook = _recorder.get()
    return y if hook is None else hook(layer, x, y)



class Call(NamedTuple):
    """One layer call seen by :func:`capture`: the Keras-style ``name``, the ``layer``,
    its ``input`` and its ``output``."""

    name: str
    layer: Any
    input: Any
    output: Any


@contextlib.contextmanager
def _recording(hook: Callable | None = None) -> Iterator[list]:
    """Records ``(layer, input, output)`` of every layer call made inside the block; with
    ``hook(layer, x, y) -> y``, each call's output is what the hook returns (the record
    holds it)."""
    record: list = []

    def report(layer, x, y):
        y = y if hook is None else hook(layer, x, y)
        record.append((layer, x, y))
        return y

    token = _recorder.set(report)
    try:
        yield record
    finally:
        _recorder.reset(token)


def names(layers: Sequence[Any]) -> list[str]:
    """Keras-style names of ``layers`` in order: ``conv``, ``max_pool``, ``conv_1``, ..."""
    counts: dict[str, int] = {}
    found = []
    for layer in layers:
        base = snake_case(type(layer).__name__)
        k = counts.get(base, 0)
        counts[base] = k + 1
        found.append(base if k == 0 else f"{base}_{k}")
    return found


def _named(record: Sequence[tuple[Any, Any, Any]]) -> list[Call]:
    """Keras-style names (``conv``, ``conv_1``, ...) for ``(layer, input, output)`` in call order."""
    return [Call(name, layer, inp, out)
            for name, (layer, inp, out) in zip(names([layer for layer, _, _ in record]), record, strict=True)]


def capture(model: Callable, x, *, substitute: Callable | None = None) -> tuple[Any, list[Call]]:
    """Runs ``model(x)`` and returns its output and every cnnjax layer call, in order.

    The one way cnnjax reads layer outputs: :func:`cnnjax.summary`,
    :func:`cnnjax.viz.layer_outputs` and :func:`cnnjax.models.load_keras_weights` are
    built on it. Every layer of :mod:`cnnjax.nn` reports its call (``Layer.__call__``)
    while a capture runs; outside one, a layer call costs nothing extra.

    Args:
      model: any callable built from :mod:`cnnjax.nn` layers (a :class:`Sequential`, a
        module written in the functional style, a plain function).
      x: the input batch, or a ``jax.ShapeDtypeStruct`` to get shapes only (then
        nothing is computed: ``jax.eval_shape``).
      substitute: optional ``fn(layer, input, output) -> output``, called on every layer
        call: what it returns goes on in the output's place (and is what the call records).
        :func:`cnnjax.weights.load_torch_weights` follows a map through a model this way.

    Returns:
      ``(y, calls)``: the output and a list of :class:`Call` ``(name, layer, input,
      output)`` in call order, named as Keras names layers (``conv``, ``conv_1``,
      ``max_pool``, ...). For an ``nnx.Module`` the pass runs functionally
      (``nnx.split``/``nnx.merge`` under ``jax.jit``, or ``jax.eval_shape``): the
      model's variables are left as they were (BatchNorm's running statistics, Dropout's
      random stream), and each ``layer`` is the model's own layer object.

    Example: the response maps of every conv layer are
    ``[c.output for c in calls if isinstance(c.layer, nn.Conv)]``.
    """
    shapes_only = isinstance(x, jax.ShapeDtypeStruct)
    if not isinstance(model, nnx.Module):
        def run(x):
            with _recording(substitute) as record:
                return model(x), record

        if not shapes_only:
            y, record = run(x)
            return y, _named(record)
        layers: list = []

        def abstract(x):
            y, record = run(x)
            layers[:] = [layer for layer, _, _ in record]
            return y, [(i, o) for _, i, o in record]

        y, values = jax.eval_shape(abstract, x)
        return y, _named([(layer, i, o) for layer, (i, o) in zip(layers, values, strict=True)])

    graphdef, state = nnx.split(model)
    where: list = []

    def functional(state, x):
        copy = nnx.merge(graphdef, state)
        paths = {id(node): path for path, node in nnx.iter_graph(copy)}
        with _recording(substitute) as record:
            y = copy(x)
        where[:] = [(paths.get(id(layer)), layer) for layer, _, _ in record]
        return y, [(i, o) for _, i, o in record]

    y, values = jax.eval_shape(functional, state, x) if shapes_only else jax.jit(functional)(state, x)
    originals = dict(nnx.iter_graph(model))
    return y, _named([(originals.get(path, layer) if path is not None else layer, i, o)
                      for (path, layer), (i, o) in zip(where, values, strict=True)])


def snake_case(name: str) -> str:
    """Keras-style snake-case name of a class name: ``MaxPool`` -> ``max_pool``."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0 and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


__all__ = ["Call", "capture", "names", "report", "snake_case"]
