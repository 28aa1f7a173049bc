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
    assert len(figs["maps"].axes) == 1 + 3 + 1  # one image, one conv layer: its input, 3 maps, a colour bar
    assert [ax.get_title() for ax in figs["curves"].axes] == ["loss", "accuracy"]
    regression = viz.learning_curves([{"epoch": 1, "loss": 1.0, "mae": 0.9, "learning_rate": 1e-3, "seconds": 1.0}])
    assert [ax.get_title() for ax in regression.axes] == ["loss", "mae"]
    for name, fig in figs.items():
        path = viz.save(fig, tmp_path / "sub" / f"{name}.png")
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n", name


def map_images(fig):
    return [ax.images[0] for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_response_maps_share_a_colour_scale_and_say_what_they_show():
    net = models.xo_net(lecture_features=True, rngs=nnx.Rngs(0))
    x = lecture.batch(lecture.X_IMAGE)
    conv = viz.response_maps(net, x)  # before ReLU: the lecture's 0.77 ... -0.55
    assert "matches (red) or mismatches (blue)" in conv.texts[0].get_text()
    limits = {im.get_clim() for im in map_images(conv)[1:]}
    assert len(limits) == 1 and np.isclose(limits.pop()[1], 1.0)  # the X feature matches the X fully
    assert sum(ax.get_label() == "<colorbar>" for ax in conv.axes) == 1
    rectified = viz.response_maps(net, x, layers=["re_lu"])
    assert "blue" not in rectified.texts[0].get_text() and "after ReLU" in rectified.texts[0].get_text()


def test_saliency_maps_name_the_true_and_the_predicted_class():
    net = models.xo_net(lecture_features=True, rngs=nnx.Rngs(0))
    x = np.concatenate([lecture.batch(lecture.X_IMAGE), lecture.batch(lecture.O_IMAGE)])
    predicted = np.asarray(net(jnp.asarray(x)).argmax(-1))
    fig = viz.saliency_maps(net, x, [0, 1], class_names=["X", "O"])
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles == [f"true {t}\npredicted {'XO'[p]}" + ("" if p == k else " (wrong)")
                      for k, (t, p) in enumerate(zip("XO", predicted, strict=True))]
    with pytest.raises(ValueError, match=re.escape("`labels` must have shape (2,) (one per image), got (3,)")):
        viz.saliency_maps(net, x, [0, 1, 1])


def test_images_grid_and_titles():
    grid = np.zeros((2, 3, 9, 9))
    fig = viz.images(grid, titles=[["a", "b", "c"], ["d", "e", "f"]], title="six")
    assert [ax.get_title() for ax in fig.axes] == list("abcdef")
    assert len(viz.images(np.zeros((4, 9, 9, 1)), titles=list("abcd")).axes) == 4
    with pytest.raises(ValueError, match=re.escape("`titles` must give one title per image (1 rows of 4)")):
        viz.images(np.zeros((4, 9, 9)), titles=["a"])
    with pytest.raises(ValueError, match=re.escape("`images` must have shape (N, H, W[, C]) or (rows, cols, H, W[, C]), "
                                                   "got (9, 9)")):
        viz.images(np.zeros((9, 9)))


@pytest.mark.parametrize("call, message", [
    (lambda: viz.response_maps(models.xo_net(rngs=nnx.Rngs(0)), jnp.ones((1, 9, 9, 1)), layers=["nope"]),
     "No layer to show: `layers` ['nope'] matched none of the model's layers."),
    (lambda: viz.filters(np.ones((3, 3, 2))), "`kernel` must be a 2D conv kernel (kh, kw, C_in, C_out), got shape (3, 3, 2)"),
    (lambda: viz.learning_curves([]), "`epochs` is empty"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
