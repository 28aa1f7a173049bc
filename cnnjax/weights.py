"""Weights trained elsewhere, loaded into a cnnjax model of the same network.

- :func:`load_keras_weights`: a list in Keras' ``get_weights()`` order (kernel, bias of
  each layer with weights, in call order); the layouts are cnnjax's already.
- :func:`load_torch_weights`: a PyTorch ``state_dict``, or the ``torch.nn.Module``
  itself; kernels are transposed from PyTorch's layouts, and the inputs of a dense
  layer that reads a flattened map are reordered from channels-first to channels-last.
- :func:`load_equinox_weights`: an Equinox model (PyTorch's layouts), through
  :func:`load_torch_weights`.

Every loader copies what it is given: the model never shares memory with the caller's
arrays or tensors (JAX reads an aligned host buffer without copying on a CPU, so a
loaded bias would otherwise move with the next ``optimizer.step()`` of the source).
Every loader checks everything before it writes anything: a refused load leaves the
model as it was.

How a state dict's modules pair with the model's layers, and how a flattened map's
order is found, is in ``docs/porting.md`` ("Loading PyTorch weights").
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._modes import mode_preserved
from .nn import (
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    Conv,
    ConvTranspose,
    Dense,
    LocalResponseNorm,
    MaxPool,
    capture,
)

# Layers whose output PyTorch holds channels first (N, C, *spatial): a dense layer that reads
# such a map flattened reads it in another order than cnnjax's channels-last map.
_CHANNELS_FIRST_IN_TORCH = (Conv, ConvTranspose, MaxPool, AvgPool, AdaptiveAvgPool, AdaptiveMaxPool,
                            LocalResponseNorm)
_EXACT = 1 << 24  # float32 holds every integer up to this exactly


def _example_shape(model, input_shape: Any) -> tuple[int, ...]:
    """One example's shape: ``input_shape`` or the model's recorded one, any rank >= 1
    (``(32,)`` for a dense-only model, ``(H, W, C)`` for images)."""
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("`input_shape` is needed: the model does not record one.")
    if not (isinstance(shape, Sequence) and not isinstance(shape, str) and len(shape) >= 1
            and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValueError(f"`input_shape` must be one example's shape without the batch axis, e.g. (28, 28, 1) "
                         f"or (32,), got {shape!r}.")
    return tuple(int(d) for d in shape)


def _calls(model, shape: tuple[int, ...]):
    return capture(model, jax.ShapeDtypeStruct((1, *shape), jnp.float32))[1]


def weighted_layers(model, input_shape: Sequence[int] | None = None) -> list:
    """The layers holding parameters, in call order (the order of Keras' ``get_weights``)."""
    return [c.layer for c in _calls(model, _example_shape(model, input_shape)) if isinstance(c.layer, (Conv, Dense))]


def _copy(value: Any) -> np.ndarray:
    """A NumPy array of ``value`` (a torch tensor, an array) that shares no memory with it."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, copy=True)


def _assign(updates: list[tuple[Any, np.ndarray]]) -> None:
    """Writes each value (a private copy: :func:`_copy`) into its variable."""
    for variable, value in updates:
        variable[...] = jnp.asarray(value, variable.dtype)


def load_keras_weights(model, weights: Sequence[Any], input_shape: Sequence[int] | None = None):
    """Fills ``model`` in place with weights in Keras' order, as ``model.get_weights()`` gives.

    Keras lists, for each layer with weights in call order, its kernel then its bias.
    Conv kernels are HWIO and dense kernels ``(in, out)`` in both frameworks, and
    :func:`cnnjax.flatten` uses Keras' order, so the arrays load unchanged and give
    the same logits. They are copied: changing them afterwards leaves the model as loaded.

    Args:
      model: a cnnjax model (e.g. from :func:`cnnjax.models.mnist_functional`).
      weights: the list of arrays.
      input_shape: one example's shape, ``(H, W, C)`` or ``(features,)``; defaults to
        the model's recorded ``input_shape``.

    Returns:
      ``model``, for chaining.

    Raises:
      ValueError: if the number of arrays or any shape does not match, naming the
        layer and the array's index.
    """
    targets = []
    for layer in weighted_layers(model, input_shape):
        targets.append((layer, "kernel"))
        if layer.bias is not None:
            targets.append((layer, "bias"))
    if len(weights) != len(targets):
        raise ValueError(
            f"`weights` must hold {len(targets)} arrays (kernel and bias of each layer with "
            f"weights, in call order), got {len(weights)}."
        )
    updates = []
    for i, ((layer, attr), w) in enumerate(zip(targets, weights, strict=True)):
        w = _copy(w)
        param = getattr(layer, attr)
        if w.shape != param.shape:
            raise ValueError(
                f"`weights[{i}]` has shape {w.shape} but the {type(layer).__name__} layer's "
                f"{attr} has shape {tuple(param.shape)}."
            )
        updates.append((param, w))
    _assign(updates)
    return model


def load_torch_weights(model, state_dict: Mapping[str, Any] | Any, input_shape: Sequence[int] | None = None, *,
                       order: Sequence[str] | None = None):
    """Fills ``model`` in place from a PyTorch network of the same architecture, so that
    channels-last inputs give the logits PyTorch gives for the same images channels-first.

    **Pairing.** Each module of the state dict with weights (``conv1``, ``features.0``)
    is paired with one of the model's layers with weights (in the order the model calls
    them). A ``state_dict`` lists modules in the order they were *declared*, which need
    not be the order they are called, so:

    - given the ``torch.nn.Module`` itself, it is run once on zeros (in eval mode, without
      gradients, its mode restored) and its modules pair in the order they are called;
    - given ``order``, the state dict's modules pair in that order;
    - given a ``state_dict`` alone, the pairing is the one way its shapes fit the layers,
      the modules of one ``nn.Sequential`` (``features.0``, ``features.3``) kept in their
      index order (which is their call order); where two or more pairings fit (two layers
      of the same shape declared in another order than called), it is refused, naming
      two of them.

    **Layouts.** A convolution's weight ``(out, in, *kernel)`` becomes the kernel
    ``(*kernel, in, out)``; a linear layer's weight ``(out, in)`` the kernel ``(in, out)``;
    biases load as they are. A dense layer whose inputs are a flattened map (however the
    model flattens: :class:`~cnnjax.nn.Flatten`, :func:`cnnjax.flatten`, ``x.reshape(n,
    -1)``, after a functional pool) gets its inputs reordered from PyTorch's flatten order
    (channels first, ``c*H*W + h*W + w``) to the order the model's own flatten reads its
    channels-last map. That order is found by following the data, not the layers' types:
    the model is run once (in eval mode) with every convolution and pooling layer's output
    replaced by values that name their channel and position, and the dense layer's inputs
    are read back. Inputs that are neither such values nor free of them (a map mixed with
    other features in a way that cannot be followed) are refused.

    Args:
      model: a cnnjax model of the same architecture (e.g. :func:`cnnjax.models.alexnet`
        for ``torchvision.models.alexnet``).
      state_dict: ``{name: tensor}`` as ``torch_model.state_dict()`` gives (torch
        tensors or NumPy arrays), or the ``torch.nn.Module``. Copied, never shared.
      input_shape: one example's shape, ``(H, W, C)`` or ``(features,)``; defaults to the
        model's recorded ``input_shape``.
      order: the state dict's module names (``["body.0", "head.0"]``) in the order the
        model calls them; each module with weights exactly once.

    Returns:
      ``model``, for chaining.

    Raises:
      ValueError: if the modules and layers do not pair up (naming both lists), pair up
        in more than one way, a shape does not match (naming the PyTorch entry and the
        cnnjax layer), a flattened map's order cannot be followed, or the state dict
        holds batch-norm statistics (not converted). Nothing is loaded then.
    """
    module = state_dict if _is_torch_module(state_dict) else None
    groups = _groups(module.state_dict() if module is not None else state_dict)
    shape = _example_shape(model, input_shape)
    calls = _calls(model, shape)
    layers = [c for c in calls if isinstance(c.layer, (Conv, Dense))]
    if len(groups) != len(layers):
        raise ValueError(f"`state_dict` holds {len(groups)} modules with weights ({', '.join(groups)}) but the model "
                         f"has {len(layers)} layers with weights ({', '.join(c.name for c in layers)}).")
    if order is not None and module is not None:
        raise ValueError("Give `order` with a state dict, not with the torch module (whose calls give the order).")
    if module is not None:
        order = _torch_call_order(module, shape)
        if sorted(order) != sorted(groups):
            raise ValueError(f"The torch module calls its modules with weights {order} on one example of shape "
                             f"{shape}, but its state dict holds {list(groups)}: pass the state dict with "
                             "order=[...] naming them in the order the model calls them.")
    pairing = _pairing(groups, layers, order)
    flat_orders = _flattened_orders(model, shape, calls, layers)
    updates = []
    for (_, tensors), call in zip(pairing, layers, strict=True):
        layer, w = call.layer, tensors["weight"]
        if isinstance(layer, Conv):
            kernel = np.transpose(w, (*range(2, w.ndim), 1, 0)) if w.ndim >= 3 else w
        else:
            kernel = w.T
            columns = flat_orders.get(id(layer))  # shapes checked by _pairing: len(columns) == w.shape[1]
            if columns is not None:
                kernel = w[:, columns].T
        updates.append((layer.kernel, kernel))
        if tensors.get("bias") is not None:
            updates.append((layer.bias, tensors["bias"]))
    _assign(updates)
    return model


def _is_torch_module(value: Any) -> bool:
    return callable(value) and hasattr(value, "state_dict") and hasattr(value, "named_modules")


def _groups(state_dict: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """``{module name: {"weight": array, "bias": array}}`` in the state dict's order, copied."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"`state_dict` must be a mapping {{name: tensor}} (torch_model.state_dict()) or the torch "
                        f"module, got {type(state_dict).__name__}.")
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, name = str(key).rpartition(".")
        if name in ("running_mean", "running_var", "num_batches_tracked"):
            raise ValueError(f"`state_dict` holds batch-norm statistics ({key!r}): load_torch_weights converts "
                             "convolution and linear layers only.")
        if name not in ("weight", "bias"):
            raise ValueError(f"`state_dict` entry {key!r} is neither a weight nor a bias.")
        groups.setdefault(prefix, {})[name] = _copy(value)
    for prefix, tensors in groups.items():
        if "weight" not in tensors:
            raise ValueError(f"`state_dict` has {prefix}.bias but no {prefix}.weight.")
    return groups


def _kernel_shape(w: np.ndarray, layer) -> tuple[int, ...]:
    """The shape PyTorch's ``w`` has in cnnjax's layout for ``layer``."""
    if isinstance(layer, Conv):
        return tuple(np.transpose(w, (*range(2, w.ndim), 1, 0)).shape) if w.ndim >= 3 else w.shape
    return w.shape[::-1]


def _problem(prefix: str, tensors: dict[str, np.ndarray], call) -> str | None:
    """Why module ``prefix`` does not fit ``call``'s layer, or None when it does."""
    layer, w, bias = call.layer, tensors["weight"], tensors.get("bias")
    if _kernel_shape(w, layer) != tuple(layer.kernel.shape):
        return (f"`state_dict`'s {prefix}.weight of shape {w.shape} does not fit the {call.name} layer's kernel "
                f"{tuple(layer.kernel.shape)} (as PyTorch's layout: {_torch_layout(layer)}).")
    if (bias is None) != (layer.bias is None):
        return (f"`state_dict`'s {prefix} {'has no' if bias is None else 'has a'} bias but the "
                f"{call.name} layer {'has one' if bias is None else 'has none'}.")
    if bias is not None and bias.shape != tuple(layer.bias.shape):
        return (f"`state_dict`'s {prefix}.bias of shape {bias.shape} does not fit the {call.name} "
                f"layer's bias {tuple(layer.bias.shape)}.")
    return None


def _pairing(groups: dict[str, dict[str, np.ndarray]], layers: list, order: Sequence[str] | None) -> list:
    """The ``(prefix, tensors)`` paired with each of ``layers``, in the layers' call order."""
    if order is not None:
        if isinstance(order, str) or not isinstance(order, Sequence) or sorted(map(str, order)) != sorted(groups):
            raise ValueError(f"`order` must name each of the state dict's modules with weights once, in the order "
                             f"the model calls them: {sorted(groups)}, got {order!r}.")
        pairing = [str(p) for p in order]
    else:
        pairings = _fitting_pairings(groups, layers)
        if len(pairings) > 1:
            show = lambda pairing: ", ".join(f"{p} -> {c.name}" for p, c in zip(pairing, layers, strict=True))
            raise ValueError(f"`state_dict`'s modules fit the model's layers in more than one order ("
                             f"{show(pairings[0])}; or {show(pairings[1])}): a state dict lists modules in the order "
                             "they are declared, not called. Pass the torch module itself, load_torch_weights(model, "
                             "torch_model), whose calls give the order, or order=[...] naming its modules in the "
                             "order the model calls them.")
        pairing = pairings[0] if pairings else list(groups)  # none fits: say what is wrong with the declared order
    for prefix, call in zip(pairing, layers, strict=True):
        problem = _problem(prefix, groups[prefix], call)
        if problem is not None:
            raise ValueError(problem)
    return [(p, groups[p]) for p in pairing]


def _sequential_key(prefix: str) -> tuple[str, int] | None:
    """``("features", 3)`` for ``"features.3"``: a module of an ``nn.Sequential``, called in index order."""
    parent, _, last = prefix.rpartition(".")
    return (parent, int(last)) if last.isdigit() else None


def _fitting_pairings(groups: dict[str, dict[str, np.ndarray]], layers: list, limit: int = 2,
                      budget: int = 100_000) -> list[list[str]]:
    """Up to ``limit`` assignments of one module to each layer (in call order) where each fits,
    the modules of one Sequential in their index order."""
    fits = [[p for p in groups if _problem(p, groups[p], call) is None] for call in layers]
    chains: dict[str, list[str]] = {}
    for p in groups:
        key = _sequential_key(p)
        if key is not None:
            chains.setdefault(key[0], []).append(p)
    for chain in chains.values():
        chain.sort(key=lambda p: _sequential_key(p)[1])
    found: list[list[str]] = []
    steps = itertools.count()

    def search(taken: list[str]) -> None:
        if len(found) >= limit:
            return
        if next(steps) > budget:
            raise ValueError("`state_dict`'s modules could not be paired with the model's layers by their shapes in "
                             f"{budget:,} tries: pass the torch module itself or order=[...].")
        if len(taken) == len(fits):
            found.append(list(taken))
            return
        done = {name: sum(p in taken for p in chain) for name, chain in chains.items()}
        nexts = {chain[done[name]] for name, chain in chains.items() if done[name] < len(chain)}
        for p in fits[len(taken)]:
            if p not in taken and (_sequential_key(p) is None or p in nexts):
                search([*taken, p])

    search([])
    return found


def _torch_call_order(module, shape: tuple[int, ...]) -> list[str]:
    """The names of ``module``'s submodules with parameters, in the order a forward pass on
    zeros calls them (channels first: ``(1, C, *spatial)`` for ``shape`` ``(*spatial, C)``)."""
    import torch

    names = {m: name for name, m in module.named_modules()}
    called: list[str] = []

    def hook(m, args, out):
        if names[m] not in called:
            called.append(names[m])

    handles = [m.register_forward_hook(hook) for m in module.modules() if next(m.parameters(False), None) is not None]
    modes = [(m, m.training) for m in module.modules()]
    torch_shape = (1, shape[-1], *shape[:-1]) if len(shape) >= 2 else (1, *shape)
    try:
        module.eval()
        with torch.no_grad():
            param = next(module.parameters(), None)
            errors = []
            for dtype in ((param.dtype if param is not None else torch.float32), torch.long):
                called.clear()
                try:
                    module(torch.zeros(torch_shape, dtype=dtype, device=param.device if param is not None else None))
                    break
                except Exception as e:  # noqa: BLE001 - any failure of the user's forward is reported below
                    errors.append(f"{type(e).__name__}: {e}")
            else:
                raise ValueError(f"`state_dict` is a torch module, and running it on zeros of shape {torch_shape} "
                                 f"(to see the order it calls its layers) failed: {errors[0]}. Give `input_shape` "
                                 "as the model takes one example, or pass the state dict with order=[...].")
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.train(training)
    return called


def _flattened_orders(model, shape: tuple[int, ...], calls: list, layers: list) -> dict[int, np.ndarray]:
    """For each dense layer that reads a flattened channels-first map: ``columns`` such that
    its input ``j`` is PyTorch's flattened input ``columns[j]``; by ``id`` of the layer.

    The model runs once on three examples with every layer whose output PyTorch holds
    channels first (and the input, if it is a map) replaced by codes: example 0 holds
    ``1 + c * P + p`` (channel ``c``, row-major position ``p`` of ``P``), example 1 the same
    plus ``D`` and example 2 the source's number. Copies, transposes, reshapes, ReLU and
    max or average pools keep an entry a code (``out1 - out0 == D``) that still names its
    source and channel; its position becomes the pooled window's, in the same order.
    """
    dense = [c for c in layers if isinstance(c.layer, Dense) and len(c.input.shape) == 2]
    maps = len(shape) >= 2 or any(isinstance(c.layer, _CHANNELS_FIRST_IN_TORCH) for c in calls)
    if not dense or not maps:
        return {}
    sources: list[tuple[int, ...]] = []  # each substituted map's (spatial..., C), by its number

    def codes(map_shape: tuple[int, ...]) -> jax.Array:
        number = len(sources)
        sources.append(map_shape)
        size = int(np.prod(map_shape))
        if 2 * size + 2 >= _EXACT:
            raise ValueError(f"The map of shape {map_shape} is too large to follow through the model exactly in "
                             "float32: flatten it with cnnjax.nn.Flatten right after the layer that makes it.")
        spatial, channels = int(np.prod(map_shape[:-1])), map_shape[-1]
        c = np.arange(channels)[None, :]
        p = np.arange(spatial)[:, None]
        base = (1 + c * spatial + p).astype(np.float32).reshape(map_shape)
        return jnp.asarray(np.stack([base, base + _delta(size), np.full(map_shape, number + 1, np.float32)]))

    def substitute(layer, x, y):
        if isinstance(layer, _CHANNELS_FIRST_IN_TORCH) and len(y.shape) >= 3:
            return codes(tuple(y.shape[1:])).astype(y.dtype)
        return y

    x = codes(shape) if len(shape) >= 2 else jnp.zeros((3, *shape), jnp.float32)
    with mode_preserved(model):
        model.eval()  # Dropout passes the codes as they are
        _, probed = capture(model, x, substitute=substitute)
    seen = {id(c.layer): np.asarray(c.input, np.float64) for c in probed if isinstance(c.layer, Dense)}
    orders = {}
    for call in dense:
        columns = _columns(seen[id(call.layer)], sources, call.name)
        if columns is not None and not np.array_equal(columns, np.arange(len(columns))):
            orders[id(call.layer)] = columns
    return orders


def _delta(size: int) -> float:
    return float(size + 1)


def _columns(inputs: np.ndarray, sources: list[tuple[int, ...]], name: str) -> np.ndarray | None:
    """PyTorch's column of each of a dense layer's inputs ``(3, F)`` read back from the probe;
    None when no input is a code (nothing channels-first reaches the layer)."""
    number = inputs[2] - 1
    known = (number == np.round(number)) & (number >= 0) & (number < len(sources))
    sizes = np.array([np.prod(s) for s in sources])
    src = np.where(known, number, 0).astype(int)
    shift = sizes[src] + 1.0  # _delta of each input's source
    # exact for copies and maxima; an average pool's division rounds, by an ulp or two
    is_code = known & (np.abs(inputs[1] - inputs[0] - shift) <= 4e-6 * np.abs(inputs[1]) + 1e-6) & (inputs[0] >= 1)
    if not is_code.any():
        return None
    if not is_code.all():
        raise ValueError(f"The {name} layer's inputs mix a flattened map with values that are not one (at input "
                         f"{int(np.flatnonzero(~is_code)[0])}), so the order PyTorch flattens them in cannot be "
                         "followed: pass a state dict whose first dense layer already takes cnnjax's order, or "
                         "flatten the map alone before the layer.")
    spatial = np.array([np.prod(s[:-1]) for s in sources])[src]
    value = inputs[0] - 1
    channel = np.floor(value / spatial)
    position = value - channel * spatial
    columns = np.empty(len(value), int)
    start = 0
    for _, run in itertools.groupby(range(len(value)), key=lambda j: src[j]):  # runs from one map, in order
        run = np.fromiter(run, int)
        keys = list(zip(channel[run], position[run], strict=True))
        if len(set(keys)) < len(keys):
            raise ValueError(f"The {name} layer's inputs hold one map's channel at one position twice, so the "
                             "order PyTorch flattens them in cannot be followed.")
        rank = np.lexsort((position[run], channel[run]))  # PyTorch's order: by channel, then position
        columns[run[rank]] = start + np.arange(len(run))
        start += len(run)
    return columns


def load_equinox_weights(model, eqx_model: Any, input_shape: Sequence[int] | None = None):
    """Fills ``model`` in place from an Equinox model of the same network, so that
    channels-last inputs give the outputs ``jax.vmap(eqx_model)`` gives for the same
    images channels-first.

    Equinox keeps PyTorch's layouts (``Conv.weight`` ``(out, in, *kernel)``, ``Linear.weight``
    ``(out, in)``, a convolution's bias ``(out, 1, ...)``, and ``jnp.ravel`` of a
    channels-first map), so its convolutions and linear layers, in the order of its
    pytree (a list of layers, or fields in the order they are declared), go through
    :func:`load_torch_weights`.

    Raises:
      ValueError: as :func:`load_torch_weights`; TypeError if Equinox is not installed
        or ``eqx_model`` holds no convolution or linear layer.
    """
    try:
        import equinox as eqx
    except ImportError as e:
        raise TypeError("`eqx_model` needs Equinox installed (pip install equinox).") from e
    layers = [leaf for leaf in jax.tree.leaves(eqx_model, is_leaf=lambda m: isinstance(m, (eqx.nn.Conv, eqx.nn.Linear)))
              if isinstance(leaf, (eqx.nn.Conv, eqx.nn.Linear))]
    if not layers:
        raise TypeError(f"`eqx_model` holds no equinox.nn.Conv or Linear layer, got {type(eqx_model).__name__}.")
    state = {}
    for i, layer in enumerate(layers):
        state[f"{i}.weight"] = np.asarray(layer.weight)
        if layer.bias is not None:
            state[f"{i}.bias"] = np.asarray(layer.bias).reshape(-1)
    return load_torch_weights(model, state, input_shape)


def _torch_layout(layer) -> tuple[int, ...]:
    kernel = tuple(layer.kernel.shape)
    return (kernel[-1], kernel[-2], *kernel[:-2]) if isinstance(layer, Conv) else (kernel[1], kernel[0])


__all__ = ["load_equinox_weights", "load_keras_weights", "load_torch_weights", "weighted_layers"]
