"""cnnjax: convolutional neural networks in JAX, built from one lecture outward.

The lecture's operations are pure functions, the single source of truth that the
Flax modules and models are built on:

- :func:`conv` -- "Convolution: trying every possible match" (:mod:`cnnjax.conv`)
- :func:`conv_transpose` -- convolution's transpose, its input-gradient (:mod:`cnnjax.conv`)
- :func:`maxpool`, :func:`avgpool`, :func:`global_maxpool`, :func:`global_avgpool`,
  :func:`adaptive_avgpool`, :func:`adaptive_maxpool` --
  "Pooling: shrinking the image" (:mod:`cnnjax.pool`)
- :func:`relu` -- "ReLU: no negative values" (:mod:`cnnjax.activations`)
- :func:`flatten`, :func:`dense` -- "Flattening and fully connected layers"
  (:mod:`cnnjax.dense`)
- :func:`local_response_norm` -- AlexNet's normalisation across channels
  (:mod:`cnnjax.normalization`)
- :mod:`cnnjax.losses` -- cross-entropy and accuracy, on optax

Arrays are channels-last: images ``(N, H, W, C)``, kernels ``(H, W, C_in, C_out)``.
"""

from . import audio, data, lecture, losses, lowering, models, nn, normalization, synthetic, train, transforms
from .activations import relu, softmax
from .conv import conv, conv_transpose
from .dense import dense, flatten
from .losses import accuracy, categorical_crossentropy, sparse_categorical_crossentropy
from .normalization import local_response_norm
from .pool import adaptive_avgpool, adaptive_maxpool, avgpool, global_avgpool, global_maxpool, max_unpool, maxpool
from .summary import print_summary, summary

__version__ = "0.1.0"

# Imported on first use: orbax and matplotlib are slow to import.
_LAZY_SUBMODULES = ("checkpoint", "viz")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'cnnjax' has no attribute {name!r}")

__all__ = [
    "__version__",
    "accuracy",
    "audio",
    "adaptive_avgpool",
    "adaptive_maxpool",
    "avgpool",
    "categorical_crossentropy",
    "checkpoint",
    "conv",
    "conv_transpose",
    "data",
    "dense",
    "flatten",
    "global_avgpool",
    "global_maxpool",
    "lecture",
    "local_response_norm",
    "losses",
    "lowering",
    "max_unpool",
    "maxpool",
    "models",
    "nn",
    "normalization",
    "print_summary",
    "relu",
    "softmax",
    "sparse_categorical_crossentropy",
    "summary",
    "synthetic",
    "train",
    "transforms",
    "viz",
]
