"""cnnjax.train: the lecture's accuracy, the public step, loops, modes, randomness, devices, errors."""

import os
import platform
import re
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from training import CompileCounter, DropoutBatchNormNet, params_of, small_data, small_model

import cnnjax
from cnnjax import data, lowering, models, train


@pytest.mark.slow
def test_lecture_functional_cnn_reaches_97_percent_on_real_mnist(mnist_dir):
    """Two epochs on the first 8,000 real MNIST test images; >= 97% on the other 2,000."""
    x, y = data.load("mnist", "test", data_dir=mnist_dir)
    model = models.mnist_functional(rngs=nnx.Rngs(0))
    history = train.fit(model, (x[:8000], y[:8000]), epochs=2, batch_size=64,
                        validation=(x[8000:], y[8000:]), verbose=0)
    assert history.history["val_accuracy"][-1] >= 0.97
    assert train.evaluate(model, (x[8000:], y[8000:]))["accuracy"] == pytest.approx(
        history.history["val_accuracy"][-1], abs=1e-6)
    assert history.history["loss"][1] < history.history["loss"][0]


class Counting(train.Callback):
    """Compilations per epoch, counted from the start of training to each epoch's end."""

    def __init__(self):
        self.counter, self.per_epoch = CompileCounter(), []

    def on_train_begin(self, logs=None):
        self.counter.active = True

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch.append(self.counter.count)
        self.counter.count = 0

    def on_train_end(self, logs=None):
        self.counter.active = False


@pytest.mark.parametrize("model_factory", [small_model, DropoutBatchNormNet])
@pytest.mark.slow
def test_after_the_first_epoch_nothing_compiles(model_factory):
    """A partial last batch and validation: epoch 1 compiles (validation's program), later ones nothing."""
    x, y = small_data(100)  # 100 = 6 batches of 16 + a partial batch of 4
    counting = Counting()
    train.fit(model_factory(), (x, y), epochs=3, batch_size=16, validation=(x[:30], y[:30]),
              optimizer=optax.sgd(0.1), verbose=0, callbacks=[counting])
    assert counting.per_epoch[1:] == [0, 0], counting.per_epoch


class _CountedCalls(nnx.Module):
    """small_model, counting the Python calls of its forward (each trace runs it once) in
    the class: traces run copies of the module."""

    calls = 0

    def __init__(self):
        self.inner = small_model()

    def __call__(self, x):
        _CountedCalls.calls += 1
        return self.inner(x)


def test_fit_traces_the_model_once_for_all_its_steps():
    """Choosing the loop, compiling the scanned epoch and the step's 4 micro-batches share
    one trace of the forward; one more call is fit's abstract check of the output shape."""
    model, _CountedCalls.calls = _CountedCalls(), 0
    x, y = small_data(64)
    train.fit(model, (x, y), epochs=2, batch_size=16, microbatches=4, loop="auto", verbose=0)
    assert _CountedCalls.calls == 2


@pytest.mark.slow
def test_keras_rmsprop_formula():
    """One step from zero velocity: v = 0.1 g^2 and w -= lr g / (sqrt(v) + 1e-7)."""
    model = small_model()
    x, y = small_data(8)
    before = nnx.state(model, nnx.Param)
    grads = jax.grad(lambda p: cnnjax.sparse_categorical_crossentropy(
        nnx.merge(nnx.graphdef(model), p)(x), y))(before)
    state = train.create_state(model)
    state, metrics = train.train_step(state, (x, y))
    for w0, g, w1 in zip(jax.tree.leaves(before), jax.tree.leaves(grads), jax.tree.leaves(state.params), strict=True):
        expected = np.asarray(w0) - 1e-3 * np.asarray(g) / (np.sqrt(0.1 * np.asarray(g) ** 2) + 1e-7)
        np.testing.assert_allclose(np.asarray(w1), expected, rtol=1e-5, atol=1e-7)
    assert int(state.step) == 1 and set(metrics) == {"loss", "accuracy"}
    assert train.learning_rate(state.opt_state) == pytest.approx(1e-3)


def test_fit_runs_the_public_train_step():
    """One epoch of fit (no shuffling, one step a segment) equals a loop of train_step calls."""
    x, y = small_data(48)
    model = small_model()
    train.fit(model, (x, y), epochs=1, batch_size=16, shuffle=False, microbatches=1, verbose=0,
              optimizer=optax.sgd(0.1))
    state = train.create_state(small_model(), optax.sgd(0.1))
    for i in range(3):
        state, _ = train.train_step(state, (x[16 * i : 16 * (i + 1)], y[16 * i : 16 * (i + 1)]))
    for a, b in zip(params_of(model), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-6, atol=1e-7)


def test_train_and_eval_step_weights():
    model = small_model()
    x, y = small_data(8)
    state = train.create_state(model)
    full = train.eval_step(state, (x[:4], y[:4]))
    masked = train.eval_step(state, (x, y, np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)))
    np.testing.assert_allclose(full["loss"], masked["loss"], rtol=1e-6)
    np.testing.assert_allclose(full["accuracy"], masked["accuracy"])


def test_scan_and_python_loops_agree():
    x, y = small_data(70)
    results = {}
    for loop in ("scan", "python"):
        model = small_model()
        h = train.fit(model, (x, y), epochs=2, batch_size=16, loop=loop, verbose=0)
        results[loop] = (params_of(model), h.history["loss"])
    for a, b in zip(results["scan"][0], results["python"][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["scan"][1], results["python"][1], rtol=1e-5)


@pytest.mark.slow
def test_full_and_padded_segments_agree():
    """Segments that tile the epoch run without the skip logic; both forms train alike."""
    x, y = small_data(96)  # 6 steps of 16 an epoch
    results = {}
    for segment in (3, 4):  # 3 tiles the epoch; 4 leaves a padded segment
        model = small_model()
        h = train.fit(model, (x, y), epochs=2, batch_size=16, steps_per_segment=segment, verbose=0)
        results[segment] = (params_of(model), h.history["loss"])
    for a, b in zip(results[3][0], results[4][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(results[3][1], results[4][1], rtol=1e-6)


def test_same_seed_same_run_other_seed_other_run():
    x, y = small_data(64)
    runs = []
    for seed in (0, 0, 1):
        model = small_model()
        train.fit(model, (x, y), epochs=1, batch_size=16, seed=seed, verbose=0)
        runs.append(params_of(model))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


@pytest.mark.parametrize("loop", ["scan", "python"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.slow
def test_dropout_and_batchnorm_train_validate_in_eval_mode_and_keep_the_users_mode(loop, mode):
    x, y = small_data(100)
    model = DropoutBatchNormNet()
    getattr(model, mode)()
    h = train.fit(model, (x, y), epochs=2, batch_size=16, validation=(x[:40], y[:40]), loop=loop, verbose=0)
    assert model.drop.deterministic == (mode == "eval") and model.norm.use_running_average == (mode == "eval")
    assert np.all(np.isfinite(h.history["loss"]))
    # the reported validation is evaluation mode's: Dropout off, running statistics
    assert h.history["val_loss"][-1] == pytest.approx(train.evaluate(model, (x[:40], y[:40]))["loss"], rel=1e-5)
    model.eval()
    expected = np.asarray(model(jnp.asarray(x[:40])))
    np.testing.assert_allclose(train.predict(model, x[:40]), expected, rtol=1e-5, atol=1e-6)
    # training mode trained: 7 steps an epoch (6 full batches and the remainder), one mask each
    assert int(model.drop.rngs.count[...]) == 14


@pytest.mark.slow
def test_dropout_masks_differ_each_step_and_repeat_for_the_same_seeds():
    x, y = small_data(64)
    runs = []
    for model_seed in (0, 0, 5):
        model = DropoutBatchNormNet(seed=model_seed, rate=0.5)
        h = train.fit(model, (x, y), epochs=1, batch_size=16, optimizer=optax.sgd(0.0), verbose=0,
                      shuffle=False)
        runs.append((params_of(model), h.history["loss"][0]))
    assert runs[0][1] == runs[1][1]
    assert runs[0][1] != runs[2][1]
    # with a learning rate of 0 every step sees the same parameters: steps differ only by their masks
    model = DropoutBatchNormNet(rate=0.5)
    state = train.create_state(model, optax.sgd(0.0))
    losses = []
    for _ in range(3):
        state, metrics = train.train_step(state, (x[:16], y[:16]))
        losses.append(float(metrics["loss"]))
    assert len(set(losses)) == 3, losses


@pytest.mark.slow
def test_padding_rows_never_touch_batch_statistics():
    """With a learning rate of 0 the running mean follows m * mean + (1 - m) * batch mean over
    the real batches only (NumPy reference): the partial last batch runs at its own size."""
    x, y = small_data(40)  # batches of 16, 16 and 8
    model = DropoutBatchNormNet()
    conv_out = np.asarray(model.conv(jnp.asarray(x)))
    train.fit(model, (x, y), epochs=1, batch_size=16, shuffle=False, optimizer=optax.sgd(0.0), verbose=0)
    mean = np.zeros(4)
    for start in (0, 16, 32):
        mean = 0.5 * mean + 0.5 * conv_out[start : start + 16].mean(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(model.norm.mean[...]), mean, rtol=1e-5, atol=1e-6)


def test_regression_with_float_targets_and_mse():
    class Regressor(nnx.Module):
        def __init__(self):
            rngs = nnx.Rngs(0)
            self.body = cnnjax.nn.Sequential(cnnjax.nn.Conv(1, 4, 3, activation="relu", rngs=rngs),
                                             cnnjax.nn.Flatten(), cnnjax.nn.Dense(256, 2, rngs=rngs))

        def __call__(self, x):
            return self.body(x)

    x, _ = small_data(96)
    targets = np.stack([x.mean(axis=(1, 2, 3)), x[:, :5].mean(axis=(1, 2, 3))], axis=1)  # float (N, 2)
    h = train.fit(Regressor(), (x, targets), epochs=4, batch_size=16, loss="mse", metrics=["mae"],
                  validation=(x[:32], targets[:32]), optimizer=optax.adam(1e-2), verbose=0)
    assert set(h.history) >= {"loss", "mae", "val_loss", "val_mae"}
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    # cnnjax's own loss functions, given as they are, are taken per example
    own = train.evaluate(Regressor(), (x[:32], targets[:32]), loss=cnnjax.losses.mean_squared_error,
                         metrics={"mae": cnnjax.losses.mean_absolute_error})
    named = train.evaluate(Regressor(), (x[:32], targets[:32]), loss="mse", metrics=["mae"])
    assert own == pytest.approx(named, rel=1e-6)


def test_predict_returns_a_regression_models_outputs_and_probabilities_only_on_request():
    """predict softmaxed every model's outputs: a one-output regression model trained with mse
    predicted [1. 1. 1. 1.]. Now it returns the model's outputs (as Keras' predict and a Flax
    call do); probabilities=True is a softmax, refused where there is nothing to normalise."""
    rngs = nnx.Rngs(0)
    model = cnnjax.nn.Sequential(cnnjax.nn.Flatten(), cnnjax.nn.Dense(100, 1, rngs=rngs))
    x, _ = small_data(4)
    np.testing.assert_allclose(train.predict(model, x), np.asarray(model(jnp.asarray(x))), rtol=1e-6)
    assert len(np.unique(train.predict(model, x))) == 4
    with pytest.raises(ValueError, match=re.escape("`probabilities=True` takes a softmax over the last axis of the "
                                                   "model's outputs, but they have shape (4, 1)")):
        train.predict(model, x, probabilities=True)
    with pytest.raises(TypeError, match=re.escape("`logits`=True is no longer an argument: predict returns the "
                                                  "model's outputs as they are")):
        train.predict(model, x, logits=True)
    with pytest.raises(TypeError, match=re.escape("`probabilities` must be a bool, got 'yes'")):
        train.Predictor(model, probabilities="yes")


@pytest.mark.slow
def test_a_smoothed_cross_entropy_given_as_a_partial_trains_per_example():
    """functools.partial(losses.sparse_categorical_crossentropy, label_smoothing=0.1) is taken per
    example, its labels checked as the default loss's are; a partial that reduces is refused."""
    import functools

    x, y = small_data(32)
    smooth = functools.partial(cnnjax.losses.sparse_categorical_crossentropy, label_smoothing=0.1)
    model = small_model(classes=2)
    got = train.evaluate(model, (x, y), loss=smooth)["loss"]
    logits = train.predict(model, x)
    assert got == pytest.approx(float(cnnjax.losses.sparse_categorical_crossentropy(logits, y, label_smoothing=0.1)),
                                rel=1e-5)
    assert got != pytest.approx(train.evaluate(model, (x, y))["loss"], rel=1e-3)
    with pytest.raises(ValueError, match=re.escape("must be class indices in [0, 2) for a model with 2 outputs, got 2 at")):
        train.evaluate(model, (x, np.full(32, 2)), loss=smooth)
    with pytest.raises(ValueError, match=re.escape("an objective takes one value per example, so leave `reduction` out")):
        train.evaluate(model, (x, y), loss=functools.partial(smooth, reduction="mean"))


def test_per_pixel_classification():
    """Outputs (N, H, W, K), integer maps (N, H, W): the default loss and accuracy per pixel."""
    class Segmenter(nnx.Module):
        def __init__(self):
            self.conv = cnnjax.nn.Conv(1, 3, 3, padding="SAME", rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.conv(x)

    x, _ = small_data(96)
    maps = (x[..., 0] > 0.4).astype(np.int32) + (x[..., 0] > 0.8)
    h = train.fit(Segmenter(), (x, maps), epochs=4, batch_size=16, optimizer=optax.adam(3e-2), verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["accuracy"][-1] > 0.6


@pytest.mark.slow
def test_custom_loss_and_metric_functions_and_one_hot_targets():
    x, y = small_data(64)
    one_hot = np.eye(10, dtype=np.float32)[y]
    hinge = lambda outputs, targets: jnp.sum(jnp.maximum(0.0, 1.0 - outputs * (2 * targets - 1)), axis=-1)
    h = train.fit(small_model(), (x, one_hot), epochs=2, batch_size=16, loss=hinge,
                  metrics={"acc": "accuracy",
                           "ce": lambda o, t: cnnjax.losses.categorical_crossentropy(o, t, reduction="none")},
                  verbose=0)
    assert list(h.history)[:3] == ["loss", "acc", "ce"]
    model = small_model()
    state = train.create_state(model, loss=hinge)
    metrics = train.eval_step(state, (x[:8], one_hot[:8]))
    expected = np.mean(np.sum(np.maximum(0.0, 1.0 - np.asarray(model(x[:8])) * (2 * one_hot[:8] - 1)), axis=-1))
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)


def test_learning_rate_is_logged_each_epoch_from_a_schedule():
    x, y = small_data(64)  # 4 steps an epoch
    schedule = optax.linear_schedule(1e-3, 0.0, transition_steps=8)
    h = train.fit(small_model(), (x, y), epochs=2, batch_size=16, optimizer=train.rmsprop(schedule), verbose=0)
    # the rate of each epoch's last step (steps 3 and 7, counted from 0)
    np.testing.assert_allclose(h.history["learning_rate"], [schedule(3), schedule(7)], rtol=1e-6)


def test_bfloat16_compute_keeps_float32_params():
    x, y = small_data(64)
    model = small_model()
    h = train.fit(model, (x, y), epochs=1, batch_size=16, compute_dtype=jnp.bfloat16, verbose=0)
    assert np.isfinite(h.history["loss"][0])
    assert all(p.dtype == np.float32 for p in params_of(model))


def test_progress_output(capsys):
    x, y = small_data(64)
    train.fit(small_model(), (x, y), epochs=2, batch_size=16, validation=(x, y), verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and re.match(r"Epoch 2/2 - [\d.]+s - loss: [\d.]+ - accuracy: [\d.]+ - val_loss", lines[1])
    train.fit(small_model(), (x, y), epochs=1, batch_size=16, verbose=1)
    assert "Epoch 1/1" in capsys.readouterr().err


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_fit_on_a_memory_map_trains_as_on_the_array(tmp_path, loop):
    x, y = small_data(48)
    np.save(tmp_path / "x.npy", x)
    results = []
    for inputs in (x, np.load(tmp_path / "x.npy", mmap_mode="r")):
        model = small_model()
        train.fit(model, (inputs, y), epochs=2, batch_size=16, loop=loop, verbose=0)
        results.append(params_of(model))
    for got, want in zip(*results, strict=True):
        np.testing.assert_array_equal(got, want)


def test_history_and_predict():
    x, y = small_data(64)
    model = small_model()
    h = train.fit(model, (x, y), epochs=2, batch_size=16, validation=(x, y), verbose=0)
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds",
                               "images_per_s"]
    assert [e["epoch"] for e in h.epochs] == [1, 2]
    p = train.predict(model, x, batch_size=24, probabilities=True)
    assert p.shape == (64, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    logits = np.asarray(model(x[:5]), np.float64)  # the model's outputs, as Keras' predict gives them
    np.testing.assert_allclose(train.predict(model, x[:5]), logits, rtol=1e-5, atol=1e-6)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(p[:5], softmax / softmax.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_choose_loop():
    x, y = small_data(8)
    step = lambda: train._runner.trace_step(train.create_state(small_model()), 4, x, y)
    cpu = jax.devices("cpu")[0]
    assert train.choose_loop(10**6, cpu, step=step()) == "scan"
    with lowering.use(conv="reference"):
        assert train.choose_loop(10**6, cpu, step=step()) == "python"  # XLA:CPU's convolution, slow in a scan
    assert train.choose_loop(10**15, cpu, step=step()) == "python"  # more than the machine holds


X, Y = small_data(32)


@pytest.mark.slow
def test_microbatches_give_the_same_update_as_one_batch():
    """Four parts of a batch, differentiated apart and summed, make the one-batch update."""
    x, y = small_data(64)
    w = np.where(np.arange(32) < 29, 1.0, 0.0).astype(np.float32)  # a padded last batch
    out = {}
    for k in (1, 4):
        state = train.create_state(small_model(), microbatches=k)
        for i in range(2):
            state, metrics = train.train_step(state, (x[32 * i : 32 * (i + 1)], y[32 * i : 32 * (i + 1)], w))
        out[k] = (jax.tree.leaves(state.params), metrics)
    for a, b in zip(out[1][0], out[4][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1][1]["loss"], out[4][1]["loss"], rtol=1e-6)


@pytest.mark.slow
def test_fit_picks_microbatches_on_one_cpu_and_they_change_only_rounding():
    cpu = jax.devices("cpu")[0]
    parts = lambda batch_size: train.auto_microbatches(batch_size, [cpu])
    assert parts(64) == 4 and parts(32) == 4
    assert parts(16) == 1 and parts(36) == 4 and parts(30) == 1
    assert train.auto_microbatches(64, [cpu, cpu]) == 1  # several devices already split the batch
    x, y = small_data(96)
    results = {}
    for k in (None, 1):
        model = small_model()
        h = train.fit(model, (x, y), epochs=2, batch_size=32, microbatches=k, verbose=0)
        results[k] = (params_of(model), h.history["loss"])
    for a, b in zip(results[None][0], results[1][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[None][1], results[1][1], rtol=1e-5)


class StepAtEnd(train.Callback):
    """Records the optimizer step the run ends at."""

    def on_train_end(self, logs=None):
        self.step = int(self.run.state.step)


@pytest.mark.parametrize("loop", ["scan", "python"])
@pytest.mark.slow
def test_a_step_budget_trains_that_many_steps_whole_epochs_first(loop):
    kw = dict(batch_size=8, verbose=0, loop=loop, steps_per_segment=3)  # 4 steps an epoch, segments of 3
    budget, end = small_model(), StepAtEnd()
    history = train.fit(budget, (X, Y), steps=10, callbacks=[end], **kw)
    assert end.step == 10 and [e["epoch"] for e in history.epochs] == [1, 2, 3]
    whole = small_model()
    train.fit(whole, (X, Y), steps=8, **kw)  # two whole epochs: the same as epochs=2
    reference = small_model()
    train.fit(reference, (X, Y), epochs=2, **kw)
    for a, b in zip(params_of(whole), params_of(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    longer = small_model()
    train.fit(longer, (X, Y), epochs=3, **kw)  # the budget stopped two steps into the third epoch
    assert any(not np.array_equal(a, b) for a, b in zip(params_of(budget), params_of(longer), strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(params_of(budget), params_of(whole), strict=True))


def test_validation_split_holds_out_the_last_examples_as_keras_does():
    kw = dict(epochs=1, batch_size=8, verbose=0)
    split = train.fit(small_model(), (X, Y), validation_split=0.25, **kw)
    explicit = train.fit(small_model(), (X[:24], Y[:24]), validation=(X[24:], Y[24:]), **kw)
    for key in ("loss", "val_loss", "val_accuracy"):
        assert split.history[key] == explicit.history[key], key


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(), ValueError, "Give exactly one of `epochs` and `steps`, got epochs=None, steps=None"),
    (dict(epochs=1, steps=4), ValueError, "Give exactly one of `epochs` and `steps`, got epochs=1, steps=4"),
    (dict(steps=0), ValueError, "`steps` must be positive, got 0"),
    (dict(epochs=1, validation_split=1.5), ValueError, "`validation_split` must be a fraction in (0, 1), got 1.5"),
    (dict(epochs=1, validation_split=0.25, validation=(X, Y)), ValueError,
     "Give `validation` or `validation_split`, not both"),
    (dict(epochs=1, validation_split=0.99), ValueError,
     "`validation_split`=0.99 of 32 examples leaves an empty training or validation set"),
])
def test_step_budget_and_validation_split_errors(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        train.fit(small_model(), (X, Y), batch_size=8, verbose=0, **kwargs)


class TutorialCNN(nnx.Module):
    """The Flax NNX tutorial's style: Dropout without a stream, random numbers passed to __call__."""

    def __init__(self, *, rngs, dropout_rngs=None):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=dropout_rngs)
        self.linear = nnx.Linear(4 * 10 * 10, 10, rngs=rngs)

    def __call__(self, x, rngs=None):
        x = self.drop(nnx.relu(self.conv(x)), rngs=rngs)
        return self.linear(x.reshape(x.shape[0], -1))


class TrainFlagCNN(TutorialCNN):
    def __call__(self, x, train):
        return super().__call__(x)


@pytest.mark.slow
def test_models_in_the_flax_tutorials_style_are_told_exactly_what_to_change():
    with pytest.raises(ValueError, match=re.escape("The model's Dropout has no random stream of its own: fit, evaluate "
                                                   "and predict call model(x)")):
        train.fit(TutorialCNN(rngs=nnx.Rngs(0)), (X, Y), epochs=1, batch_size=8, verbose=0)
    with pytest.raises(TypeError, match=re.escape("`model` is called as model(x), but TrainFlagCNN.__call__ also "
                                                  "requires `train`.")):
        train.fit(TrainFlagCNN(rngs=nnx.Rngs(0)), (X, Y), epochs=1, batch_size=8, verbose=0)
    model = TutorialCNN(rngs=nnx.Rngs(0), dropout_rngs=nnx.Rngs(dropout=1))  # the change the message names
    history = train.fit(model, (X, Y), epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.epochs[0]["loss"])


def test_microbatch_errors():
    with pytest.raises(ValueError, match=re.escape("`microbatches`=4 needs a model whose only variables are parameters")):
        train.create_state(DropoutBatchNormNet(), microbatches=4)
    with pytest.raises(ValueError, match=re.escape("`microbatches` must be positive, got 0")):
        train.create_state(small_model(), microbatches=0)
    state = train.create_state(small_model(), microbatches=4)
    x, y = small_data(6)
    with pytest.raises(ValueError, match=re.escape("The batch of 6 examples does not split into `microbatches`=4")):
        train.train_step(state, (x, y))
    with pytest.raises(ValueError, match=re.escape("`batch_size` 30 must be a multiple of `microbatches`=4")):
        train.fit(small_model(), small_data(64), epochs=1, batch_size=30, microbatches=4, verbose=0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(epochs=0), ValueError, "`epochs` must be positive, got 0"),
    (dict(batch_size=33), ValueError, "`batch_size` 33 is larger than the 32 training examples"),
    (dict(train=(X, Y + 10)), ValueError,
     "`train` targets must be class indices in [0, 10) for a model with 10 outputs, got 10 at index 0"),
    (dict(train=(X, Y.astype(np.int64) + 2**32)), ValueError,
     f"`train` targets must fit in int32, got {2**32 + int(Y[0])} at index 0 (dtype int64)"),
    (dict(train=(X, np.array(["a"] * 32))), TypeError, "`train` targets must be numbers, got dtype <U1"),
    (dict(train=(X, Y.astype(np.float32))), TypeError, "`train` targets must be integer class indices for the default loss"),
    (dict(train=(X, np.eye(10, dtype=np.int32)[Y])), ValueError, "which do not hold class scores for `train` targets of shape (10,)"),
    (dict(train=(X, np.eye(10, dtype=np.float32)[Y]), loss="mse"), None, None),
    (dict(train=(X, np.eye(3, dtype=np.float32)[Y]), loss="mse"), ValueError,
     "The objective cannot score the model's outputs of shape (1, 10) against `train` targets of shape (3,)"),
    (dict(train=(X, Y), loss=lambda o, t: jnp.mean(o)), ValueError, "The loss function must return one value per example"),
    (dict(loss="hinge"), ValueError, "`loss` must be a function or one of"),
    (dict(metrics="accuracy"), TypeError, "`metrics` must be a dict or a list of names, got the string 'accuracy'"),
    (dict(metrics={"loss": "mae"}), ValueError, "`metrics` names must be strings other than 'loss'"),
    (dict(train=(X[:, :5], Y)), ValueError, "`train` inputs of shape (32, 5, 10, 1) do not fit the model"),
    (dict(train=(X[..., 0], Y)), ValueError, "`train` inputs of shape (32, 10, 10) do not fit the model"),
    (dict(train=((X * 255).astype(np.uint8), Y)), TypeError, "`train` inputs must be floating point, got uint8"),
    (dict(train=(X, Y[:-1])), ValueError, "`train` must hold N inputs and N targets"),
    (dict(validation=(X[:, :, :5], Y)), ValueError, "`validation` inputs have shape (10, 5, 1) per example"),
    (dict(validation=(X, Y - 1)), ValueError, "`validation` targets must be class indices in [0, 10)"),
    (dict(loop="fast"), ValueError, "`loop` must be 'auto', 'scan' or 'python', got 'fast'"),
    (dict(resume=True), ValueError, "`resume=True` needs `checkpoint_dir`"),
    (dict(optimizer="rmsprop"), TypeError, "`optimizer` must be an optax.GradientTransformation"),
    (dict(callbacks=["early"]), TypeError, "`callbacks` must hold Callback objects or functions"),
])
def test_errors_before_compiling(kwargs, error, message):
    args = dict(train=(X, Y), epochs=1, batch_size=8, verbose=0)
    args.update(kwargs)
    model = small_model()  # its initialisation may compile (a first test in its process)
    counter = CompileCounter()
    counter.active = True
    try:
        if error is None:  # the valid neighbour of the cases around it
            train.fit(model, args.pop("train"), **args)
            return
        with pytest.raises(error, match=re.escape(message)):
            train.fit(model, args.pop("train"), **args)
        assert counter.count == 0
    finally:
        counter.active = False


@pytest.mark.parametrize("call", [
    lambda: train.fit(None, (X, Y), epochs=1), lambda: train.evaluate(None, (X, Y)),
    lambda: train.predict(None, X), lambda: train.Predictor("model"), lambda: train.restore(None, "ckpt")])
def test_a_model_that_is_not_a_module_is_refused_by_name(call):
    with pytest.raises(TypeError, match=re.escape("`model` must be a flax.nnx Module")):
        call()


@pytest.mark.slow
def test_unscaled_pixels_are_warned_of_once_per_set_and_scaled_ones_are_not():
    model = small_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.fit(model, (X, Y), epochs=1, batch_size=8, verbose=0, validation=(X, Y))
        train.evaluate(model, (X, Y))
    assert not [w for w in caught if "unscaled" in str(w.message)]
    pixels = np.round(X * 255)  # uint8 images cast to float, not divided by 255
    with pytest.warns(UserWarning, match=re.escape("`train` inputs look unscaled: whole numbers from 0 to 255")) as w:
        train.fit(model, (pixels, Y), epochs=1, batch_size=8, verbose=0, validation=(X, Y))
    assert sum("unscaled" in str(r.message) for r in w) == 1 and w[0].filename == __file__
    with pytest.warns(UserWarning, match=re.escape("`test` inputs look unscaled")):
        train.evaluate(model, (pixels, Y))


def test_evaluate_checks_like_fit():
    with pytest.raises(ValueError, match=re.escape("`batch_size` must be positive, got 0")):
        train.evaluate(small_model(), (X, Y), batch_size=0)
    with pytest.raises(ValueError, match=re.escape("`test` targets must be class indices in [0, 10)")):
        train.evaluate(small_model(), (X, Y + 9))


MULTI_DEVICE = textwrap.dedent("""
    import jax, numpy as np
    from flax import nnx
    from cnnjax import nn, train
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(72, 10, 10, 1)).astype(np.float32)
    y = rng.integers(0, 10, 72).astype(np.int32)
    def model():
        r = nnx.Rngs(0)
        return nn.Sequential(nn.Conv(1, 4, 3, activation="relu", rngs=r), nn.MaxPool(2), nn.Flatten(), nn.Dense(64, 10, rngs=r))
    out = {}
    for loop in ("scan", "python"):
        for name, devices in (("one", jax.devices()[:1]), ("four", None)):
            m = model()
            h = train.fit(m, (x, y), epochs=2, batch_size=16, devices=devices, loop=loop, verbose=0)
            out[loop, name] = [np.asarray(a) for a in jax.tree.leaves(nnx.state(m, nnx.Param))]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(out[loop, "one"], out[loop, "four"]))
        print(loop, "max |one - four| =", diff)
        assert diff < 1e-5, diff
    try:
        train.evaluate(model(), (x, y), batch_size=18, devices=None)
    except ValueError as e:
        print(e)
    print("OK")
""")


@pytest.mark.slow
def test_four_devices_give_the_same_parameters_as_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`batch_size` 18 must be a multiple of the 4 devices it is split across" in result.stdout
    assert result.stdout.strip().endswith("OK"), result.stdout


@pytest.mark.slow
def test_cpu_memory_tuning_is_idempotent_and_can_be_disabled():
    first = train.tune_cpu_memory()
    assert train.tune_cpu_memory() is first
    if jax.default_backend() != "cpu":
        assert first is False  # nothing to tune for an accelerator's memory
    elif platform.libc_ver()[0] == "glibc":
        assert first is True
    code = "from cnnjax import train; print(train.tune_cpu_memory())"
    env = dict(os.environ, CNNJAX_NO_MALLOC_TUNING="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_predictor_reads_current_weights_and_compiles_few_shapes():
    """A Predictor sees training between calls, equals predict and the model run in
    evaluation mode, and calls on 1..40 examples compile one shape per power of two."""
    model = DropoutBatchNormNet()
    x, _ = small_data(40)
    predictor = train.Predictor(model, batch_size=32)
    eval_model = nnx.view(model, deterministic=True, use_running_average=True)
    np.testing.assert_allclose(predictor(x), eval_model(x), rtol=1e-5, atol=1e-6)  # the outputs, as Keras' predict
    model.head.layers[1].kernel[...] = model.head.layers[1].kernel[...] * 2.0  # "training" in place
    np.testing.assert_allclose(predictor(x[:5]), train.predict(model, x[:5]), rtol=1e-6)
    assert model.drop.deterministic is False  # left in its own mode
    counter = CompileCounter()
    counter.active = True
    try:
        for n in range(1, 41):
            assert predictor(x[:n]).shape == (n, 2)
    finally:
        counter.active = False
    assert counter.count <= 6  # batches of 1, 2, 4, 8, 16 and 32 (a 40 is 32 + 8); none seen yet
    assert [train._evaluation.bucket(n, 32) for n in (1, 2, 3, 5, 17, 32)] == [1, 2, 4, 8, 32, 32]
    assert predictor(x[:0]).shape == (0, 2)
    with pytest.raises(TypeError, match="`predict` inputs must be floating point, got int32; scale images first"):
        predictor(np.zeros((2, 10, 10, 1), np.int32))


def test_predict_takes_a_stream_of_batches_as_keras_does():
    """A generator of arrays, of (inputs, targets) pairs (targets ignored), a list of dicts: the
    outputs, in order, equal predict on the arrays; a stream's bad batch is named."""
    model = DropoutBatchNormNet()
    x, y = small_data(23)
    want = train.predict(model, x)
    chunks = lambda: (x[i:i + 7] for i in range(0, 23, 7))  # 7, 7, 7 and 2
    np.testing.assert_allclose(train.predict(model, chunks()), want, rtol=1e-6)
    np.testing.assert_allclose(train.predict(model, ((c, np.zeros(len(c))) for c in chunks()), probabilities=True),
                               train.predict(model, x, probabilities=True), rtol=1e-6)
    np.testing.assert_allclose(train.predict(model, _batches(x, y, 5, as_dict=True)), want, rtol=1e-6)
    np.testing.assert_allclose(train.Predictor(model)(_batches(x, y, 4)), want, rtol=1e-6)  # a list of pairs
    assert train.predict(model, list(x)).shape == (23, 2)  # a list of examples is still one array
    with pytest.raises(ValueError, match=re.escape("`inputs` is an empty stream: it gave no batch")):
        train.predict(model, iter([]))
    with pytest.raises(ValueError, match=re.escape("Batch 1 of the `inputs` stream: `x` must have shape (..., 256)")):
        train.predict(model, iter([x[:2], x[:2, :, :9]]))  # another example shape, one this model cannot take
    with pytest.raises(ValueError, match=re.escape("Batch 1 of the `inputs` stream holds inputs of shape (2, 10, 10); "
                                                   "every batch must hold examples of 3 axes, as the first batch's "
                                                   "(10, 10, 1) do")):
        train.predict(model, iter([x[:2], x[:2, :, :, 0]]))
    with pytest.raises(TypeError, match=re.escape("Batch 0 of the `inputs` stream: `predict` inputs must be floating point")):
        train.predict(model, iter([np.zeros((2, 10, 10, 1), np.int32)]))
    with pytest.raises(TypeError, match=re.escape("Batch 0 of the `inputs` stream is a dict with keys ['pixels']")):
        train.predict(model, iter([{"pixels": x}]))


def test_a_nan_pixel_gives_nan_predictions_and_loss_not_confident_ones():
    """The lecture's model pools maps of 21,632 values, where XLA:CPU's max dropped NaN."""
    model = models.mnist_functional(rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    x[1, 13, 7, 0] = np.nan
    p = train.predict(model, x)
    assert np.isnan(p[1]).all() and np.isfinite(p[[0, 2]]).all()
    with pytest.warns(UserWarning, match=re.escape("`test` inputs hold NaN or infinity, first in example 1")):
        assert np.isnan(train.evaluate(model, (x, np.array([0, 1, 2])))["loss"])


def _batches(x, y, size, as_dict=False):
    out = [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]
    return [{"image": a, "label": b} for a, b in out] if as_dict else out


@pytest.mark.parametrize("as_dict", [False, True])
def test_a_stream_of_batches_trains_as_the_same_batches_from_arrays(as_dict):
    """A list of (inputs, targets) batches (or {"image", "label"} dicts), a last one partial,
    trains bit for bit as the arrays in the same order."""
    x, y = X[:30], Y[:30]  # batches of 8, 8, 8, 6
    streamed, arrays = small_model(), small_model()
    history = train.fit(streamed, _batches(x, y, 8, as_dict), epochs=2, verbose=0)
    expected = train.fit(arrays, (x, y), epochs=2, batch_size=8, shuffle=False, loop="python", verbose=0)
    for a, b in zip(params_of(streamed), params_of(arrays), strict=True):
        np.testing.assert_array_equal(a, b)
    assert history.history["loss"] == expected.history["loss"]


def test_a_generator_is_read_on_epoch_after_epoch_with_steps_per_epoch():
    def endless():
        rng = np.random.default_rng(0)
        while True:
            i = rng.integers(0, 24)
            yield X[i:i + 8], Y[i:i + 8]

    end = StepAtEnd()
    history = train.fit(small_model(), endless(), epochs=3, steps_per_epoch=2, callbacks=[end], verbose=0)
    assert end.step == 6 and len(history.epochs) == 3
    end = StepAtEnd()
    train.fit(small_model(), endless(), steps=5, steps_per_epoch=2, callbacks=[end], verbose=0)
    assert end.step == 5


def test_a_stream_that_runs_dry_stops_training_with_a_warning():
    def three():
        for i in range(3):
            yield X[8 * i:8 * i + 8], Y[8 * i:8 * i + 8]

    end = StepAtEnd()
    with pytest.warns(UserWarning, match=re.escape("The stream of `train` batches gave none for epoch 2")):
        history = train.fit(small_model(), three(), epochs=3, callbacks=[end], verbose=0)
    assert end.step == 3 and len(history.epochs) == 1


def test_a_checkpointed_stream_resumes_at_the_next_epoch_as_an_uninterrupted_run(tmp_path):
    batches = _batches(X, Y, 8)
    reference = small_model()
    train.fit(reference, batches, epochs=2, verbose=0)
    resumed = small_model()
    train.fit(resumed, batches, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    train.fit(resumed, batches, epochs=2, checkpoint_dir=tmp_path, resume=True, verbose=0)
    for a, b in zip(params_of(reference), params_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("train_data, kwargs, error, message", [
    (_batches(X, Y, 8), dict(batch_size=8), ValueError, "`batch_size` is for arrays: a stream of batches brings"),
    (_batches(X, Y, 8), dict(loop="scan"), ValueError, "A stream of batches trains in the Python loop"),
    (_batches(X, Y, 8) + [(X[:8, :5], Y[:8])], dict(), ValueError,
     "Batch 4 of the `train` stream holds inputs of shape (8, 5, 10, 1), the first batch (8, 10, 10, 1), and the "
     "model cannot take them: `x` must have shape (..., 64)"),
    (_batches(X, Y, 8) + [(X[:8, :, :, 0], Y[:8])], dict(), ValueError,
     "Batch 4 of the `train` stream holds inputs of shape (8, 10, 10); every batch must hold at most 8 examples of "
     "3 axes, as the first batch's (10, 10, 1) do"),
    (_batches(X, Y, 8) + [(X[:9], Y[:9])], dict(), ValueError,
     "Batch 4 of the `train` stream holds inputs of shape (9, 10, 10, 1); every batch must hold at most 8 examples"),
    ([((X[:8] * 255).astype(np.uint8), Y[:8])] * 2, dict(), TypeError,
     "The first batch of the `train` stream: `train` inputs must be floating point, got uint8"),
    (iter([]), dict(), ValueError, "`train` is an empty stream: it gave no batch"),
    ((b for b in _batches(X, Y, 8)), dict(steps=3, epochs=None), ValueError,
     "`steps` with a stream of unknown length needs `steps_per_epoch`"),
    ([{"pixels": X[:8], "y": Y[:8]}] * 2, dict(), TypeError,
     "The first batch of the `train` stream is a dict with keys ['pixels', 'y']; expected one of 'image'/'label', "
     "'x'/'y'"),
    ((X, Y), dict(steps_per_epoch=3), ValueError, "`steps_per_epoch` is for a stream of batches"),
])
def test_stream_errors(train_data, kwargs, error, message):
    args = {"epochs": 1, "verbose": 0, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        train.fit(small_model(), train_data, **args)


def test_evaluate_and_validation_take_a_stream_of_batches_as_they_take_arrays():
    model = small_model()
    batches = _batches(X, Y, 7)  # 7, 7, 7, 7, 4: the last padded with zero-weight rows
    want = train.evaluate(model, (X, Y))
    got = train.evaluate(model, batches)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6)
    np.testing.assert_allclose(train.evaluate(model, iter(_batches(X, Y, 8, as_dict=True)))["loss"], want["loss"],
                               rtol=1e-6)
    streamed = train.fit(small_model(), (X, Y), epochs=2, batch_size=8, validation=batches, verbose=0)
    arrays = train.fit(small_model(), (X, Y), epochs=2, batch_size=8, validation=(X, Y), verbose=0)
    np.testing.assert_allclose(streamed.history["val_loss"], arrays.history["val_loss"], rtol=1e-6)
    with pytest.raises(TypeError, match=re.escape("A `validation` stream is evaluated after every epoch, so it must "
                                                  "iterate anew")):
        train.fit(small_model(), (X, Y), epochs=1, batch_size=8, validation=iter(batches), verbose=0)
    with pytest.raises(ValueError, match=re.escape("`test` targets must be class indices in [0, 10)")):
        train.evaluate(model, [(X[:8], Y[:8] + 10)])
    with pytest.raises(ValueError, match=re.escape("`batch_size` is for arrays")):
        train.evaluate(model, batches, batch_size=8)


class _CountedStream:
    """A re-iterable stream of batches that counts its iter() calls."""

    def __init__(self, batches):
        self.batches, self.iters = batches, 0

    def __iter__(self):
        self.iters += 1
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def test_a_stream_is_iterated_once_per_epoch_as_a_pytorch_loop_does():
    """fit called iter() on the training stream twice before the first epoch (and on the
    validation stream twice), so a shuffled DataLoader drew other orders than a torch loop."""
    x, y = small_data(24)
    stream, validation = _CountedStream(_batches(x, y, 8)), _CountedStream(_batches(x, y, 12))
    train.fit(small_model(), stream, epochs=3, validation=validation, verbose=0)
    assert (stream.iters, validation.iters) == (3, 3)


@pytest.mark.slow
def test_fit_on_a_shuffled_dataloader_sees_a_torch_loops_batches():
    torch = pytest.importorskip("torch", reason="a DataLoader needs torch (CI installs it)")

    class Recorded(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y, self.seen = x, y, []

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            self.seen.append(int(i))
            return self.x[i], self.y[i]

    x, y = small_data(40)
    orders = []
    for use_fit in (False, True):
        data_set, val_set = Recorded(x, y), Recorded(x[:16], y[:16])
        loader = torch.utils.data.DataLoader(data_set, batch_size=8, shuffle=True)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=8)
        torch.manual_seed(1)
        if use_fit:
            train.fit(small_model(), loader, epochs=3, validation=val_loader, verbose=0)
        else:  # the loop of pytorch/examples' mnist: train an epoch, then test
            for _ in range(3):
                for _batch in loader:
                    pass
                for _batch in val_loader:
                    pass
        orders.append(data_set.seen)
    assert orders[0] == orders[1] and len(orders[0]) == 120


@pytest.mark.slow
def test_record_steps_keeps_each_steps_loss_as_a_plain_optax_loop_computes_it(tmp_path):
    """Per-step losses needed steps_per_segment=1 and a callback. record_steps=True keeps them
    (segments unchanged); a hand-written loop of optax SGD on the same batches is the reference.
    They survive a resume."""
    x, y = small_data(48)
    model = small_model()
    params = nnx.state(model, nnx.Param)
    graphdef = nnx.graphdef(model)
    sgd = optax.sgd(0.1)
    opt, want = sgd.init(params), []

    def loss_fn(p, xb, yb):
        logits = nnx.merge(graphdef, p)(xb)
        return cnnjax.losses.sparse_categorical_crossentropy(logits, yb)

    for _ in range(2):
        for i in range(0, 48, 16):
            loss, grads = jax.value_and_grad(loss_fn)(params, x[i:i + 16], y[i:i + 16])
            updates, opt = sgd.update(grads, opt, params)
            params = optax.apply_updates(params, updates)
            want.append(float(loss))
    h = train.fit(small_model(), (x, y), epochs=2, batch_size=16, shuffle=False, optimizer=optax.sgd(0.1),
                  record_steps=True, verbose=0)
    assert [s["step"] for s in h.steps] == [1, 2, 3, 4, 5, 6] and [s["epoch"] for s in h.steps] == [1, 1, 1, 2, 2, 2]
    np.testing.assert_allclose(h.step_history["loss"], want, rtol=1e-5)
    assert set(h.step_history) == {"loss", "accuracy"}
    assert train.fit(small_model(), (x, y), epochs=1, batch_size=16, verbose=0).steps == []  # only on request
    first = train.fit(small_model(), (x, y), epochs=1, batch_size=16, shuffle=False, optimizer=optax.sgd(0.1),
                      record_steps=True, verbose=0, checkpoint_dir=tmp_path / "ckpt")
    resumed = train.fit(small_model(), (x, y), epochs=2, batch_size=16, shuffle=False, optimizer=optax.sgd(0.1),
                        record_steps=True, verbose=0, checkpoint_dir=tmp_path / "ckpt", resume=True)
    assert len(first.steps) == 3
    np.testing.assert_allclose(resumed.step_history["loss"], want, rtol=1e-5)
    with pytest.raises(TypeError, match=re.escape("`record_steps` must be a bool, got 1")):
        train.fit(small_model(), (x, y), epochs=1, record_steps=1)


def test_a_per_epoch_schedule_in_one_line_is_pytorchs_steplr():
    """StepLR(step_size=1, gamma=0.7) steps once an epoch: epoch e trains at 0.7 ** e. The rate
    History logs is the last step's of each epoch."""
    x, y = small_data(40)
    steps = train.epoch_steps(len(x), 16)  # 16, 16, 8
    assert steps == 3
    schedule = train.per_epoch(lambda e: 1.0 * 0.7 ** e, steps)
    np.testing.assert_allclose([schedule(jnp.int32(k)) for k in range(9)], [1.0] * 3 + [0.7] * 3 + [0.49] * 3,
                               rtol=1e-6)  # step k trains in epoch k // 3
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
    h = train.fit(small_model(), (x, y), epochs=3, batch_size=16, optimizer=optimizer, verbose=0)
    np.testing.assert_allclose(h.history["learning_rate"], [1.0, 0.7, 0.49], rtol=1e-6)
    with pytest.raises(ValueError, match=re.escape("`steps_per_epoch` must be an int >= 1, got 0")):
        train.per_epoch(lambda e: 1.0, 0)


def test_a_nan_in_the_validation_inputs_is_named_once():
    """val_loss came out NaN without a word, where training's guard names its step. A warning now
    names the first example and batch (arrays) or batch (a stream), once a fit."""
    x, y = small_data(40)
    bad = x[:24].copy()
    bad[13, 2, 3, 0] = np.nan
    with pytest.warns(UserWarning, match=re.escape("`validation` inputs hold NaN or infinity, first in example 13, "
                                                   "in batch 1 of 8")) as caught:
        h = train.fit(small_model(), (x, y), epochs=2, batch_size=8, validation=(bad, y[:24]), verbose=0)
    assert np.isnan(h.history["val_loss"]).all()
    assert sum("hold NaN" in str(w.message) for w in caught) == 1
    with pytest.warns(UserWarning, match=re.escape("`validation` inputs hold NaN or infinity, first in batch 1 of "
                                                   "the stream")) as caught:
        train.fit(small_model(), (x, y), epochs=2, batch_size=8, validation=_batches(bad, y[:24], 12), verbose=0)
    assert sum("hold NaN" in str(w.message) for w in caught) == 1
    with pytest.warns(UserWarning, match=re.escape("`test` inputs hold NaN or infinity, first in example 13")):
        train.evaluate(small_model(), (bad, y[:24]))
