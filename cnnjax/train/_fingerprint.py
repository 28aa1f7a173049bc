"""What makes a training run that run: the fingerprint a checkpoint records and resume checks.

``fit(checkpoint_dir=..., resume=True)`` continues a run only when this run is the same
one: the same settings (batch size, seed, shuffling, number of examples, segment length,
compute dtype, parameter shapes), the same data, the same optimizer and the same loss. The last three
are digests (SHA-256):

- **data**: the shapes and dtypes of the inputs and targets, all of the targets' bytes,
  and all of the inputs' bytes when they are a NumPy array or memory map (a fraction of a
  second for MNIST's 60,000 training images); for another random-access source
  (h5py, zarr), 1,024 rows spread evenly over it, so as not to read it all (read once,
  when ``fit`` starts with a ``checkpoint_dir``).
- **optimizer** and **loss**: what the object is made of, read through its closures:
  an optax transformation is functions whose closures hold its hyperparameters
  (``optax.adam(1e-3)`` and ``optax.adam(1e-4)`` differ, as do ``chain``'s members and
  a schedule's values); a function is its module, name, constants, defaults and closure.

A record written before a field was fingerprinted is not checked for it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
from typing import Any

import jax
import numpy as np

SAMPLED_ROWS = 1024
"""Rows of a random-access source (not a NumPy array) read for the data digest."""
_CHUNK_BYTES = 64 << 20
_MAX_DEPTH = 24


def data_digest(inputs: Any, targets: np.ndarray) -> str:
    """SHA-256 of a training set: shapes, dtypes, targets, and inputs (see the module docstring)."""
    h = hashlib.sha256()
    h.update(repr((tuple(inputs.shape), str(inputs.dtype), tuple(targets.shape), str(targets.dtype))).encode())
    h.update(np.ascontiguousarray(targets).data)
    n = inputs.shape[0]
    if isinstance(inputs, np.ndarray):  # a memory map too: read a chunk of rows at a time
        rows = max(1, _CHUNK_BYTES // max(1, inputs[:1].nbytes))
        for start in range(0, n, rows):
            h.update(np.ascontiguousarray(inputs[start:start + rows]).data)
    else:
        index = np.unique(np.linspace(0, n - 1, min(n, SAMPLED_ROWS)).astype(np.int64))
        h.update(np.ascontiguousarray(np.asarray(inputs[index])).data)
    return h.hexdigest()


def identity(obj: Any) -> str:
    """SHA-256 of what ``obj`` (an optimizer, a loss function) is made of; equal for two
    objects built alike, in any process."""
    return hashlib.sha256(_Describer().describe(obj, 0).encode()).hexdigest()


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


class _Describer:
    """Text for an object graph: each object described once (a shared member costs once),
    a cycle as ``<cycle>``, nothing deeper than ``_MAX_DEPTH``; never an address."""

    def __init__(self):
        self.memo: dict[int, tuple[Any, str]] = {}  # the object kept alive: its id is not reused

    def describe(self, obj: Any, depth: int) -> str:
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            return repr(obj)
        if depth > _MAX_DEPTH:
            return "..."
        key = id(obj)
        if key not in self.memo:
            self.memo[key] = (obj, "<cycle>")  # while it is being described
            self.memo[key] = (obj, self._text(obj, lambda x: self.describe(x, depth + 1)))
        return self.memo[key][1]

    @staticmethod
    def _text(obj: Any, more) -> str:
        if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
            array = np.asarray(jax.device_get(obj))
            return f"array{array.shape}{array.dtype}:{hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()}"
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple (optax's transformations)
            return f"{_name(type(obj))}({', '.join(f'{k}={more(getattr(obj, k))}' for k in obj._fields)})"
        if isinstance(obj, (tuple, list)):
            return f"{type(obj).__name__}[{', '.join(more(x) for x in obj)}]"
        if isinstance(obj, (set, frozenset)):
            return f"{type(obj).__name__}{{{', '.join(sorted(more(x) for x in obj))}}}"
        if isinstance(obj, dict):
            return "{" + ", ".join(sorted(f"{more(k)}: {more(v)}" for k, v in obj.items())) + "}"
        if isinstance(obj, functools.partial):
            return f"partial({more(obj.func)}, {more(obj.args)}, {more(obj.keywords)})"
        if isinstance(obj, types.MethodType):
            return f"method({more(obj.__func__)}, {more(obj.__self__)})"
        if isinstance(obj, types.FunctionType):
            cells = [c.cell_contents if _filled(c) else "<empty>" for c in obj.__closure__ or ()]
            return (f"function {_name(obj)}(code={_code(obj.__code__)}, defaults={more(obj.__defaults__)}, "
                    f"kwdefaults={more(obj.__kwdefaults__)}, closure={more(cells)})")
        if isinstance(obj, types.ModuleType):
            return f"module {obj.__name__}"
        if isinstance(obj, (type, types.BuiltinFunctionType)):
            return _name(obj)
        if hasattr(obj, "__wrapped__"):  # jax.jit, functools.wraps
            return f"{_name(obj)} wrapping {more(obj.__wrapped__)}"
        if dataclasses.is_dataclass(obj):
            return f"{_name(type(obj))}({more({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})})"
        if hasattr(obj, "__dict__"):
            return f"{_name(type(obj))}({more(dict(vars(obj)))})"
        return _name(type(obj))  # nothing more to read without its address


def _filled(cell) -> bool:
    try:
        return cell.cell_contents is not cell  # always true: the read itself is the test
    except ValueError:  # a cell not yet assigned
        return False


def _code(code: types.CodeType) -> str:
    """A function's code as the names it uses and its constants (nested functions' too):
    ``lambda o, t: mse(o, t) * 2.0`` and ``* 3.0`` differ; the bytecode itself, which
    changes between Python versions, is left out."""
    consts = [_code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts
              if isinstance(c, (types.CodeType, bool, int, float, complex, str, bytes, type(None)))]
    return f"{code.co_name}{code.co_names}[{', '.join(consts)}]"


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields of ``current`` that ``recorded`` holds with another value, as
    ``"name (recorded -> current)"`` (digests as ``"data (other data)"``)."""
    out = []
    for key, value in current.items():
        if key not in recorded or recorded[key] == value:
            continue
        out.append(f"{key} (another {key})" if key in _DIGESTS else f"{key} ({recorded[key]!r} -> {value!r})")
    return out


_DIGESTS = ("data", "optimizer", "loss")


__all__: list[str] = []  # internal: fit records it, ModelCheckpoint checks it
