"""Checkpoints of training runs: bit-identical resume, named trees, damaged checkpoints skipped."""

import asyncio
import contextlib
import errno
import gc
import logging
import os
import re
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from training import DropoutBatchNormNet, params_of, small_data, small_model

from cnnjax import train

# orbax leaves its failed reads of the damaged files to the garbage collector: collected inside
# the tests that damage files (gc.collect() below), where this filter applies
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class KillAfter(train.Callback):
    """Interrupts the process's training after ``segments`` segments, as a SIGINT would."""

    def __init__(self, segments):
        self.segments, self.seen = segments, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen >= self.segments:
            raise KeyboardInterrupt("killed")


@pytest.mark.parametrize("factory", [small_model, DropoutBatchNormNet])
@pytest.mark.slow
def test_resume_after_a_kill_is_bit_identical(tmp_path, factory):
    x, y = small_data(100)
    kw = dict(epochs=3, batch_size=16, steps_per_segment=2, keep_checkpoints=2, verbose=0)
    reference = factory()
    history = train.fit(reference, (x, y), checkpoint_dir=tmp_path / "a", **kw)
    with pytest.raises(KeyboardInterrupt):
        train.fit(factory(), (x, y), checkpoint_dir=tmp_path / "b", callbacks=[KillAfter(6)], **kw)
    ckpt = train.checkpoints.Checkpointer(tmp_path / "b")
    # 100 / 16: 7 steps an epoch (the last partial), segments of 2 (4 a epoch): saved after
    # steps 2, 4, 6, 7 (end of epoch 1), 9; the kill comes after the 6th segment, before its save.
    assert ckpt.steps() == [7, 9]
    ckpt.close()
    resumed = factory()
    resumed_history = train.fit(resumed, (x, y), checkpoint_dir=tmp_path / "b", resume=True, **kw)
    for a, b in zip(params_of(reference), params_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    rest = lambda m: jax.tree.leaves(jax.tree.map(np.asarray, jax.random.key_data(m.drop.rngs.key[...]))) \
        if hasattr(m, "drop") else []
    for a, b in zip(rest(reference), rest(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    for key in ("loss", "accuracy"):
        assert resumed_history.history[key] == history.history[key]
    assert len(train.checkpoints.Checkpointer(tmp_path / "a").steps()) == 2
    finished = factory()
    with pytest.warns(UserWarning, match=r"holds a run that has trained 3 epochs, and epochs=3: nothing is left to "):
        again = train.fit(finished, (x, y), checkpoint_dir=tmp_path / "b", resume=True, **kw)
    assert again.history["loss"] == history.history["loss"]  # the finished run's History, and its weights
    for a, b in zip(params_of(reference), params_of(finished), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_resume_refuses_a_different_run_naming_what_differs(tmp_path):
    x, y = small_data(128)
    first, other = (x[:64], y[:64]), (x[64:], y[64:])  # the same N, other examples
    kw = dict(batch_size=16, optimizer=optax.adam(1e-3), checkpoint_dir=tmp_path, verbose=0)
    train.fit(small_model(), first, epochs=1, **kw)
    relabelled = (first[0], (first[1] + 1) % 10)
    changes = [
        (dict(batch_size=32), "batch_size (16 -> 32)"),
        (dict(train=other), "data (another data)"),
        (dict(train=relabelled), "data (another data)"),
        (dict(optimizer=optax.adam(1e-4)), "optimizer (another optimizer)"),
        (dict(optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))), "optimizer (another"),
        (dict(loss=lambda o, t: optax.softmax_cross_entropy_with_integer_labels(o, t) * 2), "loss (another loss)"),
        (dict(compute_dtype=jnp.bfloat16), "compute_dtype (None -> 'bfloat16')"),
        (dict(seed=1), "seed (0 -> 1)"),
    ]
    for change, named in changes:
        args = {**kw, "train": first, "epochs": 2, "resume": True, **change}
        with pytest.raises(ValueError, match="is from a different run: .*" + re.escape(named)):
            train.fit(small_model(), args.pop("train"), **args)
    # the run itself, its optimizer built anew, resumes
    history = train.fit(small_model(), first, epochs=2, resume=True, **kw)
    assert [e["epoch"] for e in history.epochs] == [1, 2]


def _largest_file(directory):
    files = [os.path.join(root, f) for root, _, names in os.walk(directory) for f in names]
    return max(files, key=os.path.getsize)


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    x, y = small_data(64)
    kw = dict(epochs=3, batch_size=16, verbose=0, keep_checkpoints=3)
    reference = small_model()
    train.fit(reference, (x, y), **kw)
    train.fit(small_model(), (x, y), checkpoint_dir=tmp_path, **dict(kw, epochs=2))
    newest = tmp_path / "8"
    victim = _largest_file(newest)
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    resumed = small_model()
    with pytest.warns(UserWarning) as warned:
        h = train.fit(resumed, (x, y), checkpoint_dir=tmp_path, resume=True, **kw)
    messages = [str(w.message) for w in warned]
    assert any(m.startswith(f"Skipping the checkpoint {newest}, which cannot be read") for m in messages), messages
    assert f"The unreadable checkpoint of step 8 is kept as {newest}.unreadable; training resumes from step 4." \
        in messages
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3]
    for a, b in zip(params_of(reference), params_of(resumed), strict=True):  # epoch 2 retrained from the end of epoch 1
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == [".lock", "12", "4", "8", "8.unreadable"]
    gc.collect()


def test_no_readable_checkpoint_is_one_clear_error(tmp_path):
    x, y = small_data(32)
    train.fit(small_model(), (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    victim = _largest_file(tmp_path / "2")
    with open(victim, "r+b") as f:
        f.truncate(1)
    with pytest.warns(UserWarning), pytest.raises(train.checkpoints.CheckpointError,
                                                  match=f"No checkpoint in {tmp_path} could be read: {tmp_path / '2'}") as caught:
        train.fit(small_model(), (x, y), epochs=2, batch_size=16, checkpoint_dir=tmp_path, resume=True, verbose=0)
    assert str(caught.value).endswith(f". To start afresh, move or delete {tmp_path} (or train without resume).")
    gc.collect()


@pytest.mark.slow
def test_checkpoints_are_named_trees_that_plain_orbax_reads(tmp_path):
    x, y = small_data(32)
    model = DropoutBatchNormNet()
    train.fit(model, (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    tree = ocp.StandardCheckpointer().restore(tmp_path / "2" / "state")
    assert set(tree) == {"params", "model_state", "opt_state", "step"}
    np.testing.assert_array_equal(np.asarray(tree["params"]["conv"]["kernel"]), np.asarray(model.conv.kernel[...]))
    np.testing.assert_array_equal(np.asarray(tree["model_state"]["norm"]["mean"]), np.asarray(model.norm.mean[...]))
    assert int(tree["step"]) == 2


def test_restore_loads_a_run_into_a_fresh_model(tmp_path):
    x, y = small_data(32)
    trained = small_model()
    train.fit(trained, (x, y), epochs=2, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    fresh = small_model(seed=3)
    record = train.restore(fresh, tmp_path)
    assert record["epoch"] == 2 and [e["epoch"] for e in record["history"]] == [1, 2]
    for a, b in zip(params_of(trained), params_of(fresh), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not match this model and optimizer"):
        train.restore(small_model(classes=3), tmp_path)
    with pytest.raises(FileNotFoundError, match="No checkpoint in"):
        train.restore(small_model(), tmp_path / "empty")


def _flip_bytes(path, count=64):
    """Inverts ``count`` bytes in the middle of ``path``, keeping its size."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        middle = max(len(data) // 2 - count // 2, 0)
        data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
        f.seek(0)
        f.write(data)


def _two_epochs(tmp_path):
    """Checkpoints of steps 4 and 8, and the parameters after epoch 1 (step 4)."""
    x, y = small_data(64)
    after_one = small_model()
    train.fit(after_one, (x, y), epochs=1, batch_size=16, verbose=0)
    train.fit(small_model(), (x, y), epochs=2, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    return params_of(after_one)


@pytest.mark.parametrize("damage", ["flipped bytes", "missing arrays"])
@pytest.mark.slow
def test_a_damaged_checkpoint_is_detected_and_the_one_before_it_loaded(tmp_path, damage):
    """Flipped bytes in the array data (which orbax reads without complaint) fail the saved
    digest; a checkpoint without its arrays is incomplete, not another model."""
    after_one = _two_epochs(tmp_path)
    if damage == "flipped bytes":
        data = tmp_path / "8" / "state" / "ocdbt.process_0" / "d"
        _flip_bytes(_largest_file(data))
        expected = "are not the ones saved (SHA-256"
    else:
        import shutil

        shutil.rmtree(tmp_path / "8" / "state")
        expected = "is incomplete: its arrays (state/) are missing"
    with pytest.raises(train.checkpoints.DamagedCheckpoint, match=re.escape(expected)):
        train.restore(small_model(), tmp_path, step=8)
    fresh = small_model(seed=5)
    with pytest.warns(UserWarning, match=re.escape(f"Skipping the checkpoint {tmp_path / '8'}, which cannot be read")):
        record = train.restore(fresh, tmp_path)
    assert record["epoch"] == 1
    for a, b in zip(after_one, params_of(fresh), strict=True):
        np.testing.assert_array_equal(a, b)
    gc.collect()


def test_another_model_is_named_by_its_first_differing_array(tmp_path):
    _two_epochs(tmp_path)
    with pytest.raises(ValueError, match=re.escape("does not match this model and optimizer: ['opt_state'].inner_state[0]"
                                                   ".nu['layers'][3]['bias'].value has shape (10,) and dtype float32, "
                                                   "expected (3,) and float32")):
        train.restore(small_model(classes=3), tmp_path)
    with pytest.raises(ValueError, match=re.escape("must not use the key 'cnnjax_integrity'")):
        train.checkpoints.Checkpointer(tmp_path / "other").save(1, {"a": np.zeros(2)}, {"cnnjax_integrity": 1})


def test_a_second_writer_of_a_run_directory_is_refused_at_once(tmp_path):
    """One lock per directory, named by its holder; another thread of the same process (as two
    ``fit`` calls in threads) is refused too, and the lock is free again once released."""
    x, y = small_data(32)
    held = train.checkpoints.DirectoryLock(tmp_path).acquire()
    with pytest.raises(train.checkpoints.DirectoryInUse,
                       match=re.escape(f"{tmp_path} is in use by process {os.getpid()} on ")):
        train.fit(small_model(), (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    assert not [p for p in os.listdir(tmp_path) if p != ".lock"]  # nothing trained or written
    held.release()
    train.fit(small_model(), (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    with train.checkpoints.DirectoryLock(tmp_path):  # fit released it
        pass


@pytest.mark.slow
def test_a_lock_left_by_a_killed_process_is_free(tmp_path):
    import signal
    import subprocess
    import sys

    code = ("import sys, time; from cnnjax.train.checkpoints import DirectoryLock; DirectoryLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(train.checkpoints.DirectoryInUse, match=re.escape(f"in use by process {child.pid} on ")):
            train.checkpoints.DirectoryLock(tmp_path).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    train.checkpoints.DirectoryLock(tmp_path).acquire().release()  # the kernel dropped the dead holder's lock


def test_fit_refuses_a_directory_of_another_run_without_resume_before_training(tmp_path):
    x, y = small_data(32)
    train.fit(small_model(), (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match=re.escape(f"`checkpoint_dir` {tmp_path} already holds checkpoints (steps [2]);"
                                                   " pass `resume=True`")):
        train.fit(small_model(), (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    train.checkpoints.DirectoryLock(tmp_path).acquire().release()  # the refusal released the lock


@contextlib.contextmanager
def _absl_records():
    """The records absl's logger hands its handlers (after its filters) inside the block."""
    records, logger = [], logging.getLogger("absl")
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_a_write_the_file_system_refuses_is_an_oserror_naming_the_directory(tmp_path, monkeypatch):
    """TensorStore reports a full disk as a ValueError carrying the OS error (its text, as
    a 600 KB file system filled by a run gave it); other ValueErrors pass through."""
    failure = ValueError(
        'RESOURCE_EXHAUSTED: Error writing "step/0" in OCDBT database at local file "/x/4.orbax-checkpoint-tmp/": '
        "Failed to write 201075 bytes to file 9: No space left on device [os_error_code='28']")
    ckpt = train.checkpoints.Checkpointer(tmp_path)

    def failing(error):
        def save(*args, **kwargs):  # as orbax fails on a full disk: a half-written folder, a thread's log
            os.makedirs(os.path.join(ckpt.directory, "4.orbax-checkpoint-tmp", "state.orbax-checkpoint-tmp"), exist_ok=True)
            logging.getLogger("absl").error("[process=0][thread=array_type_handler][operation_id=1] "
                                            "_SignalingThread.run() raised an exception: %s", error)
            raise error
        return save

    try:
        monkeypatch.setattr(ckpt._manager, "save", failing(failure))
        with pytest.raises(OSError) as info, _absl_records() as logged:
            ckpt.save(4, {"a": np.zeros(3, np.float32)}, {})
        assert info.value.errno == errno.ENOSPC and info.value.filename == ckpt.directory
        assert "No space left on device: the checkpoint of step 4 could not be written" in str(info.value)
        assert logged == []  # the writer thread's traceback is not printed: the OSError says it once
        monkeypatch.setattr(ckpt._manager, "save", failing(ValueError("another")))
        with pytest.raises(ValueError, match="^another$"):
            ckpt.save(4, {"a": np.zeros(3, np.float32)}, {})
    finally:
        ckpt.close()
    assert not [n for n in os.listdir(ckpt.directory) if "orbax-checkpoint-tmp" in n]  # closed: nothing half-written


FAILED_WRITES = """
import os, resource, signal, sys
import numpy as np
from cnnjax.train.checkpoints import Checkpointer
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
tree = {f"a{i}": np.random.default_rng(i).normal(size=20000).astype(np.float32) for i in range(40)}
resource.setrlimit(resource.RLIMIT_FSIZE, (40000, resource.RLIM_INFINITY))  # every file at most 40 KB
for trial in range(6):
    ckpt = Checkpointer(os.path.join(sys.argv[1], str(trial)))
    try:
        ckpt.save(1, tree, {})
    except OSError as e:
        print(e.errno, sorted(os.listdir(ckpt.directory)) != [])
    ckpt.close()
    print(sorted(os.listdir(ckpt.directory)))
print(sys.unraisablehook is sys.__unraisablehook__)  # closed: the hook that was there is back
"""


@pytest.mark.slow
def test_writes_the_file_system_refuses_end_in_one_oserror_each_and_nothing_on_stderr(tmp_path):
    """Real TensorStore writes refused by the OS (files limited to 40 KB; 80 KB arrays): each
    save is one OSError, nothing half-written is left once the checkpointer closes, and the
    writes still in flight when orbax gave up print nothing (they printed up to 222
    tracebacks: 'Event loop is closed', 'Task exception was never retrieved')."""
    done = subprocess.run([sys.executable, "-c", FAILED_WRITES, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:-1] == ["27 True", "[]"] * 6 + ["True"]  # EFBIG, a tmp folder, then nothing
    assert done.stderr == ""


def test_only_closed_loop_reports_from_tensorstore_threads_are_dropped(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])
    undo = train.checkpoints._quiet_late_writes()
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        from_thread = e.__traceback__.tb_next  # as TensorStore's C++ thread calls it: no Python frame above
        here = e.__traceback__
    closed = RuntimeError("Event loop is closed")
    report = lambda tb, obj=None, error=closed: types.SimpleNamespace(
        exc_type=type(error), exc_value=error, exc_traceback=tb, object=obj, err_msg=None)
    for kept in (report(here), report(from_thread, obj=loop), report(from_thread, error=RuntimeError("other"))):
        sys.unraisablehook(kept)
    sys.unraisablehook(report(from_thread))
    assert len(seen) == 3 and seen[0].exc_traceback is here  # every other report reaches the hook that was there
    write = ValueError("Error writing ... [os_error_code='28']")
    unretrieved = logging.LogRecord("asyncio", logging.ERROR, "", 0, "Task exception was never retrieved\nfuture: x",
                                    None, (ValueError, write, None))
    other = logging.LogRecord("asyncio", logging.ERROR, "", 0, "Task exception was never retrieved", None,
                              (ValueError, ValueError("bug"), None))
    assert not logging.getLogger("asyncio").filter(unretrieved) and logging.getLogger("asyncio").filter(other)
    zarray = ValueError('OUT_OF_RANGE: Error opening "zarr" driver: Error writing "a16/.zarray" in OCDBT database at '
                        'local file "/r/3/1.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/"')
    unretrieved_zarray = logging.LogRecord("asyncio", logging.ERROR, "", 0, "Task exception was never retrieved", None,
                                           (ValueError, zarray, None))
    elsewhere = ValueError('Error writing "a16/.zarray" in OCDBT database at local file "/r/3/state/"')
    kept_write = logging.LogRecord("asyncio", logging.ERROR, "", 0, "Task exception was never retrieved", None,
                                   (ValueError, elsewhere, None))
    assert not logging.getLogger("asyncio").filter(unretrieved_zarray)  # the write refused in a flaky full-disk run
    assert logging.getLogger("asyncio").filter(kept_write)  # not an unfinished checkpoint's: shown
    undo()  # the hook that was there is back, and the log filter gone
    assert sys.unraisablehook == seen.append and logging.getLogger("asyncio").filter(unretrieved)
