"""cnnjax.data: IDX files written here (good and corrupt), mocked tfds, real MNIST t10k, batching."""

import gzip
import hashlib
import os
import re
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import idx_bytes, write, write_pair

from cnnjax import data


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 12, dtype=np.uint8)
    return tmp_path, images, labels


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_idx_roundtrip(small, gz):
    directory, images, labels = small
    write_pair(directory, "train", images, labels, gz)
    write_pair(directory, "t10k", images[:3], labels[:3], gz)
    x, y = data.load("anything", "train", data_dir=directory)
    assert x.shape == (12, 5, 4, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)
    x, y = data.load(str(directory), "test")  # a directory given as the name
    np.testing.assert_array_equal(y, labels[:3])
    x, y = data.load(str(directory), "train", limit=5)
    assert len(x) == len(y) == 5


def test_prefixed_and_dotted_names(tmp_path, small):
    _, images, labels = small
    write(tmp_path / "emnist-digits-t10k-images-idx3-ubyte.gz", idx_bytes(images), True)
    write(tmp_path / "emnist-digits-t10k-labels.idx1-ubyte", idx_bytes(labels), False)
    np.testing.assert_array_equal(data.load(str(tmp_path), "test")[1], labels)


def test_only_the_test_pair_serves_test_and_explains_train(small):
    directory, images, labels = small
    write_pair(directory, "t10k", images, labels)
    assert len(data.load("anything", "test", data_dir=directory)[0]) == 12  # 5x4 images: not MNIST's shape
    with pytest.raises(data.DatasetNotFoundError, match=re.escape("has no train-images or labels IDX file for split 'train' (it holds IDX files for: test (t10k))")):
        data.load("mnist", "train", data_dir=directory)


def test_unknown_split_for_idx(small):
    directory, images, labels = small
    write_pair(directory, "train", images, labels)
    with pytest.raises(ValueError, match=re.escape("`split` must be one of ['t10k', 'test', 'train'] for IDX files, got 'validation'")):
        data.load("mnist", "validation", data_dir=directory)


def corrupt_cases(images, labels):
    good = idx_bytes(images)
    return {
        "truncated-gzip": (gzip.compress(good)[:-20], "corrupt or truncated gzip data"),
        "wrong-magic": (b"\x08\x03" + good[2:], "not an IDX file: magic number 0x08030803"),
        "unknown-type": (b"\x00\x00\x07\x03" + good[4:], "not an IDX file: magic number 0x00000703"),
        "truncated-payload": (good[:-7], "(256 bytes in all) but the file holds 249 bytes: truncated"),  # 16 + 12*5*4 = 256
        "trailing-data": (good + b"\x00", "holds 257 bytes: trailing data"),
        "labels-as-images": (idx_bytes(labels), "IDX file has 1 dimensions (12,), expected 3"),
        "empty": (b"", "not an IDX file: magic number 0xb''"),
    }


@pytest.mark.parametrize("case", ["truncated-gzip", "wrong-magic", "unknown-type", "truncated-payload",
                                  "trailing-data", "labels-as-images", "empty"])
def test_corrupt_image_files_name_the_file(small, case):
    directory, images, labels = small
    write_pair(directory, "train", images, labels)
    payload, message = corrupt_cases(images, labels)[case]
    bad = directory / "train-images-idx3-ubyte.gz"
    bad.write_bytes(payload)
    with pytest.raises(ValueError, match=re.escape(str(bad))) as info:
        data.load("mnist", "train", data_dir=directory)
    assert message in str(info.value)


def _pair(directory, images, image_code, labels, label_code):
    write(directory / "train-images-idx3-ubyte.gz", idx_bytes(images, image_code), True)
    write(directory / "train-labels-idx1-ubyte.gz", idx_bytes(labels, label_code), True)


def test_float_labels_load_only_when_they_are_whole_numbers(small):
    directory, images, _ = small
    _pair(directory, images, 0x08, np.arange(12, dtype=np.float32) % 10, 0x0D)
    _, y = data.load(str(directory), "train")
    assert y.dtype == np.int32 and y.tolist() == [i % 10 for i in range(12)]
    labels = np.full(12, 2.0, np.float32)
    labels[5] = 2.7
    _pair(directory, images, 0x08, labels, 0x0D)
    with pytest.raises(ValueError, match=re.escape("holds float32 labels that are not class indices: 2.7")):
        data.load(str(directory), "train")
    _pair(directory, images, 0x08, np.array([3] * 11 + [-1], np.int32), 0x0C)
    with pytest.raises(ValueError, match=re.escape("holds label -1 at index 11")):
        data.load(str(directory), "train")


@pytest.mark.parametrize("images, code, message", [
    (np.full((12, 5, 4), 200, np.int16), 0x0B, "holds int16 images with values from 200 to 200"),
    (np.full((12, 5, 4), 255.0, np.float32), 0x0D, "holds float32 images with values from 255.0 to 255.0"),
    (np.full((12, 5, 4), -0.5, np.float64), 0x0E, "holds float64 images with values from -0.5 to -0.5"),
])
def test_images_of_unknown_scale_are_refused_not_returned_unscaled(small, images, code, message):
    directory, _, labels = small
    _pair(directory, images, code, labels, 0x08)
    with pytest.raises(ValueError, match=re.escape(message)):
        data.load(str(directory), "train")


def test_float_images_in_the_unit_range_load_as_they_are(small):
    directory, _, labels = small
    images = np.linspace(0, 1, 12 * 5 * 4, dtype=np.float32).reshape(12, 5, 4)
    _pair(directory, images, 0x0D, labels, 0x08)
    x, _ = data.load(str(directory), "train")
    np.testing.assert_array_equal(x[..., 0], images)


def test_another_datasets_upstream_files_are_refused_by_name(small, monkeypatch):
    from cnnjax.data import _idx, fetch

    directory, _, labels = small
    images = np.random.default_rng(1).integers(0, 256, (12, 28, 28), dtype=np.uint8)  # MNIST's shape
    write_pair(directory, "t10k", images, labels)
    digest = lambda name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
    registered = {"t10k-images-idx3-ubyte.gz": ("url", 0, digest("t10k-images-idx3-ubyte.gz")),
                  "t10k-labels-idx1-ubyte.gz": ("url", 0, digest("t10k-labels-idx1-ubyte.gz"))}
    monkeypatch.setattr(fetch, "registry", lambda name: registered if name == "mnist" else {})
    _idx._registered_files.cache_clear()
    try:
        x, _ = data.load("mnist", "test", data_dir=directory)  # its own files
        assert len(x) == 12
        data.load("emnist/digits", "test", data_dir=directory)  # a dataset without registered files
        with pytest.raises(ValueError, match=re.escape("t10k-images-idx3-ubyte.gz is mnist's upstream file")):
            data.load("fashion_mnist", "test", data_dir=directory)
    finally:
        _idx._registered_files.cache_clear()


def test_images_and_labels_of_different_lengths(small):
    directory, images, labels = small
    write_pair(directory, "train", images, labels[:-1])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz holds 12 images but .*train-labels-idx1-ubyte.gz holds 11 labels"):
        data.load("mnist", "train", data_dir=directory)


def test_two_files_for_one_role(small):
    directory, images, labels = small
    write_pair(directory, "train", images, labels, gz=True)
    write_pair(directory, "train", images, labels, gz=False)
    with pytest.raises(ValueError, match="holds two IDX files for train images"):
        data.load("mnist", "train", data_dir=directory)


def test_reads_are_cached_until_the_file_changes(small):
    directory, images, labels = small
    write_pair(directory, "train", images, labels)
    path = directory / "train-images-idx3-ubyte.gz"
    a, b = data.read_idx(path), data.read_idx(path)
    assert a is b and not a.flags.writeable
    write(path, idx_bytes(images[:2]), True)
    os.utime(path, ns=(1, 1))
    assert data.read_idx(path).shape == (2, 5, 4)


def test_real_mnist_test_split(mnist_dir):
    x, y = data.load("mnist", "test", data_dir=mnist_dir)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(y[:5], [7, 2, 1, 0, 4])
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz") as f:
        np.testing.assert_array_equal(y, np.frombuffer(f.read(), np.uint8, offset=8))
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10000, 28, 28, 1)
    np.testing.assert_array_equal(x, raw.astype(np.float32) / 255)
    assert x.min() == 0.0 and x.max() == 1.0


# ------------------------------------------------------------------ tensorflow-datasets


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
                                         ("kmnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_under_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=20):
        x, y = data.load(name, "train", download=False)
        x5, y5 = data.load(name, "train", limit=5, download=False)
    assert x.shape == (20, *shape) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (20,) and y.dtype == np.int32 and 0 <= y.min() and y.max() < 10
    np.testing.assert_array_equal(x5, x[:5])


def test_tfds_not_prepared_says_where_it_looked(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist", "train", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert f"not prepared in the tensorflow-datasets data_dir {tmp_path}" in message
    assert "download=True" in message and "IDX files" in message


def test_tfds_download_without_network_fails_at_once(tmp_path, monkeypatch):
    """A dataset only tensorflow-datasets can get (the MNIST family is fetched by cnnjax.data.fetch)."""
    monkeypatch.setattr(data._tfds, "_network_available", lambda *a, **k: False)
    with pytest.raises(data.DatasetNotFoundError, match="cannot be reached from this machine"):
        data.load("emnist", "train", data_dir=tmp_path, download=True)


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="'mnits' is neither a directory of IDX files nor a tensorflow-datasets name"):
        data.load("mnits", "train", data_dir=tmp_path, download=False)


def test_network_probe_is_bounded():
    """A closed local port answers 'no' at once; nothing waits on a missing network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert data._tfds._network_available(("127.0.0.1", port), timeout=1.0) is False


# ------------------------------------------------------------------------------ batches


def test_batches_are_seeded_per_epoch_and_cover_the_data():
    x = np.arange(10)[:, None].astype(np.float32)
    y = np.arange(10)
    run = lambda **kw: [b[1].tolist() for b in data.batches(x, y, 4, **kw)]
    first = run(seed=1, epoch=0)
    assert first == run(seed=1, epoch=0)
    assert first != run(seed=1, epoch=1) and first != run(seed=2, epoch=0)
    assert [len(b) for b in first] == [4, 4, 2] and sorted(sum(first, [])) == list(range(10))
    assert [len(b) for b in run(seed=1, drop_remainder=True)] == [4, 4]
    assert run(shuffle=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_stacked_batches_are_the_epochs_full_batches():
    x = np.arange(11 * 2, dtype=np.float32).reshape(11, 2)
    y = np.arange(11)
    xs, ys = data.stacked_batches(x, y, 3, seed=5, epoch=2)
    assert xs.shape == (3, 3, 2) and ys.shape == (3, 3)
    expected = list(data.batches(x, y, 3, seed=5, epoch=2, drop_remainder=True))
    np.testing.assert_array_equal(ys, np.stack([b[1] for b in expected]))
    np.testing.assert_array_equal(xs[:, :, 0], ys * 2)


def test_split_validation():
    x, y = np.arange(100, dtype=np.float32), np.arange(100)
    (tx, ty), (vx, vy) = data.split_validation(x, y, fraction=0.2, seed=3)
    assert len(vy) == 20 and len(ty) == 80 and not set(ty) & set(vy)
    assert data.split_validation(x, y, size=20, seed=3)[1][1].tolist() == vy.tolist()
    assert data.split_validation(x, y, size=20, seed=4)[1][1].tolist() != vy.tolist()


@pytest.mark.parametrize("call, error, message", [
    (lambda: list(data.batches(np.ones(3), np.ones(2), 2)), ValueError, "`images` and `labels` must have the same length, got 3 and 2"),
    (lambda: list(data.batches(np.ones(3), np.ones(3), 0)), ValueError, "`batch_size` must be positive, got 0"),
    (lambda: data.stacked_batches(np.ones(3), np.ones(3), 4), ValueError, "`batch_size` 4 is larger than the 3 examples"),
    (lambda: data.split_validation(np.ones(3), np.ones(3), fraction=1.5), ValueError, "`fraction` must be in (0, 1), got 1.5"),
    (lambda: data.split_validation(np.ones(3), np.ones(3)), ValueError, "Give exactly one of `fraction` and `size`"),
    (lambda: data.load("mnist", limit=0, data_dir="."), ValueError, "`limit` must be positive, got 0"),
    (lambda: data.load(7), TypeError, "`name` must be a dataset name or a directory, got 7"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def _cifar_tarball(path, members):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def test_read_cifar10_decodes_label_bytes_and_colour_planes(tmp_path):
    """Each record: a label byte, then the 32x32 red, green and blue planes (CIFAR-10's binary format)."""
    def record(label, r, g, b):
        planes = np.stack([np.full((32, 32), v, np.uint8) for v in (r, g, b)])
        planes[0, 1, 2] = 200  # red at row 1, column 2
        return bytes([label]) + planes.tobytes()

    members = {f"data_batch_{i}.bin": record(i, 10 * i, 1, 2) for i in range(1, 6)}
    members["test_batch.bin"] = record(9, 7, 8, 9) + record(3, 0, 0, 0)
    path = tmp_path / "cifar-10-binary.tar.gz"
    _cifar_tarball(path, members)
    images, labels = data.read_cifar10(path, "train")
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [1, 2, 3, 4, 5]
    assert images[2, 0, 0].tolist() == [30, 1, 2] and images[2, 1, 2].tolist() == [200, 1, 2]
    images, labels = data.read_cifar10(path, "test")
    assert labels.tolist() == [9, 3] and images[0, 5, 5].tolist() == [7, 8, 9]
    _cifar_tarball(tmp_path / "bad.tar.gz", {"test_batch.bin": b"\x01" * 100})
    with pytest.raises(ValueError, match="test_batch.bin in .* is not a whole number of 3073-byte records"):
        data.read_cifar10(tmp_path / "bad.tar.gz", "test")
    with pytest.raises(ValueError, match="holds no data_batch_1.bin"):
        data.read_cifar10(tmp_path / "bad.tar.gz", "train")


def test_an_idx_header_that_disagrees_with_the_datasets_shape_is_refused(tmp_path):
    """10000x14x56 holds as many bytes as 10000x28x28: it loaded as MNIST without a word."""
    images = np.random.default_rng(0).integers(0, 256, (6, 14, 56), dtype=np.uint8)
    write_pair(tmp_path, "t10k", images, np.zeros(6, np.uint8))
    with pytest.raises(ValueError, match=re.escape("t10k-images-idx3-ubyte.gz: its IDX header says images of 14x56, "
                                                   "but mnist's are 28x28: the file is damaged or another dataset's")):
        data.load("mnist", "test", data_dir=tmp_path)
    with pytest.raises(ValueError, match=re.escape("but emnist's are 28x28")):
        data.load("emnist/digits", "test", data_dir=tmp_path)
    assert data.load("my_own", "test", data_dir=tmp_path)[0].shape == (6, 14, 56, 1)  # a dataset of its own: as read
    write_pair(tmp_path, "t10k", images.reshape(6, 28, 28), np.zeros(6, np.uint8))
    assert data.load("mnist", "test", data_dir=tmp_path)[0].shape == (6, 28, 28, 1)


def test_each_dataset_is_one_record_and_every_table_follows_from_it():
    """Adding a dataset fetched without TensorFlow is one record (plus a reader for a new
    format): the class names, the IDX shapes and the fetched list are read off the records,
    every fetched dataset has a reader, and its upstream files are ones tfds registers."""
    from cnnjax.data import _load

    assert set(data.DATASETS) >= {"mnist", "fashion_mnist", "kmnist", "emnist", "cifar10"}
    for name, record in data.DATASETS.items():
        assert record.name == name
        assert (name in data.CLASS_NAMES) == (record.class_names is not None)
        assert (name in data.IDX_DATASETS) == (record.format == "idx")
        assert (name in data.fetch.DATASETS) == (record.upstream is not None)
        if record.upstream is not None:
            assert record.format in _load.READERS and set(record.upstream) == {"train", "test"}
            registered = data.fetch.registry(name)
            assert all(f in registered for files in record.upstream.values() for f in files), name
    assert len(data.CLASS_NAMES["fashion_mnist"]) == 10 and data.IDX_DATASETS["mnist"] == (28, 28)
