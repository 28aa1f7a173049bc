"""Shared test fixtures: the real data the tests read (``samples/``, shipped with the
repository; ``CNNJAX_MNIST_DIR`` and ``CNNJAX_FSDD_DIR`` point elsewhere)."""

import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("CNNJAX_MNIST_DIR", ROOT / "samples" / "mnist"))  # the real t10k pair
# 50 real recordings ship in samples/fsdd; the whole dataset where it is beside the checkout
_WHOLE_FSDD = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
FSDD_DIR = Path(os.environ.get("CNNJAX_FSDD_DIR", _WHOLE_FSDD if _WHOLE_FSDD.is_dir() else ROOT / "samples" / "fsdd"))


def pytest_configure(config):
    """On GPUs the suite computes float32 convolutions and matmuls in float32, and
    deterministically.

    JAX's default precision lets NVIDIA GPUs use TensorFloat-32 (about 1e-3 relative) for
    them; the suite's references (NumPy loops, the lecture's tables, one lowering against
    another) are exact to ~1e-6, so it asks for "highest", here and in the processes its
    tests start. Tests of bit-identical resumption need XLA's deterministic GPU kernels and
    the same kernel in every compilation (no autotuning), as a user who wants it does
    (README, "On a GPU"). The library itself keeps JAX's defaults. The XLA flags have no
    effect on a CPU. On every platform the suite shares its compiled programs
    (:func:`_share_compiled_programs`).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true --xla_gpu_autotune_level=0".strip()
    _share_compiled_programs(config)
    import jax

    if jax.default_backend() == "gpu":
        jax.config.update("jax_default_matmul_precision", "highest")
        os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """With ``-q`` and two workers, pytest-xdist prints "bringing up nodes..." twice (its status
    line, emptied by ``-q``, written when the workers start and again when they have collected)
    where no terminal shows it in place; a reader took it for a fault. ``-q`` leaves it out."""
    reporter = session.config.pluginmanager.getplugin("terminaldistreporter")
    if reporter is not None and session.config.option.verbose < 0:
        reporter.ensure_show_status = lambda: None


def _share_compiled_programs(config):
    """JAX's persistent compilation cache, in a directory of this session's own (removed at
    its end) unless one is set: a program compiled once (the same HLO, flags and versions)
    is not compiled again by a later test or by a process a test starts (the experiments'
    scripts, the multi-process workers), which recompile the same models over and over."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="cnnjax-tests-xla-")
    config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    # every program: the default (1 s) would skip most of the suite's, which compile in 0.2-1 s, and
    # keeping the smallest too makes the script and multi-process tests about an eighth faster
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


@pytest.fixture(autouse=True)
def no_internet_downloads(monkeypatch):
    """Tests never touch the internet: cnnjax.data.fetch goes to a closed loopback port unless a test
    sets up its own mirror (the ``mirror`` fixture)."""
    monkeypatch.setenv("CNNJAX_DATA_MIRROR", "http://127.0.0.1:9")


@pytest.fixture
def mnist_dir():
    """The real MNIST t10k pair (samples/mnist, or $CNNJAX_MNIST_DIR); skips if absent."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST test split not found in {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture
def fsdd_dir():
    """Real Free Spoken Digit Dataset recordings (samples/fsdd, the whole dataset where it is
    beside the checkout, or $CNNJAX_FSDD_DIR); skips if absent."""
    if not (FSDD_DIR / "0_george_0.wav").exists():
        pytest.skip(f"the Free Spoken Digit Dataset not found in {FSDD_DIR}")
    return FSDD_DIR


@pytest.fixture(params=["reference", "patches"])
def each_lowering(request):
    """Runs a test once per lowering of the operations: the same numbers on every path."""
    from cnnjax import lowering

    with lowering.use(conv=request.param, maxpool=request.param, avgpool=request.param):
        yield request.param


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request lines in the test output
        pass


@pytest.fixture
def mirror(tmp_path, mnist_dir, monkeypatch):
    """A loopback HTTP server (127.0.0.1, a free port) serving ``<root>/mnist/<file>`` from
    copies of the real MNIST t10k files; a fresh cache and an empty tfds data_dir."""
    root = tmp_path / "mirror"
    (root / "mnist").mkdir(parents=True)
    for f in mnist_dir.glob("t10k-*.gz"):
        shutil.copy(f, root / "mnist" / f.name)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    from cnnjax.data import fetch

    monkeypatch.setenv(fetch.MIRROR_VARIABLE, f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv(fetch.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # nothing prepared there
    yield root, server
    server.shutdown()
    server.server_close()
