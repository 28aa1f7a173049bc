"""Train the lecture's MNIST CNNs (Keras' Sequential or Functional model) and record the run.

The lecture's settings by default: RMSprop, batch 64, 5 epochs, validation on the test
split. Writes a run directory (``--workdir``, default ``runs/<model>-<dataset>-<time>``):

    config.json          the full configuration
    metrics.json         one object per epoch: epoch, loss, accuracy, val_loss,
                         val_accuracy, seconds, images_per_s (rewritten after every epoch)
    summary.txt          the model summary
    checkpoints/         orbax checkpoints (the final one included)
    results.json         test loss and accuracy, images/s
    learning_curves.png  filters.png  response_maps.png  confusion_matrix.png  saliency.png

Running the same command with the same ``--workdir`` resumes an interrupted run.

Examples::

    python experiments/mnist.py                                   # MNIST from tensorflow-datasets
    python experiments/mnist.py --model functional --data-dir /usr/share/datasets/fashion-mnist \\
        --dataset fashion_mnist
    python experiments/mnist.py --data-dir ../shared/data/mnist --limit-train 8000   # t10k only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    CLASS_NAMES,
    MODELS,
    as_records,
    build_model,
    class_names,
    fail,
    load_train_test,
    num_classes,
    read_config,
    write_json,
)

import cnnjax  # noqa: E402
from cnnjax import summary, train, viz  # noqa: E402

# What must match for a run directory to be resumed (epochs may grow).
RESUMABLE = ("model", "dataset", "data_dir", "batch_size", "learning_rate", "seed", "limit_train")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="functional")
    p.add_argument("--dataset", default=None,
                   help="a tensorflow-datasets name (mnist, fashion_mnist, kmnist, ...); default mnist, or the "
                        "name of the --data-dir folder when it is one of those (e.g. .../fashion-mnist)")
    p.add_argument("--data-dir", default=None, help="a folder of IDX files (offline), or the tfds data_dir")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N training images")
    p.add_argument("--workdir", default=None, help="run directory (default runs/<model>-<dataset>-<time>)")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    return p.parse_args(argv)


def dataset_name(args: argparse.Namespace) -> str:
    if args.dataset:
        return args.dataset
    folder = os.path.basename(os.path.normpath(args.data_dir or "")).lower().replace("-", "_")
    return folder if folder in CLASS_NAMES else "mnist"


def make_config(args: argparse.Namespace) -> dict:
    args.dataset = dataset_name(args)
    workdir = args.workdir or os.path.join(
        "runs", f"{args.model}-{args.dataset}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    return {
        "model": args.model, "dataset": args.dataset,
        "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "seed": args.seed, "limit_train": args.limit_train, "workdir": os.path.abspath(workdir),
        "optimizer": "rmsprop (rho 0.9, epsilon 1e-7 outside the square root)",
        "cnnjax": cnnjax.__version__, "jax": jax.__version__, "backend": jax.default_backend(),
        "devices": jax.device_count(),
    }


def figures(model, workdir: Path, test, names, history) -> None:
    x, y = test
    viz.save(viz.learning_curves(history), workdir / "learning_curves.png")
    first = next(layer for _, layer, _ in viz.layer_outputs(model, x[:1]) if isinstance(layer, cnnjax.nn.Conv))
    viz.save(viz.filters(first, title="first layer's learned filters"), workdir / "filters.png")
    viz.save(viz.response_maps(model, x[:3], max_channels=8), workdir / "response_maps.png")
    predictions = train.predict(model, x).argmax(-1)
    matrix = viz.confusion_matrix(y, predictions, len(names))
    viz.save(viz.plot_confusion_matrix(matrix, names), workdir / "confusion_matrix.png")
    viz.save(viz.saliency_maps(model, x[:8], class_names=names), workdir / "saliency.png")


def run(config: dict, verbose: int = 1) -> dict:
    workdir = Path(config["workdir"])
    checkpoints = workdir / "checkpoints"
    resume = (workdir / "config.json").exists() and checkpoints.exists()
    if resume:
        previous = read_config(workdir)
        changed = [k for k in RESUMABLE if previous.get(k) != config[k]]
        if changed:
            settings = ", ".join(f"{k}={previous.get(k)!r}" for k in changed)
            fail(f"{workdir} holds a run with other settings ({settings}); "
                 f"use another --workdir, or the same settings to resume it.")
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "config.json", config)

    (x, y), test, note = load_train_test(config["dataset"], config["data_dir"], config["limit_train"])
    if note:
        print(note)
    k = num_classes(config["dataset"], train=y, test=test[1])
    model = build_model(config, x.shape[1:], k)
    table = summary(model, x.shape[1:], name=config["model"])
    (workdir / "summary.txt").write_text(str(table) + "\n")
    print(table)
    print(f"{len(x)} training and {len(test[0])} test images, {x.shape[1:]} -> {k} classes; "
          f"{jax.device_count()} {jax.default_backend()} device(s); run directory {workdir}"
          + (" (resuming)" if resume else ""))

    metrics_path = workdir / "metrics.json"

    def keep(record):  # after every epoch, so an interrupted run still has its metrics
        earlier = json.loads(metrics_path.read_text()) if metrics_path.exists() else []
        write_json(metrics_path, as_records([e for e in earlier if e["epoch"] < record["epoch"]] + [record]))

    t0 = time.perf_counter()
    history = train.fit(model, (x, y), epochs=config["epochs"], batch_size=config["batch_size"],
                        validation=test, optimizer=train.rmsprop(config["learning_rate"]), seed=config["seed"],
                        verbose=verbose, checkpoint_dir=checkpoints, resume=resume, callbacks=[keep])
    write_json(metrics_path, as_records(history.epochs))
    result = train.evaluate(model, test, batch_size=256)
    steady = history.epochs[1:] or history.epochs  # the first epoch includes compilation
    images_per_s = float(np.mean([e["images_per_s"] for e in steady]))
    results = {"test_loss": result["loss"], "test_accuracy": result["accuracy"], "images_per_s": images_per_s,
               "seconds_per_epoch": float(np.mean([e["seconds"] for e in history.epochs])),
               "compile_seconds": history.compile_seconds, "train_seconds": time.perf_counter() - t0,
               "train_images": len(x), "test_images": len(test[0]), "note": note}
    write_json(workdir / "results.json", results)
    figures(model, workdir, test, class_names(config["dataset"], k), history.epochs)
    print(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {len(test[0])} images; "
          f"{images_per_s:,.0f} images/s; run directory {workdir}")
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    return run(make_config(args), verbose=args.verbose)


if __name__ == "__main__":
    main()
