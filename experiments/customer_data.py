"""Customer data? Not for CNN: a CNN needs neighbours, a dense network does not care.

The lecture's rule of thumb: "if your data is just as useful after swapping any of your
columns with each other, then you can't use CNN". This script makes MNIST-style images
into such data by one fixed random permutation of the pixels (the same for every image,
train and test) and trains, on the images as they are and on the permuted ones:

- the lecture's CNN (``mnist_functional``, 104,202 parameters);
- a dense network of similar size (784 -> 128 -> 10, 101,770 parameters); on the
  permuted pixels it starts from the same weights, permuted alongside, so the two
  dense runs compute the same sums in another order.

The dense network's accuracy does not change; the CNN's drops, since the neighbours its
3x3 filters look at are no longer neighbours. Prints a table; writes ``results.json`` and
``permuted_digits.png`` to ``--workdir`` (default ``runs/customer_data-<time>``).

Example::

    python experiments/customer_data.py --data-dir samples/mnist --limit-train 8000
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import numpy as np
from common import (
    TrainingConfig,
    build_model,
    fail,
    flag,
    lazy,
    load_train_test,
    num_classes,
    parse,
    pictures_flag,
    provenance,
    recorded_settings,
    run_directory,
    write_json,
)

# JAX, flax and cnnjax load when first used: --help and a bad flag answer at once
jnp = lazy("jax.numpy")
nnx = lazy("flax.nnx")
nn = lazy("cnnjax.nn")
train = lazy("cnnjax.train")
viz = lazy("cnnjax.viz")



@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    """The customer-data experiment's settings: every field is a flag."""

    dataset: str = flag("mnist", "a tensorflow-datasets name of the MNIST family (mnist, fashion_mnist, kmnist)")
    epochs: int = flag(5, "passes over the training images, for each of the four models")
    seed: int = flag(0, "seed of the permutation, the initial weights and the data order, 0 <= seed < 2**32")
    workdir: str | None = flag(None, "where the results and the picture go (default runs/customer_data-<time>)")
    pictures: bool = pictures_flag()


def dense_network(input_shape, num_classes: int, *, rngs: nnx.Rngs) -> nn.Sequential:
    """Flatten, 128 ReLU units, ``num_classes`` scores: every pixel votes on every unit."""
    pixels = int(np.prod(input_shape))
    return nn.Sequential(nn.Flatten(), nn.Dense(pixels, 128, activation="relu", rngs=rngs),
                         nn.Dense(128, num_classes, rngs=rngs))


def permute(images: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Every image's pixels (and their channels together) moved by the same ``permutation``."""
    n, h, w, c = images.shape
    return images.reshape(n, h * w, c)[:, permutation].reshape(n, h, w, c)


def follow_pixels(dense: nn.Sequential, permutation: np.ndarray, channels: int) -> nn.Sequential:
    """Reorders the first dense layer's rows in place so that, on permuted images, it computes
    what it computed on the original ones (input ``j`` of a permuted image is pixel
    ``permutation[j]``, so its row is that pixel's row)."""
    rows = (permutation[:, None] * channels + np.arange(channels)).reshape(-1)
    dense[1].kernel[...] = jnp.asarray(dense[1].kernel[...])[rows]
    return dense


def run(config: Config, argv: list[str] | None = None) -> dict:
    """Trains and tests the four models; returns the results (``results.json``) with the run's
    record (:func:`common.provenance`: ``argv`` is the command's flags, default ``sys.argv``)."""
    config.check_paths()
    (x, y), (tx, ty), note = load_train_test(config.dataset, config.data_dir, config.limit_train)
    if note:
        print(note)
    if x.ndim != 4:
        fail(f"expected images (N, H, W, C), got shape {x.shape}.")
    k = num_classes(config.dataset, train=y, test=ty)
    workdir = Path(config.workdir or os.path.join("runs", f"customer_data-{datetime.datetime.now():%Y%m%d-%H%M%S}"))
    with run_directory(workdir):  # locked; an OSError (a full disk) is one error line
        return _run_in(config, k, x, y, tx, ty, note, workdir, argv)


def _run_in(config: Config, k, x, y, tx, ty, note, workdir: Path, argv: list[str] | None = None) -> dict:
    """The run itself, in ``workdir`` (locked by the caller)."""
    permutation = np.random.default_rng(config.seed).permutation(x.shape[1] * x.shape[2])
    arrangements = {"as they are": (x, tx), "pixels permuted": (permute(x, permutation), permute(tx, permutation))}

    def models_for(arrangement):
        cnn = build_model("functional", config.seed, x.shape[1:], k)
        dense = dense_network(x.shape[1:], k, rngs=nnx.Rngs(config.seed))
        if arrangement == "pixels permuted":
            follow_pixels(dense, permutation, x.shape[-1])
        return {"CNN (lecture, 104,202 params)": cnn, "dense (784-128-10, 101,770 params)": dense}

    results = {}
    for arrangement, (train_x, test_x) in arrangements.items():
        for name, model in models_for(arrangement).items():
            train.fit(model, (train_x, y), epochs=config.epochs, batch_size=config.batch_size,
                      optimizer=train.rmsprop(config.learning_rate), seed=config.seed, verbose=config.verbose)
            correct = int((train.predict(model, test_x).argmax(-1) == ty).sum())
            results.setdefault(name, {})[arrangement] = {"accuracy": correct / len(ty), "correct": correct,
                                                         "total": int(len(ty))}
    print(f"\n{len(y)} training and {len(ty)} test images of {config.dataset}, {config.epochs} epochs\n")
    print(f"{'model':36s} {'as they are':>22s} {'pixels permuted':>22s}")
    for name, row in results.items():
        cells = [f"{r['accuracy']:.4f} ({r['correct']}/{r['total']})" for r in row.values()]
        print(f"{name:36s} {cells[0]:>22s} {cells[1]:>22s}")
    if config.pictures:
        shown = np.stack([tx[:6], permute(tx[:6], permutation)])
        titles = [[f"{ty[i]}" for i in range(6)], [f"{ty[i]}, permuted" for i in range(6)]]
        viz.save(viz.images(shown[..., 0], titles=titles, cmap="gray",
                            title="The same digits, before and after one fixed permutation of the pixels"),
                 workdir / "permuted_digits.png")
    write_json(workdir / "results.json", {"config": recorded_settings(config), "note": note, "results": results,
                                          "run": provenance("customer_data.py", argv)})
    print(f"\nresults{' and picture' if config.pictures else ''} in {workdir}")
    return results


def main(argv: list[str] | None = None) -> dict:
    return run(parse(Config, argv, __doc__.splitlines()[0]), argv)


if __name__ == "__main__":
    main()
