"""Hyperparameters (knobs): turn each of the lecture's knobs around its MNIST CNN, one at a time.

The lecture's last slide lists what a designer chooses: the number and size of the
features, the pooling window and stride, the number of neurons, the number of conv
layers. Each is swept here around the lecture's Functional model (three 3x3 conv layers
of 32, 64 and 128 features, 2x2 max pools after the first two, a dense output layer),
everything else held, and each setting is trained the same way and measured: test
accuracy, parameters, forward FLOPs per image, training images/s.

Writes ``results.json`` and ``knobs.png`` (one panel per knob) to ``--workdir`` (default
``runs/knobs-<time>``) and prints a table.

Example::

    python experiments/knobs.py --data-dir samples/mnist --limit-train 8000
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import numpy as np
from common import (
    TrainingConfig,
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
jax = lazy("jax")
jnp = lazy("jax.numpy")
nnx = lazy("flax.nnx")
cnnjax = lazy("cnnjax")
nn = lazy("cnnjax.nn")
train = lazy("cnnjax.train")
viz = lazy("cnnjax.viz")



@dataclasses.dataclass(frozen=True)
class Design:
    """One CNN of the sweep; the defaults are the lecture's Functional model."""

    features: int = 32  # the first conv layer's; each later layer doubles them
    feature_size: int = 3
    pool_window: int = 2
    pool_stride: int = 2
    neurons: int = 0  # a hidden dense layer of this many ReLU units before the output (0: none)
    conv_layers: int = 3  # max pools follow the first two


LECTURE = Design()
SWEEPS: dict[str, tuple[str, list]] = {
    "number of features": ("features", [8, 16, 32, 64]),
    "size of features": ("feature_size", [2, 3, 4]),
    "pooling window / stride": ("pool", [(1, 1), (2, 1), (2, 2), (3, 2)]),
    "number of neurons": ("neurons", [0, 32, 64, 128, 256]),
    "number of conv layers": ("conv_layers", [1, 2, 3, 4]),
}


def build(design: Design, input_shape, num_classes: int, *, rngs: nnx.Rngs) -> nn.Sequential:
    """The CNN ``design`` describes, from cnnjax's layers."""
    layers: list = []
    channels = input_shape[-1]
    for i in range(design.conv_layers):
        out = design.features * 2**i
        layers.append(nn.Conv(channels, out, design.feature_size, activation="relu", rngs=rngs))
        if i < 2 and design.pool_window > 1:
            layers.append(nn.MaxPool(design.pool_window, design.pool_stride))
        channels = out
    layers.append(nn.Flatten())
    try:
        flat = jax.eval_shape(nn.Sequential(*layers), jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)).shape[-1]
    except ValueError as e:
        raise ValueError(f"{design} does not fit a {input_shape} image: {str(e).splitlines()[0]}") from None
    if design.neurons:
        layers.append(nn.Dense(flat, design.neurons, activation="relu", rngs=rngs))
        flat = design.neurons
    return nn.Sequential(*layers, nn.Dense(flat, num_classes, rngs=rngs))


def settings() -> list[tuple[str, object, Design]]:
    """``(knob, value, design)`` for every point of every sweep."""
    out = []
    for knob, (field, values) in SWEEPS.items():
        for value in values:
            if field == "pool":
                design = dataclasses.replace(LECTURE, pool_window=value[0], pool_stride=value[1])
            else:
                design = dataclasses.replace(LECTURE, **{field: value})
            out.append((knob, value, design))
    return out


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    """The knobs experiment's settings: every field is a flag."""

    epochs: int = flag(3, "passes over the training images, for every setting")
    workdir: str | None = flag(None, "where the results and the picture go (default runs/knobs-<time>)")
    pictures: bool = pictures_flag()


def measure(design: Design, data, config: Config, k: int) -> dict:
    (x, y), (tx, ty) = data
    model = build(design, x.shape[1:], k, rngs=nnx.Rngs(config.seed))
    table = cnnjax.summary(model, x.shape[1:])
    history = train.fit(model, (x, y), epochs=config.epochs, batch_size=config.batch_size,
                        optimizer=train.rmsprop(config.learning_rate), seed=config.seed, verbose=config.verbose)
    correct = int((train.predict(model, tx).argmax(-1) == ty).sum())
    steady = history.epochs[1:] or history.epochs  # the first epoch includes compilation
    return {"accuracy": correct / len(ty), "correct": correct, "total": int(len(ty)), "params": table.total_params,
            "flops": table.total_flops, "images_per_s": float(np.mean([e["images_per_s"] for e in steady]))}


def plot(rows: list[dict]):
    fig = viz.figure(3.2 * len(SWEEPS), 3.0)
    axes = fig.subplots(1, len(SWEEPS), sharey=True)  # one accuracy scale: the knobs compare
    low, high = min(r["accuracy"] for r in rows), max(r["accuracy"] for r in rows)
    axes[0].set_ylim(low - 0.1 * (high - low) - 1e-3, high + 0.15 * (high - low) + 1e-3)
    for ax, knob in zip(axes, SWEEPS, strict=True):
        points = [r for r in rows if r["knob"] == knob]
        labels = [str(r["value"]) for r in points]
        ax.plot(labels, [r["accuracy"] for r in points], "o-", color="C0")
        ax.set_xlabel(knob)
        ax.set_ylabel("test accuracy", color="C0")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(labels, [r["params"] for r in points], "s--", color="C1")
        twin.set_yscale("log")
        twin.set_ylabel("parameters", color="C1")
        for r, label in zip(points, labels, strict=True):
            if r["design"] == dataclasses.asdict(LECTURE):
                ax.annotate("lecture", (label, r["accuracy"]), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=7)
    fig.suptitle("The lecture's knobs, one at a time (accuracy: line; parameters: dashed, log scale)", fontsize=9)
    return fig


def run(config: Config, argv: list[str] | None = None) -> list[dict]:
    """Trains and measures every setting; returns the rows (``results.json`` holds them with the
    run's record, :func:`common.provenance`: ``argv`` is the command's flags, default ``sys.argv``)."""
    config.check_paths()
    (x, y), test, note = load_train_test(config.dataset, config.data_dir, config.limit_train)
    if note:
        print(note)
    k = num_classes(config.dataset, train=y, test=test[1])
    workdir = Path(config.workdir or os.path.join("runs", f"knobs-{datetime.datetime.now():%Y%m%d-%H%M%S}"))
    with run_directory(workdir):  # locked; an OSError (a full disk) is one error line
        return _run_in(config, k, x, y, test, note, workdir, argv)


def _run_in(config: Config, k, x, y, test, note, workdir: Path, argv: list[str] | None = None) -> list[dict]:
    """The run itself, in ``workdir`` (locked by the caller)."""
    measured: dict[Design, dict] = {}
    rows = []
    print(f"{'knob':26s} {'value':>8s} {'accuracy':>18s} {'params':>10s} {'MFLOPs':>8s} {'images/s':>9s}")
    for knob, value, design in settings():
        if design not in measured:  # the lecture's design is a point of every sweep: trained once
            measured[design] = measure(design, ((x, y), test), config, k)
        r = {"knob": knob, "value": value, "design": dataclasses.asdict(design), **measured[design]}
        rows.append(r)
        print(f"{knob:26s} {str(value):>8s} {r['accuracy']:.4f} ({r['correct']:>4d}/{r['total']}) {r['params']:>10,} "
              f"{r['flops'] / 1e6:8.2f} {r['images_per_s']:9,.0f}")
    if config.pictures:
        viz.save(plot(rows), workdir / "knobs.png")
    write_json(workdir / "results.json", {"config": recorded_settings(config), "note": note, "rows": rows,
                                          "run": provenance("knobs.py", argv)})
    print(f"\nresults{' and picture' if config.pictures else ''} in {workdir}")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    return run(parse(Config, argv, __doc__.splitlines()[0]), argv)


if __name__ == "__main__":
    main()
