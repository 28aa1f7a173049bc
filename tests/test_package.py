"""The public face of cnnjax: the names the lecture's users import, and lazy submodules."""

import subprocess
import sys

import pytest

import cnnjax


def test_public_names():
    for name in ["conv", "maxpool", "relu", "dense", "flatten", "softmax", "sparse_categorical_crossentropy",
                 "categorical_crossentropy", "accuracy", "summary", "print_summary", "nn", "models", "data",
                 "train", "lowering", "lecture", "transforms", "checkpoint", "viz"]:
        assert name in cnnjax.__all__ and getattr(cnnjax, name) is not None, name
    assert cnnjax.__version__ == "0.1.0"


def test_orbax_and_matplotlib_load_only_when_used():
    code = ("import sys, cnnjax; print('orbax.checkpoint' in sys.modules, 'matplotlib' in sys.modules); "
            "cnnjax.viz; cnnjax.checkpoint; print('orbax.checkpoint' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True", "True"]


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="module 'cnnjax' has no attribute 'convolve'"):
        _ = cnnjax.convolve
