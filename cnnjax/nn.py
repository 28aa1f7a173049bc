"""Flax (``flax.nnx``) layers that hold parameters and call cnnjax's pure functions.

Every layer's maths is one call to a pure function of :mod:`cnnjax` (:func:`~cnnjax.conv`,
:func:`~cnnjax.maxpool`, :func:`~cnnjax.relu`, :func:`~cnnjax.dense`, ...); nothing here
computes on its own.
Defaults follow Keras so the lecture's code ports line by line::

    layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1))
    nn.Conv(1, 32, (3, 3), activation="relu", rngs=rngs)

``padding="VALID"``, Glorot-uniform kernels, zero biases, pooling stride = window. As in
Flax, a layer is told its input features when it is built (``Conv(in, out, ...)``).

:func:`capture` runs a model and returns every layer's output in call order; the
summary table and the response-map figures are built on it, and it works for
:class:`Sequential` models and for modules written in the functional style alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from . import _checks
from ._activations import relu, softmax
from ._capture import Call, capture, names
from ._capture import report as _report
from ._conv import conv, conv_transpose
from ._dense import dense, flatten
from ._normalization import local_response_norm, lrn_arguments
from ._pool import adaptive_avgpool, adaptive_maxpool, avgpool, global_avgpool, global_maxpool, maxpool

Initializer = Callable[..., jax.Array]

default_kernel_init: Initializer = jax.nn.initializers.glorot_uniform()
"""Keras' default: Glorot (Xavier) uniform, fans from the receptive field and channels."""

default_bias_init: Initializer = jax.nn.initializers.zeros

_ACTIVATIONS: dict[str, Callable | None] = {"relu": relu, "softmax": softmax, "linear": None}

def _draw(init: Initializer, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """``init(key, shape, dtype)``, the same values, compiled as one program with light
    optimisation: on a CPU, XLA's full optimisation of a random draw takes longer than
    everything else in building a model (``docs/performance.md`` has the figures). Inside
    a trace (``nnx.eval_shape``, a jitted constructor), and for initializers that cannot
    key a cache, ``init`` runs as it is."""
    if isinstance(key, jax.core.Tracer):
        return init(key, shape, dtype)
    try:
        program = _draw_program(init, tuple(shape), dtype)
    except TypeError:  # an unhashable initializer or dtype
        return init(key, shape, dtype)
    return program(key)


@functools.lru_cache(maxsize=256)
def _draw_program(init: Initializer, shape: tuple[int, ...], dtype):
    # the option is XLA:CPU's LLVM level; other backends compile such a program quickly
    options = {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else None
    return jax.jit(lambda key: init(key, shape, dtype), compiler_options=options)


def _activation(activation: str | Callable | None) -> Callable | None:
    if activation is None or callable(activation):
        return activation
    if isinstance(activation, str) and activation in _ACTIVATIONS:
        return _ACTIVATIONS[activation]
    raise ValueError(
        f"`activation` must be None, a callable, or one of {sorted(_ACTIVATIONS)}, got "
        f"{activation!r}."
    )


_WHERE = "_cnnjax_where"  # set on an error once it says where in a model it arose


def _in_layer(error: Exception, where: str) -> Exception:
    """``error`` (a ValueError or TypeError raised by a layer) with ``where`` appended, once:
    the innermost place that knows more (a :class:`Sequential` naming the layer) wins."""
    if type(error) not in (ValueError, TypeError) or getattr(error, _WHERE, None) == "named":
        return error
    message = str(error).split(" [", 1)[0] if getattr(error, _WHERE, None) else str(error)
    out = type(error)(f"{message} [{where}]")
    setattr(out, _WHERE, "named" if where.startswith("in layer ") else "layer")
    return out


def _static_padding(padding, n, window, stride):
    """Checks the form of ``padding`` and returns it hashable: a string or explicit pairs."""
    pairs = _checks.padding_pairs(padding, n, window, window, stride)
    return padding.upper() if isinstance(padding, str) else pairs


class Layer(nnx.Module):
    """Base of cnnjax's layers: ``__call__`` runs :meth:`forward` and reports to :func:`capture`.

    Subclasses implement ``forward(x)`` (a call to a pure function) and may override
    :meth:`flops` (forward FLOPs per example, counted as 2 x multiply-adds).
    """

    def forward(self, x):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __call__(self, x, **kwargs):
        try:
            y = self.forward(x, **kwargs)
        except (ValueError, TypeError) as e:
            raise _in_layer(e, f"in a {type(self).__name__} layer given shape {tuple(jnp.shape(x))}") from e
        return _report(self, x, y)

    def flops(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> int:
        """Forward FLOPs for one example (2 x multiply-adds); 0 for layers without any."""
        return 0

    def _init_weights(self, shape, activation, use_bias, kernel_init, bias_init, dtype, param_dtype, rngs,
                      bias_features=None):
        """Kernel of ``shape``, optional bias (``bias_features``, default the kernel's last
        axis), activation and compute dtype."""
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"`rngs` must be an nnx.Rngs for the initialisers, e.g. rngs=nnx.Rngs(0), got {rngs!r}.")
        self.activation = _activation(activation)
        self.dtype = dtype
        self.kernel = nnx.Param(_draw(kernel_init, rngs.params(), shape, param_dtype))
        features = shape[-1] if bias_features is None else bias_features
        self.bias = nnx.Param(_draw(bias_init, rngs.params(), (features,), param_dtype)) if use_bias else None

    def _geometry(self, in_features, out_features, kernel_size, stride, padding, dilation, groups):
        """A convolution layer's features, window, stride, dilation, padding and groups, checked."""
        self.in_features = _checks.positive_int(in_features, "in_features")
        self.out_features = _checks.positive_int(out_features, "out_features")
        n = _checks.window_rank(kernel_size, "kernel_size", default=2)
        self.kernel_size = _checks.positive_tuple(kernel_size, n, "kernel_size")
        self.stride = _checks.positive_tuple(stride, n, "stride")
        self.dilation = _checks.positive_tuple(dilation, n, "dilation")
        self.padding = _static_padding(padding, n, self.kernel_size, self.stride)
        self.groups = _checks.positive_int(groups, "groups")
        if self.in_features % self.groups or self.out_features % self.groups:
            raise ValueError(f"`groups`={groups} must divide `in_features`={in_features} and "
                             f"`out_features`={out_features}.")

    def _weights(self, x):
        """``x``, kernel and bias, cast to the compute dtype if one is set."""
        arrays = (x, self.kernel[...], None if self.bias is None else self.bias[...])
        if self.dtype is None:
            return arrays
        return tuple(None if a is None else jnp.asarray(a).astype(self.dtype) for a in arrays)

    def _activate(self, y):
        return y if self.activation is None else self.activation(y)


class Conv(Layer):
    """Convolution layer: a bank of learned filters, each giving a response map.

    Args:
      in_features: input channels ``C_in``.
      out_features: number of filters ``C_out`` (Keras' ``filters``).
      kernel_size: window, an int (a square 2D window, Keras' ``Conv2D``) or one int
        per spatial dimension (its length sets 1D, 2D or 3D).
      stride, padding, dilation, groups, normalize: as :func:`cnnjax.conv`.
      activation: ``None``, ``"relu"``, ``"linear"``, ``"softmax"`` or a callable,
        applied after the bias (Keras' ``activation=``).
      use_bias: whether to add a learned bias per filter.
      kernel_init, bias_init: ``jax.nn.initializers`` (Glorot uniform and zeros).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); ``None`` promotes input and params.
      param_dtype: dtype the parameters are stored in.
      rngs: ``nnx.Rngs`` for the initialisers.

    Shapes: ``(N, *spatial, C_in) -> (N, *out_spatial, C_out)``; kernel
    ``(*kernel_size, C_in // groups, C_out)``, bias ``(C_out,)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence = "VALID",
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        normalize: bool = False,
        activation: str | Callable | None = None,
        use_bias: bool = True,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self._geometry(in_features, out_features, kernel_size, stride, padding, dilation, groups)
        if not isinstance(normalize, bool):
            raise TypeError(f"`normalize` must be a bool, got {normalize!r}.")
        self.normalize = normalize
        self._init_weights((*self.kernel_size, self.in_features // self.groups, self.out_features), activation,
                           use_bias, kernel_init, bias_init, dtype, param_dtype, rngs)

    def forward(self, x):
        x, kernel, bias = self._weights(x)
        return self._activate(conv(x, kernel, bias, stride=self.stride, padding=self.padding,
                                   dilation=self.dilation, groups=self.groups, normalize=self.normalize))

    def flops(self, x_shape, y_shape):
        macs = _checks.prod(y_shape[1:]) * _checks.prod(self.kernel_size) * self.in_features // self.groups
        return 2 * macs


class ConvTranspose(Layer):
    """Transposed convolution layer (Keras' ``Conv2DTranspose``, PyTorch's ``ConvTranspose2d``).

    Args:
      in_features, out_features, kernel_size: as :class:`Conv`.
      stride, padding, output_padding, dilation, groups: as :func:`cnnjax.conv_transpose`.
      activation, use_bias, kernel_init, bias_init, dtype, param_dtype, rngs: as :class:`Conv`.

    Shapes: ``(N, *spatial, C_in) -> (N, *out_spatial, C_out)``; kernel
    ``(*kernel_size, C_out // groups, C_in)`` (Keras' layout), bias ``(C_out,)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence = 0,
        output_padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        activation: str | Callable | None = None,
        use_bias: bool = True,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self._geometry(in_features, out_features, kernel_size, stride, padding, dilation, groups)
        self.output_padding = output_padding if _checks.is_int(output_padding) else tuple(output_padding)
        self._init_weights((*self.kernel_size, self.out_features // self.groups, self.in_features), activation,
                           use_bias, kernel_init, bias_init, dtype, param_dtype, rngs, bias_features=self.out_features)

    def forward(self, x):
        x, kernel, bias = self._weights(x)
        return self._activate(conv_transpose(x, kernel, bias, stride=self.stride, padding=self.padding,
                                             output_padding=self.output_padding, dilation=self.dilation,
                                             groups=self.groups))

    def flops(self, x_shape, y_shape):
        macs = _checks.prod(x_shape[1:]) * _checks.prod(self.kernel_size) * self.out_features // self.groups
        return 2 * macs


class Dense(Layer):
    """Fully connected layer: every output a weighted vote of every input.

    Args:
      in_features: input features.
      out_features: output features (Keras' ``units``).
      activation, use_bias, kernel_init, bias_init, dtype, param_dtype, rngs: as
        :class:`Conv`.

    Shapes: ``(..., in_features) -> (..., out_features)``; kernel ``(in, out)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str | Callable | None = None,
        use_bias: bool = True,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_features = _checks.positive_int(in_features, "in_features")
        self.out_features = _checks.positive_int(out_features, "out_features")
        self._init_weights((self.in_features, self.out_features), activation, use_bias, kernel_init, bias_init,
                           dtype, param_dtype, rngs)

    def forward(self, x):
        x, kernel, bias = self._weights(x)
        return self._activate(dense(x, kernel, bias))

    def flops(self, x_shape, y_shape):
        return 2 * _checks.prod(y_shape[1:-1]) * self.in_features * self.out_features


class _Pool(Layer):
    """Window, stride, padding and ceil mode checked once, kept hashable; the window fixes
    the spatial rank (an int is a square 2-D window, as Keras' ``MaxPooling2D``)."""

    def __init__(self, window, stride, padding, ceil_mode):
        n = _checks.window_rank(window, "window", default=2)
        self.window = _checks.positive_tuple(window, n, "window")
        self.stride = None if stride is None else _checks.positive_tuple(stride, n, "stride")
        if not isinstance(ceil_mode, bool):
            raise TypeError(f"`ceil_mode` must be a bool, got {ceil_mode!r}.")
        self.padding, self.ceil_mode = _static_padding(padding, n, self.window, self.stride or self.window), ceil_mode


class MaxPool(_Pool):
    """Max pooling layer; arguments as :func:`cnnjax.maxpool` (stride defaults to window).

    The window fixes the spatial rank: an int is a square 2-D window (Keras'
    ``MaxPooling2D``), ``(4,)`` a 1-D one, ``(2, 2, 2)`` a 3-D one. An input with one
    more axis than that is one example, so ``jax.vmap`` over examples gives what the
    batched call gives.

    Shapes: ``(N, *spatial, C) -> (N, *out_spatial, C)``, or ``(*spatial, C) ->
    (*out_spatial, C)`` for one example.
    """

    def __init__(
        self,
        window: int | Sequence[int] = 2,
        stride: int | Sequence[int] | None = None,
        *,
        padding: str | int | Sequence = "VALID",
        ceil_mode: bool = False,
        dilation: int | Sequence[int] = 1,
    ):
        super().__init__(window, stride, padding, ceil_mode)
        self.dilation = _checks.positive_tuple(dilation, len(self.window), "dilation")

    def forward(self, x):
        return maxpool(x, self.window, self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                       dilation=self.dilation)


class AvgPool(_Pool):
    """Average pooling layer; arguments as :func:`cnnjax.avgpool`, the spatial rank and
    shapes as :class:`MaxPool`."""

    def __init__(
        self,
        window: int | Sequence[int] = 2,
        stride: int | Sequence[int] | None = None,
        *,
        padding: str | int | Sequence = "VALID",
        ceil_mode: bool = False,
        count_include_pad: bool | None = None,
        divisor_override: int | None = None,
    ):
        super().__init__(window, stride, padding, ceil_mode)
        self.count_include_pad = _checks.optional_bool(count_include_pad, "count_include_pad")
        self.divisor_override = (None if divisor_override is None
                                 else _checks.positive_int(divisor_override, "divisor_override"))

    def forward(self, x):
        return avgpool(x, self.window, self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                       count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)


class _AdaptivePool(Layer):
    """An output size checked once; it fixes the spatial rank (an int is a square 2-D
    output, as PyTorch's ``AdaptiveAvgPool2d(6)``), so one example is told from a batch."""

    def __init__(self, output_size: int | Sequence[int]):
        n = _checks.window_rank(output_size, "output_size", default=2)
        self.output_size = _checks.positive_tuple(output_size, n, "output_size")


class AdaptiveAvgPool(_AdaptivePool):
    """Average pooling to a fixed output size (:func:`cnnjax.adaptive_avgpool`; PyTorch's
    ``AdaptiveAvgPool1d/2d/3d``): ``(N, *spatial, C) -> (N, *output_size, C)``, or
    ``(*spatial, C) -> (*output_size, C)`` for one example."""

    def forward(self, x):
        return adaptive_avgpool(x, self.output_size)


class AdaptiveMaxPool(_AdaptivePool):
    """Max pooling to a fixed output size (:func:`cnnjax.adaptive_maxpool`; PyTorch's
    ``AdaptiveMaxPool1d/2d/3d``); shapes as :class:`AdaptiveAvgPool`."""

    def forward(self, x):
        return adaptive_maxpool(x, self.output_size)


class _GlobalPool(Layer):
    """A reduction over every position of each map: ``spatial_dims`` fixes the spatial rank
    (2 by default, Keras' ``Global...Pooling2D``), so one example is told from a batch."""

    def __init__(self, *, spatial_dims: int = 2):
        self.spatial_dims = _checks.positive_int(spatial_dims, "spatial_dims")


class GlobalAvgPool(_GlobalPool):
    """Each channel's mean over all positions (:func:`cnnjax.global_avgpool`; Keras'
    ``GlobalAveragePooling2D``): ``(N, *spatial, C) -> (N, C)``, or ``(*spatial, C) ->
    (C,)`` for one example, with ``spatial_dims`` spatial dimensions (default 2)."""

    def forward(self, x):
        return global_avgpool(x, spatial_dims=self.spatial_dims)


class GlobalMaxPool(_GlobalPool):
    """Each channel's maximum over all positions (:func:`cnnjax.global_maxpool`; Keras'
    ``GlobalMaxPooling2D``); shapes as :class:`GlobalAvgPool`. ``layer(x, mask=mask)``
    pools only the positions ``mask`` marks (bool ``(N, *spatial)``): a sentence CNN's
    max over time, where padding never wins."""

    def forward(self, x, mask=None):
        return global_maxpool(x, spatial_dims=self.spatial_dims, mask=mask)


class Dropout(nnx.Dropout):
    """``flax.nnx.Dropout`` (not re-implemented), listed by :func:`capture` and the summary.

    ``Dropout(rate, rngs=nnx.Rngs(dropout=0))``; active in training mode
    (``model.train()``, and inside :func:`cnnjax.train.fit`), off in evaluation mode.
    """

    def __call__(self, x, *args, **kwargs):
        return _report(self, x, super().__call__(x, *args, **kwargs))


class Embed(nnx.Embed):
    """``flax.nnx.Embed`` (not re-implemented), listed by :func:`capture` and the summary
    (Keras' ``Embedding``): integer ids ``(...)`` -> vectors ``(..., features)``.

    ``Embed(num_embeddings, features, rngs=rngs)``; ``embedding_init`` and the dtypes as
    flax's. Concrete ids outside ``[0, num_embeddings)`` are refused, naming the first;
    under ``jit`` they give NaN vectors, never another word's (flax's lookup fills ids past
    the table with NaN but counts a negative id from the end, so those are sent past it).
    """

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, jax.core.Tracer):
            if jnp.issubdtype(inputs.dtype, jnp.signedinteger):
                inputs = jnp.where(inputs < 0, self.num_embeddings, inputs)  # NaN, as any id past the table
        else:
            ids = jnp.asarray(inputs)
            if not jnp.issubdtype(ids.dtype, jnp.integer):
                raise TypeError(f"`inputs` of an Embed must be integer ids, got dtype {ids.dtype}.")
            bad = (ids < 0) | (ids >= self.num_embeddings)
            if bool(bad.any()):
                where = tuple(int(i) for i in jnp.argwhere(bad, size=1)[0])
                raise ValueError(f"`inputs` of an Embed must be ids in [0, {self.num_embeddings}), got "
                                 f"{int(ids[where])} at index {where}.")
        return _report(self, inputs, super().__call__(inputs, *args, **kwargs))


class BatchNorm(nnx.BatchNorm):
    """``flax.nnx.BatchNorm`` (not re-implemented), listed by :func:`capture` and the summary.

    ``BatchNorm(num_features, rngs=rngs)`` normalises the last axis; its scale and bias
    are trainable, its running mean and variance are not (Keras counts ``4 * C``
    parameters, ``2 * C`` of them non-trainable).
    """

    def __call__(self, x, *args, **kwargs):
        return _report(self, x, super().__call__(x, *args, **kwargs))


class LocalResponseNorm(Layer):
    """Local response normalisation across channels (:func:`cnnjax.local_response_norm`;
    PyTorch's ``LocalResponseNorm``, AlexNet's layer after its first two convolutions):
    ``(..., C) -> (..., C)``; no parameters. Arguments as the function, checked here."""

    def __init__(self, size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        self.size, self.alpha, self.beta, self.k = lrn_arguments(size, alpha, beta, k)  # refused now, if bad

    def forward(self, x):
        return local_response_norm(x, self.size, alpha=self.alpha, beta=self.beta, k=self.k)


class ReLU(Layer):
    """ReLU layer: :func:`cnnjax.relu`."""

    def forward(self, x):
        return relu(x)


class Flatten(Layer):
    """Flatten layer (:func:`cnnjax.flatten`, Keras' order): ``(N, *spatial, C) ->
    (N, prod(spatial) * C)``, or ``(*spatial, C) -> (prod(spatial) * C,)`` for one
    example, with ``spatial_dims`` spatial dimensions (default 2: images)."""

    def __init__(self, *, spatial_dims: int = 2):
        self.spatial_dims = _checks.positive_int(spatial_dims, "spatial_dims")

    def forward(self, x):
        return flatten(x, spatial_dims=self.spatial_dims)


class Sequential(nnx.Module):
    """Layers applied in order, the output of one the input of the next.

    Example:
      >>> from flax import nnx
      >>> from cnnjax import nn
      >>> rngs = nnx.Rngs(0)
      >>> model = nn.Sequential(nn.Conv(1, 4, 3, activation="relu", rngs=rngs),
      ...                       nn.MaxPool(2), nn.Flatten(), nn.Dense(36, 2, rngs=rngs))
      >>> model(jnp.ones((5, 8, 8, 1))).shape
      (5, 2)
    """

    def __init__(self, *layers: Callable):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"`layers[{i}]` must be callable, got {layer!r}.")
        self.layers = nnx.List(layers)

    def __call__(self, x):
        shapes = [tuple(jnp.shape(x))]
        for i, layer in enumerate(self.layers):
            try:
                x = layer(x)
            except (ValueError, TypeError) as e:
                layer_names = names(self.layers)
                done = zip(layer_names[:i], shapes[1:], strict=True)  # the layers before this one
                path = " -> ".join([f"input {shapes[0]}", *(f"{n} {s}" for n, s in done)])
                raise _in_layer(e, f"in layer {layer_names[i]} ({type(layer).__name__}, layers[{i}]) of the "
                                   f"Sequential; shapes on the way: {path}") from e
            shapes.append(tuple(jnp.shape(x)))
        return x

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]


__all__ = [
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "AvgPool",
    "BatchNorm",
    "Call",
    "Conv",
    "ConvTranspose",
    "Dense",
    "Dropout",
    "Embed",
    "Flatten",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "LocalResponseNorm",
    "Layer",
    "MaxPool",
    "ReLU",
    "Sequential",
    "capture",
    "default_bias_init",
    "default_kernel_init",
]
