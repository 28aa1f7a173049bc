"""cnnjax: convolutional neural networks in JAX, built from one lecture outward.

The lecture's operations are pure functions, the single source of truth that the
Flax modules and models are built on. Each slide's function lives in the file named after
it (private modules, re-exported here: ``cnnjax.conv`` is the function):

- :func:`conv`, :func:`conv_transpose` -- "Convolution: trying every possible match"
  (``_conv.py``)
- :func:`maxpool`, :func:`avgpool`, :func:`global_maxpool`, :func:`global_avgpool`,
  :func:`adaptive_avgpool`, :func:`adaptive_maxpool`, :func:`max_unpool` -- "Pooling:
  shrinking the image" (``_pool.py``)
- :func:`relu`, :func:`softmax` -- "ReLU: no negative values" (``_activations.py``)
- :func:`flatten`, :func:`dense` -- "Flattening and fully connected layers"
  (``_dense.py``)
- :func:`local_response_norm` -- AlexNet's normalisation across channels
  (``_normalization.py``)
- :func:`summary`, :func:`print_summary` -- the lecture's Keras summary table
  (``_summary.py``)
- :mod:`cnnjax.losses` -- cross-entropy and accuracy, on optax
- :mod:`cnnjax.audio`, :mod:`cnnjax.text` -- "CNNs are not just for images": sound and
  sentences as the 2-D and 1-D images a CNN reads

Layers (:mod:`cnnjax.nn`), models (:mod:`cnnjax.models`) and the weights they load from
Keras, PyTorch and Equinox (:mod:`cnnjax.weights`), data (:mod:`cnnjax.data`) and
training (:mod:`cnnjax.train`) are built on them; ``docs/architecture.md`` is the map.

Arrays are channels-last: images ``(N, H, W, C)``, kernels ``(H, W, C_in, C_out)``.
"""

from . import audio, data, lecture, losses, lowering, models, nn, synthetic, text, train, transforms, weights
from ._activations import relu, softmax
from ._compile_cache import compile_counts, use_compile_cache
from ._conv import conv, conv_transpose
from ._dense import dense, flatten
from ._normalization import local_response_norm
from ._pool import adaptive_avgpool, adaptive_maxpool, avgpool, global_avgpool, global_maxpool, max_unpool, maxpool
from ._summary import print_summary, summary
from .losses import accuracy, categorical_crossentropy, sparse_categorical_crossentropy

__version__ = "0.1.0"

# Imported on first use: matplotlib is slow to import.
_LAZY_SUBMODULES = ("viz",)


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
    "compile_counts",
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
    "print_summary",
    "relu",
    "softmax",
    "sparse_categorical_crossentropy",
    "summary",
    "synthetic",
    "text",
    "train",
    "transforms",
    "use_compile_cache",
    "viz",
    "weights",
]
