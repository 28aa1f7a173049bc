"""cnnjax.viz: the data behind the pictures, and the pictures themselves (headless)."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cnnjax import lecture, models, nn, viz


def test_saliency_of_a_linear_model_is_its_weights():
    model = nn.Sequential(nn.Flatten(), nn.Dense(12, 3, rngs=nnx.Rngs(0)))
    x = np.random.default_rng(0).uniform(size=(2, 3, 4, 1)).astype(np.float32)
    w = np.asarray(model[1].kernel[...])
    got = viz.saliency(model, x, label=[2, 0])
    np.testing.assert_allclose(got[0], np.abs(w[:, 2]).reshape(3, 4), rtol=1e-6)
    np.testing.assert_allclose(got[1], np.abs(w[:, 0]).reshape(3, 4), rtol=1e-6)


def test_confusion_matrix_counts():
    m = viz.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_layer_outputs_are_the_lectures_maps():
    net = models.xo_net(lecture_features=True, rngs=nnx.Rngs(0))
    outputs = viz.layer_outputs(net, lecture.batch(lecture.X_IMAGE))
    assert [name for name, _, _ in outputs] == ["conv", "re_lu", "max_pool", "max_pool_1", "flatten", "dense"]
    assert round(float(outputs[0][2][0, 0, 0, 0]) * 9) == 7  # the lecture's 0.77


def test_figures_render_and_save_as_png(tmp_path):
    net = models.xo_net(lecture_features=True, rngs=nnx.Rngs(0))
    x = lecture.batch(lecture.X_IMAGE)
    figs = {
        "maps": viz.response_maps(net, x, annotate=True),
        "filters": viz.filters(net[0], annotate=True),
        "saliency": viz.saliency_maps(net, np.concatenate([x, lecture.batch(lecture.O_IMAGE)])),
        "curves": viz.learning_curves([{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4},
                                       {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7}]),
        "confusion": viz.plot_confusion_matrix(np.eye(2, dtype=int) * 5, ["x", "o"]),
    }
    assert len(figs["maps"].axes) == 1 + 3  # one image, one conv layer: its input and 3 response maps
    assert [ax.get_title() for ax in figs["curves"].axes] == ["loss", "accuracy"]
    regression = viz.learning_curves([{"epoch": 1, "loss": 1.0, "mae": 0.9, "learning_rate": 1e-3, "seconds": 1.0}])
    assert [ax.get_title() for ax in regression.axes] == ["loss", "mae"]
    for name, fig in figs.items():
        path = viz.save(fig, tmp_path / "sub" / f"{name}.png")
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.parametrize("call, message", [
    (lambda: viz.response_maps(models.xo_net(rngs=nnx.Rngs(0)), jnp.ones((1, 9, 9, 1)), layers=["nope"]),
     "No layer to show: `layers` ['nope'] matched none of the model's layers."),
    (lambda: viz.filters(np.ones((3, 3, 2))), "`kernel` must be a 2D conv kernel (kh, kw, C_in, C_out), got shape (3, 3, 2)"),
    (lambda: viz.learning_curves([]), "`epochs` is empty"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
