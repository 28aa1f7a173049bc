"""What every data source shares: the error for a dataset on no source, and the lecture's
scaling of pixels."""

from __future__ import annotations

import numpy as np


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
