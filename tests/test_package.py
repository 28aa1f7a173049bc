"""The public face of cnnjax: the names the lecture's users import, and lazy submodules."""

import importlib
import inspect
import pathlib
import subprocess
import sys

import pytest

import cnnjax


def test_public_names():
    functions = ["conv", "maxpool", "relu", "dense", "flatten", "softmax", "sparse_categorical_crossentropy",
                 "categorical_crossentropy", "accuracy", "summary", "print_summary", "local_response_norm"]
    modules = ["nn", "models", "data", "train", "lowering", "lecture", "transforms", "losses", "viz"]
    for name in functions + modules:
        assert name in cnnjax.__all__, name
    for name in functions:
        assert inspect.isfunction(getattr(cnnjax, name)), name
    for name in modules:
        assert getattr(cnnjax, name) is importlib.import_module(f"cnnjax.{name}"), name
    assert cnnjax.__version__ == "0.1.0"


@pytest.mark.parametrize("package", [cnnjax, cnnjax.train, cnnjax.data])
def test_no_module_name_is_rebound_to_a_function(package):
    """``cnnjax.conv`` is the function and nothing else: no public name of a package is both
    one of its modules and something else (implementation modules are private)."""
    files = {f.stem for f in pathlib.Path(package.__file__).parent.glob("*.py")}
    files |= {d.name for d in pathlib.Path(package.__file__).parent.iterdir() if (d / "__init__.py").exists()}
    for name in package.__all__:
        if name in files:
            assert inspect.ismodule(getattr(package, name)), f"{package.__name__}.{name}"
    assert {"conv", "summary"} <= set(cnnjax.__all__) and "fit" in cnnjax.train.__all__  # the names that were


def test_orbax_and_matplotlib_load_only_when_used():
    code = ("import sys, tempfile, cnnjax; print('orbax.checkpoint' in sys.modules, 'matplotlib' in sys.modules); "
            "cnnjax.viz; cnnjax.train.checkpoints.Checkpointer(tempfile.mkdtemp()); "
            "print('orbax.checkpoint' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True", "True"]


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="module 'cnnjax' has no attribute 'convolve'"):
        _ = cnnjax.convolve
