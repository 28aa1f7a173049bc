"""cnnjax.train: the lecture's accuracy, one compile, exact resume, NaN stops, devices, errors."""

import os
import re
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import cnnjax
from cnnjax import data, lowering, models, nn, train


def small_model(seed=0, classes=10):
    rngs = nnx.Rngs(seed)
    return nn.Sequential(nn.Conv(1, 4, 3, activation="relu", rngs=rngs), nn.MaxPool(2),
                         nn.Flatten(), nn.Dense(4 * 4 * 4, classes, rngs=rngs))


def small_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 10, 10, 1)).astype(np.float32)
    y = (x[:, :5].mean(axis=(1, 2, 3)) > x[:, 5:].mean(axis=(1, 2, 3))).astype(np.int32)  # learnable
    return x, y


def params_of(model):
    return [np.asarray(a) for a in jax.tree.leaves(nnx.state(model, nnx.Param))]


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


def test_step_is_traced_once_per_shape(monkeypatch):
    """Two epochs with a partial last batch and validation: the step is traced exactly once."""
    traces = []
    original = train._step

    def counted(*args):
        traces.append(1)
        return original(*args)

    monkeypatch.setattr(train, "_step", chex.assert_max_traces(counted, n=1))
    x, y = small_data(100)  # 100 = 6 batches of 16 + a partial batch of 4
    train.fit(small_model(), (x, y), epochs=2, batch_size=16, validation=(x[:30], y[:30]),
              optimizer=optax.sgd(0.1), verbose=0)  # a fresh optimizer: a fresh trace
    assert len(traces) == 1


def test_keras_rmsprop_formula():
    """One step from zero velocity: v = 0.1 g^2 and w -= lr g / (sqrt(v) + 1e-7)."""
    model = small_model()
    x, y = small_data(8)
    before = nnx.state(model, nnx.Param)
    grads = jax.grad(lambda p: cnnjax.sparse_categorical_crossentropy(
        nnx.merge(nnx.graphdef(model), p)(x), y))(before)
    state = train.create_state(model)
    state, metrics = train.train_step(state, (x, y))
    for w0, g, w1 in zip(jax.tree.leaves(before), jax.tree.leaves(grads), jax.tree.leaves(state.params)):
        expected = np.asarray(w0) - 1e-3 * np.asarray(g) / (np.sqrt(0.1 * np.asarray(g) ** 2) + 1e-7)
        np.testing.assert_allclose(np.asarray(w1), expected, rtol=1e-5, atol=1e-7)
    assert int(state.step) == 1 and set(metrics) == {"loss", "accuracy"}


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
    for a, b in zip(results["scan"][0], results["python"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["scan"][1], results["python"][1], rtol=1e-5)


def test_full_and_padded_segments_agree():
    """Segments that tile the epoch run without the skip logic; both forms train alike."""
    assert train._default_segment(938) == 67 and train._default_segment(300) == 30
    assert train._default_segment(97) == 10  # a prime: the last segment is padded
    x, y = small_data(96)  # 6 steps of 16 an epoch
    results = {}
    for segment in (3, 4):  # 3 tiles the epoch; 4 leaves a padded segment
        model = small_model()
        h = train.fit(model, (x, y), epochs=2, batch_size=16, steps_per_segment=segment, verbose=0)
        results[segment] = (params_of(model), h.history["loss"])
    for a, b in zip(results[3][0], results[4][0]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(results[3][1], results[4][1], rtol=1e-6)


def test_same_seed_same_run_other_seed_other_run():
    x, y = small_data(64)
    runs = []
    for seed in (0, 0, 1):
        model = small_model()
        train.fit(model, (x, y), epochs=1, batch_size=16, seed=seed, verbose=0)
        runs.append(params_of(model))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2]))


def test_resume_after_a_kill_is_bit_identical(tmp_path, monkeypatch):
    x, y = small_data(100)
    kw = dict(epochs=3, batch_size=16, steps_per_segment=2, keep_checkpoints=2, verbose=0)
    reference = small_model()
    history = train.fit(reference, (x, y), checkpoint_dir=tmp_path / "a", **kw)

    original = train._run_segment

    class KilledAfterFiveSegments:
        calls, lower = 0, original.lower

        def __call__(self, *args):
            self.calls += 1
            if self.calls > 5:  # in epoch 2 (4 segments an epoch)
                raise KeyboardInterrupt("killed")
            return original(*args)

    monkeypatch.setattr(train, "_run_segment", KilledAfterFiveSegments())
    with pytest.raises(KeyboardInterrupt):
        train.fit(small_model(), (x, y), checkpoint_dir=tmp_path / "b", **kw)
    monkeypatch.setattr(train, "_run_segment", original)
    ckpt = cnnjax.checkpoint.Checkpointer(tmp_path / "b")
    # 100 / 16: 7 steps an epoch (the last partial), segments of 2: saves at steps 2, 4, 6,
    # 7 (end of epoch 1), 9; the kill comes in the segment after. Two are kept.
    assert ckpt.steps() == [7, 9]
    ckpt.close()

    resumed = small_model()
    resumed_history = train.fit(resumed, (x, y), checkpoint_dir=tmp_path / "b", resume=True, **kw)
    for a, b in zip(params_of(reference), params_of(resumed)):
        np.testing.assert_array_equal(a, b)
    for key in ("loss", "accuracy"):
        assert resumed_history.history[key] == history.history[key]
    assert len(cnnjax.checkpoint.Checkpointer(tmp_path / "a").steps()) == 2


def test_resume_refuses_a_different_run(tmp_path):
    x, y = small_data(64)
    train.fit(small_model(), (x, y), epochs=1, batch_size=16, checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="is from a different run"):
        train.fit(small_model(), (x, y), epochs=2, batch_size=32, checkpoint_dir=tmp_path, resume=True, verbose=0)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_state(tmp_path):
    x, y = small_data(64)
    order = data.batch_indices(64, 8, seed=0, epoch=0)
    poisoned_batch = 5  # the 6th batch of the first epoch holds the NaN image
    x[order[poisoned_batch][3]] = np.nan
    model = small_model()
    with pytest.raises(FloatingPointError, match=re.escape("The loss became nan at step 6 (epoch 1, batch 6 of 8)")) as info:
        train.fit(model, (x, y), epochs=2, batch_size=8, steps_per_segment=2,
                  checkpoint_dir=tmp_path, verbose=0)
    assert "keeps the parameters of step 4" in str(info.value)
    assert all(np.isfinite(p).all() for p in params_of(model))
    ckpt = cnnjax.checkpoint.Checkpointer(tmp_path)
    assert ckpt.latest_step() == 4
    ckpt.close()


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


def test_history_and_predict():
    x, y = small_data(64)
    model = small_model()
    h = train.fit(model, (x, y), epochs=2, batch_size=16, validation=(x, y), verbose=0)
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s"]
    assert [e["epoch"] for e in h.epochs] == [1, 2]
    p = train.predict(model, x, batch_size=24)
    assert p.shape == (64, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(train.predict(model, x[:5], logits=True), model(x[:5]), rtol=1e-5, atol=1e-6)


def test_choose_loop():
    assert train.choose_loop(10**6) == "scan"
    with lowering.use(conv="reference"):
        assert train.choose_loop(10**6) == "python"
    assert train.choose_loop(10**15) == "python"  # more than the machine holds


X, Y = small_data(32)


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
    for a, b in zip(out[1][0], out[4][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1][1]["loss"], out[4][1]["loss"], rtol=1e-6)


def test_fit_picks_microbatches_on_one_cpu_and_they_change_only_rounding():
    assert train.auto_microbatches(64) == 4 and train.auto_microbatches(32) == 4
    assert train.auto_microbatches(16) == 1 and train.auto_microbatches(36) == 4 and train.auto_microbatches(30) == 1
    cpu = jax.devices("cpu")[0]
    assert train.auto_microbatches(64, [cpu, cpu]) == 1  # several devices already split the batch
    x, y = small_data(96)
    results = {}
    for k in (None, 1):
        model = small_model()
        h = train.fit(model, (x, y), epochs=2, batch_size=32, microbatches=k, verbose=0)
        results[k] = (params_of(model), h.history["loss"])
    for a, b in zip(results[None][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[None][1], results[1][1], rtol=1e-5)


class _WithBatchStats(nnx.Module):
    def __init__(self):
        self.net = small_model()
        self.seen = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x):
        return self.net(x)


def test_microbatch_errors():
    with pytest.raises(ValueError, match=re.escape("`microbatches`=4 needs a model whose only variables are parameters")):
        train.create_state(_WithBatchStats(), microbatches=4)
    with pytest.raises(ValueError, match=re.escape("`microbatches` must be positive, got 0")):
        train.create_state(small_model(), microbatches=0)
    state = train.create_state(small_model(), microbatches=4)
    x, y = small_data(6)
    with pytest.raises(ValueError, match=re.escape("The batch of 6 examples does not split into `microbatches`=4")):
        train.train_step(state, (x, y))
    with pytest.raises(ValueError, match=re.escape("`batch_size` 30 must be a multiple of `microbatches`=4")):
        train.fit(small_model(), small_data(64), epochs=1, batch_size=30, microbatches=4, verbose=0)
    # fit's default leaves a model with non-parameter variables whole (4 parts would raise)
    train.fit(_WithBatchStats(), small_data(64), epochs=1, batch_size=32, verbose=0)


class _BatchNormNet(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.conv = nn.Conv(1, 4, 3, rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)
        self.head = nn.Sequential(nn.Flatten(), nn.Dense(8 * 8 * 4, 2, rngs=rngs))

    def __call__(self, x):
        return self.head(jax.nn.relu(self.norm(self.conv(x))))


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_fit_trains_a_model_that_updates_batch_statistics(loop):
    """Batch statistics are updated as the model runs; fit threads them through its steps."""
    model = _BatchNormNet()
    x, y = small_data(64)
    h = train.fit(model, (x, y), epochs=2, batch_size=32, loop=loop, verbose=0)
    assert np.all(np.isfinite(h.history["loss"]))
    mean = np.asarray(model.norm.mean[...])
    assert np.all(mean != 0)  # started at zeros; momentum 0.99 moves it towards the batch means
    conv_mean = np.asarray(model.conv(jnp.asarray(x)).mean(axis=(0, 1, 2)))
    assert np.all(np.sign(mean) == np.sign(conv_mean))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(epochs=0), ValueError, "`epochs` must be positive, got 0"),
    (dict(batch_size=33), ValueError, "`batch_size` 33 is larger than the 32 training examples"),
    (dict(train=(X, Y + 10)), ValueError, "`train` labels must be in [0, 10) for a model with 10 outputs, got labels from 10 to 11"),
    (dict(train=(X[:, :5], Y)), ValueError, "`train` images of shape (32, 5, 10, 1) do not fit the model"),
    (dict(train=(X[..., 0], Y)), ValueError, "`train` images of shape (32, 10, 10) do not fit the model"),
    (dict(train=((X * 255).astype(np.uint8), Y)), TypeError, "`train` images must be floating point, got uint8"),
    (dict(train=(X, Y[:-1])), ValueError, "`train` must hold N images and N labels"),
    (dict(validation=(X[:, :, :5], Y)), ValueError, "`validation` images have shape (10, 5, 1) per example"),
    (dict(loop="fast"), ValueError, "`loop` must be 'auto', 'scan' or 'python', got 'fast'"),
    (dict(resume=True), ValueError, "`resume=True` needs `checkpoint_dir`"),
    (dict(optimizer="rmsprop"), TypeError, "`optimizer` must be an optax.GradientTransformation"),
])
def test_errors_before_compiling(kwargs, error, message):
    args = dict(train=(X, Y), epochs=1, batch_size=8, verbose=0)
    args.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        train.fit(small_model(), args.pop("train"), **args)


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
    print("OK")
""")


def test_four_devices_give_the_same_parameters_as_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", MULTI_DEVICE], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK"), result.stdout


def test_cpu_memory_tuning_is_idempotent_and_can_be_disabled(monkeypatch):
    from cnnjax import _memory

    assert train.tune_cpu_memory() is True  # glibc on Linux: thresholds raised
    assert train.tune_cpu_memory() is True
    monkeypatch.setattr(_memory, "_done", None)
    monkeypatch.setenv("CNNJAX_NO_MALLOC_TUNING", "1")
    assert _memory.keep_freed_memory() is False
