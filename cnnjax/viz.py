"""Pictures of what a network sees: response maps, filters, saliency, learning curves.

Every function returns a ``matplotlib.figure.Figure`` built without a display (the Agg
canvas), so it works on servers, in CI and in notebooks alike; :func:`save` writes it
as a PNG. The data behind each picture is available too: :func:`layer_outputs` (every
layer's output, from :func:`cnnjax.nn.capture`), :func:`saliency` (an array), and
:func:`confusion_matrix` (counts).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .lecture import as_printed
from .nn import Conv, capture


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 100) -> str:
    """Writes ``fig`` as a PNG (creating its directory) and returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _map_image(ax, values: np.ndarray, *, title: str | None = None, annotate: bool = False, cmap: str = "RdBu_r",
               symmetric: bool = True):
    values = np.asarray(values, np.float32)
    limit = float(np.abs(values).max()) or 1.0
    kw = dict(vmin=-limit, vmax=limit) if symmetric else {}
    ax.imshow(values, cmap=cmap, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if annotate:
        printed = as_printed(values)
        for (i, j), v in np.ndenumerate(values):
            label = f"{printed[i, j]:.2f}".replace("0.", ".") if v else "0"
            ax.text(j, i, label, ha="center", va="center", fontsize=5.5,
                    color="white" if abs(v) > 0.6 * limit else "black")


def layer_outputs(model, x) -> list[tuple[str, Any, np.ndarray]]:
    """``(name, layer, output)`` for every cnnjax layer call of ``model(x)``, in order.

    For an ``nnx.Module`` the forward pass is compiled once (``jax.jit``) instead of
    running op by op.
    """
    x = jnp.asarray(x)
    if not isinstance(model, nnx.Module):
        _, calls = capture(model, x)
        return [(name, layer, np.asarray(out)) for name, layer, _, out in calls]
    graphdef, state = nnx.split(model)
    paths: list = []

    def outputs(state, x):
        copy = nnx.merge(graphdef, state)
        where = {id(node): path for path, node in nnx.iter_graph(copy)}
        _, calls = capture(copy, x)
        paths[:] = [(name, where[id(layer)]) for name, layer, _, _ in calls]
        return [out for _, _, _, out in calls]

    values = jax.jit(outputs)(state, x)
    originals = dict(nnx.iter_graph(model))
    return [(name, originals[path], np.asarray(v)) for (name, path), v in zip(paths, values)]


def response_maps(model, x, *, layers: Sequence[str] | None = None, max_channels: int = 8,
                  annotate: bool = False) -> Figure:
    """Response maps of conv layers for each image of ``x``.

    Args:
      model: a cnnjax model.
      x: a batch ``(B, H, W, C)``; one block of rows per image.
      layers: names of the layers to show (``"conv"``, ``"conv_1"``, ...); default
        every :class:`~cnnjax.nn.Conv` layer.
      max_channels: how many channels (filters) per layer.
      annotate: print each cell's value (for small maps such as the lecture's 7x7).

    Returns:
      A figure: for each image, its input and one row per layer.
    """
    outputs = [(n, m, o) for n, m, o in layer_outputs(model, x) if (layers is None and isinstance(m, Conv)) or
               (layers is not None and n in layers)]
    if not outputs:
        raise ValueError(f"No layer to show: `layers` {layers!r} matched none of the model's layers.")
    x = np.asarray(x)
    cols = 1 + min(max_channels, max(o.shape[-1] for _, _, o in outputs))
    rows = len(x) * len(outputs)
    cell = 2.0 if annotate else 1.3
    fig = _figure(cell * cols, (cell + 0.05) * rows)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for b in range(len(x)):
        for r, (name, _, out) in enumerate(outputs):
            row = b * len(outputs) + r
            if r == 0:
                _map_image(axes[row, 0], x[b, ..., 0] if x.shape[-1] == 1 else x[b].mean(-1),
                           title=f"input {b}", cmap="gray", symmetric=False)
            else:
                axes[row, 0].axis("off")
            for c in range(cols - 1):
                ax = axes[row, c + 1]
                if c < out.shape[-1]:
                    _map_image(ax, out[b, ..., c], title=f"{name}[{c}]", annotate=annotate)
                else:
                    ax.axis("off")
    fig.suptitle("Response maps: where each filter matches (red) or mismatches (blue)", fontsize=9)
    return fig


def filters(kernel, *, titles: Sequence[str] | None = None, annotate: bool = False, title: str | None = None) -> Figure:
    """The filters of a conv layer: one image per output channel (first input channel).

    Args:
      kernel: a ``(kh, kw, C_in, C_out)`` array or a :class:`~cnnjax.nn.Conv` layer.
      titles: one title per filter.
      annotate: print the weights.
    """
    if isinstance(kernel, Conv):
        kernel = kernel.kernel[...]
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"`kernel` must be a 2D conv kernel (kh, kw, C_in, C_out), got shape {kernel.shape}.")
    n = kernel.shape[-1]
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    cell = 1.7 if annotate else 1.2
    fig = _figure(cell * cols, (cell + 0.1) * rows + (0.3 if title else 0))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for i, ax in enumerate(axes.flat):
        if i < n:
            _map_image(ax, kernel[:, :, 0, i], title=titles[i] if titles else f"filter {i}", annotate=annotate)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def saliency(model, x, label: int | Sequence[int] | None = None) -> np.ndarray:
    """Gradient of the class score (logit) with respect to the input pixels.

    Args:
      model: a cnnjax model returning logits.
      x: a batch ``(B, H, W, C)``.
      label: the class per image (default: the predicted class).

    Returns:
      ``(B, H, W)``: the absolute gradient, maximised over channels.
    """
    x = jnp.asarray(x)
    if label is None:
        label = jnp.argmax(model(x), axis=-1)
    label = jnp.broadcast_to(jnp.asarray(label), (x.shape[0],))
    score = lambda f, x: jnp.sum(jnp.take_along_axis(f(x), label[:, None], axis=-1))
    if isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        grad = jax.jit(jax.grad(lambda x, state: score(nnx.merge(graphdef, state), x)))(x, state)
    else:
        grad = jax.grad(lambda x: score(model, x))(x)
    return np.asarray(jnp.max(jnp.abs(grad), axis=-1))


def saliency_maps(model, x, *, class_names: Sequence[str] | None = None) -> Figure:
    """Images and their saliency (where a change would most move the predicted score)."""
    x = np.asarray(x)
    pred = np.asarray(jnp.argmax(model(jnp.asarray(x)), axis=-1))
    maps = saliency(model, x, pred)
    fig = _figure(1.4 * len(x), 3.0)
    axes = fig.subplots(2, len(x), squeeze=False)
    for b in range(len(x)):
        name = class_names[pred[b]] if class_names else str(pred[b])
        _map_image(axes[0, b], x[b, ..., 0] if x.shape[-1] == 1 else x[b].mean(-1), title=f"predicted {name}",
                   cmap="gray", symmetric=False)
        _map_image(axes[1, b], maps[b], cmap="hot", symmetric=False)
    fig.suptitle("Saliency: |d score / d pixel|", fontsize=9)
    return fig


def learning_curves(epochs: Sequence[dict[str, float]]) -> Figure:
    """The loss and each metric per epoch, training and validation, one panel each (records as
    in :class:`cnnjax.train.History`: loss and accuracy for the lecture's models)."""
    if not epochs:
        raise ValueError("`epochs` is empty: nothing to plot.")
    not_metrics = ("epoch", "loss", "learning_rate", "seconds", "images_per_s")
    metrics = ["loss", *(k for k in epochs[0] if k not in not_metrics and not k.startswith("val_"))]
    fig = _figure(4 * len(metrics), 3)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    x = [e["epoch"] for e in epochs]
    for ax, metric in zip(axes, metrics):
        ax.plot(x, [e[metric] for e in epochs], "o-", label="train")
        if f"val_{metric}" in epochs[0]:
            ax.plot(x, [e[f"val_{metric}"] for e in epochs], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]``: a ``(num_classes, num_classes)`` int array."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> Figure:
    """The confusion matrix as an image, counts annotated, with the accuracy in the title."""
    matrix = np.asarray(matrix)
    k = len(matrix)
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    fig = _figure(1.0 + 0.55 * k, 0.8 + 0.5 * k)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="white" if v > 0.5 * matrix.max() else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.4f}", fontsize=9)
    return fig


__all__ = [
    "confusion_matrix",
    "filters",
    "layer_outputs",
    "learning_curves",
    "plot_confusion_matrix",
    "response_maps",
    "save",
    "saliency",
    "saliency_maps",
]
