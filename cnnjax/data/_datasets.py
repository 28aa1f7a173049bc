"""One record per known image dataset: what cnnjax knows of it, in one place.

Adding a dataset that cnnjax fetches without TensorFlow is one :class:`Dataset` here (its
name as tensorflow-datasets spells it, whose checksum registry verifies the files), plus a
reader in ``_load.READERS`` when its files are in a format no reader reads yet.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A known image dataset.

    Attributes:
      name: as tensorflow-datasets names it (``"fashion_mnist"``).
      image_shape: one image as its files store it: ``(rows, cols)`` for IDX files (a file
        whose header says another shape is refused), ``(32, 32, 3)`` for CIFAR-10.
      class_names: the classes in label order (as tensorflow-datasets lists them), or None.
      format: which reader reads its files: ``"idx"`` or ``"cifar10"``.
      upstream: the upstream files of each split that :mod:`cnnjax.data.fetch` downloads and
        verifies, or None for a dataset that is not fetched without TensorFlow.
    """

    name: str
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...] | None
    format: str
    upstream: dict[str, tuple[str, ...]] | None = None


_IDX_UPSTREAM = {split: (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
                 for split, prefix in (("train", "train"), ("test", "t10k"))}

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("mnist", (28, 28), tuple(str(i) for i in range(10)), "idx", _IDX_UPSTREAM),
    Dataset("fashion_mnist", (28, 28), ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                        "Sneaker", "Bag", "Ankle boot"), "idx", _IDX_UPSTREAM),
    Dataset("kmnist", (28, 28), ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), "idx", _IDX_UPSTREAM),
    Dataset("emnist", (28, 28), None, "idx"),  # its variants as emnist/<variant>; read from IDX folders only
    Dataset("cifar10", (32, 32, 3), ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"), "cifar10", {"train": ("cifar-10-binary.tar.gz",),
                                                           "test": ("cifar-10-binary.tar.gz",)}),
)}
"""Every known dataset by name."""

CLASS_NAMES: dict[str, tuple[str, ...]] = {n: d.class_names for n, d in DATASETS.items() if d.class_names}
"""Each known dataset's class names, in label order (as tensorflow-datasets lists them)."""

IDX_DATASETS: dict[str, tuple[int, ...]] = {n: d.image_shape for n, d in DATASETS.items() if d.format == "idx"}
"""The datasets published as IDX files (EMNIST's variants as ``emnist/<variant>``), each with
its images' ``(rows, cols)``: a file whose header says another shape of the same byte count
(10000x14x56 for 28x28) is refused by :func:`cnnjax.data.load`, not read as the dataset."""

FETCHED: tuple[str, ...] = tuple(n for n, d in DATASETS.items() if d.upstream)
"""The datasets :mod:`cnnjax.data.fetch` downloads and verifies without TensorFlow."""
