"""Three public tutorials' CNNs ported onto cnnjax, trained beside their originals on the same data.

- **Flax NNX's MNIST tutorial**: conv(32) -> relu -> avg_pool -> conv(64) -> relu ->
  avg_pool -> flatten -> linear(256) -> relu -> linear(10), trained with its own loop
  (``nnx.Optimizer``, ``optax.adamw(0.005, 0.9)``, batches of 32). Flax pads ``SAME`` and
  its layouts are cnnjax's: the port is ``nn.Conv(..., padding="SAME")`` and the weights
  copy over as they are.
- **Equinox's "CNN on MNIST"**: conv(3, 4x4) -> max_pool(2, stride 1) -> relu -> ravel ->
  linear(512) -> sigmoid -> linear(64) -> relu -> linear(10), channels first, trained with
  its own loop (``eqx.filter_value_and_grad``, ``optax.adamw(3e-4)``, batches of 64). The
  weights load with :func:`cnnjax.models.load_equinox_weights`.
- **Keras' "Simple MNIST convnet"** (when Keras is installed: ``pip install keras``; it
  runs on the JAX backend): conv(32) -> max_pool -> conv(64) -> max_pool -> flatten ->
  dropout(0.5) -> dense(10), Adam, batches of 128, trained with ``model.fit``. The
  weights load with :func:`cnnjax.models.load_keras_weights`; Dropout draws its own masks
  on each side, so these two runs differ by more than rounding.

Each port starts from its original's initial weights and trains with ``cnnjax.train.fit``
on the very batches the original trains on, in its order (a stream of batches), with the
same optimizer. Both are then scored on the same test images. What differs is float
rounding in two programs: after one step the weights agree to 1e-7, and over hundreds of
steps at the Flax tutorial's learning rate (0.005) the rounding grows into a different
run, as a second seed would (compare several ``--seed``). Prints a table; writes ``results.json`` to ``--workdir``
(default ``runs/ports-<time>``).

Example::

    python experiments/ports.py --data-dir samples/mnist --limit-train 8000 --steps 600
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import TrainingConfig, expect_int, flag, load_train_test, parse, run_directory, write_json
from flax import nnx

import cnnjax
from cnnjax import models, nn, train


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    """The ports' settings: every field is a flag (``epochs``, ``batch_size`` and
    ``learning_rate`` are the tutorials' own, per port)."""

    steps: int = flag(600, "optimizer steps for every model, original and port")
    workdir: str | None = flag(None, "where results.json goes (default runs/ports-<time>)")

    def __post_init__(self):
        super().__post_init__()
        expect_int(self.steps, "steps")


class FlaxCNN(nnx.Module):
    """The Flax NNX MNIST tutorial's CNN, as the tutorial writes it."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.avg_pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.conv1(x)))
        x = self.avg_pool(nnx.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        return self.linear2(nnx.relu(self.linear1(x)))


def flax_port(original: FlaxCNN) -> nn.Sequential:
    """The same network in cnnjax, holding the original's weights."""
    rngs = nnx.Rngs(0)
    port = nn.Sequential(nn.Conv(1, 32, 3, padding="SAME", activation="relu", rngs=rngs), nn.AvgPool(2),
                         nn.Conv(32, 64, 3, padding="SAME", activation="relu", rngs=rngs), nn.AvgPool(2), nn.Flatten(),
                         nn.Dense(3136, 256, activation="relu", rngs=rngs), nn.Dense(256, 10, rngs=rngs))
    for ours, theirs in zip([port[0], port[2], port[5], port[6]],
                            [original.conv1, original.conv2, original.linear1, original.linear2], strict=True):
        ours.kernel[...], ours.bias[...] = theirs.kernel[...], theirs.bias[...]
    return port


def train_flax(model: FlaxCNN, x, y, steps: int, seed: int) -> None:
    """The tutorial's loop: ``nnx.Optimizer`` over ``optax.adamw(0.005, 0.9)``, batches of 32."""
    optimizer = nnx.Optimizer(model, optax.adamw(0.005, 0.9), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, images, labels):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(images), labels).mean()

        grads = nnx.grad(loss_fn)(model)
        optimizer.update(model, grads)

    for images, labels in _batches(x, y, 32, steps, seed):
        step(model, optimizer, images, labels)


class PytorchMnist(nnx.Module):
    """pytorch/examples' ``mnist/main.py`` ``Net``, ported line for line (channels last): the
    functional max pool and flatten of its ``forward`` stay functions. It returns logits:
    ``F.log_softmax`` then ``F.nll_loss`` is the cross-entropy ``fit`` takes by default."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.input_shape = (28, 28, 1)
        self.conv1 = nn.Conv(1, 32, 3, rngs=rngs)
        self.conv2 = nn.Conv(32, 64, 3, rngs=rngs)
        self.dropout1 = nn.Dropout(0.25, rngs=rngs)
        self.dropout2 = nn.Dropout(0.5, rngs=rngs)
        self.fc1 = nn.Dense(9216, 128, rngs=rngs)
        self.fc2 = nn.Dense(128, 10, rngs=rngs)

    def __call__(self, x):
        x = cnnjax.relu(self.conv1(x))
        x = cnnjax.maxpool(cnnjax.relu(self.conv2(x)), 2)
        x = cnnjax.flatten(self.dropout1(x))
        x = self.dropout2(cnnjax.relu(self.fc1(x)))
        return self.fc2(x)


def pytorch_mnist(rngs: nnx.Rngs) -> PytorchMnist:
    return PytorchMnist(rngs=rngs)


def equinox_cnn(key):
    """Equinox's "CNN on MNIST" network, as its tutorial writes it."""
    import equinox as eqx

    class CNN(eqx.Module):
        layers: list

        def __init__(self, key):
            key1, key2, key3, key4 = jax.random.split(key, 4)
            self.layers = [eqx.nn.Conv2d(1, 3, kernel_size=4, key=key1), eqx.nn.MaxPool2d(kernel_size=2), jax.nn.relu,
                           jnp.ravel, eqx.nn.Linear(1728, 512, key=key2), jax.nn.sigmoid,
                           eqx.nn.Linear(512, 64, key=key3), jax.nn.relu, eqx.nn.Linear(64, 10, key=key4),
                           jax.nn.log_softmax]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    return CNN(key)


def equinox_port(original) -> nn.Sequential:
    rngs = nnx.Rngs(0)
    port = nn.Sequential(nn.Conv(1, 3, 4, rngs=rngs), nn.MaxPool(2, stride=1), nn.ReLU(), nn.Flatten(),
                         nn.Dense(1728, 512, activation=jax.nn.sigmoid, rngs=rngs),
                         nn.Dense(512, 64, activation="relu", rngs=rngs), nn.Dense(64, 10, rngs=rngs))
    return models.load_equinox_weights(port, original, input_shape=(28, 28, 1))


def train_equinox(model, x, y, steps: int, seed: int):
    """The tutorial's loop: ``eqx.filter_value_and_grad``, ``optax.adamw(3e-4)``, batches of 64,
    channels-first images; returns the trained model (Equinox models are immutable)."""
    import equinox as eqx

    optim = optax.adamw(3e-4)
    opt_state = optim.init(eqx.filter(model, eqx.is_array))

    def loss(model, images, labels):
        log_p = jax.vmap(model)(images)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))

    @eqx.filter_jit
    def step(model, opt_state, images, labels):
        grads = eqx.filter_grad(loss)(model, images, labels)
        updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state

    for images, labels in _batches(x, y, 64, steps, seed):
        model, opt_state = step(model, opt_state, jnp.moveaxis(images, -1, 1), labels)
    return model


def keras_convnet(seed: int):
    """Keras' "Simple MNIST convnet", as its example writes it (None without Keras)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)), keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)), keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)), keras.layers.Flatten(), keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def keras_port(original, seed: int) -> nn.Sequential:
    rngs = nnx.Rngs(0, dropout=seed)
    port = nn.Sequential(nn.Conv(1, 32, 3, activation="relu", rngs=rngs), nn.MaxPool(2),
                         nn.Conv(32, 64, 3, activation="relu", rngs=rngs), nn.MaxPool(2), nn.Flatten(),
                         nn.Dropout(0.5, rngs=rngs), nn.Dense(1600, 10, rngs=rngs))
    return models.load_keras_weights(port, original.get_weights(), input_shape=(28, 28, 1))


def _batches(x, y, batch_size: int, steps: int, seed: int):
    """``steps`` shuffled batches, epoch after epoch (the originals' own data order)."""
    if len(x) < batch_size:
        raise ValueError(f"{len(x)} training images are fewer than a batch of {batch_size}.")
    rng, done = np.random.default_rng(seed), 0
    while True:
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            if done == steps:
                return
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
            done += 1


def accuracy(logits, labels) -> float:
    return float(np.mean(np.asarray(logits).argmax(-1) == labels))


def run(config: Config) -> dict:
    (x, y), (tx, ty), note = load_train_test(config.dataset, config.data_dir, config.limit_train)
    if note:
        print(note)
    workdir = Path(config.workdir or os.path.join("runs", f"ports-{datetime.datetime.now():%Y%m%d-%H%M%S}"))
    with run_directory(workdir):  # locked; an OSError (a full disk) is one error line
        return _run_in(config, x, y, tx, ty, workdir)


def _run_in(config: Config, x, y, tx, ty, workdir: Path) -> dict:
    """Both tutorials, original and port, in ``workdir`` (locked by the caller)."""
    results = {}
    def fit(model, batch_size, optimizer):  # the originals' batches, in their order: a stream
        batches = _batches(x, y, batch_size, config.steps, config.seed)
        train.fit(model, batches, steps=config.steps, steps_per_epoch=config.steps, optimizer=optimizer,
                  verbose=config.verbose)

    original = FlaxCNN(rngs=nnx.Rngs(config.seed))
    port = flax_port(original)
    t0 = time.perf_counter()
    train_flax(original, x, y, config.steps, config.seed)
    t1 = time.perf_counter()
    fit(port, 32, optax.adamw(0.005, 0.9))
    t2 = time.perf_counter()
    results["Flax NNX MNIST tutorial"] = {"original": accuracy(original(tx), ty), "cnnjax": accuracy(
        train.predict(port, tx), ty), "original_s": t1 - t0, "cnnjax_s": t2 - t1}

    original = equinox_cnn(jax.random.key(config.seed))
    port = equinox_port(original)
    t0 = time.perf_counter()
    original = train_equinox(original, x, y, config.steps, config.seed)
    t1 = time.perf_counter()
    fit(port, 64, optax.adamw(3e-4))
    t2 = time.perf_counter()
    results["Equinox CNN on MNIST"] = {"original": accuracy(jax.vmap(original)(jnp.moveaxis(tx, -1, 1)), ty),
                                       "cnnjax": accuracy(train.predict(port, tx), ty),
                                       "original_s": t1 - t0, "cnnjax_s": t2 - t1}

    original = keras_convnet(config.seed)
    if original is None:
        print("Keras is not installed (pip install keras): its convnet is skipped.")
    else:
        port = keras_port(original, config.seed)
        epochs = max(1, round(config.steps * 128 / len(x)))  # about as many steps, in whole epochs
        t0 = time.perf_counter()
        original.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
        t1 = time.perf_counter()
        train.fit(port, (x, y), epochs=epochs, batch_size=min(128, len(x)), seed=config.seed,
                  optimizer=optax.adam(1e-3, eps=1e-7), verbose=config.verbose)  # Keras' Adam defaults
        t2 = time.perf_counter()
        results["Keras simple MNIST convnet"] = {
            "original": accuracy(original.predict(tx, verbose=0), ty),
            "cnnjax": accuracy(train.predict(port, tx), ty), "original_s": t1 - t0, "cnnjax_s": t2 - t1}

    print(f"\n{len(y)} training and {len(ty)} test images, {config.steps} steps each\n")
    print(f"{'tutorial':26s} {'original':>9s} {'cnnjax':>9s} {'original s':>11s} {'cnnjax s':>9s}")
    for name, r in results.items():
        print(f"{name:26s} {r['original']:9.4f} {r['cnnjax']:9.4f} {r['original_s']:11.1f} {r['cnnjax_s']:9.1f}")
    write_json(workdir / "results.json", {"config": dataclasses.asdict(config), "results": results})
    print(f"\nresults in {workdir}")
    return results


def main(argv: list[str] | None = None) -> dict:
    return run(parse(Config, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
