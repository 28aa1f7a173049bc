"""The one place that chooses how conv and maxpool lower to XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax import lowering


def test_reference_is_registered_and_default():
    for op in ("conv", "maxpool"):
        assert "reference" in lowering.available(op)
        assert lowering.current(op) in lowering.available(op)


def test_override_is_scoped_and_used():
    calls = []
    original = lowering._IMPLEMENTATIONS["conv"]["reference"]

    def spy(*args):
        calls.append(args[2:])
        return original(*args)

    lowering._IMPLEMENTATIONS["conv"]["spy"] = spy
    try:
        with lowering.use(conv="spy"):
            assert lowering.current("conv") == "spy"
            cnnjax.conv(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), padding="same")
        assert lowering.current("conv") != "spy"
    finally:
        del lowering._IMPLEMENTATIONS["conv"]["spy"]
    # Padding arrives normalised to explicit pairs, stride and dilation to tuples.
    assert calls == [((1, 1), ((1, 1), (1, 1)), (1, 1))]


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="`op` must be one of"):
        lowering.available("dense")
    with pytest.raises(ValueError, match="`conv` lowering must be one of"):
        with lowering.use(conv="cudnn-magic"):
            pass
