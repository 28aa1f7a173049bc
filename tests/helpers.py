"""Helpers shared by several test files: random operation configurations (hypothesis
strategies), IDX files written from the format's definition, and wav files."""

import gzip
import struct
import wave

import numpy as np
import numpy_reference as ref
from hypothesis import strategies as st


@st.composite
def conv_configs(draw):
    n = draw(st.integers(1, 3))
    max_size = {1: 9, 2: 7, 3: 5}[n]
    window = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    style = draw(st.sampled_from(["valid", "same", "int", "pairs"]))
    sizes, pads = [], []
    for i in range(n):
        eff = (window[i] - 1) * dilation[i] + 1
        if style == "pairs":
            pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        elif style == "int":
            pad = (draw(st.integers(0, 2)),) * 2
        else:
            pad = (0, 0)
        lo_size = max(1, eff - pad[0] - pad[1])
        sizes.append(draw(st.integers(lo_size, max(lo_size, max_size))))
        pads.append(pad)
    if style == "same":
        padding = draw(st.sampled_from(["SAME", "same"]))
        pads = [ref.same_pads(s, w, st_, d) for s, w, st_, d in zip(sizes, window, stride, dilation, strict=True)]
    elif style == "valid":
        padding = draw(st.sampled_from(["VALID", "valid", "Valid"]))
    elif style == "int":
        padding = pads[0][0] if len(set(pads)) == 1 else [p[0] for p in pads]
    else:
        padding = [tuple(p) for p in pads]
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    return dict(n=n, sizes=tuple(sizes), window=window, stride=stride, dilation=dilation,
                padding=padding, pads=tuple(pads), c_in=c_in, c_out=c_out, batch=batch, seed=seed)


def make(cfg, dtype=np.float32):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal((cfg["batch"], *cfg["sizes"], cfg["c_in"])).astype(dtype)
    k = rng.standard_normal((*cfg["window"], cfg["c_in"], cfg["c_out"])).astype(dtype)
    b = rng.standard_normal((cfg["c_out"],)).astype(dtype)
    return x, k, b


@st.composite
def pool_configs(draw):
    n = draw(st.integers(1, 3))
    max_size = {1: 11, 2: 9, 3: 6}[n]
    window = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = draw(st.one_of(st.none(), st.tuples(*(st.integers(1, 3) for _ in range(n)))))
    strides = window if stride is None else stride
    style = draw(st.sampled_from(["valid", "same", "pairs"]))
    ceil_mode = draw(st.booleans())
    sizes, pads = [], []
    for w in window:
        # As in PyTorch, padding at most half the window: no window lies wholly in padding.
        pad = (draw(st.integers(0, w // 2)), draw(st.integers(0, w // 2))) if style == "pairs" else (0, 0)
        lo_size = max(1, w - pad[0] - pad[1])
        sizes.append(draw(st.integers(lo_size, max_size)))
        pads.append(pad)
    if style == "same":
        padding = "same"
        pads = [ref.same_pads(s, w, st_) for s, w, st_ in zip(sizes, window, strides, strict=True)]
    elif style == "valid":
        padding = "VALID"
    else:
        padding = pads
    return dict(sizes=tuple(sizes), window=window, stride=stride, strides=strides,
                padding=padding, pads=tuple(pads), ceil_mode=ceil_mode,
                channels=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**16)))


def idx_bytes(array, type_code=0x08):
    """The IDX format from its definition: 0, 0, type code, ndim, big-endian uint32 dims, data."""
    array = np.asarray(array)
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, payload, gz):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_pair(directory, prefix, images, labels, gz=True):
    ext = ".gz" if gz else ""
    write(directory / f"{prefix}-images-idx3-ubyte{ext}", idx_bytes(images), gz)
    write(directory / f"{prefix}-labels-idx1-ubyte{ext}", idx_bytes(labels), gz)


def write_wav(path, samples, rate=8000, channels=1):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.asarray(samples, "<i2").tobytes())


def assert_run_file(path):
    """A file an experiment wrote holds what its name says: a picture (PNG) of at least
    100x100 pixels that is not one flat colour, a JSON document with content, or text."""
    import json

    from matplotlib import image

    assert path.exists(), path
    if path.suffix == ".png":
        pixels = image.imread(path)
        assert pixels.shape[0] >= 100 and pixels.shape[1] >= 100, (path, pixels.shape)
        assert np.ptp(pixels[..., :3]) > 0, f"{path} is one flat colour"
    elif path.suffix == ".json":
        assert json.loads(path.read_text()), f"{path} is an empty JSON document"
    else:
        assert path.read_text().strip(), f"{path} is empty"
