"""cnnjax.data.fetch: the MNIST family without TensorFlow, through a loopback mirror of the real files."""

import socket
import time

import numpy as np
import pytest

from cnnjax import data
from cnnjax.data import fetch


def test_a_fresh_cache_fills_and_then_needs_no_server(mirror, tmp_path):
    root, server = mirror
    x, y = data.load("mnist", "test")
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32 and y[:5].tolist() == [7, 2, 1, 0, 4]
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    server.shutdown()
    x2, y2 = data.load("mnist", "test")  # from the cache, the server gone
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_a_corrupted_file_is_refused_and_never_parsed(mirror, tmp_path):
    root, _ = mirror
    labels = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(labels.read_bytes())
    blob[-1] ^= 0xFF
    labels.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz fetched from http://127.0.0.1:.* is corrupt"):
        data.load("mnist", "test")
    assert not (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_a_damaged_cached_file_is_fetched_again(mirror, tmp_path):
    data.load("mnist", "test")
    cached = tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz"
    cached.write_bytes(cached.read_bytes()[:1000])  # a partial file
    x, _ = data.load("mnist", "test")
    assert x.shape == (10000, 28, 28, 1)


def test_an_unreachable_mirror_fails_within_seconds_with_one_clear_error(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(fetch.MIRROR_VARIABLE, f"http://127.0.0.1:{port}")
    monkeypatch.setenv(fetch.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError, match=f"Could not fetch t10k-images-idx3-ubyte.gz of 'mnist' from "
                                                        f"http://127.0.0.1:{port}/mnist/"):
        data.load("mnist", "test")
    assert time.perf_counter() - start < 10


def test_the_registry_is_tensorflow_datasets_own():
    files = fetch.registry("mnist")
    assert files["t10k-labels-idx1-ubyte.gz"][2] == "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    assert set(files) == {f"{p}-{k}-ubyte.gz" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")}
    assert fetch.registry("cifar10")["cifar-10-binary.tar.gz"][2] == (
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd")
    with pytest.raises(ValueError, match="`name` must be one of"):
        fetch.files("svhn", "test")
    with pytest.raises(ValueError, match="`split` must be 'train' or 'test', got 'validation'"):
        fetch.files("mnist", "validation")
