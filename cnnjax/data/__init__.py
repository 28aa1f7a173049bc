"""Image datasets as NumPy arrays: tensorflow-datasets without TensorFlow, or IDX files.

The lecture's preprocessing, as one call::

    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    train_images = train_images.reshape((60000, 28, 28, 1)).astype('float32') / 255

    images, labels = cnnjax.data.load("mnist", "train")   # (60000, 28, 28, 1) float32

Two sources, one result (images ``float32`` in [0, 1], shape ``(N, H, W, C)``; labels
``int32``, shape ``(N,)``):

- **IDX files** (offline machines): a directory holding the standard
  ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
  ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (gzipped or not; a
  ``name-`` prefix such as ``emnist-digits-`` is allowed). Pass it as ``data_dir`` or
  as ``name``. MNIST, Fashion-MNIST and KMNIST are distributed this way.
- **tensorflow-datasets** (machines with internet, Colab): any image classification
  dataset by name (``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``, ...) through
  ``tfds.data_source``, which reads array-record files with no TensorFlow import.

Then :func:`batches` (seeded shuffling, per epoch), :func:`batch_plan` (an epoch as a
padded index matrix, what ``fit`` runs), :func:`stacked_batches` (a whole epoch as
``(steps, batch, ...)`` arrays, for one device transfer and a ``lax.scan``), and
:func:`split_validation`.

The parts, one file each: ``_idx.py`` (IDX files), ``_cifar.py`` (CIFAR-10's binary
release), ``_tfds.py`` (tensorflow-datasets), :mod:`~cnnjax.data.fetch` (the upstream
files, fetched and verified without TensorFlow), ``_load.py`` (:func:`load` over all of
them), ``_batches.py`` (batch orders), ``_common.py`` (what they share), and
``_datasets.py``: one record per known dataset (:data:`DATASETS`: its image shape, class
names, file format and upstream files), from which every table above is derived.
"""

from . import fetch
from ._batches import batch_plan, batches, split_validation, stacked_batches
from ._cifar import read_cifar10
from ._common import DatasetNotFoundError, to_float_images
from ._datasets import CLASS_NAMES, DATASETS, IDX_DATASETS, Dataset
from ._idx import idx_files, load_idx, read_idx
from ._load import load
from ._tfds import load_tfds

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "Dataset",
    "DatasetNotFoundError",
    "IDX_DATASETS",
    "batch_plan",
    "batches",
    "fetch",
    "idx_files",
    "load",
    "load_idx",
    "load_tfds",
    "read_cifar10",
    "read_idx",
    "split_validation",
    "stacked_batches",
    "to_float_images",
]
