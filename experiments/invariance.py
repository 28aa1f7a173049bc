"""How robust is a trained MNIST-style model to the lecture's trickier cases?

Loads the run in ``--workdir`` (written by ``experiments/mnist.py``), transforms its
test images — shift (pixels), rotation (degrees), scale, stroke weight (erosion and
dilation, pixels) — and measures accuracy at each setting. Prints a table and writes
``invariance.json`` and ``invariance.png`` to the run directory.

Example::

    python experiments/mnist.py --data-dir samples/mnist --limit-train 8000 --workdir runs/digits
    python experiments/invariance.py --workdir runs/digits
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from common import (
    build_model,
    expect_int,
    fail,
    flag,
    lazy,
    load_train_test,
    num_classes,
    parse,
    read_config,
    run_directory,
    write_json,
)

# JAX, flax and cnnjax load when first used: --help and a bad flag answer at once
train = lazy("cnnjax.train")
transforms = lazy("cnnjax.transforms")
viz = lazy("cnnjax.viz")


@dataclasses.dataclass(frozen=True)
class Config:
    """Which run to test, on how many images: every field is a flag."""

    workdir: str = flag(help="a run directory written by experiments/mnist.py")
    limit: int = flag(2000, "test images to use")

    def __post_init__(self):
        expect_int(self.limit, "limit")


SWEEPS = {  # each amount, and the transform (called when the sweep runs)
    "shift (pixels)": ([-4, -3, -2, -1, 0, 1, 2, 3, 4], lambda x, v: transforms.shift(x, 0, v)),
    "rotation (degrees)": ([-60, -45, -30, -15, 0, 15, 30, 45, 60], lambda x, v: transforms.rotate(x, v)),
    "scale": ([0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4], lambda x, v: transforms.scale(x, v)),
    "stroke weight (pixels)": ([-1, 0, 1, 2], lambda x, v: transforms.stroke(x, v)),
}


def sweep(model, images, labels, batch_size: int = 500, report=None) -> dict[str, list[tuple[float, float]]]:
    """Each transform's ``[(amount, accuracy), ...]``; ``report(name, row)`` is called as each
    one is done (the first takes the longest: it compiles)."""
    results = {}
    for name, (values, fn) in SWEEPS.items():
        row = []
        for v in values:
            changed = np.concatenate([np.asarray(fn(images[i : i + batch_size], v))
                                      for i in range(0, len(images), batch_size)])
            row.append((v, train.evaluate(model, (changed, labels))["accuracy"]))
        results[name] = row
        if report is not None:
            report(name, row)
    return results


def print_row(name: str, row: list[tuple[float, float]]) -> None:
    print(f"\n{name:>24s}  " + "  ".join(f"{v:>6g}" for v, _ in row))
    print(f"{'accuracy':>24s}  " + "  ".join(f"{a:6.3f}" for _, a in row), flush=True)


def plot(results):
    fig = viz.figure(10, 2.6)
    axes = fig.subplots(1, len(results))
    for ax, (name, row) in zip(axes, results.items(), strict=True):
        ax.plot([v for v, _ in row], [a for _, a in row], "o-")
        ax.set_xlabel(name)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    fig.suptitle("Accuracy under the lecture's trickier cases", fontsize=9)
    return fig


def main(argv: list[str] | None = None) -> dict:
    args = parse(Config, argv, __doc__.splitlines()[0])
    with run_directory(args.workdir) as workdir:  # not while the run trains; a full disk is one error line
        return _run_in(args, workdir)


def _run_in(args: Config, workdir: Path) -> dict:
    """The sweep of the run in ``workdir`` (locked by the caller)."""
    config = read_config(workdir)
    (x, y), (tx, ty), _ = load_train_test(config["dataset"], config["data_dir"], config["limit_train"])
    model = build_model(config["model"], config["seed"], tx.shape[1:], num_classes(config["dataset"], train=y, test=ty))
    try:
        record = train.restore(model, workdir / "checkpoints")
    except FileNotFoundError as e:
        fail(str(e))
    tx, ty = tx[: args.limit], ty[: args.limit]
    print(f"{config['model']} model of {workdir} after {record['epoch']} epochs; {len(tx)} {config['dataset']} "
          f"test images; each transform's accuracies as it is done:", flush=True)
    results = sweep(model, tx, ty, report=print_row)
    write_json(workdir / "invariance.json", {k: [{"value": v, "accuracy": a} for v, a in row]
                                             for k, row in results.items()})
    viz.save(plot(results), workdir / "invariance.png")
    print(f"\nwrote {workdir / 'invariance.json'} and {workdir / 'invariance.png'}")
    return results


if __name__ == "__main__":
    main()
