"""cnnjax.train.distributed: processes on 127.0.0.1 (JAX's runtime, gloo collectives) train as
one process of as many devices does."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnjax import data
from cnnjax.train import distributed

WORKER = Path(__file__).with_name("distributed_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(out, *flags):
    # CPU devices on any machine: one GPU cannot be shared by two processes of a group
    return subprocess.Popen([sys.executable, str(WORKER), "--out", str(out), *map(str, flags)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})


def finish(processes) -> list[str]:
    """Waits for every process (killing any left on a failure) and checks each succeeded."""
    try:
        outputs = [p.communicate(timeout=240)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outputs


def group(tmp_path, name, *flags):
    port = free_port()
    outputs = finish([start(tmp_path / f"{name}{i}.npz", "--port", port, "--process-id", i, *flags) for i in range(2)])
    return [np.load(tmp_path / f"{name}{i}.npz") for i in range(2)], outputs


def assert_same_training(result, reference):
    params = [k for k in reference.files if k.startswith("arr_")]
    assert len(params) == 8  # the lecture CNN's four kernels and four biases
    for k in params + ["loss", "accuracy"]:
        np.testing.assert_allclose(result[k], reference[k], atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_two_processes_killed_and_started_again_train_as_one_process_of_two_devices(tmp_path):
    """2 processes of 1 CPU device each, both SIGKILLed in epoch 2 (a checkpoint after every step),
    then started again: their final parameters, loss and accuracy equal an uninterrupted
    run of 1 process with 2 devices."""
    alone = start(tmp_path / "alone.npz", "--epochs", 6)
    checkpoints = tmp_path / "checkpoints"
    flags = ["--epochs", 6, "--checkpoints", checkpoints, "--steps-per-segment", 1]
    port = free_port()
    killed = [start(tmp_path / f"killed{i}.npz", "--port", port, "--process-id", i, *flags) for i in range(2)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and max([int(d.name) for d in checkpoints.glob("*") if d.name.isdigit()],
                                               default=0) < 5:  # into epoch 2 (4 steps an epoch)
        time.sleep(0.05)
    for p in killed:
        p.kill()
        p.wait()
    assert not (tmp_path / "killed0.npz").exists()  # stopped before the end
    (first, second), outputs = group(tmp_path, "resumed", *flags)
    finish([alone])
    alone = np.load(tmp_path / "alone.npz")
    assert int(first["devices"]) == int(alone["devices"]) == 2
    assert first["epochs"].tolist() == list(range(1, 7))
    assert_same_training(first, alone)
    assert_same_training(second, alone)
    assert "Epoch 6/6" in outputs[0] and "Epoch 6/6" not in outputs[1]  # progress from process 0 only
    assert "Epoch 1/6" not in outputs[0]  # resumed after epoch 1, not trained again from the start


@pytest.mark.parametrize("loop", ["scan", "python"])
@pytest.mark.slow
def test_each_process_reads_only_its_own_devices_slices_of_each_batch(tmp_path, loop):
    """The inputs as a random-access source: process p reads exactly the examples of its
    device's half of every batch, in the batches of a one-process run (the same order),
    and the training equals 1 process with 2 devices."""
    flags = ["--epochs", 2, "--loop", loop, "--record-reads"]
    alone = start(tmp_path / "alone.npz", *flags)
    (first, second), _ = group(tmp_path, "group", *flags)
    finish([alone])
    alone = np.load(tmp_path / "alone.npz")
    assert_same_training(first, alone)
    for p, result in enumerate((first, second)):
        halves = [data.batch_plan(128, 32, seed=0, epoch=e)[0][:, 16 * p : 16 * (p + 1)] for e in range(2)]
        assert sorted(result["reads"].tolist()) == sorted(np.concatenate(halves, axis=None).tolist())
    assert set(alone["reads"].tolist()) == set(range(128))  # one process reads every example


def test_an_unreachable_coordinator_fails_within_the_timeout():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=re.escape(f"Could not reach the coordinator at 127.0.0.1:{port} within "
                                                        "1 s")):
        distributed.initialize(f"127.0.0.1:{port}", 2, 1, timeout=1)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("args, message", [
    (("127.0.0.1", 2, 1), "`coordinator` must be 'HOST:PORT' (e.g. '127.0.0.1:12345'), got '127.0.0.1'"),
    (("127.0.0.1:1234", 2, 2), "`process_id` must be an int in [0, 2), got 2"),
    (("127.0.0.1:1234", 0, 0), "`num_processes` must be positive, got 0"),
    (("127.0.0.1:1234", None, 0), "`coordinator`, `num_processes` and `process_id` go together"),
])
def test_bad_arguments_fail_before_anything_connects(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distributed.initialize(*args, timeout=1)
