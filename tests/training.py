"""Small models and data shared by the training tests (tiny shapes: the suite runs on 2 cores)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnnjax import nn


def small_model(seed=0, classes=10):
    """Conv(4, 3x3, relu) -> MaxPool(2) -> Flatten -> Dense(classes), for 10x10x1 inputs."""
    rngs = nnx.Rngs(seed)
    return nn.Sequential(nn.Conv(1, 4, 3, activation="relu", rngs=rngs), nn.MaxPool(2),
                         nn.Flatten(), nn.Dense(4 * 4 * 4, classes, rngs=rngs))


def small_data(n=96, seed=0):
    """10x10x1 images labelled 1 when their top half is brighter than their bottom half."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 10, 10, 1)).astype(np.float32)
    y = (x[:, :5].mean(axis=(1, 2, 3)) > x[:, 5:].mean(axis=(1, 2, 3))).astype(np.int32)
    return x, y


def params_of(model):
    return [np.asarray(a) for a in jax.tree.leaves(nnx.state(model, nnx.Param))]


class DropoutBatchNormNet(nnx.Module):
    """Conv -> BatchNorm -> ReLU -> Dropout -> Dense(2): a model with both kinds of mode."""

    def __init__(self, seed=0, rate=0.3):
        rngs = nnx.Rngs(seed, dropout=seed + 1)
        self.conv = nn.Conv(1, 4, 3, rngs=rngs)
        self.norm = nnx.BatchNorm(4, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(rate, rngs=rngs)
        self.head = nn.Sequential(nn.Flatten(), nn.Dense(8 * 8 * 4, 2, rngs=rngs))

    def __call__(self, x):
        return self.head(self.drop(jax.nn.relu(self.norm(self.conv(x)))))


class CompileCounter:
    """Counts XLA compilations (jax.monitoring's backend-compile events) while ``active``."""

    _instances = []
    _registered = False

    def __init__(self):
        self.count, self.active = 0, False
        CompileCounter._instances.append(self)
        if not CompileCounter._registered:
            jax.monitoring.register_event_duration_secs_listener(CompileCounter._listen)
            CompileCounter._registered = True

    @staticmethod
    def _listen(name, secs, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            for counter in CompileCounter._instances:
                counter.count += counter.active


def finite(tree):
    return all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(tree)
               if jnp.issubdtype(np.asarray(a).dtype, jnp.floating))
