"""The lecture's networks, built from :mod:`cnnjax.nn` layers. All return logits.

- :func:`mnist_sequential` -- "To classify MNIST digits using Sequential CNN":
  93,322 parameters.
- :func:`mnist_functional` -- "New CNN for MNIST using Functional API": 104,202
  parameters, written in the functional style (each layer's output is the next
  layer's input, named as in the lecture's code).
- :func:`xo_net` -- the X's-and-O's network of the first half: three 3x3 features,
  ReLU, pooling twice ("deep stacking"), a fully connected vote over two classes.
- :func:`sentence_cnn` -- the slide's "Text" row: Kim (2014)'s sentence CNN, 1-D
  convolutions of several widths over word vectors and max-over-time pooling.
- :func:`spectrogram_cnn`, :func:`waveform_cnn` -- the slide's "Sound" row: spoken digits
  as log-mel images (2-D, max over time) or as raw samples (1-D).
- :func:`alexnet` -- the network the lecture opens with (Krizhevsky, Sutskever and
  Hinton, 2012), in torchvision's layout (61,100,840 parameters) or the paper's, with
  local response normalisation and two groups (60,965,224).

Weights trained elsewhere load with :func:`load_keras_weights` (Keras' ``get_weights()``
order), :func:`load_torch_weights` (a PyTorch ``state_dict`` or module) and
:func:`load_equinox_weights`; they live in :mod:`cnnjax.weights`, re-exported here.

Input shape and number of classes are keywords, so the same models serve MNIST,
Fashion-MNIST, KMNIST (28x28x1) or 32x32x3 colour images. Softmax is not part of the
models: it lives in the loss (:mod:`cnnjax.losses`) and in ``predict``-style helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from . import _checks, lecture
from .nn import (
    AdaptiveAvgPool,
    Conv,
    Dense,
    Dropout,
    Embed,
    Flatten,
    GlobalMaxPool,
    LocalResponseNorm,
    MaxPool,
    ReLU,
    Sequential,
)
from .weights import load_equinox_weights, load_keras_weights, load_torch_weights, weighted_layers


def _input_shape(input_shape: Any, images: bool = True) -> tuple[int, ...]:
    """One example's shape: (height, width, channels) for the lecture's 2-D models, else
    (*spatial, channels)."""
    if images and not (isinstance(input_shape, Sequence) and len(input_shape) == 3):
        raise ValueError(
            f"`input_shape` must be (height, width, channels) without the batch axis, e.g. "
            f"(28, 28, 1), got {input_shape!r}."
        )
    if not (isinstance(input_shape, Sequence) and len(input_shape) >= 2):
        raise ValueError(f"`input_shape` must be (*spatial, channels) without the batch axis, got {input_shape!r}.")
    return _checks.positive_tuple(tuple(input_shape), len(input_shape), "input_shape")


def _flat_features(stack, input_shape: tuple[int, ...]) -> int:
    """Features after ``stack`` (ending in Flatten) for one example, by shape inference."""
    try:
        out = jax.eval_shape(stack, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    except ValueError as e:
        raise ValueError(f"`input_shape` {input_shape} is too small for this model: {e}") from e
    return out.shape[-1]


def mnist_sequential(
    *,
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    dtype: Any = None,
    rngs: nnx.Rngs,
) -> Sequential:
    """The lecture's Sequential CNN (93,322 parameters at 28x28x1, 10 classes).

    Conv(32, 3x3, relu) -> MaxPool(2) -> Conv(64, 3x3, relu) -> MaxPool(2) ->
    Conv(64, 3x3, relu) -> Flatten -> Dense(64, relu) -> Dense(num_classes).

    Args:
      input_shape: ``(H, W, C)`` of one example.
      num_classes: number of output logits.
      dtype: compute dtype of every layer (``None``: float32 params decide).
      rngs: ``nnx.Rngs`` for the initialisers.

    Returns:
      A :class:`cnnjax.nn.Sequential` mapping ``(N, H, W, C)`` to ``(N, num_classes)``
      logits.
    """
    shape = _input_shape(input_shape)
    num_classes = _checks.positive_int(num_classes, "num_classes")
    common = dict(activation="relu", dtype=dtype, rngs=rngs)
    features = [
        Conv(shape[-1], 32, (3, 3), **common),
        MaxPool((2, 2)),
        Conv(32, 64, (3, 3), **common),
        MaxPool((2, 2)),
        Conv(64, 64, (3, 3), **common),
        Flatten(),
    ]
    flat = _flat_features(Sequential(*features), shape)
    model = Sequential(
        *features,
        Dense(flat, 64, **common),
        Dense(64, num_classes, dtype=dtype, rngs=rngs),
    )
    model.input_shape = shape
    return model


class MnistFunctional(nnx.Module):
    """The lecture's Functional-API CNN; build it with :func:`mnist_functional`.

    The ``__call__`` reads like the lecture's Keras code: ``x = layer(x)`` line by line.
    """

    def __init__(self, input_shape, num_classes, dtype, rngs):
        channels = input_shape[-1]
        self.input_shape = input_shape
        self.conv1 = Conv(channels, 32, 3, activation="relu", dtype=dtype, rngs=rngs)
        self.pool1 = MaxPool(2)
        self.conv2 = Conv(32, 64, 3, activation="relu", dtype=dtype, rngs=rngs)
        self.pool2 = MaxPool(2)
        self.conv3 = Conv(64, 128, 3, activation="relu", dtype=dtype, rngs=rngs)
        self.flatten = Flatten()
        flat = _flat_features(self._features, input_shape)
        self.dense = Dense(flat, num_classes, dtype=dtype, rngs=rngs)

    def _features(self, inputs):
        x = self.conv1(inputs)
        x = self.pool1(x)
        x = self.conv2(x)
        x = self.pool2(x)
        x = self.conv3(x)
        return self.flatten(x)

    def __call__(self, inputs):
        return self.dense(self._features(inputs))


def mnist_functional(
    *,
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    dtype: Any = None,
    rngs: nnx.Rngs,
) -> MnistFunctional:
    """The lecture's Functional-API CNN (104,202 parameters at 28x28x1, 10 classes).

    Conv(32, 3, relu) -> MaxPool(2) -> Conv(64, 3, relu) -> MaxPool(2) ->
    Conv(128, 3, relu) -> Flatten -> Dense(num_classes). Arguments as
    :func:`mnist_sequential`; returns ``(N, num_classes)`` logits.
    """
    shape = _input_shape(input_shape)
    return MnistFunctional(shape, _checks.positive_int(num_classes, "num_classes"), dtype, rngs)


def xo_net(
    *,
    input_shape: Sequence[int] = (9, 9, 1),
    num_classes: int = 2,
    lecture_features: bool = False,
    dtype: Any = None,
    rngs: nnx.Rngs,
) -> Sequential:
    """A small CNN for the lecture's 9x9 X's and O's.

    Conv(3 features, 3x3, ``normalize=True``) -> ReLU -> MaxPool(2, ceil) ->
    MaxPool(2, ceil) -> Flatten -> Dense(num_classes): the lecture's conv / ReLU /
    pool / deep-stacking pipeline (9x9 -> 7x7 -> 4x4 -> 2x2 x 3) and a vote.

    Args:
      input_shape: ``(H, W, C)``; with ``lecture_features`` C must be 1.
      num_classes: number of logits (X and O: 2).
      lecture_features: if True, the first layer's filters are the lecture's
        backslash, X and slash features with zero bias, so its response maps equal
        the lecture's tables; otherwise Glorot-uniform random filters to be learned.
      dtype, rngs: as :func:`mnist_sequential`.
    """
    shape = _input_shape(input_shape)
    first = Conv(shape[-1], 3, (3, 3), normalize=True, dtype=dtype, rngs=rngs)
    if lecture_features:
        if shape[-1] != 1:
            raise ValueError(
                f"`lecture_features=True` needs a single input channel, got input_shape {shape}."
            )
        first.kernel[...] = jnp.asarray(lecture.features(), first.kernel[...].dtype)
    features = [first, ReLU(), MaxPool(2, ceil_mode=True), MaxPool(2, ceil_mode=True), Flatten()]
    flat = _flat_features(Sequential(*features), shape)
    model = Sequential(*features, Dense(flat, _checks.positive_int(num_classes, "num_classes"), dtype=dtype, rngs=rngs))
    model.input_shape = shape
    return model


class SentenceCNN(nnx.Module):
    """Kim (2014)'s sentence CNN; build it with :func:`sentence_cnn`.

    Token ids ``(N, L)`` (``(L,)`` for one sentence), padded with ``pad_id`` -> logits
    ``(N, num_classes)``. Each word becomes a vector (``embed``); padding becomes the zero
    vector. Each width ``w`` of ``convs`` is a bank of ``features`` filters over ``w``
    neighbouring words, applied at every position where it covers at least one word of
    the sentence (the sentence is padded by ``w - 1`` zero vectors on each side, as Kim's
    code pads it); ReLU; the maximum of each filter over those positions only (``pool``,
    a max over time in which padding never wins, so a sentence's logits do not depend on
    how far it was padded); the maxima of all widths concatenated, ``dropout``, and a
    dense ``classifier``. A sentence of padding alone is read as one zero vector.
    """

    input_dtype = jnp.int32  # token ids: cnnjax.train's fit, evaluate and predict take integer inputs for it

    def __init__(self, vocab_size, num_classes, embed_dim, widths, features, dropout, pad_id, embedding_init, rngs):
        self.pad_id = pad_id
        self.widths = widths
        self.embed = Embed(vocab_size, embed_dim, embedding_init=embedding_init, rngs=rngs)
        self.convs = nnx.List([Conv(embed_dim, features, (w,), padding=((w - 1, w - 1),), activation="relu",
                                    rngs=rngs) for w in widths])
        self.pool = GlobalMaxPool(spatial_dims=1)
        self.dropout = Dropout(dropout, rngs=rngs)
        self.classifier = Dense(features * len(widths), num_classes, rngs=rngs)

    def covered(self, ids, width: int) -> jax.Array:
        """Bool ``(..., L + width - 1)``: where a window of ``width`` words (on the sentence
        padded by ``width - 1`` on each side) covers at least one word that is not padding;
        everywhere, for a sentence of padding alone."""
        words = jnp.asarray(ids) != self.pad_id
        length = words.shape[-1]
        padded = jnp.pad(words, [(0, 0)] * (words.ndim - 1) + [(width - 1, width - 1)])
        covered = jnp.stack([padded[..., i : i + length + width - 1] for i in range(width)]).any(axis=0)
        return covered | ~covered.any(axis=-1, keepdims=True)

    def responses(self, ids) -> list[tuple[jax.Array, jax.Array]]:
        """Each width's response maps and where they count: ``(maps, covered)`` per width,
        ``maps`` ``(N, L + w - 1, features)`` after ReLU, ``covered`` bool ``(N, L + w - 1)``.
        Position ``j`` of width ``w`` is the n-gram of words ``j - w + 1 .. j``."""
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"A SentenceCNN takes integer token ids, got dtype {ids.dtype}.")
        if ids.ndim not in (1, 2):
            raise ValueError(f"A SentenceCNN takes token ids (N, L), or (L,) for one sentence, got shape "
                             f"{tuple(ids.shape)}.")
        x = self.embed(ids) * (ids != self.pad_id)[..., None].astype(self.embed.embedding.dtype)
        return [(conv(x), self.covered(ids, w)) for conv, w in zip(self.convs, self.widths, strict=True)]

    def __call__(self, ids):
        pooled = [self.pool(maps, mask=covered) for maps, covered in self.responses(ids)]
        return self.classifier(self.dropout(jnp.concatenate(pooled, axis=-1)))


def sentence_cnn(
    vocab_size: int,
    *,
    num_classes: int = 2,
    embed_dim: int = 300,
    widths: Sequence[int] = (3, 4, 5),
    features: int = 100,
    dropout: float = 0.5,
    pad_id: int = 0,
    embedding_init: Any = None,
    rngs: nnx.Rngs,
) -> SentenceCNN:
    """Kim (2014)'s CNN for sentence classification, with the paper's settings as defaults
    (its CNN-rand: word vectors learned from scratch).

    Embed(vocab_size, 300) -> for each width 3, 4, 5: Conv1D(100, width, relu) and a max
    over time -> concatenate (300) -> Dropout(0.5) -> Dense(num_classes). Kim also keeps
    the classifier's weight vectors within norm 3 (:func:`cnnjax.train.max_norm`) and
    trains with Adadelta on batches of 50; ``experiments/sentences.py`` does.

    Args:
      vocab_size: ids ``0 .. vocab_size - 1`` (``len(text.Vocabulary)``).
      num_classes: number of logits.
      embed_dim: each word vector's length.
      widths: the filter widths, in words.
      features: filters per width.
      dropout: the rate of the dropout before the classifier.
      pad_id: the padding id (:data:`cnnjax.text.PAD_ID`).
      embedding_init: the word vectors' initializer; default uniform in [-0.25, 0.25], as
        Kim's code draws unknown words.
      rngs: ``nnx.Rngs`` with ``params`` and ``dropout`` streams.

    Returns a :class:`SentenceCNN`: token ids ``(N, L)`` -> logits ``(N, num_classes)``.

    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> model = sentence_cnn(1000, embed_dim=16, features=8, rngs=nnx.Rngs(0))  # Kim's: 300 and 100
    >>> model(jnp.array([[5, 8, 2, 0, 0]])).shape
    (1, 2)
    """
    vocab_size = _checks.positive_int(vocab_size, "vocab_size")
    widths = tuple(widths) if isinstance(widths, Sequence) and not isinstance(widths, str) else widths
    if not isinstance(widths, tuple) or not widths:
        raise ValueError(f"`widths` must be a non-empty sequence of filter widths, got {widths!r}.")
    widths = tuple(_checks.positive_int(w, "widths") for w in widths)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be a rate in [0, 1), got {dropout!r}.")
    if not (_checks.is_int(pad_id) and 0 <= pad_id < vocab_size):
        raise ValueError(f"`pad_id` must be an id in [0, {vocab_size}), got {pad_id!r}.")
    init = embedding_init if embedding_init is not None else _kim_uniform
    return SentenceCNN(vocab_size, _checks.positive_int(num_classes, "num_classes"),
                       _checks.positive_int(embed_dim, "embed_dim"), widths,
                       _checks.positive_int(features, "features"), float(dropout), int(pad_id), init, rngs)


def _kim_uniform(key, shape, dtype=jnp.float32):
    """Uniform in ``[-0.25, 0.25)``: Kim (2014)'s word vectors learned from scratch."""
    return jax.random.uniform(key, shape, dtype, -0.25, 0.25)


def _paper_alexnet_side(n: int) -> int:
    """The side of the paper's AlexNet's last map for an input of side ``n``: an 11x11 stride-4
    convolution, then three 3x3 stride-2 max pools (the other convolutions keep the size)."""
    n = (n - 11) // 4 + 1
    for _ in range(3):
        n = (n - 3) // 2 + 1
    return n


def alexnet(
    *,
    input_shape: Sequence[int] | None = None,
    num_classes: int = 1000,
    dropout: float = 0.5,
    variant: str = "torchvision",
    dtype: Any = None,
    rngs: nnx.Rngs,
) -> Sequential:
    """AlexNet (Krizhevsky, Sutskever and Hinton, 2012), in torchvision's layout or the paper's.

    ``variant="torchvision"`` (the default), ``torchvision.models.alexnet``: 61,100,840
    parameters for 1,000 classes, whatever the input size (224x224x3 by default)::

        Conv(64, 11x11, stride 4, padding 2, relu) -> MaxPool(3, 2) -> Conv(192, 5x5,
        padding 2, relu) -> MaxPool(3, 2) -> Conv(384, 3x3, padding 1, relu) -> Conv(256,
        3x3, padding 1, relu) -> Conv(256, 3x3, padding 1, relu) -> MaxPool(3, 2) ->
        AdaptiveAvgPool(6) -> Flatten -> Dropout -> Dense(4096, relu) -> Dropout ->
        Dense(4096, relu) -> Dense(num_classes)

    This is Krizhevsky's single-tower 2014 "one weird trick" network: 64 and 192 channels,
    no local response normalisation. Its weights load with :func:`load_torch_weights`
    and give torchvision's logits.

    ``variant="paper"``, the 2012 paper's network (section 3.5, figure 2), as Caffe's
    ``bvlc_alexnet`` builds it on one device: 60,965,224 parameters for 1,000 classes at
    its 227x227x3 input::

        Conv(96, 11x11, stride 4, relu) -> LocalResponseNorm -> MaxPool(3, 2) ->
        Conv(256, 5x5, padding 2, groups 2, relu) -> LocalResponseNorm -> MaxPool(3, 2) ->
        Conv(384, 3x3, padding 1, relu) -> Conv(384, 3x3, padding 1, groups 2, relu) ->
        Conv(256, 3x3, padding 1, groups 2, relu) -> MaxPool(3, 2) -> Flatten -> Dropout ->
        Dense(4096, relu) -> Dropout -> Dense(4096, relu) -> Dense(num_classes)

    The paper's two GPUs are the convolutions' two groups (layers 2, 4 and 5 see only their
    own GPU's maps), and its normalisation is ``LocalResponseNorm(5, alpha=5e-4, beta=0.75,
    k=2)`` (the paper's alpha = 1e-4 is per summed square, see
    :func:`cnnjax.local_response_norm`). There is no adaptive pool: the input must give a 6x6
    map, as 227x227 does (224x224, the paper's stated size, does not fit its own layers).

    The initialisers of both are cnnjax's (Glorot uniform), not torchvision's or the paper's.

    Args:
      input_shape: ``(H, W, C)`` of one example; ``(224, 224, 3)`` by default for
        torchvision's (at least 63x63: its last max pool needs a 3x3 map), ``(227, 227, 3)``
        for the paper's (any size whose last map is 6x6: 227 to 258).
      num_classes: number of logits.
      dropout: the rate of both Dropout layers (active in training mode only; their
        masks come from ``rngs``' ``dropout`` stream).
      variant: ``"torchvision"`` or ``"paper"``.
      dtype, rngs: as :func:`mnist_sequential`.

    Returns:
      A :class:`cnnjax.nn.Sequential` mapping ``(N, H, W, C)`` to ``(N, num_classes)``.
    """
    if variant not in ("torchvision", "paper"):
        raise ValueError(f"`variant` must be 'torchvision' or 'paper', got {variant!r}.")
    paper = variant == "paper"
    shape = _input_shape(input_shape if input_shape is not None else (227, 227, 3) if paper else (224, 224, 3))
    num_classes = _checks.positive_int(num_classes, "num_classes")
    relu = dict(activation="relu", dtype=dtype, rngs=rngs)
    if paper:
        if any(_paper_alexnet_side(n) != 6 for n in shape[:2]):
            raise ValueError(f"`input_shape` must give AlexNet's 6x6 last map (227x227 to 258x258 for "
                             f"variant='paper'), got {shape}.")
        lrn = lambda: LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
        features = [
            Conv(shape[-1], 96, 11, stride=4, **relu), lrn(), MaxPool(3, 2),
            Conv(96, 256, 5, padding=2, groups=2, **relu), lrn(), MaxPool(3, 2),
            Conv(256, 384, 3, padding=1, **relu),
            Conv(384, 384, 3, padding=1, groups=2, **relu),
            Conv(384, 256, 3, padding=1, groups=2, **relu), MaxPool(3, 2),
        ]
    else:
        if min(shape[:2]) < 63:
            raise ValueError(f"`input_shape` must be at least 63x63 for AlexNet (its last max pool needs a 3x3 "
                             f"map), got {shape}.")
        features = [
            Conv(shape[-1], 64, 11, stride=4, padding=2, **relu), MaxPool(3, 2),
            Conv(64, 192, 5, padding=2, **relu), MaxPool(3, 2),
            Conv(192, 384, 3, padding=1, **relu),
            Conv(384, 256, 3, padding=1, **relu),
            Conv(256, 256, 3, padding=1, **relu), MaxPool(3, 2),
            AdaptiveAvgPool(6),
        ]
    model = Sequential(
        *features, Flatten(),
        Dropout(dropout, rngs=rngs), Dense(256 * 6 * 6, 4096, **relu),
        Dropout(dropout, rngs=rngs), Dense(4096, 4096, **relu),
        Dense(4096, num_classes, dtype=dtype, rngs=rngs),
    )
    model.input_shape = shape
    return model


def spectrogram_cnn(input_shape, num_classes: int = 10, *, over_time: str = "max", rngs: nnx.Rngs) -> Sequential:
    """Three 3x3 conv + 2x2 max-pool stages, dropout, two dense layers: the lecture's CNN, taller.

    ``over_time="max"`` (the default) then keeps each filter's strongest response in each
    band over the whole recording (a max pool as long as the maps, "max over time"), so a
    word said earlier, later, faster or slower reads alike; ``"flatten"`` passes every
    position to the dense layer, as the lecture's MNIST CNN does.

    ``input_shape`` is one spectrogram's ``(frames, bands, 1)``; the spoken-digit
    experiment's is ``(61, 40, 1)``. Logits of ``num_classes``.
    """
    if over_time not in ("max", "flatten"):
        raise ValueError(f"`over_time` must be 'max' or 'flatten', got {over_time!r}.")
    features = [Conv(1, 16, 3, activation="relu", rngs=rngs), MaxPool(2),
                Conv(16, 32, 3, activation="relu", rngs=rngs), MaxPool(2),
                Conv(32, 64, 3, activation="relu", rngs=rngs), MaxPool(2)]
    if over_time == "max":
        frames = jax.eval_shape(Sequential(*features), jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)).shape[1]
        features.append(MaxPool((frames, 1)))
    features.append(Flatten())
    flat = jax.eval_shape(Sequential(*features), jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)).shape[-1]
    return Sequential(*features, Dropout(0.3, rngs=rngs), Dense(flat, 64, activation="relu", rngs=rngs),
                         Dense(64, num_classes, rngs=rngs))


def waveform_cnn(input_shape, num_classes: int = 10, *, rngs: nnx.Rngs) -> Sequential:
    """1-D convolutions over time (a 9-sample stride-4 first layer, then 9-sample ones), max pools
    of 4, a global max pool over time and a dense layer: ``input_shape`` is one waveform's
    ``(samples, 1)``. Logits of ``num_classes``."""
    return Sequential(
        Conv(1, 16, (9,), stride=4, activation="relu", rngs=rngs), MaxPool((4,)),
        Conv(16, 32, (9,), activation="relu", rngs=rngs), MaxPool((4,)),
        Conv(32, 64, (9,), activation="relu", rngs=rngs), MaxPool((4,)),
        Conv(64, 64, (3,), activation="relu", rngs=rngs), GlobalMaxPool(spatial_dims=1),
        Dropout(0.3, rngs=rngs), Dense(64, num_classes, rngs=rngs))


__all__ = [
    "MnistFunctional",
    "SentenceCNN",
    "alexnet",
    "load_equinox_weights",
    "load_keras_weights",
    "load_torch_weights",
    "mnist_functional",
    "mnist_sequential",
    "sentence_cnn",
    "spectrogram_cnn",
    "waveform_cnn",
    "weighted_layers",
    "xo_net",
]
