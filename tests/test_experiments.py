"""The experiment scripts' mains with tiny settings, the files they write, and the notebook."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import lecture_tables as T
import numpy as np
import pytest
import scripts
from helpers import assert_run_file, write_pair, write_wav

from cnnjax import audio, lecture, synthetic

ROOT = scripts.ROOT

RUN_FILES = ["config.json", "metrics.json", "summary.txt", "results.json", "learning_curves.png", "filters.png",
             "response_maps.png", "confusion_matrix.png", "saliency.png"]


def load(name):
    return scripts.load("experiments", name)


@pytest.mark.slow
def test_xo_walkthrough_training_and_cases(tmp_path, capsys):
    result = load("xo").main(["--train-size", "200", "--test-size", "40", "--epochs", "3", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    pooled = result["stages"]["Max pooling 2x2, stride 2, ceiling of 7/2 (7x7 -> 4x4)"]
    for channel in range(3):
        np.testing.assert_array_equal(T.cut_to_hundredths(pooled[:, :, channel]), T.POOLED[channel])
    assert " 1.00   0.33   0.55   0.33\n 0.33   1.00   0.33   0.55" in out  # as the lecture prints it
    assert " 0.77  -0.11   0.11   0.33   0.55  -0.11   0.33" in out
    assert set(result["accuracy"]) == set(synthetic.CASES)
    for case, a in result["accuracy"].items():  # right answers out of the 40 images of each case
        assert np.isclose(a * 40, round(a * 40)), (case, a)
    for case in synthetic.CASES:
        assert case in out
    step = result["backpropagation"]
    np.testing.assert_allclose(step["error"], step["predicted"] - np.array([1, 0]), atol=1e-7)  # an X: right is X
    np.testing.assert_allclose(step["d_scores"], step["error"], atol=1e-6)  # the error is what flows back
    assert "Error = predicted answer - right answer" in out and "d loss / d score" in out
    for name in ["lecture_maps.png", "trickier_cases.png", "filters.png", "learning_curves.png", "metrics.json",
                 "results.json", "backpropagation.png"]:
        assert_run_file(tmp_path / name)


def test_backpropagation_gradient_into_a_feature_is_the_loss_slope():
    """d loss / d weight of one feature weight against a central difference of the loss itself."""
    from flax import nnx

    from cnnjax import models, sparse_categorical_crossentropy

    xo = load("xo")
    net = models.xo_net(rngs=nnx.Rngs(3))
    step = xo.backpropagation(net, lecture.X_IMAGE, 0)
    kernel = np.asarray(net[0].kernel[...])

    def loss_with(delta):
        net[0].kernel[...] = kernel + delta
        return float(sparse_categorical_crossentropy(net(lecture.batch(lecture.X_IMAGE)), np.array([0])))

    for index in [(0, 0, 0, 0), (2, 2, 0, 2)]:  # weights of two features, away from max-pool ties
        bump = np.zeros_like(kernel)
        bump[index] = 3e-3
        numeric = (loss_with(bump) - loss_with(-bump)) / 6e-3
        assert abs(step["d_features"][index]) > 1e-2 and np.isclose(step["d_features"][index], numeric, rtol=1e-3)
    net[0].kernel[...] = kernel


@pytest.fixture
def tiny_idx(tmp_path):
    rng = np.random.default_rng(0)
    directory = tmp_path / "idx"
    directory.mkdir()
    images = rng.integers(0, 256, (96, 28, 28), dtype=np.uint8)
    labels = (np.arange(96) % 10).astype(np.uint8)
    write_pair(directory, "train", images[:64], labels[:64])
    write_pair(directory, "t10k", images[64:], labels[64:])
    return directory


@pytest.mark.slow
def test_mnist_writes_the_run_directory_and_resumes(tiny_idx, tmp_path, capsys):
    mnist = load("mnist")
    workdir = tmp_path / "run"
    args = ["--data-dir", str(tiny_idx), "--batch-size", "16", "--workdir", str(workdir), "--verbose", "0"]
    results = mnist.main(args + ["--epochs", "1"])
    out = capsys.readouterr().out
    for name in RUN_FILES:
        assert_run_file(workdir / name)
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert [set(m) for m in metrics] == [{"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                                          "seconds", "images_per_s"}]
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"] == "functional" and config["batch_size"] == 16 and config["epochs"] == 1
    assert "Total params: 104,202" in (workdir / "summary.txt").read_text()
    assert "Total params: 104,202" in out and "test accuracy" in out and "images/s" in out
    assert results["test_images"] == 32 and np.isclose(results["test_accuracy"] * 32, round(results["test_accuracy"] * 32))
    assert np.isclose(results["test_accuracy"], metrics[-1]["val_accuracy"], atol=1e-6)  # the test split validates
    assert any((workdir / "checkpoints").iterdir())

    plain = tmp_path / "plain"  # --no-pictures: the same run and results, no PNG file
    unpictured = mnist.main([*args[:-3], str(plain), "--verbose", "0", "--epochs", "1", "--no-pictures"])
    assert "pictures" not in json.loads((plain / "config.json").read_text())
    assert sorted(p.name for p in plain.glob("*.png")) == [] and (plain / "results.json").is_file()
    assert unpictured["test_accuracy"] == results["test_accuracy"] and unpictured["test_loss"] == results["test_loss"]
    capsys.readouterr()

    (tmp_path / "link").symlink_to(tiny_idx)  # the same data through a symbolic link is the same run
    linked = [str(tmp_path / "link") if a == str(tiny_idx) else a for a in args]
    mnist.main(linked + ["--epochs", "2"])  # the same run directory: resumes after epoch 1
    assert "(resuming)" in capsys.readouterr().out
    assert [m["epoch"] for m in json.loads((workdir / "metrics.json").read_text())] == [1, 2]

    with pytest.raises(SystemExit) as exited:  # fewer epochs than the run has trained
        mnist.main(args + ["--epochs", "1"])
    assert exited.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"error: {workdir} holds a run that has trained 2 epochs; --epochs 1 cannot undo them: give --epochs 2 "
        "or more to continue it, or another --workdir."]
    assert json.loads((workdir / "config.json").read_text())["epochs"] == 2

    with pytest.raises(SystemExit):
        mnist.main(args + ["--epochs", "2", "--seed", "7"])
    assert "holds a run with other settings (seed=0)" in capsys.readouterr().err

    from cnnjax import train

    with train.checkpoints.DirectoryLock(workdir), pytest.raises(SystemExit) as exited:  # a run in progress
        mnist.main(args + ["--epochs", "3"])
    assert exited.value.code == 2 and f"{workdir} is in use by process" in capsys.readouterr().err
    assert [m["epoch"] for m in json.loads((workdir / "metrics.json").read_text())] == [1, 2]


@pytest.mark.parametrize("flags, message", [
    (["--learning-rate", "-1"], "argument --learning-rate: expected a finite number in (0, 1], got -1.0"),
    (["--learning-rate", "0"], "argument --learning-rate: expected a finite number in (0, 1], got 0.0"),
    (["--learning-rate", "1e6"], "argument --learning-rate: expected a finite number in (0, 1], got 1000000.0"),
    (["--learning-rate", "nan"], "argument --learning-rate: expected a finite number in (0, 1], got nan"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0 and <= 4294967295, got -1"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got 0"),
    (["--limit-train", "0"], "argument --limit-train: expected an integer >= 1, got 0"),
    (["--dataset", "nonsense"], "argument --dataset: expected the name of the IDX dataset in "),
    (["--dataset", "MNIST!"], "argument --dataset: expected a tensorflow-datasets name such as mnist or "
                              "fashion_mnist, got 'MNIST!'"),
    (["--workdir", "{file}"], "argument --workdir: expected a directory (new, or a run to resume), not a file"),
    (["--workdir", "{file}/run"], "argument --workdir: expected a path below directories, but {file} is a file"),
    (["--workdir", "{nowhere}"], "argument --workdir: expected a directory or a new path, not a link to nothing"),
    (["--verbose", "3"], "argument --verbose: invalid choice: 3 (choose from 0, 1, 2)"),
    (["--num-processes", "2"], "argument --num-processes: expected 1 without --coordinator HOST:PORT, got 2"),
    (["--coordinator", "localhost", "--num-processes", "2"],
     "argument --coordinator: expected HOST:PORT, e.g. 127.0.0.1:12345, got 'localhost'"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     "argument --process-id: expected an integer >= 0 and <= 1, got 2"),
])
def test_mnist_refuses_a_bad_flag_before_reading_or_writing_anything(tiny_idx, tmp_path, capsys, monkeypatch,
                                                                     flags, message):
    from cnnjax import data

    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data loaded despite a bad flag"))
    (tmp_path / "afile").write_text("")
    (tmp_path / "nowhere").symlink_to(tmp_path / "gone")
    paths = dict(file=tmp_path / "afile", nowhere=tmp_path / "nowhere")
    flags = [f.format(**paths) for f in flags]
    with pytest.raises(SystemExit) as info:
        load("mnist").main(["--data-dir", str(tiny_idx), "--workdir", str(tmp_path / "run"), *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: ") and ": error: " + message.format(**paths) in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "idx", "nowhere"]  # nothing written


def _truncate(path):
    path.write_bytes(path.read_bytes()[:500])


def _raise(error):
    def fn(*args, **kwargs):
        raise error
    return fn


@pytest.mark.parametrize("case, message", [
    ("batch", "error: --batch-size 5000 is larger than the 64 training images."),
    ("damaged", "train-images-idx3-ubyte.gz: corrupt or truncated gzip data"),
    ("read-only", "error: [Errno 13] Permission denied: '{workdir}'"),
    ("full disk", "error: [Errno 28] No space left on device: the checkpoint of step 4 could not be written: "
                  "'{workdir}/checkpoints'"),
])
def test_mnist_failures_are_one_error_line_and_leave_nothing(tiny_idx, tmp_path, capsys, monkeypatch, case, message):
    from cnnjax import train

    workdir, flags = tmp_path / "run", []
    if case == "batch":
        flags = ["--batch-size", "5000"]
    elif case == "damaged":
        _truncate(tiny_idx / "train-images-idx3-ubyte.gz")
    elif case == "read-only":  # (a test run as root writes anywhere: the refusal the kernel gives, given here)
        monkeypatch.setattr(train.checkpoints.DirectoryLock, "acquire",
                            _raise(PermissionError(13, "Permission denied", str(workdir))))
    else:
        monkeypatch.setattr(train.checkpoints.Checkpointer, "save", _raise(OSError(
            28, "No space left on device: the checkpoint of step 4 could not be written", f"{workdir}/checkpoints")))
    with pytest.raises(SystemExit) as info:
        load("mnist").main(["--data-dir", str(tiny_idx), "--epochs", "1", "--batch-size", "16", "--workdir",
                            str(workdir), "--verbose", "0", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(workdir=workdir) in err[0] and err[0].startswith("error: ")
    if case != "full disk":  # a run that could not start writes nothing
        assert not workdir.exists()


@pytest.mark.parametrize("name", ["mnist", "xo", "invariance", "spoken_digits", "customer_data", "knobs", "ports",
                                  "sentences"])
def test_every_flag_has_help_and_help_prints(name):
    common = load("common")
    p = common.parser(load(name).Config, "")
    for action in p._actions[1:]:
        assert action.help and len(action.help) > 10, (name, action.dest)
    text = p.format_help()  # what --help prints (a bare % in a help string broke it)
    assert all(f"--{a.dest.replace('_', '-')}" in text for a in p._actions[1:]), name


def test_a_run_whose_every_checkpoint_is_damaged_stops_with_one_line_saying_how_to_start_afresh(tmp_path, capsys):
    """Each step's state/ deleted: a script warned, then ended in a traceback of CheckpointError.
    Inside a script's run directory (what every script's main runs in) it is one error line."""
    import shutil

    from training import small_data, small_model

    from cnnjax import train

    workdir, (x, y) = tmp_path / "run", small_data(32)
    fit = lambda: train.fit(small_model(), (x, y), epochs=2, batch_size=16, checkpoint_dir=workdir / "checkpoints",
                            resume=True, verbose=0)
    with load("common").run_directory(workdir):
        fit()
    for step in [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]:
        shutil.rmtree(step / "state")
    with pytest.warns(UserWarning), pytest.raises(SystemExit) as info, load("common").run_directory(workdir):
        fit()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: No checkpoint in {workdir / 'checkpoints'} could be read")
    assert err[0].endswith(f"To start afresh, move or delete {workdir / 'checkpoints'} (or give another --workdir "
                           f"than {workdir}).")


@pytest.mark.slow
def test_a_run_that_stopped_before_its_first_checkpoint_does_not_block_its_folder(tiny_idx, tmp_path, capsys):
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)  # what a run killed during its first epoch leaves
    (workdir / "config.json").write_text(json.dumps({"model": "sequential", "seed": 3, "learning_rate": 0.5}))
    load("mnist").main(["--data-dir", str(tiny_idx), "--epochs", "1", "--batch-size", "16", "--workdir",
                        str(workdir), "--verbose", "0"])
    assert "(resuming)" not in capsys.readouterr().out
    config = json.loads((workdir / "config.json").read_text())
    assert (config["model"], config["seed"], config["learning_rate"]) == ("functional", 0, 1e-3)


@pytest.mark.slow
def test_mnist_on_a_test_split_only_folder(tiny_idx, tmp_path, capsys):
    (tiny_idx / "train-images-idx3-ubyte.gz").unlink()
    (tiny_idx / "train-labels-idx1-ubyte.gz").unlink()
    results = load("mnist").main(["--data-dir", str(tiny_idx), "--limit-train", "24", "--epochs", "1",
                                  "--batch-size", "8", "--model", "sequential", "--workdir", str(tmp_path / "r"),
                                  "--verbose", "0"])
    assert "training on the first 24 test images, testing on the other 8" in capsys.readouterr().out
    assert results["train_images"] == 24 and results["test_images"] == 8
    with pytest.raises(SystemExit):
        load("mnist").main(["--data-dir", str(tiny_idx), "--workdir", str(tmp_path / "s")])
    assert "pass --limit-train N" in capsys.readouterr().err


def test_mnist_refuses_a_label_outside_the_datasets_classes(tiny_idx, tmp_path, capsys):
    """One damaged label byte (200) stops the run with one line, instead of a 201-class model."""
    rng = np.random.default_rng(0)
    labels = (np.arange(64) % 10).astype(np.uint8)
    labels[37] = 200
    write_pair(tiny_idx, "train", rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), labels)
    with pytest.raises(SystemExit) as info:
        load("mnist").main(["--data-dir", str(tiny_idx), "--epochs", "1", "--workdir", str(tmp_path / "r"),
                            "--verbose", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the train split's labels must be class indices in [0, 10) (mnist's classes), got 200 at "
                   "index 37: the data is damaged or is not mnist."]


def test_mnist_without_any_data_stops_with_a_message(tmp_path, capsys, monkeypatch):
    """Nothing prepared, no IDX files, and the fetch address unreachable (a closed loopback port)."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("CNNJAX_DATA_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as info:
        load("mnist").main(["--data-dir", str(empty), "--workdir", str(tmp_path / "r")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # no absl warning, no "Downloading data from ..." line: one error line
    assert err[0].startswith(f"error: 'mnist' is not prepared in tensorflow-datasets' data_dir ({empty}), "
                             f"nor cached in {tmp_path / 'cache' / 'mnist'}. Could not fetch t10k-images-idx3-ubyte.gz "
                             "of 'mnist' from http://127.0.0.1:9/mnist/t10k-images-idx3-ubyte.gz: 127.0.0.1 does not "
                             "answer within 3 s. Check CNNJAX_DATA_MIRROR.")
    assert "e.g. samples/mnist (MNIST's test split, shipped with cnnjax" in err[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "cache").exists()  # nothing written, nothing left


@pytest.mark.slow
def test_invariance_of_a_run(tiny_idx, tmp_path, capsys):
    workdir = tmp_path / "run"
    load("mnist").main(["--data-dir", str(tiny_idx), "--epochs", "1", "--batch-size", "16", "--workdir",
                        str(workdir), "--verbose", "0"])
    results = load("invariance").main(["--workdir", str(workdir), "--limit", "16"])
    assert set(results) == {"shift (pixels)", "rotation (degrees)", "scale", "stroke weight (pixels)"}
    assert_run_file(workdir / "invariance.png")
    saved = json.loads((workdir / "invariance.json").read_text())
    assert [r["value"] for r in saved["rotation (degrees)"]] == [-60, -45, -30, -15, 0, 15, 30, 45, 60]
    unchanged = [a for v, a in results["shift (pixels)"] if v == 0][0]
    assert [a for v, a in results["rotation (degrees)"] if v == 0][0] == unchanged
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_colab_notebook_runs_as_written_on_cpu_against_a_loopback_mirror(mirror, monkeypatch):
    """The notebook in a real Jupyter kernel (nbclient): device detection, MNIST fetched through the
    mirror (the real t10k files; tfds has nothing prepared), training, evaluation, five figures."""
    nbclient = pytest.importorskip("nbclient", reason="the test extra's Jupyter packages are not installed")
    nbformat = pytest.importorskip("nbformat", reason="the test extra's Jupyter packages are not installed")
    notebook = nbformat.read(scripts.ROOT / "experiments" / "colab.ipynb", as_version=4)
    nbformat.validate(notebook)
    monkeypatch.setenv("CNNJAX_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("CNNJAX_NOTEBOOK_LIMIT", "256")
    monkeypatch.setenv("CNNJAX_NOTEBOOK_TRAIN_SPLIT", "test")  # the mirror holds the real t10k files
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "CPU: 1 device(s)" in text and "(256, 28, 28, 1) (256, 28, 28, 1)" in text
    assert re.search(r"test accuracy 0\.\d{4}", text), text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 5


NO_TENSORFLOW = """
import importlib.abc
import sys


class NoTensorFlow(importlib.abc.MetaPathFinder):  # `import tensorflow` fails, as where it is not installed
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
from flax import nnx
import cnnjax
from cnnjax import data, models, train
x, y = data.load("mnist", "test", limit=512)
model = models.mnist_functional(rngs=nnx.Rngs(0))
train.fit(model, (x[:384], y[:384]), epochs=1, batch_size=64, verbose=0)
result = train.evaluate(model, (x[384:], y[384:]))
try:
    import tensorflow
except ImportError:
    print("no tensorflow; accuracy", round(result["accuracy"], 4))
"""


@pytest.mark.slow
def test_data_fit_and_evaluate_need_no_tensorflow(mirror):
    import subprocess

    result = subprocess.run([sys.executable, "-c", NO_TENSORFLOW], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("no tensorflow; accuracy "), result.stdout


def tone_folder(directory, speakers, indices, samples=3000):
    """Recordings whose pitch says the digit: 300 + 150 * digit Hz, a little noise, a voice per speaker."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(samples) / 8000
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for index in indices:
                tone = np.sin(2 * np.pi * (300 + 150 * digit) * (1 + 0.02 * s) * t) + 0.1 * rng.normal(size=samples)
                write_wav(directory / f"{digit}_{speaker}_{index}.wav", 8000 * tone)
    return directory


@pytest.mark.slow
def test_spoken_digits_on_tiny_recordings(tmp_path, capsys):
    data_dir = tone_folder(tmp_path / "wavs", ["ann", "bob"], [0, 5, 6])
    test_dir = tone_folder(tmp_path / "mine", ["eve"], [0])
    workdir = tmp_path / "run"
    results = load("spoken_digits").main(["--data-dir", str(data_dir), "--test-dir", str(test_dir), "--epochs", "2",
                                          "--length", "4000", "--batch-size", "8", "--workdir", str(workdir)])
    out = capsys.readouterr().out
    for kind in ["spectrogram", "waveform"]:
        assert results["official"][kind]["total"] == 20  # index 0 of 10 digits x 2 speakers
        assert results["test_accuracy"][kind]["total"] == 10
        per_speaker = results["speakers"][kind]["per_speaker"]
        assert {s: r["total"] for s, r in per_speaker.items()} == {"ann": 30, "bob": 30}
        assert results["speakers"][kind]["mean"] == np.mean([r["accuracy"] for r in per_speaker.values()])
    assert results["official"]["ensemble"]["total"] == 20 and results["test_accuracy"]["ensemble"]["total"] == 10
    assert {s: r["total"] for s, r in results["speakers"]["ensemble"]["per_speaker"].items()} == {"ann": 30, "bob": 30}
    assert "leave out ann" in out and "official split" in out
    for name in ["spectrogram_zero.png", "response_maps.png", "confusion_matrix.png", "results.json", "metrics.json"]:
        assert_run_file(workdir / name)
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["official"]["waveform"]["correct"] == results["official"]["waveform"]["correct"]


@pytest.mark.slow
def test_spoken_digits_chooses_epochs_without_the_speaker_scored(tmp_path, monkeypatch, capsys):
    """Nested leave-one-speaker-out: every model trained while scoring a speaker, the ones
    that choose the epoch count included, trains on the other speakers only."""
    module = load("spoken_digits")
    data_dir = tone_folder(tmp_path / "wavs", ["ann", "bob", "cat"], [0])
    trained_on, real = [], module.train_one

    def recording(kind, recordings, config, validation=None, epochs=None, members=1):
        trained_on.append((sorted(set(recordings.speakers.tolist())), epochs, validation is not None))
        return real(kind, recordings, config, validation=validation, epochs=epochs, members=members)

    monkeypatch.setattr(module, "train_one", recording)
    results = module.main(["--data-dir", str(data_dir), "--inputs", "spectrogram", "--split", "speakers",
                           "--epochs", "3", "--length", "4000", "--batch-size", "8", "--workdir", str(tmp_path / "run")])
    per_speaker = results["speakers"]["spectrogram"]["per_speaker"]
    for speaker, others in [("ann", ["bob", "cat"]), ("bob", ["ann", "cat"]), ("cat", ["ann", "bob"])]:
        chosen = per_speaker[speaker]
        assert 1 <= chosen["epochs"] <= 3 and sorted(chosen["inner"]) == others
        assert chosen["inner_mean"] == np.mean(list(chosen["inner"].values()))
    assert trained_on == [(["cat"], None, True), (["bob"], None, True), (["bob", "cat"], per_speaker["ann"]["epochs"], False),
                          (["cat"], None, True), (["ann"], None, True), (["ann", "cat"], per_speaker["bob"]["epochs"], False),
                          (["bob"], None, True), (["ann"], None, True), (["ann", "bob"], per_speaker["cat"]["epochs"], False)]
    assert "epochs chosen on the others" in capsys.readouterr().out
    assert results["speakers"]["spectrogram"]["std"] == np.std([r["accuracy"] for r in per_speaker.values()])



def test_spoken_digits_cosine_schedule_by_hand():
    """70 recordings in batches of 32 are 3 steps an epoch (32, 32, 6); over 2 epochs the rate
    falls from 1e-3 along a half cosine to 0 at step 6: (1 + cos(pi k / 6)) / 2 * 1e-3."""
    module = load("spoken_digits")
    config = module.Config(epochs=2, batch_size=32, learning_rate=1e-3)
    rates = module.learning_rates(config, 70)
    expected = [1e-3, 0.9330127e-3, 0.75e-3, 0.5e-3, 0.25e-3, 0.0669873e-3, 0.0]
    np.testing.assert_allclose([float(rates(k)) for k in range(7)], expected, rtol=1e-5, atol=1e-9)
    constant = module.learning_rates(dataclasses.replace(config, schedule="constant"), 70)
    assert [float(constant(k)) for k in (0, 6)] == [1e-3, 1e-3]



def test_spoken_digits_own_frames_follow_the_loaded_and_the_sped_up_recordings(tmp_path):
    """A 1,000-sample recording loaded into 4,000 samples fills 1,500..2,499, and played 1.25
    times as fast 1,600..2,399 (800 samples), 0.8 times 1,375..2,624 (1,250): its lengths say
    so, and its own frames are those whose centre lies where its samples are not zero."""
    module = load("spoken_digits")
    write_wav(tmp_path / "3_ann_0.wav", np.full(1000, 1000))
    recordings = module.audio.load_recordings(tmp_path, length=4000)
    perturbed = audio.speed_perturbed(recordings, factors=(1.25, 0.8))
    assert perturbed.lengths.tolist() == [1000, 800, 1250]
    centres = np.arange(30) * 128 + 128
    for wave, own in zip(perturbed.waveforms, audio.own_frames(perturbed.lengths, 4000), strict=True):
        inside = np.flatnonzero(wave)
        np.testing.assert_array_equal(own, (centres >= inside[0]) & (centres <= inside[-1]))


def test_spoken_digits_own_normalisation_ignores_the_padding():
    """The same recording centred in 8,000 or in 4,928 samples (12 hops less padding on each
    side) reads the same on its own frames with --normalise own, and not with band (whose
    means take in the padding); each band's mean over the own frames is 0, their values' std
    1, and the padding frames hold each band's quietest own value."""
    module = load("spoken_digits")
    rng = np.random.default_rng(0)
    wave = (rng.normal(size=3000) * np.hanning(3000) * np.sin(np.arange(3000) / 3)).astype(np.float32)
    recordings = []
    for samples in (8000, 4928):
        before = (samples - 3000) // 2
        padded = np.zeros((1, samples), np.float32)
        padded[0, before : before + 3000] = wave
        recordings.append(types.SimpleNamespace(waveforms=padded, lengths=np.array([3000])))
    own = [audio.own_frames(r.lengths, r.waveforms.shape[1])[0] for r in recordings]
    assert own[0].sum() == own[1].sum() == 23
    big, small = (module.inputs(r, "spectrogram", "own")[0, ..., 0] for r in recordings)
    np.testing.assert_allclose(big[own[0]], small[own[1]], atol=1e-5)
    band = [module.inputs(r, "spectrogram", "band")[0, ..., 0] for r in recordings]
    assert np.abs(band[0][own[0]] - band[1][own[1]]).max() > 0.3
    np.testing.assert_allclose(big[own[0]].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(big[own[0]].std(), 1, atol=1e-4)
    np.testing.assert_allclose(big[~own[0]], np.broadcast_to(big[own[0]].min(0), big[~own[0]].shape), atol=1e-6)


def test_spoken_digits_mixed_members_read_their_own_normalisation(monkeypatch):
    """--normalise mixed: members 0, 2 read band inputs, 1, 3 own ones; probabilities average
    each member's softmax on its own view (here a model returns logits (view, 0))."""
    module = load("spoken_digits")
    config = module.Config(normalise="mixed", members=3)
    assert module.views("spectrogram", config) == ["band", "own"]
    assert module.views("waveform", config) == ["recording"]
    monkeypatch.setattr(module, "inputs", lambda recordings, kind, view: np.full((2, 1), {"band": 0.0, "own": 1.0}[view]))
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    predict = lambda model, x, probabilities=False: softmax(model(x)) if probabilities else model(x)  # as train's
    monkeypatch.setattr(module, "train", types.SimpleNamespace(predict=predict))
    models = [lambda x, k=k: np.concatenate([x * k, 0 * x], axis=1) for k in (1.0, 2.0, 3.0)]
    # member 0 on band (0): logits (0, 0); member 1 on own (1): (2, 0); member 2 on band: (0, 0)
    p = module.probabilities(models, None, "spectrogram", config)
    e = np.exp(2.0) / (1 + np.exp(2.0))
    np.testing.assert_allclose(p, [[(0.5 + e + 0.5) / 3, (0.5 + (1 - e) + 0.5) / 3]] * 2, rtol=1e-6)


def test_spoken_digits_members_vote_with_their_probabilities_not_a_second_softmax(monkeypatch):
    """Two members, by hand: (0.71, 0, 0.29) and (0, 0.55, 0.45) average to (0.355, 0.275,
    0.37), class 2. A softmax applied again to the probabilities (the ensembles' fault) flattens
    the surer member more and averages to (0.349, 0.316, 0.335): class 0, another vote."""
    module = load("spoken_digits")
    config = module.Config(normalise="band", members=2)
    monkeypatch.setattr(module, "inputs", lambda recordings, kind, view: np.zeros((1, 1)))
    members = [np.array([[0.71, 0.0, 0.29]]), np.array([[0.0, 0.55, 0.45]])]
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    logits = lambda p: np.log(np.maximum(p, 1e-30))  # what the model returns: softmax gives p back
    predict = lambda model, x, probabilities=False: softmax(logits(model)) if probabilities else logits(model)
    monkeypatch.setattr(module, "train", types.SimpleNamespace(predict=predict))
    p = module.probabilities(members, None, "spectrogram", config)
    np.testing.assert_allclose(p, [[0.355, 0.275, 0.37]], atol=1e-6)
    assert p.argmax(-1).tolist() == [2] and softmax(np.stack(members)).mean(0).argmax(-1).tolist() == [0]


def test_spoken_digits_ensemble_averages_the_two_models_probabilities(capsys):
    """By hand: the spectrogram CNN is sure of the wrong class for one recording, the waveform
    CNN mildly right; their mean picks the right one only where the sum says so."""
    module = load("spoken_digits")
    recordings = types.SimpleNamespace(labels=np.array([0, 1, 1]), speakers=np.array(["ann", "ann", "bob"]))
    spectrogram = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    waveform = np.array([[0.3, 0.7], [0.3, 0.7], [0.4, 0.6]])  # means: (0.6, 0.4), (0.45, 0.55), (0.3, 0.7)
    kept = {"official": {"spectrogram": spectrogram, "waveform": waveform}, "test_dir": {},
            "speakers": {"spectrogram": {"ann": spectrogram[:2], "bob": spectrogram[2:]},
                         "waveform": {"ann": waveform[:2], "bob": waveform[2:]}}}
    results = {"official": {}, "speakers": {}}
    module.ensemble(results, kept, recordings, np.array([True, True, True]), None)
    assert results["official"]["ensemble"] == {"accuracy": 1.0, "correct": 3, "total": 3}
    assert results["speakers"]["ensemble"]["per_speaker"] == {"ann": {"accuracy": 1.0, "correct": 2, "total": 2},
                                                             "bob": {"accuracy": 1.0, "correct": 1, "total": 1}}
    waveform[1] = [0.9, 0.1]  # recording 1's mean is now (0.75, 0.25): class 0, and its label is 1
    module.ensemble(results, kept, recordings, np.array([True, True, True]), None)
    assert results["official"]["ensemble"]["correct"] == 2
    assert "== ensemble" in capsys.readouterr().out


def test_spoken_digits_refuses_bad_flags(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        load("spoken_digits").main(["--data-dir", str(tmp_path), "--length", "1000"])
    assert info.value.code == 2 and "argument --length: expected an integer >= 4000, got 1000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load("spoken_digits").main(["--data-dir", str(tmp_path / "nowhere")])
    assert "argument --data-dir: expected an existing folder of wav files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load("spoken_digits").main(["--data-dir", str(tmp_path), "--normalise", "mixed"])
    assert "argument --normalise: expected --members 2 or more with mixed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load("spoken_digits").main(["--data-dir", str(tmp_path), "--workdir", str(tmp_path / "run")])
    assert "holds no wav file named" in capsys.readouterr().err and not (tmp_path / "run").exists()


def sentence_file(path, n, seed, classes=2):
    """``n`` lines of 'label word word ...': random words of a small vocabulary, and the label's
    own word somewhere in each sentence (class c: 'c{c}'), so a sentence CNN learns it."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(20)]
    lines = []
    for i in range(n):
        label = i % classes
        sentence = list(rng.choice(words, rng.integers(3, 9)))
        sentence.insert(int(rng.integers(0, len(sentence) + 1)), f"c{label}")
        lines.append(f"{label} {' '.join(sentence)}")
    path.write_text("\n".join(lines) + "\n")
    return path


SMALL_SENTENCE_CNN = ["--embed-dim", "8", "--features", "4", "--epochs", "6", "--batch-size", "16", "--learning-rate", "20"]


@pytest.mark.slow
def test_sentences_cross_validates_a_file_without_a_test_split(tmp_path, capsys):
    data = sentence_file(tmp_path / "all.txt", 80, seed=0)
    workdir = tmp_path / "run"
    results = load("sentences").main(["--train", str(data), "--folds", "2", *SMALL_SENTENCE_CNN,
                                      "--workdir", str(workdir)])
    out = capsys.readouterr().out
    runs = results["runs"]
    assert [r["name"] for r in runs] == ["fold 1", "fold 2"] and [r["total"] for r in runs] == [40] * 2
    assert [r["train_sentences"] + r["dev_sentences"] for r in runs] == [40] * 2  # the other fold
    assert all(r["correct"] == round(r["accuracy"] * 40) for r in runs)
    assert results["test_accuracy"] == np.mean([r["accuracy"] for r in runs]) >= 0.8  # one word decides (chance: 0.5)
    assert "fold 2/2" in out and "mean over 2 folds" in out and "sentences/s" in out
    for name in ["results.json", "metrics.json", "ngrams.json", "learning_curves.png", "confusion_matrix.png",
                 "filter_ngrams.png", "sentence_responses.png"]:
        assert_run_file(workdir / name)
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["test_accuracy"] == results["test_accuracy"] and len(saved["runs"]) == 2
    ngrams = json.loads((workdir / "ngrams.json").read_text())
    assert {g["raises_class"] for g in ngrams} == {0, 1} and all(g["ngrams"] for g in ngrams)
    assert results["classes"] == ["0", "1"]  # a file of the user's: its classes are numbers
    shutil.copy(data, tmp_path / "rt-polarity.all")  # MR, Kim's set: its classes have names
    mr = load("sentences").main(["--data-dir", str(tmp_path), "--folds", "2", *SMALL_SENTENCE_CNN, "--epochs", "1",
                                 "--workdir", str(tmp_path / "mr")])
    assert mr["classes"] == ["negative", "positive"]


@pytest.mark.slow
def test_sentences_on_a_given_split_counts_unknown_words_and_cut_sentences(tmp_path, capsys):
    train_file = sentence_file(tmp_path / "train.txt", 60, seed=1, classes=3)
    test_file = tmp_path / "test.txt"
    test_file.write_text("0 c0 w1 never seen\n1 w2 c1\n2 c2 " + " ".join(["w3"] * 40) + "\n")
    results = load("sentences").main(["--train", str(train_file), "--test", str(test_file), "--max-length", "12",
                                      *SMALL_SENTENCE_CNN, "--workdir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    (run,) = results["runs"]
    assert run["total"] == 3 and run["test_unknown_words"] == 2 and run["test_words"] == 2 + 4 + 41
    assert run["test_truncated"] == 1 and run["test_words_cut"] == 41 - 12
    assert "2 of 47 test words unknown" in out and "1 test sentences cut to 12 words (29 words dropped)" in out
    assert run["train_sentences"] == 54 and run["dev_sentences"] == 6  # 10% held out to choose the epoch


SST_TREES = {  # by hand: train's roots hold all five labels; its non-neutral phrases are 10 (3 + 3 + 0 + 2 + 2)
    "train": "(3 (2 (2 a) (2 fine)) (4 (3 film) (2 .)))\n(1 (0 (0 dull) (2 film)) (2 .))\n(2 (2 so) (2 so))\n"
             "(4 (4 great) (2 .))\n(0 (0 awful) (2 .))\n",
    "dev": "(4 (3 fine) (2 .))\n(0 (0 dull) (2 .))\n",
    "test": "(3 (3 fine) (2 film))\n(1 (1 dull) (2 film))\n(2 (2 so) (2 film))\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("dataset, flags, trained, tested, bucket", [
    ("sst2", [], 10, 2, 8),  # every distinct non-neutral phrase of the training trees; the non-neutral test sentences
    ("sst2", ["--sentences-only"], 3, 3, 0),  # Kim's stsa.binary.* files, as before the trees
    ("sst1", [], 10 + 7, 3, 8),  # five classes: the neutral phrases too (a fine, a, fine, so so, so, film, .)
    ("sst1", ["--sentences-only"], 5, 3, 0),  # every root
    ("sst2", ["--bucket", "0"], 10, 2, 0),
    ("sst1", ["--sentences-only", "--bucket", "2"], 5, 3, 2),
])
def test_sentences_trains_sst_on_the_treebanks_phrases_or_its_sentences(tmp_path, dataset, flags, trained, tested,
                                                                         bucket):
    (tmp_path / "sst").mkdir()
    for split, trees in SST_TREES.items():
        (tmp_path / "sst" / f"{split}.txt").write_text(trees)
    for split in ("train", "dev", "test"):
        (tmp_path / f"stsa.binary.{split}").write_text("1 a fine film .\n0 dull film .\n1 fine .\n")
    results = load("sentences").main(["--dataset", dataset, *flags, "--data-dir", str(tmp_path),
                                      "--workdir", str(tmp_path / "run"), *SMALL_SENTENCE_CNN])
    (run,) = results["runs"]
    assert (run["train_sentences"], run["total"]) == (trained, tested)
    assert results["bucket_width"] == bucket
    assert results["classes"] == (["negative", "positive"] if dataset == "sst2" else
                                  ["very negative", "negative", "neutral", "positive", "very positive"])


@pytest.mark.parametrize("files, flags, message", [
    ({"train": b""}, [], "is empty: it holds no labelled sentence"),
    ({"train": b"1 good\nfine film\n"}, [], "line 2: the label must be a non-negative integer"),
    ({"train": b"1 good\n2 bad\n"}, [], r"must be the classes 0 .. K-1, each present; got [1, 2], which lacks [0]"),
    ({"train": b"0 good\n1 bad\n", "test": b"2 what\n"}, [], "The test labels hold 2 (at row 0), a class the "
                                                              "training labels never had"),
    ({"train": "1 good film\n".encode("utf-16")}, [], "is not a text file"),
    ({"train": b"0 good\n1 bad\n0 dull\n"}, ["--folds", "4"], "--folds 4 is more than the 3 sentences of"),
    ({"train": b"0 good\n1 bad\n"}, ["--folds", "1"], "argument --folds: expected an integer >= 2, got 1"),
    ({"train": b"0 good\n1 bad\n"}, ["--dataset", "mr"], "argument --dataset: expected no --dataset when --train"),
    ({}, ["--data-dir", "{tmp}"], "argument --data-dir: expected a folder holding rt-polarity.all (git clone"),
    ({}, ["--data-dir", "{tmp}", "--dataset", "sst1"], "argument --data-dir: expected a folder holding sst/train.txt: "
                                                       "the Stanford Sentiment Treebank's trees"),
    ({"train": b"0 good\n1 bad\n"}, ["--sentences-only"], "argument --sentences-only: expected --sentences-only "
                                                            "with --dataset sst2 or sst1 only"),
    ({"train": b"0 good\n1 bad\n"}, ["--test", "{tmp}/nowhere"], "argument --test: expected an existing file"),
    ({"train": b"0 good\n1 bad\n"}, ["--widths", "3,x"], "argument --widths: expected positive integers"),
    ({"train": b"0 good\n1 bad\n"}, ["--bucket", "-1"], "argument --bucket: expected an integer >= 0, got -1"),
    ({"train": b"0 good\n1 bad\n", "test": b"0 ok\n"}, ["--folds", "5"],
     "argument --folds: expected no --folds with a test split"),
    ({"train": b"0 good\n1 bad\n", "dev": b"0 ok\n"}, [], "argument --dev: expected --dev with --test only"),
])
def test_sentences_refuses_bad_data_and_flags_with_one_line_writing_nothing(tmp_path, capsys, files, flags, message):
    args = []
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
        args += [f"--{name}", str(tmp_path / name)]
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        load("sentences").main([*args, *(f.format(tmp=tmp_path) for f in flags), "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and message in err[-1] and "error: " in err[-1], err
    assert not workdir.exists()


@pytest.mark.slow
def test_customer_data_dense_does_not_care_about_pixel_order(tiny_idx, tmp_path, capsys):
    results = load("customer_data").main(["--data-dir", str(tiny_idx), "--epochs", "2", "--batch-size", "16",
                                          "--workdir", str(tmp_path / "run")])
    dense = results["dense (784-128-10, 101,770 params)"]
    cnn = results["CNN (lecture, 104,202 params)"]
    assert set(cnn) == set(dense) == {"as they are", "pixels permuted"} and dense["as they are"]["total"] == 32
    # the same sums in another order: the permuted dense network predicts as the plain one (float rounding aside)
    assert abs(dense["as they are"]["correct"] - dense["pixels permuted"]["correct"]) <= 1
    assert "pixels permuted" in capsys.readouterr().out
    assert_run_file(tmp_path / "run" / "permuted_digits.png")


def test_the_permuted_dense_network_computes_what_the_plain_one_does():
    from flax import nnx

    customer = load("customer_data")
    x = np.random.default_rng(0).uniform(size=(4, 5, 6, 2)).astype(np.float32)
    permutation = np.random.default_rng(1).permutation(30)
    plain = customer.dense_network((5, 6, 2), 3, rngs=nnx.Rngs(0))
    moved = customer.follow_pixels(customer.dense_network((5, 6, 2), 3, rngs=nnx.Rngs(0)), permutation, 2)
    np.testing.assert_allclose(moved(customer.permute(x, permutation)), plain(x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain(customer.permute(x, permutation)), plain(x), atol=1e-3)


def test_permute_moves_every_image_the_same_way():
    permute = load("customer_data").permute
    images = np.arange(2 * 2 * 3 * 1, dtype=np.float32).reshape(2, 2, 3, 1)
    moved = permute(images, np.array([5, 0, 1, 2, 3, 4]))
    np.testing.assert_array_equal(moved[0, :, :, 0], [[5, 0, 1], [2, 3, 4]])
    np.testing.assert_array_equal(moved[1, :, :, 0], [[11, 6, 7], [8, 9, 10]])


def test_knobs_lecture_design_is_the_lectures_model():
    from flax import nnx

    from cnnjax import summary

    knobs = load("knobs")
    lecture_cnn = knobs.build(knobs.LECTURE, (28, 28, 1), 10, rngs=nnx.Rngs(0))
    two_layers = knobs.build(knobs.Design(conv_layers=2), (28, 28, 1), 10, rngs=nnx.Rngs(0))
    assert summary(lecture_cnn, (28, 28, 1)).total_params == 104_202  # the lecture's Functional table
    assert summary(two_layers, (28, 28, 1)).total_params == 320 + 18_496 + 5 * 5 * 64 * 10 + 10  # by hand
    with pytest.raises(ValueError, match="does not fit a \\(28, 28, 1\\) image: output size would be zero"):
        knobs.build(knobs.Design(feature_size=5), (28, 28, 1), 10, rngs=nnx.Rngs(0))
    assert len({d for _, _, d in knobs.settings()}) == len(knobs.settings()) - len(knobs.SWEEPS) + 1


@pytest.mark.slow
def test_knobs_sweep_on_tiny_data(tiny_idx, tmp_path, capsys, monkeypatch):
    knobs = load("knobs")
    monkeypatch.setattr(knobs, "SWEEPS", {"number of neurons": ("neurons", [0, 16]),
                                          "pooling window / stride": ("pool", [(2, 2), (3, 2)])})
    rows = knobs.main(["--data-dir", str(tiny_idx), "--epochs", "1", "--batch-size", "16",
                       "--workdir", str(tmp_path / "run")])
    assert [(r["knob"], r["value"]) for r in rows] == [("number of neurons", 0), ("number of neurons", 16),
                                                       ("pooling window / stride", (2, 2)),
                                                       ("pooling window / stride", (3, 2))]
    assert rows[0]["params"] == 104_202 and rows[1]["params"] == 104_202 - 11_530 + 1152 * 16 + 16 + 16 * 10 + 10
    assert rows[0]["accuracy"] == rows[2]["accuracy"]  # the lecture's design, trained once
    assert all(r["total"] == 32 and r["flops"] > 0 and r["images_per_s"] > 0 for r in rows)
    assert_run_file(tmp_path / "run" / "knobs.png")
    assert "number of neurons" in capsys.readouterr().out


@pytest.mark.slow
def test_mnist_across_two_processes_writes_one_run_that_matches_one_process_of_two_devices(tiny_idx, tmp_path):
    """Two processes started with --coordinator/--num-processes/--process-id, and two more
    as SLURM's srun starts them (its variables, no flags: JAX's cluster detection), each
    pair against one process of two devices (run once for both)."""
    import os
    import socket
    import subprocess

    script = str(scripts.ROOT / "experiments" / "mnist.py")
    flags = ["--data-dir", str(tiny_idx), "--epochs", "2", "--batch-size", "16", "--verbose", "2"]
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cpu = {**os.environ, "JAX_PLATFORMS": "cpu"}  # CPU devices on any machine, as a GPU is not shared
    commands, envs = [], []
    for i in range(2):  # --coordinator flags
        commands.append([sys.executable, script, *flags, "--workdir", str(tmp_path / "flags"), "--coordinator",
                         f"127.0.0.1:{ports[0]}", "--num-processes", "2", "--process-id", str(i)])
        envs.append(cpu)
    srun = dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="127.0.0.1", SLURM_NTASKS="2", SLURM_LOCALID="0",
                JAX_COORDINATOR_PORT=str(ports[1]))
    for i in range(2):  # srun's variables
        commands.append([sys.executable, script, *flags, "--workdir", str(tmp_path / "srun")])
        envs.append({**cpu, **srun, "SLURM_PROCID": str(i)})
    commands.append([sys.executable, script, *flags, "--workdir", str(tmp_path / "alone")])
    envs.append({**cpu, "JAX_NUM_CPU_DEVICES": "2"})
    runs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for c, env in zip(commands, envs, strict=True)]
    try:
        outputs = [r.communicate(timeout=300)[0] for r in runs]
    finally:
        for r in runs:
            if r.poll() is None:
                r.kill()
    for r, out in zip(runs, outputs, strict=True):
        assert r.returncode == 0, out[-3000:]
    want = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    for start, (main, other) in (("flags", outputs[0:2]), ("srun", outputs[2:4])):
        assert "2 cpu device(s) in 2 process(es)" in main and "test accuracy" not in other, start
        got = json.loads((tmp_path / start / "metrics.json").read_text())
        assert [e["epoch"] for e in got] == [1, 2], start
        for g, w in zip(got, want, strict=True):
            for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
                assert abs(g[k] - w[k]) <= 1e-5, (start, k, g[k], w[k])
        assert json.loads((tmp_path / start / "config.json").read_text())["num_processes"] == 2, start
        assert_run_file(tmp_path / start / "saliency.png")


@pytest.mark.parametrize("script, flags", [
    ("xo", []), ("knobs", ["--data-dir", "{idx}"]), ("customer_data", ["--data-dir", "{idx}"]), ("invariance", []),
])
def test_every_experiment_refuses_a_folder_another_run_holds(tiny_idx, tmp_path, capsys, script, flags):
    from cnnjax import train

    workdir = tmp_path / "held"
    with train.checkpoints.DirectoryLock(workdir), pytest.raises(SystemExit) as info:
        load(script).main([*(f.format(idx=tiny_idx) for f in flags), "--workdir", str(workdir)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {workdir} is in use by process")
    assert os.listdir(workdir) == [".lock"]


@pytest.mark.slow
def test_the_ports_train_as_their_originals_on_the_same_batches(tiny_idx, tmp_path, capsys):
    """Flax NNX's tutorial CNN and its cnnjax port: after two steps on the same batches the weights
    agree to float rounding (Equinox's port gives its logits: test_models); the script runs end to end."""
    import optax
    from flax import nnx

    from cnnjax import data, train

    ports = load("ports")
    x, y = data.load(str(tiny_idx), "train")
    original = ports.FlaxCNN(rngs=nnx.Rngs(0))
    port = ports.flax_port(original)
    ports.train_flax(original, x, y, 2, 0)
    train.fit(port, ports._batches(x, y, 32, 2, 0), steps=2, steps_per_epoch=2, optimizer=optax.adamw(0.005, 0.9),
              verbose=0)
    np.testing.assert_allclose(port[6].kernel[...], original.linear2.kernel[...], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(port[0].kernel[...], original.conv1.kernel[...], rtol=1e-4, atol=1e-6)
    results = ports.main(["--data-dir", str(tiny_idx), "--steps", "2", "--workdir", str(tmp_path / "ports")])
    assert set(results) == {"Flax NNX MNIST tutorial", "Equinox CNN on MNIST"}
    assert "original    cnnjax" in capsys.readouterr().out and (tmp_path / "ports" / "results.json").exists()


@pytest.mark.parametrize("script, bad", [
    ("mnist", "--epochs=0"), ("xo", "--train-size=1"), ("spoken_digits", "--length=10"),
    ("customer_data", "--epochs=0"), ("knobs", "--batch-size=0"), ("invariance", "--limit=0"),
    ("sentences", "--folds=1"),
])
@pytest.mark.slow
def test_scripts_answer_help_and_a_bad_flag_before_jax_loads(script, bad):
    """``--help`` and a bad flag are answered before JAX, flax or cnnjax is imported (they take
    seconds to import), so a typo costs nothing."""
    path = ROOT / "experiments" / f"{script}.py"
    probe = ("import runpy, sys\n"
             "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
             "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('exit', code, 'loaded', sorted(m for m in ('jax', 'flax', 'cnnjax') if m in sys.modules))")
    for flags in (["--help"], [bad, "--workdir", "/nonexistent/run"]):
        out = subprocess.run([sys.executable, "-c", probe, str(path), *flags], capture_output=True, text=True,
                             cwd=ROOT / "experiments", timeout=120)
        assert out.stdout.strip().splitlines()[-1] == f"exit {0 if flags == ['--help'] else 2} loaded []", \
            (script, flags, out.stdout[-500:], out.stderr[-500:])


def test_the_colab_install_cell_keeps_the_runtimes_jax(monkeypatch, tmp_path, capsys):
    """On Colab the install cell runs pip with constraints that pin the runtime's own jax and
    jaxlib at their installed versions (so pip cannot replace them), and fills a private
    repository's token from Colab's secrets; elsewhere it installs nothing."""
    import types
    from importlib import metadata

    import nbformat

    notebook = nbformat.read(scripts.ROOT / "experiments" / "colab.ipynb", as_version=4)
    cell = next(c.source for c in notebook.cells if c.cell_type == "code")
    assert 'CNNJAX_SOURCE = ""' in cell and "set `CNNJAX_SOURCE` in the install\ncell" in notebook.cells[0].source
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    exec(cell, {})  # not on Colab: nothing installed
    assert calls == []
    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=lambda key: {"GIT_TOKEN": "s3cret"}[key])
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", colab.userdata)
    with pytest.raises(SystemExit, match="Set CNNJAX_SOURCE in this cell"):
        exec(cell, {})
    exec(cell.replace('CNNJAX_SOURCE = ""', 'CNNJAX_SOURCE = "git+https://{token}@example.org/me/cnnjax.git"'), {})
    (command,) = calls
    assert command[1:5] == ["-m", "pip", "install", "-q"] and command[-1] == "git+https://s3cret@example.org/me/cnnjax.git"
    pins = open(command[command.index("-c") + 1]).read().split()
    assert f"jax=={metadata.version('jax')}" in pins and f"jaxlib=={metadata.version('jaxlib')}" in pins
    assert "no restart needed" in capsys.readouterr().out


def test_reproduce_reruns_a_record_and_reports_each_figure_that_differs(tmp_path, monkeypatch, capsys):
    """A record whose command is a stand-in experiment (it writes results.json into --workdir,
    its accuracy read from a file): the same figures are exit 0, a changed accuracy exit 1
    naming it with both values, a changed timing is shown apart and not counted."""
    reproduce = load("reproduce")
    records = tmp_path / "records"
    records.mkdir()
    stub, accuracy = tmp_path / "stub.py", tmp_path / "accuracy.txt"
    stub.write_text("import json, os, sys\n"
                    "workdir = sys.argv[sys.argv.index('--workdir') + 1]\n"
                    "os.makedirs(workdir)\n"
                    f"a = float(open({str(accuracy)!r}).read())\n"
                    "json.dump({'test_accuracy': a, 'seconds': 3.5, 'cases': [a, 1.0], 'workdir': workdir,"
                    " 'run': {'date': 'now'}}, open(os.path.join(workdir, 'results.json'), 'w'))\n")
    run = {"command": f"python {stub} --workdir /elsewhere --seed 0", "commit": "abc", "date": "then"}
    (records / "stub.json").write_text(json.dumps({"test_accuracy": 0.985, "seconds": 2.0, "cases": [0.985, 1.0],
                                                   "workdir": "/elsewhere", "run": run}))
    monkeypatch.setattr(reproduce, "RECORDS", records)

    accuracy.write_text("0.985")
    assert reproduce.main(["stub", "--workdir", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    assert "every figure is the same" in out and "--seed 0" in out and "running:" in out
    assert re.search(r"workdir\s+recorded\s+'/elsewhere'", out)  # text: shown, never a difference
    assert re.search(r"seconds\s+recorded\s+2\s+now\s+3\.5", out)  # a timing: shown, not a difference

    accuracy.write_text("0.9849")
    assert reproduce.main(["stub", "--workdir", str(tmp_path / "third")]) == 1
    out = capsys.readouterr().out
    assert re.search(r"test_accuracy\s+recorded\s+0\.985\s+now\s+0\.9849", out)
    assert re.search(r"cases/0\s+recorded", out) and "2 figure(s) differ" in out

    assert reproduce.main([]) == 0 and f"python {stub} --workdir /elsewhere --seed 0" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        reproduce.main(["nonesuch"])
    assert e.value.code == 2 and "expected one of stub, got 'nonesuch'" in capsys.readouterr().err


def test_every_committed_record_names_a_command_reproduce_can_run():
    """Each record in docs/results/ (but the papers' figures) has a command of the form
    reproduce.py reruns, with its output flag replaced."""
    reproduce = load("reproduce")
    found = reproduce.records()
    assert len(found) >= 3
    for name, record in found.items():
        args, results = reproduce.rerun_command(record["run"]["command"], Path("/tmp/x"))
        assert Path(args[1]).parts[0] in ("experiments", "benchmarks") and (ROOT / args[1]).is_file(), name
        assert str(results).startswith("/tmp/x"), name
