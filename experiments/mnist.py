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
                         (not with --no-pictures)

Running the same command with the same ``--workdir`` resumes an interrupted run.

Examples::

    python experiments/mnist.py                                   # MNIST from tensorflow-datasets
    python experiments/mnist.py --model functional --data-dir /usr/share/datasets/fashion-mnist \\
        --dataset fashion_mnist
    python experiments/mnist.py --data-dir samples/mnist --limit-train 8000   # t10k only
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import time
from pathlib import Path
from typing import Literal

import numpy as np
from common import (
    MODELS,
    TrainingConfig,
    as_records,
    build_model,
    class_names,
    expect,
    expect_int,
    fail,
    flag,
    lazy,
    load_train_test,
    num_classes,
    parse,
    pictures_flag,
    provenance,
    read_config,
    recorded_settings,
    run_directory,
    write_json,
)

# JAX, flax and cnnjax load when first used: --help and a bad flag answer at once
jax = lazy("jax")
nnx = lazy("flax.nnx")
cnnjax = lazy("cnnjax")
data = lazy("cnnjax.data")
train = lazy("cnnjax.train")
viz = lazy("cnnjax.viz")


# What must match for a run directory to be resumed (epochs may grow).
RESUMABLE = ("model", "dataset", "data_dir", "batch_size", "learning_rate", "seed", "limit_train")
_TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[a-z0-9_.-]+)?(:[0-9.*]+)?")


@dataclasses.dataclass(frozen=True)
class Config(TrainingConfig):
    """One run of the lecture's MNIST CNN: every field is a flag (``--batch-size`` for ``batch_size``);
    the fields of :class:`common.TrainingConfig` that are here are redefined for their default or help."""

    model: Literal["functional", "sequential"] = flag(
        "functional", "the lecture's Keras Functional model (104,202 parameters) or Sequential one (93,322)")
    dataset: str | None = flag(
        None, "a tensorflow-datasets name (mnist, fashion_mnist, kmnist, cifar10, ...); default: the --data-dir "
              "folder's name when it is one of those (e.g. .../fashion-mnist), else mnist")
    epochs: int = flag(5, "passes over the training data; the same --workdir with more epochs continues a run")
    workdir: str | None = flag(None, "the run directory (default runs/<model>-<dataset>-<time>); a directory "
                                     "holding a checkpoint of the same settings resumes")
    verbose: Literal[0, 1, 2] = flag(1, "0 quiet, 1 a progress bar, 2 one line per epoch")
    pictures: bool = pictures_flag()
    coordinator: str | None = flag(None, "HOST:PORT of process 0, to train across processes (one per host or GPU; "
                                         "every process runs this command with its own --process-id); not needed "
                                         "under SLURM's srun or Open MPI's mpirun, whose settings JAX reads")
    num_processes: int = flag(1, "how many processes train together (with --coordinator)")
    process_id: int = flag(0, "this process's number, 0 to --num-processes minus 1 (with --coordinator)")

    def __post_init__(self):
        super().__post_init__()
        expect(self.model in MODELS, "model", self.model, f"one of {sorted(MODELS)}")
        if self.dataset is not None:
            expect(isinstance(self.dataset, str) and bool(_TFDS_NAME.fullmatch(self.dataset)), "dataset",
                   self.dataset, "a tensorflow-datasets name such as mnist or fashion_mnist")
        expect_int(self.num_processes, "num_processes")
        expect_int(self.process_id, "process_id", low=0, high=self.num_processes - 1)
        if self.coordinator is None:
            expect(self.num_processes == 1 or self.launched(), "num_processes", self.num_processes,
                   "1 without --coordinator HOST:PORT")
        else:
            expect(bool(re.fullmatch(r"[^\s:]+:\d{1,5}", self.coordinator)), "coordinator", self.coordinator,
                   "HOST:PORT, e.g. 127.0.0.1:12345")
        if self.coordinator is not None or self.launched():
            expect(self.workdir is not None, "workdir", self.workdir,
                   "a directory every process names alike (required across processes)")

    def launched(self) -> bool:
        """Whether a cluster launcher started this process among others (and no flags say how to meet)."""
        return self.coordinator is None and (train.distributed.launched_processes() or 1) > 1

    def check_paths(self) -> None:
        """The folders named exist and fit: raises :class:`ConfigError` before anything is read or written."""
        super().check_paths()
        if self.data_dir is not None:
            if self.dataset is not None and data.idx_files(self.data_dir):
                base = self.dataset.split("/")[0]
                expect(base in data.IDX_DATASETS, "dataset", self.dataset,
                       f"the name of the IDX dataset in {self.data_dir}: one of {', '.join(data.IDX_DATASETS)} "
                       f"(or no --dataset)")

    def resolved(self) -> Config:
        """The dataset named (from --data-dir's folder name when not given) and the paths absolute."""
        dataset = self.dataset
        if dataset is None:
            folder = os.path.basename(os.path.normpath(self.data_dir or "")).lower().replace("-", "_")
            dataset = folder if folder in data.CLASS_NAMES else "mnist"
        now = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
        workdir = self.workdir or os.path.join("runs", f"{self.model}-{dataset}-{now}")
        return dataclasses.replace(self, dataset=dataset, workdir=os.path.abspath(workdir),
                                   data_dir=os.path.realpath(self.data_dir) if self.data_dir else None)

    def record(self) -> dict:
        """What ``config.json`` holds: the settings, and where and with what they ran."""
        per_process = ("verbose", "coordinator", "process_id")  # not settings of the run
        settings = {k: v for k, v in recorded_settings(self).items() if k not in per_process}
        return {**settings, "optimizer": "rmsprop (rho 0.9, epsilon 1e-7 outside the square root)",
                "cnnjax": cnnjax.__version__, "jax": jax.__version__, "backend": jax.default_backend(),
                "devices": jax.device_count()}


def parse_args(argv: list[str] | None = None) -> Config:
    return parse(Config, argv, __doc__.splitlines()[0])


def saved_run(workdir: Path) -> tuple[dict, int] | None:
    """The settings of a run in ``workdir`` that saved a checkpoint and the epochs it has
    trained, else None (a run that failed before its first checkpoint leaves nothing to
    resume, and its folder is free)."""
    checkpoints = workdir / "checkpoints"
    if not (workdir / "config.json").is_file() or not checkpoints.is_dir():
        return None
    ckpt = train.checkpoints.Checkpointer(checkpoints)
    try:
        if ckpt.latest_step() is None:
            return None
        try:
            epochs = int(ckpt.record()["epoch"])
        except (OSError, ValueError, KeyError):  # a damaged newest record: fit falls back and says so
            epochs = 0
        return read_config(workdir), epochs
    finally:
        ckpt.close()


def same_setting(key: str, recorded, current) -> bool:
    """Whether a resumed run's setting is this run's (a folder through another path, a
    symbolic link, is the same folder)."""
    if key == "data_dir" and recorded is not None and current is not None:
        return os.path.realpath(recorded) == os.path.realpath(current)
    return recorded == current


def figures(model, workdir: Path, test, names, history) -> None:
    x, y = test
    viz.save(viz.learning_curves(history), workdir / "learning_curves.png")
    first = next(layer for _, layer, _ in viz.layer_outputs(model, x[:1]) if isinstance(layer, cnnjax.nn.Conv))
    viz.save(viz.filters(first, title="first layer's learned filters"), workdir / "filters.png")
    viz.save(viz.response_maps(model, x[:3], max_channels=8), workdir / "response_maps.png")
    predictions = train.predict(model, x).argmax(-1)
    matrix = viz.confusion_matrix(y, predictions, len(names))
    viz.save(viz.plot_confusion_matrix(matrix, names), workdir / "confusion_matrix.png")
    viz.save(viz.saliency_maps(model, x[:8], y[:8], class_names=names), workdir / "saliency.png")


def run(config: Config, argv: list[str] | None = None) -> dict:
    """Trains and evaluates as ``config`` says, writing the run directory; returns the results
    (``results.json``), with the run's record (:func:`common.provenance`: ``argv`` is the
    command's flags, default ``sys.argv``)."""
    config.check_paths()
    config = config.resolved()
    if config.coordinator is not None:
        try:
            train.distributed.initialize(config.coordinator, config.num_processes, config.process_id)
        except ConnectionError as e:
            fail(str(e))
    elif config.launched():
        train.distributed.initialize()  # JAX reads the launcher's environment
        config = dataclasses.replace(config, num_processes=jax.process_count(), process_id=jax.process_index())
    main = jax.process_index() == 0  # the one that prints and writes the run directory's files
    with run_directory(config.workdir, main=main) as workdir:
        return _run(config, workdir, main, argv)


def _run(config: Config, workdir: Path, main: bool, argv: list[str] | None = None) -> dict:
    say = print if main else (lambda *args, **kwargs: None)
    previous = saved_run(workdir)
    if previous is not None:
        settings, (recorded, trained) = config.record(), previous
        changed = [k for k in RESUMABLE if not same_setting(k, recorded.get(k), settings[k])]
        if changed:
            was = ", ".join(f"{k}={recorded.get(k)!r}" for k in changed)
            fail(f"{workdir} holds a run with other settings ({was}); "
                 f"use another --workdir, or the same settings to resume it.")
        if config.epochs < trained:
            fail(f"{workdir} holds a run that has trained {trained} epochs; --epochs {config.epochs} cannot undo "
                 f"them: give --epochs {trained} or more to continue it, or another --workdir.")

    (x, y), test, note = load_train_test(config.dataset, config.data_dir, config.limit_train)
    if note:
        say(note)
    if config.batch_size > len(x):
        fail(f"--batch-size {config.batch_size} is larger than the {len(x)} training images.")
    k = num_classes(config.dataset, train=y, test=test[1])
    model = build_model(config.model, config.seed, x.shape[1:], k)
    table = cnnjax.summary(model, x.shape[1:], name=config.model)
    if main:
        workdir.mkdir(parents=True, exist_ok=True)  # only now: a run that cannot start writes nothing
        write_json(workdir / "config.json", config.record())
        (workdir / "summary.txt").write_text(str(table) + "\n")
    say(table)
    say(f"{len(x)} training and {len(test[0])} test images, {x.shape[1:]} -> {k} classes; "
        f"{jax.device_count()} {jax.default_backend()} device(s) in {jax.process_count()} process(es); "
        f"run directory {workdir}" + (" (resuming)" if previous is not None else ""))

    metrics_path = workdir / "metrics.json"

    def keep(record):  # after every epoch, so an interrupted run still has its metrics
        if not main:
            return
        earlier = json.loads(metrics_path.read_text()) if metrics_path.exists() else []
        write_json(metrics_path, as_records([e for e in earlier if e["epoch"] < record["epoch"]] + [record]))

    t0 = time.perf_counter()
    history = train.fit(model, (x, y), epochs=config.epochs, batch_size=config.batch_size, validation=test,
                        optimizer=train.rmsprop(config.learning_rate), seed=config.seed, verbose=config.verbose,
                        checkpoint_dir=workdir / "checkpoints", resume=previous is not None, callbacks=[keep])
    result = train.evaluate(model, test, batch_size=256)  # every process takes part, as in training
    if not main:
        return {"test_loss": result["loss"], "test_accuracy": result["accuracy"]}
    if jax.process_count() > 1:  # the replicated variables as this process's own copy, for the pictures
        nnx.update(model, jax.tree.map(lambda a: a.addressable_data(0), nnx.state(model)))
    write_json(metrics_path, as_records(history.epochs))
    steady = history.epochs[1:] or history.epochs  # the first epoch includes compilation
    images_per_s = float(np.mean([e["images_per_s"] for e in steady]))
    results = {"test_loss": result["loss"], "test_accuracy": result["accuracy"], "images_per_s": images_per_s,
               "seconds_per_epoch": float(np.mean([e["seconds"] for e in history.epochs])),
               "compile_seconds": history.compile_seconds, "train_seconds": time.perf_counter() - t0,
               "train_images": len(x), "test_images": len(test[0]), "note": note,
               "run": provenance("mnist.py", argv)}
    write_json(workdir / "results.json", results)
    if config.pictures:
        figures(model, workdir, test, class_names(config.dataset, k), history.epochs)
    say(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {len(test[0])} images; "
          f"{images_per_s:,.0f} images/s; run directory {workdir}")
    return results


def main(argv: list[str] | None = None) -> dict:
    return run(parse_args(argv), argv)


if __name__ == "__main__":
    main()
