"""What the experiments share: a typed configuration read from the command line, the
MNIST-style data and models, and run directories.

A script's configuration is a frozen dataclass whose fields are its flags (``--batch-size``
for ``batch_size``); each field's metadata holds its help, and ``__post_init__`` checks the
values, so a bad setting stops the script with one ``error:`` line and exit code 2 before
any data loads and before anything is written.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np


class _Lazy:
    """A module imported when first used: a script answers ``--help`` and refuses a bad flag
    before JAX and cnnjax (seconds to import) are loaded."""

    def __init__(self, name: str):
        self._name, self._module = name, None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported when first used>"


def lazy(name: str) -> Any:
    """``import name`` on first use of one of its attributes (``jnp = lazy("jax.numpy")``)."""
    return _Lazy(name)


data, losses, models = lazy("cnnjax.data"), lazy("cnnjax.losses"), lazy("cnnjax.models")
MODELS = {"functional": "mnist_functional", "sequential": "mnist_sequential"}  # cnnjax.models' builders


class ConfigError(ValueError):
    """A setting out of its range: ``field`` names it, the message says what was expected."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def flag(default: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A configuration field: its default (none: the flag is required) and the help its
    command-line flag shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def pictures_flag() -> Any:
    """The ``pictures`` field of an experiment that draws: ``--pictures`` (the default) or
    ``--no-pictures``."""
    return flag(True, "draw the run's pictures (PNG files in the run directory); --no-pictures skips them: "
                      "the same results, a shorter command")


def recorded_settings(config) -> dict:
    """A configuration as its run record keeps it: every field but ``pictures``, which changes
    what is drawn, not what is measured (so a record reruns alike with or without pictures)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "pictures"}


def expect(ok: bool, field: str, value: Any, expected: str) -> None:
    """Raises :class:`ConfigError` naming ``field`` and ``value`` unless ``ok``."""
    if not ok:
        raise ConfigError(field, f"expected {expected}, got {value!r}")


def expect_int(value: Any, field: str, low: int = 1, high: int | None = None, optional: bool = False) -> None:
    if optional and value is None:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    expect(ok, field, value, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""))


def expect_rate(value: Any, field: str, high: float = 1.0) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= high
    expect(ok, field, value, f"a finite number in (0, {high:g}]")


def expect_workdir(workdir: str | None, field: str = "workdir") -> None:
    """``workdir`` can become a run directory: a directory or a new path, not a file, not a
    link to nothing, not below a file."""
    if workdir is None:
        return
    expect(not (os.path.islink(workdir) and not os.path.exists(workdir)), field, workdir,
           "a directory or a new path, not a link to nothing")
    expect(not os.path.exists(workdir) or os.path.isdir(workdir), field, workdir,
           "a directory (new, or a run to resume), not a file")
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    expect(os.path.isdir(parent), field, workdir, f"a path below directories, but {parent} is a file")


@contextlib.contextmanager
def run_directory(workdir: str | os.PathLike, *, main: bool = True) -> Iterator[Path]:
    """Holds ``workdir`` for one run: locked (a second run is refused at once with one
    line), any ``OSError`` inside (a full disk, a read-only folder) ends the script with
    one ``error:`` line and exit code 2, and a folder this run created and wrote nothing
    to is removed. ``main``: only process 0 locks and cleans up."""
    from cnnjax.train import checkpoints

    workdir = Path(workdir)
    created = not workdir.exists()
    lock = checkpoints.DirectoryLock(workdir)
    try:
        if main:
            try:
                lock.acquire()  # before anything is read or written
            except checkpoints.DirectoryInUse as e:
                fail(str(e))
        yield workdir
    except checkpoints.CheckpointError as e:  # every checkpoint of the run damaged: say how to start afresh
        fail(str(e).replace("(or train without resume)", f"(or give another --workdir than {workdir})"))
    except OSError as e:
        fail(f"{e} (in {workdir})" if str(workdir) not in str(e) else str(e))
    finally:
        lock.release()
        if main and created and workdir.is_dir() and os.listdir(workdir) in ([], [lock.NAME]):
            with contextlib.suppress(OSError):
                (workdir / lock.NAME).unlink(missing_ok=True)
                workdir.rmdir()


def _flag_type(annotation):
    """``(type, choices)`` for argparse from a field's annotation (``int``, ``str | None``,
    ``Literal[...]``)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return type(choices[0]), list(choices)
    return annotation, None


def parser(cls: type, description: str) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one flag per field of the dataclass ``cls``."""
    p = argparse.ArgumentParser(description=description)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind, choices = _flag_type(hints[field.name])
        if kind is bool:  # --name / --no-name, never a value that could be misread ("False" is truthy)
            p.add_argument("--" + field.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                           default=field.default, help=field.metadata["help"].replace("%", "%%"))
            continue
        required = field.default is dataclasses.MISSING
        shown = "" if required or field.default is None else f" (default: {field.default})"
        p.add_argument("--" + field.name.replace("_", "-"), type=kind, choices=choices, required=required,
                       default=None if required else field.default,
                       help=(field.metadata["help"] + shown).replace("%", "%%"),  # argparse %-formats help
                       metavar=None if choices else field.name.upper())
    return p


def parse(cls: type, argv: list[str] | None, description: str):
    """The configuration ``cls`` from ``argv``; a bad flag ends the script (exit code 2) with
    argparse's usage line and one ``error:`` line naming the flag, its value and what is
    expected."""
    p = parser(cls, description)
    p.add_argument("--no-compile-cache", action="store_true",
                   help="compile every program again instead of reading it from the per-user cache "
                        "(~/.cache/cnnjax/jax; CNNJAX_COMPILE_CACHE=0 turns it off too, a path moves it)")
    values = vars(p.parse_args(argv))
    no_cache = values.pop("no_compile_cache")
    try:
        config = cls(**values)
        if hasattr(config, "check_paths"):
            config.check_paths()
    except ConfigError as e:
        p.error(f"argument --{e.field.replace('_', '-')}: {e.message}")
    if not no_cache:  # the flags are good: now JAX may load
        folder = importlib.import_module("cnnjax").use_compile_cache()
        if getattr(config, "verbose", 0) == 2:
            print(f"compiled programs are read from and kept in {folder or 'no cache (CNNJAX_COMPILE_CACHE=0)'}")
    return config


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What every experiment's settings hold: the seed, the run directory and how much to
    print. An experiment's ``Config`` subclasses it (or :class:`TrainingConfig`), adds its
    own fields, and redefines a field to change its default or help; its ``__post_init__``
    and ``check_paths`` call these first."""

    seed: int = flag(0, "seed of the initial weights and the data order, 0 <= seed < 2**32")
    workdir: str | None = flag(None, "where the results and pictures go (default runs/<experiment>-<time>)")
    verbose: Literal[0, 1, 2] = flag(0, "0 quiet, 1 a progress bar, 2 one line per epoch")

    def __post_init__(self):
        expect_int(self.seed, "seed", low=0, high=2**32 - 1)
        expect(self.verbose in (0, 1, 2), "verbose", self.verbose, "0, 1 or 2")
        if hasattr(self, "pictures"):
            expect(isinstance(self.pictures, bool), "pictures", self.pictures, "True or False")

    def check_paths(self) -> None:
        """The folders named exist and fit: raises :class:`ConfigError` before anything is read or written."""
        expect_workdir(self.workdir)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(RunConfig):
    """The settings of an experiment that trains on MNIST-style images."""

    dataset: str = flag("mnist", "a tensorflow-datasets name (mnist, fashion_mnist, kmnist, ...)")
    data_dir: str | None = flag(None, "a folder of IDX files (offline), or tensorflow-datasets' data_dir")
    limit_train: int | None = flag(None, "train on the first N training images (or, for a folder holding only the "
                                         "test split, on its first N images)")
    epochs: int = flag(5, "passes over the training images, for every model trained")
    batch_size: int = flag(64, "images per training step")
    learning_rate: float = flag(1e-3, "RMSprop's learning rate, in (0, 1]")

    def __post_init__(self):
        super().__post_init__()
        expect_int(self.limit_train, "limit_train", optional=True)
        expect_int(self.epochs, "epochs")
        expect_int(self.batch_size, "batch_size")
        expect_rate(self.learning_rate, "learning_rate")

    def check_paths(self) -> None:
        super().check_paths()
        if self.data_dir is not None:
            expect(os.path.isdir(self.data_dir), "data_dir", self.data_dir, "an existing directory")


def fail(message: str) -> typing.NoReturn:
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
        fail(f"{e} Offline, give --data-dir DIR: a folder of the IDX files (t10k-images-idx3-ubyte.gz, "
             f"t10k-labels-idx1-ubyte.gz and the train- pair), e.g. samples/mnist (MNIST's test split, shipped "
             f"with cnnjax; add --limit-train N) or /usr/share/datasets/fashion-mnist "
             f"(apt-get install dataset-fashion-mnist).")
    except ValueError as e:  # a damaged file, data of another dataset
        fail(str(e))
    try:
        train = data.load(dataset, "train", data_dir=data_dir, limit=limit_train)
        return train, test, None
    except ValueError as e:
        fail(str(e))
    except data.DatasetNotFoundError as e:
        if limit_train is None or data_dir is None:
            fail(f"{e} With only a test split, pass --limit-train N to train on its first N images.")
        if limit_train >= len(test[0]):
            fail(f"--limit-train {limit_train} leaves nothing to test on: the test split has {len(test[0])} images.")
        note = (f"{data_dir} holds no train split: training on the first {limit_train} test images, "
                f"testing on the other {len(test[0]) - limit_train}")
        x, y = test
        return (x[:limit_train], y[:limit_train]), (x[limit_train:], y[limit_train:]), note


def build_model(name: str, seed: int, input_shape, num_classes: int):
    from flax import nnx

    return getattr(models, MODELS[name])(input_shape=tuple(input_shape), num_classes=num_classes, rngs=nnx.Rngs(seed))


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


def provenance(script: str, argv: list[str] | None) -> dict[str, Any]:
    """Where a result came from, for its run record: the command, the commit (``-dirty``
    when the tree had changes), the versions that compute it, the machine and the date;
    with the compile cache on, how many programs came from it and how many were compiled
    (printed too: a rerun compiles nothing).
    ``script``: a file name in ``experiments/``, or a path from the repository's root."""
    import datetime
    import importlib.metadata
    import platform
    import shlex
    import subprocess

    args = sys.argv[1:] if argv is None else list(argv)
    root = Path(__file__).resolve().parents[1]

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    import jax

    versions = {name: importlib.metadata.version(name) for name in ("jax", "jaxlib", "flax", "optax", "numpy")}
    script = script if "/" in script else f"experiments/{script}"
    record = {"command": shlex.join(["python", script, *args]), "commit": commit or None,
              "versions": {"python": platform.python_version(), **versions},
              "machine": {"cpus": os.cpu_count(), "cpu": cpu, "devices": [d.device_kind for d in jax.devices()]},
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    counts = importlib.import_module("cnnjax").compile_counts()
    if counts is not None:  # the compile cache is on: say what it saved
        record["programs"] = counts
        print(f"programs: {counts['from_cache']} read from the compile cache, {counts['compiled']} compiled")
    return record


def as_records(epochs):
    return [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items()} for e in epochs]


def class_names(dataset: str, num_classes: int) -> list[str]:
    names = data.CLASS_NAMES.get(dataset)
    return list(names) if names and len(names) == num_classes else [str(i) for i in range(num_classes)]


def num_classes(dataset: str, **splits: np.ndarray) -> int:
    """The dataset's class count (10 for the MNIST family and CIFAR-10; for other datasets, the
    largest label + 1); stops with a one-line error naming the first label outside it."""
    names = data.CLASS_NAMES.get(dataset)
    if names is None:
        return int(max(np.max(y) for y in splits.values())) + 1
    for split, labels in splits.items():
        try:
            losses.check_labels(labels, len(names), f"the {split} split's labels", f" ({dataset}'s classes)")
        except ValueError as e:
            fail(f"{str(e).rstrip('.')}: the data is damaged or is not {dataset}.")
    return len(names)
