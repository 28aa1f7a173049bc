"""What the MNIST-style experiments share: their data, their models, their run directories."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from cnnjax import data, models

MODELS = {"functional": models.mnist_functional, "sequential": models.mnist_sequential}

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def fail(message: str) -> None:
    """Stops the script with a one-line error, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_train_test(dataset: str, data_dir: str | None, limit_train: int | None):
    """``(train, test, note)`` for an experiment.

    When the data has no train split (e.g. a folder holding only the t10k IDX pair) and
    ``limit_train`` is given, the test split is divided: its first ``limit_train``
    images train, the rest test; ``note`` says so.
    """
    try:
        test = data.load(dataset, "test", data_dir=data_dir)
    except data.DatasetNotFoundError as e:
        fail(f"{e} Here: --data-dir DIR.")
    try:
        train = data.load(dataset, "train", data_dir=data_dir, limit=limit_train)
        return train, test, None
    except data.DatasetNotFoundError as e:
        if limit_train is None or data_dir is None:
            fail(f"{e} With only a test split, pass --limit-train N to train on its first N images.")
        if limit_train >= len(test[0]):
            fail(f"--limit-train {limit_train} leaves nothing to test on: the test split has {len(test[0])} images.")
        note = (f"{data_dir} holds no train split: training on the first {limit_train} test images, "
                f"testing on the other {len(test[0]) - limit_train}")
        x, y = test
        return (x[:limit_train], y[:limit_train]), (x[limit_train:], y[limit_train:]), note


def build_model(config: dict, input_shape, num_classes: int):
    from flax import nnx

    return MODELS[config["model"]](input_shape=tuple(input_shape), num_classes=num_classes,
                                   rngs=nnx.Rngs(config["seed"]))


def read_config(workdir: str | os.PathLike) -> dict:
    path = Path(workdir) / "config.json"
    if not path.exists():
        fail(f"{path} not found: --workdir must be a run directory written by experiments/mnist.py.")
    return json.loads(path.read_text())


def write_json(path: str | os.PathLike, value) -> None:
    """Writes JSON atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def as_records(epochs):
    return [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items()} for e in epochs]


def class_names(dataset: str, num_classes: int):
    names = CLASS_NAMES.get(dataset)
    return names if names and len(names) == num_classes else [str(i) for i in range(num_classes)]


def num_classes(dataset: str, **splits: np.ndarray) -> int:
    """The dataset's class count (10 for the MNIST family and CIFAR-10; for other datasets, the
    largest label + 1); stops with a one-line error naming the first label outside it."""
    names = CLASS_NAMES.get(dataset)
    if names is None:
        return int(max(np.max(y) for y in splits.values())) + 1
    for split, labels in splits.items():
        bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
        if len(bad):
            fail(f"label {labels[bad[0]]} at index {bad[0]} of the {split} split is not one of {dataset}'s "
                 f"{len(names)} classes (0-{len(names) - 1}): the data is damaged or is not {dataset}.")
    return len(names)
