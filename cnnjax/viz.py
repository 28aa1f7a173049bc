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


def figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches on the Agg canvas (no display needed),
    with constrained layout: the base of every picture here, for pictures of your own."""
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
               limits: tuple[float, float] | None = None):
    """Draws one 2-D map on ``ax`` with colour limits ``(vmin, vmax)`` (default symmetric
    about 0 at the map's largest magnitude); returns the image for a colour bar."""
    values = np.asarray(values, np.float32)
    if limits is None:
        limit = float(np.abs(values).max()) or 1.0
        limits = (-limit, limit)
    image = ax.imshow(values, cmap=cmap, interpolation="nearest", vmin=limits[0], vmax=limits[1])
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    if annotate:
        printed = as_printed(values)
        extreme = max(abs(limits[0]), abs(limits[1]))
        for (i, j), v in np.ndenumerate(values):
            label = f"{printed[i, j]:.2f}".replace("0.", ".") if v else "0"
            ax.text(j, i, label, ha="center", va="center", fontsize=5.5,
                    color="white" if abs(v) > 0.6 * extreme else "black")
    return image


def _symmetric(values) -> tuple[float, float]:
    limit = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return (-limit, limit) if limit else (-1.0, 1.0)


def _gray(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, C)`` image as one 2-D map: its only channel, or the mean of its channels."""
    return image[..., 0] if image.shape[-1] == 1 else image.mean(-1)


def images(images, *, titles: Sequence[str] | Sequence[Sequence[str]] | None = None, cmap: str = "gray_r",
           title: str | None = None, cell: float = 1.1) -> Figure:
    """A grid of images: ``(N, H, W[, C])`` as one row, or ``(rows, cols, H, W[, C])``.

    Args:
      images: the images; several channels are averaged into one gray map.
      titles: one per image, in the layout of ``images`` (a list, or a list of rows).
      cmap: the colour map (default: dark ink on light paper).
      title: the figure's title.
      cell: inches per image.
    """
    grid = np.asarray(images, np.float32)
    if grid.ndim == 3:  # (N, H, W)
        grid = grid[None, ..., None]
    elif grid.ndim == 4:  # (N, H, W, C) or (rows, cols, H, W)
        grid = grid[None] if grid.shape[-1] in (1, 3) else grid[..., None]
    if grid.ndim != 5:
        raise ValueError(f"`images` must have shape (N, H, W[, C]) or (rows, cols, H, W[, C]), got {np.shape(images)}.")
    rows, cols = grid.shape[:2]
    names = titles
    if titles is not None and rows == 1 and (not titles or isinstance(titles[0], str)):
        names = [titles]
    if names is not None and [len(r) for r in names] != [cols] * rows:
        raise ValueError(f"`titles` must give one title per image ({rows} rows of {cols}), got {titles!r}.")
    fig = figure(cell * cols, (cell + 0.15) * rows + (0.3 if title else 0))
    axes = fig.subplots(rows, cols, squeeze=False)
    low, high = float(grid.min()), float(grid.max())
    for (r, c), ax in np.ndenumerate(axes):
        _map_image(ax, _gray(grid[r, c]), title=names[r][c] if names is not None else None, cmap=cmap,
                   limits=(low, high if high > low else low + 1))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def layer_outputs(model, x) -> list[tuple[str, Any, np.ndarray]]:
    """``(name, layer, output)`` for every cnnjax layer call of ``model(x)``, in order, the
    outputs as NumPy arrays (:func:`cnnjax.nn.capture`, compiled once for an ``nnx.Module``)."""
    _, calls = capture(model, jnp.asarray(x))
    return [(c.name, c.layer, np.asarray(c.output)) for c in calls]


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
    fig = figure(cell * cols + 0.6, (cell + 0.05) * rows)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for b in range(len(x)):
        for r, (name, _, out) in enumerate(outputs):
            row = b * len(outputs) + r
            if r == 0:
                _map_image(axes[row, 0], _gray(x[b]), title=f"input {b}", cmap="gray", limits=(x.min(), x.max()))
            else:
                axes[row, 0].axis("off")
            shown = out[b, ..., : cols - 1]
            # one scale per layer and image, so that its channels compare; from 0 after a ReLU
            limits, cmap = (_symmetric(shown), "RdBu_r") if shown.min() < 0 else ((0.0, float(shown.max()) or 1.0),
                                                                                  "Reds")
            for c in range(cols - 1):
                ax = axes[row, c + 1]
                if c < out.shape[-1]:
                    image = _map_image(ax, out[b, ..., c], title=f"{name}[{c}]", annotate=annotate, limits=limits,
                                       cmap=cmap)
                else:
                    ax.axis("off")
            fig.colorbar(image, ax=axes[row, 1:], shrink=0.8, aspect=12, pad=0.01)
    if all(float(o.min()) >= 0 for _, _, o in outputs):
        what = "how strongly each filter matches at each position (0: no match, after ReLU)"
    else:
        what = "where each filter matches (red) or mismatches (blue)"
    fig.suptitle(f"Response maps: {what}", fontsize=9)
    return fig


def filters(kernel, *, titles: Sequence[str] | None = None, annotate: bool = False, title: str | None = None,
            value: str = "weight") -> Figure:
    """The filters of a conv layer: one image per output channel (first input channel).

    Args:
      kernel: a ``(kh, kw, C_in, C_out)`` array or a :class:`~cnnjax.nn.Conv` layer.
      titles: one title per filter.
      annotate: print the weights.
      title: the figure's title.
      value: what the numbers are, for the colour bar (e.g. ``"gradient"`` for a kernel's).
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
    fig = figure(cell * cols + 0.6, (cell + 0.1) * rows + (0.3 if title else 0))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    limits = _symmetric(kernel[:, :, 0, :])  # one scale for all: the filters compare
    for i, ax in enumerate(axes.flat):
        if i < n:
            image = _map_image(ax, kernel[:, :, 0, i], title=titles[i] if titles else f"filter {i}",
                               annotate=annotate, limits=limits)
        else:
            ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, aspect=15, pad=0.02, label=f"{value} (red +, blue -)")
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


def saliency_maps(model, x, labels=None, *, class_names: Sequence[str] | None = None) -> Figure:
    """Images and their saliency for the predicted class: where a change of a pixel would
    most move the predicted score.

    Args:
      model: a cnnjax model returning logits.
      x: a batch ``(B, H, W, C)``.
      labels: the true classes ``(B,)``, shown next to the prediction when given.
      class_names: a name per class.

    Each saliency map is scaled to its own largest value (one colour bar, 0 to 1).
    """
    x = np.asarray(x)
    pred = np.asarray(jnp.argmax(model(jnp.asarray(x)), axis=-1))
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != pred.shape:
            raise ValueError(f"`labels` must have shape {pred.shape} (one per image), got {labels.shape}.")
    maps = saliency(model, x, pred)
    maps = maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
    name = (lambda k: class_names[k]) if class_names else str
    fig = figure(1.4 * len(x) + 0.6, 3.2)
    axes = fig.subplots(2, len(x), squeeze=False)
    for b in range(len(x)):
        said = f"predicted {name(pred[b])}"
        if labels is not None:
            said = f"true {name(labels[b])}\n{said}" + ("" if labels[b] == pred[b] else " (wrong)")
        _map_image(axes[0, b], _gray(x[b]), title=said, cmap="gray", limits=(x.min(), x.max()))
        image = _map_image(axes[1, b], maps[b], cmap="hot", limits=(0.0, 1.0))
    bar = fig.colorbar(image, ax=axes[1, :], shrink=0.8, aspect=12, pad=0.01)
    bar.set_label("x image's largest", fontsize=7)
    fig.suptitle("Saliency: |d score / d pixel| of the predicted class", fontsize=9)
    return fig


def plot_spectrogram(values, *, sample_rate: int, frame_step: int, frame_length: int | None = None,
                     title: str | None = None) -> Figure:
    """A spectrogram ``(frames, bins)`` (e.g. :func:`cnnjax.audio.spectrogram`) as the lecture
    shows one: time in seconds across, frequency in Hz up (linear bins from 0 to
    ``sample_rate / 2``), loudness as colour with its scale beside."""
    values = np.asarray(values, np.float32)
    if values.ndim != 2:
        raise ValueError(f"`values` must be one spectrogram (frames, bins), got shape {values.shape}.")
    frames = values.shape[0]
    start = (frame_length or 0) / 2 / sample_rate  # each frame's time is its centre
    fig = figure(6, 3.2)
    ax = fig.subplots()
    image = ax.imshow(values.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                      extent=(start, start + frames * frame_step / sample_rate, 0, sample_rate / 2))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    fig.colorbar(image, ax=ax, label="log magnitude")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def learning_curves(epochs: Sequence[dict[str, float]]) -> Figure:
    """The loss and each metric per epoch, training and validation, one panel each (records as
    in :class:`cnnjax.train.History`: loss and accuracy for the lecture's models)."""
    if not epochs:
        raise ValueError("`epochs` is empty: nothing to plot.")
    not_metrics = ("epoch", "loss", "learning_rate", "seconds", "images_per_s")
    metrics = ["loss", *(k for k in epochs[0] if k not in not_metrics and not k.startswith("val_"))]
    fig = figure(4 * len(metrics), 3)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    x = [e["epoch"] for e in epochs]
    for ax, metric in zip(axes, metrics, strict=True):
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
    fig = figure(1.0 + 0.55 * k, 0.8 + 0.5 * k)
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
    "figure",
    "filters",
    "images",
    "layer_outputs",
    "learning_curves",
    "plot_confusion_matrix",
    "plot_spectrogram",
    "response_maps",
    "save",
    "saliency",
    "saliency_maps",
]
