"""The lecture's X's and O's, end to end: hand-made features, then learned ones.

1. The walk-through: the 9x9 X through conv -> ReLU -> max pool -> max pool with the
   lecture's three hand-made 3x3 features, printed as the slides print them (values
   cut to two decimals) and drawn as pictures.
2. The "trickier cases" as a generated dataset: X's and O's shifted, scaled, rotated
   and drawn with thicker strokes (+1 ink on -1 background, 9x9).
3. ``xo_net`` trained from random filters on mildly varied X's and O's; its accuracy
   on each trickier case separately; its learned filters next to the hand-made ones.
4. Backpropagation: for the walked-through image at batch size 1, through the lecture's
   features and a dense layer as initialised (the start of training), the slide's table
   (prediction, right answer, error = predicted - right) and the gradient that the
   error sends back into each of the three features.

Runs offline in seconds on a laptop CPU. Writes to ``--workdir`` (default
``runs/xo-<time>``): ``lecture_maps.png``, ``trickier_cases.png``, ``filters.png``,
``learning_curves.png``, ``backpropagation.png``, ``metrics.json``, ``results.json``.

Run: ``python experiments/xo.py``
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
from common import RunConfig, expect_int, flag, lazy, parse, pictures_flag, provenance, run_directory

# JAX, flax and cnnjax load when first used: --help and a bad flag answer at once
jax = lazy("jax")
jnp = lazy("jax.numpy")
nnx = lazy("flax.nnx")
cnnjax = lazy("cnnjax")
lecture = lazy("cnnjax.lecture")
models = lazy("cnnjax.models")
synthetic = lazy("cnnjax.synthetic")
train = lazy("cnnjax.train")
viz = lazy("cnnjax.viz")


SHOWN_PER_CASE = 6  # images per trickier case in trickier_cases.png


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The X's and O's experiment's settings: every field is a flag (``--train-size``)."""

    image: Literal["x", "o"] = flag("x", "the lecture's image to walk through")
    train_size: int = flag(2000, "mildly varied X's and O's to train xo_net on")
    test_size: int = flag(400, f"images per trickier case (at least {SHOWN_PER_CASE}, the picture shows as many)")
    epochs: int = flag(30, "passes over the training images")
    seed: int = flag(0, "seed of the data and the initial weights, 0 <= seed < 2**32")
    workdir: str | None = flag(None, "where the pictures and results go (default runs/xo-<time>)")
    pictures: bool = pictures_flag()

    def __post_init__(self):
        super().__post_init__()
        expect_int(self.train_size, "train_size", low=2)
        expect_int(self.test_size, "test_size", low=SHOWN_PER_CASE)
        expect_int(self.epochs, "epochs")
        expect_int(self.seed, "seed", low=0, high=2**32 - 1 - len(synthetic.CASES))


def format_map(values: np.ndarray) -> str:
    """A 2D map as the lecture prints it: each value truncated to two decimals."""
    return "\n".join("  ".join(f"{v:5.2f}" for v in row) for row in lecture.as_printed(values))


def walkthrough(image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each stage of the lecture's pipeline for one image (default the lecture's X), as
    ``(H, W, 3)`` arrays."""
    x = lecture.batch(lecture.X_IMAGE if image is None else image)
    response = cnnjax.conv(x, lecture.features(), normalize=True)
    rectified = cnnjax.relu(response)
    pooled = cnnjax.maxpool(rectified, window=2, stride=2, ceil_mode=True)
    stacked = cnnjax.maxpool(pooled, window=2, stride=2)
    return {
        "Convolution: response maps (9x9 -> 7x7)": np.asarray(response[0]),
        "ReLU: no negative values": np.asarray(rectified[0]),
        "Max pooling 2x2, stride 2, ceiling of 7/2 (7x7 -> 4x4)": np.asarray(pooled[0]),
        "Deep stacking: pooled again (4x4 -> 2x2)": np.asarray(stacked[0]),
    }


def print_walkthrough(image: np.ndarray, name: str) -> dict[str, np.ndarray]:
    print(f"Input: the lecture's 9x9 {name} (+1 ink, -1 background)")
    print("\n".join(" ".join(f"{int(v):2d}" for v in row) for row in image))
    stages = walkthrough(image)
    for title, maps in stages.items():
        print(f"\n== {title}")
        for c, feature in enumerate(lecture.FEATURE_NAMES):
            print(f"-- feature: {feature}")
            print(format_map(maps[:, :, c]))
    return stages


def case_examples_figure(per_case: dict[str, tuple[np.ndarray, np.ndarray]]):
    """The first images of each trickier case, one row per case."""
    grid = np.stack([x[:SHOWN_PER_CASE] for x, _ in per_case.values()])
    titles = [[(f"{case}: " if col == 0 else "") + synthetic.XO_CLASSES[y[col]].upper()
               for col in range(SHOWN_PER_CASE)] for case, (_, y) in per_case.items()]
    return viz.images(grid, titles=titles, title="The trickier cases (test sets)")


def backpropagation(model, image: np.ndarray, label: int) -> dict[str, np.ndarray]:
    """The lecture's backpropagation slide for one image at batch size 1.

    Returns the predicted probabilities, the right answers (one-hot), the error
    ``predicted - right`` and the gradient of the cross-entropy loss with respect to the
    scores (it equals the error: the error is what flows back) and to each first-layer
    feature's weights, ``(3, 3, 1, features)``.
    """
    x, y = lecture.batch(image), np.array([label])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, logits_offset):
        logits = nnx.merge(graphdef, params, rest)(x) + logits_offset
        return cnnjax.sparse_categorical_crossentropy(logits, y), logits

    (d_params, d_logits), logits = jax.grad(loss, argnums=(0, 1), has_aux=True)(params, jnp.zeros((1, 2)))
    predicted = np.asarray(jax.nn.softmax(logits)[0])
    right = np.eye(len(predicted))[label]
    return {"predicted": predicted, "right": right, "error": predicted - right, "d_scores": np.asarray(d_logits[0]),
            "d_features": np.asarray(d_params["layers"][0]["kernel"][...])}


def print_backpropagation(step: dict[str, np.ndarray], name: str) -> None:
    print(f"\n== Backpropagation: one {name}, batch size 1, the lecture's features, the dense layer as initialised. "
          f"Error = predicted answer - right answer")
    print(f"{'answer':8s} {'predicted':>9s} {'right':>6s} {'error':>7s} {'d loss / d score':>17s}")
    for k, cls in enumerate(synthetic.XO_CLASSES):
        print(f"{cls.upper():8s} {step['predicted'][k]:9.2f} {step['right'][k]:6.0f} {step['error'][k]:7.2f} "
              f"{step['d_scores'][k]:17.2f}")
    print("The error flows back into each feature: d loss / d weight, the step gradient descent takes against")
    for c, feature in enumerate(lecture.FEATURE_NAMES):
        print(f"-- feature: {feature}")
        print("\n".join("  ".join(f"{v:7.4f}" for v in row) for row in step["d_features"][:, :, 0, c]))


def pictures(workdir: Path, hand_made, image: np.ndarray, tests, net, epochs: list[dict], step: dict) -> None:
    """The run's pictures: the walk-through's maps, the trickier cases, the lecture's and the
    learned features, the learning curves and the backpropagation slide."""
    fig = viz.response_maps(hand_made, lecture.batch(image), layers=["conv", "max_pool", "max_pool_1"],
                            annotate=True, max_channels=3)
    viz.save(fig, workdir / "lecture_maps.png", dpi=120)
    viz.save(case_examples_figure(tests), workdir / "trickier_cases.png")
    learned = np.asarray(net[0].kernel[...])
    both = np.concatenate([lecture.features(), learned], axis=-1)
    titles = [f"lecture: {n}" for n in lecture.FEATURE_NAMES] + [f"learned {i}" for i in range(learned.shape[-1])]
    viz.save(viz.filters(both, titles=titles, annotate=True, title="The lecture's features and the learned ones"),
             workdir / "filters.png", dpi=120)
    viz.save(viz.learning_curves(epochs), workdir / "learning_curves.png")
    titles = [f"d loss / d {name}" for name in lecture.FEATURE_NAMES]
    viz.save(viz.filters(step["d_features"], titles=titles, annotate=True, value="gradient",
                         title=f"Backpropagation: the error ({step['error'][0]:+.2f} for X) flowing into each feature"),
             workdir / "backpropagation.png", dpi=120)


def main(argv: list[str] | None = None) -> dict:
    args = parse(Config, argv, __doc__.splitlines()[0])
    workdir = Path(args.workdir or os.path.join("runs", f"xo-{datetime.datetime.now():%Y%m%d-%H%M%S}"))
    with run_directory(workdir):  # locked; an OSError (a full disk) is one error line
        return _run_in(args, workdir, argv)


def _run_in(args: Config, workdir: Path, argv: list[str] | None = None) -> dict:
    """The run itself, in ``workdir`` (locked by the caller)."""
    # 1. The walk-through, with the lecture's hand-made features.
    image = lecture.X_IMAGE if args.image == "x" else lecture.O_IMAGE
    stages = print_walkthrough(image, args.image.upper())
    hand_made = models.xo_net(lecture_features=True, rngs=nnx.Rngs(args.seed))

    # 2. The trickier cases.
    train_set = synthetic.xo_dataset(args.train_size, "mixed", seed=args.seed, strength="train")
    tests = {case: synthetic.xo_dataset(args.test_size, case, seed=args.seed + 1 + i)
             for i, case in enumerate(synthetic.CASES)}

    # 3. Learn the features from random ones.
    net = models.xo_net(rngs=nnx.Rngs(args.seed))
    history = train.fit(net, train_set, epochs=args.epochs, batch_size=32, validation=tests["clean"],
                        optimizer=train.rmsprop(1e-2), seed=args.seed, verbose=args.verbose)
    accuracy = {case: train.evaluate(net, data)["accuracy"] for case, data in tests.items()}
    print(f"\n== xo_net trained from random filters: {args.train_size} mildly varied X's and O's, "
          f"{args.epochs} epochs, {history.epochs[-1]['seconds']:.2f}s an epoch")
    print(f"{'case':12s} {'accuracy':>8s}")
    for case, acc in accuracy.items():
        print(f"{case:12s} {acc:8.3f}")
    (workdir / "metrics.json").write_text(json.dumps(history.epochs, indent=2) + "\n")

    # 4. Backpropagation, for the image of the walk-through, into the lecture's features (the
    #    dense layer still as initialised, as at the start of training: the error is not yet 0).
    step = backpropagation(hand_made, image, synthetic.XO_CLASSES.index(args.image))
    print_backpropagation(step, args.image.upper())
    if args.pictures:
        pictures(workdir, hand_made, image, tests, net, history.epochs, step)
    results = {"accuracy": accuracy, "train_size": args.train_size, "test_size_per_case": args.test_size,
               "epochs": args.epochs, "seconds": sum(e["seconds"] for e in history.epochs),
               "run": provenance("xo.py", argv)}
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'pictures and results' if args.pictures else 'results'} in {workdir}")
    return {"stages": stages, **results, "backpropagation": step, "workdir": str(workdir)}


if __name__ == "__main__":
    main()
