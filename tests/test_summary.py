"""cnnjax.summary against the lecture's two Keras tables."""

import re

import pytest
from flax import nnx

import cnnjax
from cnnjax import models, nn

# The lecture's "Sequential CNN (2/4)" table: output shape (batch dim None), Param #.
SEQUENTIAL = [
    ((None, 26, 26, 32), 320), ((None, 13, 13, 32), 0), ((None, 11, 11, 64), 18496),
    ((None, 5, 5, 64), 0), ((None, 3, 3, 64), 36928), ((None, 576), 0),
    ((None, 64), 36928), ((None, 10), 650),
]
# The lecture's "Functional API" table, input row first.
FUNCTIONAL = [
    ((None, 28, 28, 1), 0), ((None, 26, 26, 32), 320), ((None, 13, 13, 32), 0),
    ((None, 11, 11, 64), 18496), ((None, 5, 5, 64), 0), ((None, 3, 3, 128), 73856),
    ((None, 1152), 0), ((None, 10), 11530),
]


def test_sequential_rows_equal_the_lecture():
    s = cnnjax.summary(models.mnist_sequential(rngs=nnx.Rngs(0)), (28, 28, 1))
    assert [(r.output_shape, r.params) for r in s.rows] == SEQUENTIAL
    assert s.total_params == s.trainable_params == 93_322 and s.non_trainable_params == 0
    text = str(s)
    assert "Total params: 93,322 (364.54 KB)" in text  # 93,322 float32 = 373,288 B
    assert re.search(r"conv \(Conv\)\s+\(None, 26, 26, 32\)\s+320", text)
    assert re.search(r"flatten \(Flatten\)\s+\(None, 576\)\s+0", text)


def test_functional_rows_equal_the_lecture():
    s = cnnjax.summary(models.mnist_functional(rngs=nnx.Rngs(0)), (28, 28, 1))
    assert [(r.output_shape, r.params) for r in s.rows] == FUNCTIONAL
    text = str(s)
    assert "Total params: 104,202 (407.04 KB)" in text  # the lecture's "104202 (407.04 KB)"
    assert "Trainable params: 104,202 (407.04 KB)" in text and "Non-trainable params: 0 (0.00 B)" in text
    assert re.search(r"\(None, 1152\)\s+0", text) and re.search(r"dense \(Dense\)\s+\(None, 10\)\s+11,530", text)


def test_flops_column_is_two_times_multiply_adds():
    s = cnnjax.summary(models.mnist_functional(rngs=nnx.Rngs(0)), (28, 28, 1))
    macs = [0, 26 * 26 * 32 * 9 * 1, 0, 11 * 11 * 64 * 9 * 32, 0, 3 * 3 * 128 * 9 * 64, 0, 1152 * 10]
    assert [r.flops for r in s.rows] == [2 * m for m in macs]
    assert s.total_flops == 6_200_064  # ~6.2 MFLOP per 28x28 image
    assert "Forward FLOPs per example: 6,200,064 (6.20M)" in str(s)


def test_summary_spends_no_flops():
    """Shape inference only: computing this conv's 4094x4094x64 float32 output would take
    4 GiB and seconds; the summary allocates nothing."""
    m = nn.Sequential(nn.Conv(1, 64, 3, rngs=nnx.Rngs(0)), nn.MaxPool(2))
    s = cnnjax.summary(m, (4096, 4096, 1))
    assert [r.output_shape for r in s.rows] == [(None, 4094, 4094, 64), (None, 2047, 2047, 64)]
    assert s.rows[0].flops == 2 * 4094 * 4094 * 64 * 9


def test_print_summary(capsys):
    cnnjax.print_summary(models.xo_net(rngs=nnx.Rngs(0)), (9, 9, 1))
    out = capsys.readouterr().out
    assert out.startswith('Model: "sequential"') and "Layer (type)" in out and "Output Shape" in out


@pytest.mark.parametrize("shape", [(), 28, (28, 0, 1)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="`input_shape`"):
        cnnjax.summary(models.mnist_functional(rngs=nnx.Rngs(0)), shape)
