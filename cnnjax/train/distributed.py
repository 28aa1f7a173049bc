"""Training across processes: JAX's multi-controller runtime, one process per host or GPU.

Every process runs the same script. :func:`initialize` connects them (JAX's distributed
runtime; on CPU its collectives are gloo's, over TCP), after which ``jax.devices()`` lists
every process's devices and :func:`cnnjax.train.fit` builds its mesh over all of them:
each global batch is split across every device of every process, and the gradients are
averaged over all of them, so N processes of one device each compute what one process of
N devices computes (on CPU, the same parameters to the bit).

Every process gets the same ``fit`` call (the same seed, so the same global batches, in
the order of a one-process run) and reads only its own devices' slices of each batch:
given the inputs as a memory map or another random-access source (see ``fit``), a
process holds only the examples it reads. The progress bar and per-epoch lines print in
process 0 only.

Starting N processes on one machine, to try it::

    python experiments/mnist.py ... --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 0 &
    python experiments/mnist.py ... --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 1

On a cluster (SLURM, Open MPI, Kubernetes, Cloud TPU) ``initialize()`` with no arguments
lets JAX read the cluster's own environment; :func:`launched_processes` tells whether a
launcher (SLURM's ``srun``, Open MPI's ``mpirun``) started this process among others.
"""

from __future__ import annotations

import os
import socket
import time

import jax

from .. import _checks


def _address(coordinator: str) -> tuple[str, int]:
    host, _, port = coordinator.rpartition(":") if isinstance(coordinator, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"`coordinator` must be 'HOST:PORT' (e.g. '127.0.0.1:12345'), got {coordinator!r}.")
    return host.strip("[]"), int(port)


def _wait_for(address: tuple[str, int], timeout: float) -> None:
    """Returns once ``address`` accepts a TCP connection; raises ConnectionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(address, timeout=min(1.0, timeout)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConnectionError(
                    f"Could not reach the coordinator at {address[0]}:{address[1]} within {timeout:g} s "
                    f"({e.strerror or e}). Start process 0 there first (it hosts the coordinator), and check the "
                    f"address and any firewall between the hosts.") from None
            time.sleep(0.2)


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, timeout: float = 60.0, heartbeat_timeout: int = 100) -> None:
    """Connects this process to the others: ``jax.distributed.initialize`` with checks first.

    Args:
      coordinator: ``"HOST:PORT"`` of process 0, which hosts the coordination service.
      num_processes: how many processes take part.
      process_id: this process's number, ``0 <= process_id < num_processes``.
      timeout: seconds to wait for the coordinator (and, in JAX, for every process).
      heartbeat_timeout: seconds of silence after which JAX declares a process dead. A
        process that dies mid-run makes the others' next step raise
        ``jax.errors.JaxRuntimeError`` ("Gloo all-reduce failed ... Connection reset by
        peer") at once; their exit then waits up to this long for it before JAX aborts them.

    With no arguments JAX detects the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU).

    Raises:
      ValueError: for an argument out of range, before anything connects.
      ConnectionError: when a process other than 0 cannot reach the coordinator within
        ``timeout`` (JAX itself would end the process with a fatal error instead).
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError(f"`coordinator`, `num_processes` and `process_id` go together (or none, for JAX's cluster "
                         f"detection), got {coordinator!r}, {num_processes!r}, {process_id!r}.")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"`timeout` must be a positive number of seconds, got {timeout!r}.")
    heartbeat_timeout = _checks.positive_int(heartbeat_timeout, "heartbeat_timeout")
    if any(given):
        address = _address(coordinator)
        num_processes = _checks.positive_int(num_processes, "num_processes")
        if not (_checks.is_int(process_id) and 0 <= process_id < num_processes):
            raise ValueError(f"`process_id` must be an int in [0, {num_processes}), got {process_id!r}.")
        if process_id != 0:
            _wait_for(address, timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices talk over TCP
    timeouts = dict(initialization_timeout=max(1, int(timeout)), heartbeat_timeout_seconds=heartbeat_timeout)
    if not any(given):
        jax.distributed.initialize(**timeouts)
    else:
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id, **timeouts)


_LAUNCHERS = (  # (a variable the launcher sets in each process it starts, the one with their count)
    ("SLURM_STEP_NODELIST", "SLURM_NTASKS"),  # SLURM's srun (what JAX's SLURM detection reads)
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI's mpirun
)


def launched_processes() -> int | None:
    """How many processes a launcher that JAX detects started together with this one
    (SLURM's ``srun``, Open MPI's ``mpirun``), read from its environment; None when no
    such launcher started it. More than 1: call :func:`initialize` with no arguments."""
    for marker, count in _LAUNCHERS:
        if marker in os.environ and os.environ.get(count, "").isdigit():
            return int(os.environ[count])
    return None


__all__ = ["initialize", "launched_processes"]
