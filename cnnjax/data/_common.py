"""What every data source shares: the error for a dataset on no source, class names, and
the lecture's scaling of pixels."""

from __future__ import annotations

import numpy as np

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
"""Each known dataset's class names, in label order (as tensorflow-datasets lists them)."""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is on neither source; the message says where cnnjax looked and how to get it."""


def to_float_images(images: np.ndarray) -> np.ndarray:
    """``uint8`` images to ``float32`` in [0, 1] with a channel axis: ``astype('float32') / 255``."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    out = images.astype(np.float32)
    if images.dtype == np.uint8:
        out /= np.float32(255)
    return out
