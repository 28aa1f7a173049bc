"""Shared test fixtures: where the real data lives on this kind of machine."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("CNNJAX_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))


@pytest.fixture
def mnist_dir():
    """The real MNIST t10k pair (../shared/data/mnist beside the checkout); skips if absent."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST test split not found in {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(params=["reference", "patches"])
def each_lowering(request):
    """Runs a test once per lowering of the operations: the same numbers on every path."""
    from cnnjax import lowering

    with lowering.use(conv=request.param, maxpool=request.param, avgpool=request.param):
        yield request.param
