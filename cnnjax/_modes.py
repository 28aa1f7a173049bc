"""A model's training/evaluation mode, saved and put back: what both towers need when they
run a model in another mode for a moment (the trainer's two graph definitions, evaluation,
the weight ports' probe)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flax import nnx

MODE_ATTRIBUTES = ("deterministic", "use_running_average")
"""The attributes ``model.train()`` and ``model.eval()`` set on flax's modules."""


@contextlib.contextmanager
def mode_preserved(model: nnx.Module) -> Iterator[None]:
    """Restores every submodule's mode attributes (``deterministic``,
    ``use_running_average``) on exit: ``model.train()``/``model.eval()`` inside the block
    leave no trace."""
    saved = [(module, name, getattr(module, name))
             for _, module in nnx.iter_modules(model) for name in MODE_ATTRIBUTES if hasattr(module, name)]
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


__all__ = ["MODE_ATTRIBUTES", "mode_preserved"]
