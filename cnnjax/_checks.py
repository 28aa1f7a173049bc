"""Argument normalising and the error messages that the operations share.

Every public operation normalises its arguments here, once, before anything is
traced, so that bad input fails with a message that names the argument, echoes its
value and says what was expected. Nothing here imports JAX transformations: the
checks run on static Python values and on array shapes and dtypes only.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

Pads = tuple[tuple[int, int], ...]


def as_array(x: Any, name: str):
    """Returns ``x`` as a JAX array (or tracer), or raises ``TypeError``."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        if getattr(x.dtype, "kind", None) in ("O", "S", "U"):  # strings, objects (bfloat16 is kind V)
            raise TypeError(f"`{name}` must be an array of numbers, got dtype {x.dtype}.")
        return x if isinstance(x, jnp.ndarray) else jnp.asarray(x)
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}: {x!r}")
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}: {x!r}") from e


def check_floating(x, name: str) -> None:
    """Raises ``TypeError`` unless ``x`` has a floating-point dtype."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must have a floating-point dtype (float32, bfloat16, ...), got "
            f"{x.dtype}; convert it first, e.g. `{name}.astype(jnp.float32)`."
        )


def check_real(x, name: str) -> None:
    """Raises ``TypeError`` unless ``x`` has a real numeric dtype (floating or integer: what a
    maximum is defined on)."""
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must have a real numeric dtype, got {x.dtype}.")


def check_ndim(x, name: str, expected: int, layout: str) -> None:
    """Raises ``ValueError`` unless ``x.ndim == expected``; ``layout`` names the axes."""
    if x.ndim != expected:
        raise ValueError(
            f"`{name}` must have rank {expected} with layout {layout}, got shape "
            f"{tuple(x.shape)} (rank {x.ndim})."
        )


def axis(value: Any, ndim: int, name: str = "axis") -> int:
    """``value`` as an axis of an array of rank ``ndim`` in ``[0, ndim)``, or raises
    ``TypeError``/``ValueError`` naming the allowed range."""
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int, got {value!r}.")
    if not -ndim <= value < ndim:
        raise ValueError(f"`{name}` must be in [{-ndim}, {ndim}) for an array of rank {ndim}, got {value!r}.")
    return int(value) % ndim


def is_int(v: Any) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def optional_bool(value: Any, name: str) -> bool | None:
    """Returns ``value`` if it is ``None`` or a bool, or raises ``TypeError``."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"`{name}` must be None or a bool, got {value!r}.")
    return value


def positive_int(value: Any, name: str) -> int:
    """Returns ``value`` as a positive int, or raises ``TypeError``/``ValueError``."""
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int, got {value!r}.")
    if value <= 0:
        raise ValueError(f"`{name}` must be positive, got {value!r}.")
    return int(value)


def window_rank(value: Any, name: str, default: int) -> int:
    """Spatial dims of a window argument: ``default`` for an int, else the sequence's length."""
    if is_int(value):
        return default
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0:
        return len(value)
    raise TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}.")


def positive_tuple(value: Any, n: int, name: str) -> tuple[int, ...]:
    """Normalises an int or a length-``n`` sequence of ints to a tuple of positive ints.

    Args:
      value: an int (used for every spatial dimension) or a sequence of ``n`` ints.
      n: the number of spatial dimensions.
      name: the argument's name, for error messages.

    Raises:
      TypeError: if ``value`` is neither an int nor a sequence of ints.
      ValueError: if the sequence has the wrong length or an entry is not positive.
    """
    if is_int(value):
        out = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(is_int(v) for v in value):
            raise TypeError(f"`{name}` must be an int or a sequence of {n} ints, got {value!r}.")
        if len(value) != n:
            raise ValueError(
                f"`{name}` must be an int or a sequence of {n} ints (one per spatial "
                f"dimension), got {value!r} of length {len(value)}."
            )
        out = tuple(int(v) for v in value)
    else:
        raise TypeError(f"`{name}` must be an int or a sequence of {n} ints, got {value!r}.")
    if any(v <= 0 for v in out):
        raise ValueError(f"`{name}` must be positive, got {value!r}.")
    return out


def padding_pairs(
    padding: Any,
    n: int,
    in_sizes: Sequence[int],
    window: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int] | None = None,
    name: str = "padding",
) -> Pads:
    """Normalises ``padding`` to explicit ``((low, high), ...)`` pairs, one per spatial dim.

    Accepted forms: ``"VALID"`` or ``"SAME"`` (any case), an int ``p`` (``(p, p)`` on every
    dimension), a sequence of ``n`` ints (symmetric per dimension), or a sequence of ``n``
    ``(low, high)`` pairs. ``"SAME"`` follows XLA and Keras: output size ``ceil(size /
    stride)``, with the odd pixel of padding on the high side.
    """
    dilation = dilation or (1,) * n
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * n
        if mode == "SAME":
            pads = []
            for size, w, s, d in zip(in_sizes, window, stride, dilation, strict=True):
                eff = (w - 1) * d + 1
                out = -(-size // s)
                total = max((out - 1) * s + eff - size, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(
            f"`{name}` must be 'VALID', 'SAME', an int, or {n} (low, high) pairs, got "
            f"{padding!r}."
        )
    if is_int(padding):
        pairs = ((int(padding), int(padding)),) * n
    elif isinstance(padding, Sequence):
        if len(padding) != n:
            raise ValueError(
                f"`{name}` must give one entry per spatial dimension ({n}), got {padding!r}."
            )
        pairs = []
        for p in padding:
            if is_int(p):
                pairs.append((int(p), int(p)))
            elif (
                isinstance(p, Sequence)
                and not isinstance(p, str)
                and len(p) == 2
                and all(is_int(v) for v in p)
            ):
                pairs.append((int(p[0]), int(p[1])))
            else:
                raise TypeError(
                    f"`{name}` entries must be ints or (low, high) pairs of ints, got {p!r} "
                    f"in {padding!r}."
                )
        pairs = tuple(pairs)
    else:
        raise TypeError(
            f"`{name}` must be 'VALID', 'SAME', an int, or {n} (low, high) pairs, got "
            f"{padding!r}."
        )
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(f"`{name}` must be non-negative, got {padding!r}.")
    return pairs


def output_sizes(
    in_sizes: Sequence[int],
    window: Sequence[int],
    stride: Sequence[int],
    pads: Pads,
    dilation: Sequence[int] | None = None,
    what: str = "window",
) -> tuple[int, ...]:
    """Floor-mode output sizes; raises ``ValueError`` if any would be zero or negative."""
    dilation = dilation or (1,) * len(in_sizes)
    out = []
    for i, (size, w, s, (lo, hi), d) in enumerate(zip(in_sizes, window, stride, pads, dilation, strict=True)):
        eff = (w - 1) * d + 1
        padded = size + lo + hi
        if eff > padded:
            raise ValueError(
                f"output size would be zero or negative: spatial dim {i} has size {size} "
                f"(padded {padded}) but the {what} spans {eff}; input spatial shape "
                f"{tuple(in_sizes)}, {what} {tuple(window)}, padding {tuple(pads)}."
            )
        out.append((padded - eff) // s + 1)
    return tuple(out)


def check_bias(bias, name: str, features: int, features_of: str):
    """Returns ``bias`` as an array of shape ``(features,)`` or raises."""
    bias = as_array(bias, name)
    check_floating(bias, name)
    if bias.shape != (features,):
        raise ValueError(
            f"`{name}` must have shape ({features},) to match {features_of}, got "
            f"{tuple(bias.shape)}."
        )
    return bias


def result_dtype(*arrays):
    """The dtype JAX promotes ``arrays`` to (bfloat16 with bfloat16 stays bfloat16)."""
    return jnp.result_type(*(a.dtype for a in arrays))


def prod(values: Sequence[int]) -> int:
    return math.prod(values)


def summing_dtype(dtype) -> Any:
    """The dtype a window's values are added up in: float32 for the narrow floats (bfloat16,
    float16, the float8s), whose own sums lose the small terms once the total grows (a
    64x64 mean of bfloat16 values near 0.5 stops growing at 256 and reads 0.0625), as
    PyTorch's and cuDNN's pools accumulate in float32; any other dtype unchanged. The
    operations cast their result back to the input's dtype."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype
