"""The experiment scripts' mains, run with their default settings."""

import importlib.util
from pathlib import Path

import numpy as np

import lecture_tables as T

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xo_walkthrough_prints_the_lecture_maps(capsys):
    xo = load("xo")
    stages = xo.main([])
    out = capsys.readouterr().out
    pooled = stages["Max pooling 2x2, stride 2, ceiling of 7/2 (7x7 -> 4x4)"]
    for channel in range(3):
        np.testing.assert_array_equal(T.cut_to_hundredths(pooled[:, :, channel]), T.POOLED[channel])
    # The printed 4x4 backslash map, row by row, as the lecture prints it.
    assert " 1.00   0.33   0.55   0.33\n 0.33   1.00   0.33   0.55" in out
    assert " 0.77  -0.11   0.11   0.33   0.55  -0.11   0.33" in out
