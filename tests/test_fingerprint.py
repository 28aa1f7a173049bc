"""cnnjax.train._fingerprint: what a checkpoint records of its run, and resume compares."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train import _fingerprint as fingerprint
from cnnjax.train import rmsprop

BUILDS = {  # each built twice below: equal builds must agree, every pair of entries differ
    "adam 1e-3": lambda: optax.adam(1e-3),
    "adam 1e-4": lambda: optax.adam(1e-4),
    "adam b1 0.8": lambda: optax.adam(1e-3, b1=0.8),
    "adamw wd 1e-4": lambda: optax.adamw(1e-3, weight_decay=1e-4),
    "adamw wd 1e-2": lambda: optax.adamw(1e-3, weight_decay=1e-2),
    "sgd": lambda: optax.sgd(0.1),
    "sgd momentum": lambda: optax.sgd(0.1, momentum=0.9),
    "clipped adam": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)),
    "clipped 2 adam": lambda: optax.chain(optax.clip_by_global_norm(2.0), optax.adam(1e-3)),
    "decay 0.5": lambda: optax.adam(optax.exponential_decay(1e-3, 100, 0.5)),
    "decay 0.9": lambda: optax.adam(optax.exponential_decay(1e-3, 100, 0.9)),
    "rmsprop": lambda: rmsprop(),
    "rmsprop 2e-3": lambda: rmsprop(2e-3),
    "mse x2": lambda: (lambda o, t: jnp.mean((o - t) ** 2, -1) * 2.0),
    "mse x3": lambda: (lambda o, t: jnp.mean((o - t) ** 2, -1) * 3.0),
    "mae": lambda: (lambda o, t: jnp.mean(jnp.abs(o - t), -1) * 2.0),
}

_CHILD = """
import json, sys
sys.path.insert(0, {here!r})
from test_fingerprint import BUILDS
from cnnjax.train import _fingerprint as fingerprint
print(json.dumps({{k: fingerprint.identity(b()) for k, b in BUILDS.items()}}))
"""


def test_identity_tells_optimizers_and_losses_apart_and_equal_builds_alike():
    first = {k: fingerprint.identity(b()) for k, b in BUILDS.items()}
    second = {k: fingerprint.identity(b()) for k, b in BUILDS.items()}
    assert first == second
    assert len(set(first.values())) == len(BUILDS)


@pytest.mark.slow
def test_identity_is_the_same_in_another_process_with_another_hash_seed():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONHASHSEED="12345", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _CHILD.format(here=here)], env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {k: fingerprint.identity(b()) for k, b in BUILDS.items()}


class Rows:
    """A random-access source that is not a NumPy array (as h5py or zarr give)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.reads = 0

    def __getitem__(self, index):
        self.reads += len(np.atleast_1d(index))
        return self.array[index]


def test_data_digest_sees_every_pixel_of_an_array_and_samples_a_source(tmp_path):
    x = np.random.default_rng(0).random((3000, 4, 4, 1), dtype=np.float32)
    y = np.arange(3000, dtype=np.int32) % 10
    base = fingerprint.data_digest(x, y)
    assert fingerprint.data_digest(x.copy(), y.copy()) == base
    changed = x.copy()
    changed[1234, 2, 3, 0] += 1e-6  # one pixel of one row
    assert fingerprint.data_digest(changed, y) != base
    assert fingerprint.data_digest(x, np.roll(y, 1)) != base
    assert fingerprint.data_digest(x[:, :, :, 0][..., None].astype(np.float64), y) != base  # dtype
    np.save(tmp_path / "x.npy", x)
    assert fingerprint.data_digest(np.load(tmp_path / "x.npy", mmap_mode="r"), y) == base  # a memory map: its array
    source = Rows(x)
    sampled = fingerprint.data_digest(source, y)
    assert source.reads == fingerprint.SAMPLED_ROWS
    assert fingerprint.data_digest(Rows(np.roll(x, 1, axis=0)), y) != sampled


def test_differences_name_settings_with_values_and_digests_by_name():
    recorded = {"batch_size": 64, "seed": 0, "data": "a" * 64, "optimizer": "b" * 64}
    current = {"batch_size": 32, "seed": 0, "data": "c" * 64, "optimizer": "b" * 64, "loss": "d" * 64}
    assert fingerprint.differences(recorded, current) == ["batch_size (64 -> 32)", "data (another data)"]
