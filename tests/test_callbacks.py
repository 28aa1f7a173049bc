"""cnnjax.train callbacks: Keras' hooks, early stopping, clean stops, the NaN guard."""

import re

import numpy as np
import optax
import pytest
from training import finite, params_of, small_data, small_model

from cnnjax import data, train


def rising_validation():
    """Training data whose rule the validation set contradicts: validation loss rises as training succeeds."""
    x, y = small_data(96)
    vx, vy = small_data(48, seed=1)
    return (x, y), (vx, 1 - vy)


class Recorder(train.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, logs["epoch"]))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


@pytest.mark.slow
def test_hooks_are_called_in_keras_order_once_per_segment():
    x, y = small_data(64)  # 4 steps an epoch, segments of 2
    recorder = Recorder()
    train.fit(small_model(), (x, y), epochs=2, batch_size=16, steps_per_segment=2, verbose=0, callbacks=[recorder])
    names = ["accuracy", "loss"]
    assert recorder.calls == [
        ("train_begin",),
        ("epoch_begin", 0), ("batch_end", 1, names), ("batch_end", 3, names), ("epoch_end", 0, 1),
        ("epoch_begin", 1), ("batch_end", 1, names), ("batch_end", 3, names), ("epoch_end", 1, 2),
        ("train_end",),
    ]


def test_plain_functions_and_lambda_callbacks_get_each_record():
    x, y = small_data(64)
    seen, lambdas = [], []
    train.fit(small_model(), (x, y), epochs=2, batch_size=16, verbose=0,
              callbacks=[seen.append, train.LambdaCallback(on_epoch_end=lambda epoch, logs: lambdas.append(epoch))])
    assert [r["epoch"] for r in seen] == [1, 2] and lambdas == [0, 1]
    with pytest.raises(ValueError, match="LambdaCallback got an unknown hook 'on_batch'"):
        train.LambdaCallback(on_batch=print)


@pytest.mark.slow
def test_early_stopping_returns_the_history_of_the_epochs_trained():
    trainset, validation = rising_validation()
    stopper = train.EarlyStopping(monitor="val_loss", patience=1)
    h = train.fit(small_model(), trainset, epochs=20, batch_size=16, validation=validation, verbose=0,
                  optimizer=optax.adam(1e-2), callbacks=[stopper])
    losses = h.history["val_loss"]
    assert 2 <= len(losses) < 20
    best = int(np.argmin(losses))
    # it stopped at the first epoch that was not better than the best so far, patience 1 later
    assert len(losses) - 1 == best + 1 and losses[-1] >= losses[best]
    assert stopper.stopped_epoch == len(losses) - 1


def test_early_stopping_restores_the_best_weights():
    trainset, validation = rising_validation()
    kw = dict(batch_size=16, validation=validation, verbose=0, optimizer=optax.adam(1e-2))
    stopped = small_model()
    h = train.fit(stopped, trainset, epochs=20, callbacks=[train.EarlyStopping(patience=2, restore_best_weights=True)],
                  **kw)
    best_epochs = int(np.argmin(h.history["val_loss"])) + 1
    assert best_epochs < len(h.epochs)
    reference = small_model()
    train.fit(reference, trainset, epochs=best_epochs, **kw)
    for a, b in zip(params_of(stopped), params_of(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_restores_the_best_weights_at_the_end_of_any_run():
    """Keras 3: a run that ends without stopping early ends with the best epoch's weights too."""
    trainset, validation = rising_validation()
    kw = dict(batch_size=16, validation=validation, verbose=0, optimizer=optax.adam(1e-2))
    model, stopper = small_model(), train.EarlyStopping(patience=50, restore_best_weights=True)
    h = train.fit(model, trainset, epochs=6, callbacks=[stopper], **kw)
    assert len(h.epochs) == 6 and stopper.stopped_epoch is None
    best_epochs = int(np.argmin(h.history["val_loss"])) + 1
    assert best_epochs < 6
    reference = small_model()
    train.fit(reference, trainset, epochs=best_epochs, **kw)
    for a, b in zip(params_of(model), params_of(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    kept = small_model()
    train.fit(kept, trainset, epochs=6, callbacks=[train.EarlyStopping(patience=50)], **kw)  # the default: the last
    assert any(np.any(a != b) for a, b in zip(params_of(kept), params_of(reference), strict=True))


def test_early_stopping_arguments_and_a_missing_monitor():
    with pytest.raises(ValueError, match=re.escape("`mode` must be 'auto', 'min' or 'max', got 'up'")):
        train.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match=re.escape("`patience` must be a non-negative int, got -1")):
        train.EarlyStopping(patience=-1)
    x, y = small_data(32)
    with pytest.warns(UserWarning, match="EarlyStopping monitors 'val_loss', which the records do not hold"):
        h = train.fit(small_model(), (x, y), epochs=2, batch_size=16, verbose=0, callbacks=[train.EarlyStopping()])
    assert len(h.epochs) == 2


class StopAfter(train.Callback):
    def __init__(self, epochs=None, segments=None, raise_it=True):
        self.epochs, self.segments, self.raise_it, self.seen = epochs, segments, raise_it, 0

    def _stop(self):
        if self.raise_it:
            raise train.StopTraining
        self.run.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.segments is not None and self.seen >= self.segments:
            self._stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.epochs is not None and epoch + 1 >= self.epochs:
            self._stop()


@pytest.mark.parametrize("raise_it", [True, False])
def test_a_callback_stops_training_cleanly_and_the_run_is_saved(tmp_path, raise_it):
    x, y = small_data(64)
    h = train.fit(small_model(), (x, y), epochs=5, batch_size=16, verbose=0, checkpoint_dir=tmp_path,
                  callbacks=[StopAfter(epochs=2, raise_it=raise_it)])
    assert [e["epoch"] for e in h.epochs] == [1, 2]
    ckpt = train.checkpoints.Checkpointer(tmp_path)
    assert ckpt.latest_step() == 8 and ckpt.record()["epoch"] == 2  # saved after the stopping epoch
    ckpt.close()


def test_a_stop_during_an_epoch_ends_it_early():
    x, y = small_data(96)  # 6 steps an epoch
    h = train.fit(small_model(), (x, y), epochs=3, batch_size=16, steps_per_segment=2, verbose=0,
                  callbacks=[StopAfter(segments=2)])
    assert len(h.epochs) == 1 and np.isfinite(h.epochs[0]["loss"])


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_state(tmp_path):
    x, y = small_data(64)
    order, _ = data.batch_plan(64, 8, seed=0, epoch=0)  # row i: the indices of batch i
    poisoned_batch = 5  # the 6th batch of the first epoch holds the NaN image
    x[order[poisoned_batch][3]] = np.nan
    model = small_model()
    with pytest.raises(FloatingPointError, match=re.escape("At step 6 (epoch 1, batch 6 of 8) the loss became nan")) as info:
        train.fit(model, (x, y), epochs=2, batch_size=8, steps_per_segment=2, checkpoint_dir=tmp_path, verbose=0)
    assert "the model keeps the parameters of step 4" in str(info.value)
    assert all(np.isfinite(p).all() for p in params_of(model))
    ckpt = train.checkpoints.Checkpointer(tmp_path)
    assert ckpt.latest_step() == 4
    ckpt.close()


@pytest.mark.parametrize("rate, message", [
    (1e20, "the loss became nan"),  # step 1 leaves parameters of ~1e20, step 2's loss overflows
    (float("inf"), "a parameter or model variable became NaN or infinite"),  # step 1's update: finite loss
])
@pytest.mark.slow
def test_parameters_that_blow_up_are_never_kept_or_saved(tmp_path, rate, message):
    """A huge learning rate, one step a segment: the guard stops at the first non-finite value;
    the model and every checkpoint hold finite parameters; a resume starts from the newest one
    and meets the same wall at the same step."""
    x, y = small_data(64)
    kw = dict(epochs=3, batch_size=16, optimizer=optax.sgd(rate), steps_per_segment=1, checkpoint_dir=tmp_path,
              keep_checkpoints=10, verbose=0)
    model = small_model()
    with pytest.raises(FloatingPointError, match=message) as first:
        train.fit(model, (x, y), **kw)
    assert finite(params_of(model))
    ckpt = train.checkpoints.Checkpointer(tmp_path)
    steps = ckpt.steps()
    state = train.create_state(small_model(), optax.sgd(rate))
    for step in steps:
        tree, _ = ckpt.restore(step, like=train.checkpoints.state_tree(state))
        assert finite(tree["params"]), step
    ckpt.close()
    kept = int(re.search(r"keeps the parameters of step (\d+)", str(first.value)).group(1))
    assert steps[-1:] == ([kept] if kept else [])
    resumed = small_model()
    with pytest.raises(FloatingPointError) as again:
        train.fit(resumed, (x, y), resume=True, **kw)
    assert str(again.value) == str(first.value)
    for a, b in zip(params_of(model), params_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def _plateau_run(rate=0.1, optimizer=None):
    """A Run of the small model, as fit makes one, for driving a callback by hand."""
    model = small_model()
    state = train.create_state(model, optimizer or optax.inject_hyperparams(optax.sgd)(learning_rate=rate))
    return train.Run(model, state, epochs=20, steps_per_epoch=1, history=train.History(), fingerprint={})


def test_reduce_lr_on_plateau_follows_keras_rule_by_hand():
    """patience 1, factor 0.5, cooldown 2, min_lr 0.02 over monitored values worked out by hand
    from Keras' rule: lowered after epochs 3, 5 and 7 (to 0.05, 0.025, then 0.02, not 0.0125),
    never in the epoch after a lowering (cooling down), and no more once at min_lr."""
    run = _plateau_run(0.1)
    callback = train.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=2, min_lr=0.02,
                                       min_delta=0.0)
    callback.set_run(run)
    callback.on_train_begin()
    values = [1.0, 0.9, 0.95, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99]
    rates = []
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        logs = {"epoch": epoch + 1, "val_loss": value, "learning_rate": train.learning_rate(run.state.opt_state)}
        run.history.on_epoch_end(epoch, logs)
        callback.on_epoch_end(epoch, logs)
        rates.append(train.learning_rate(run.state.opt_state))
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02], rtol=1e-6)
    assert callback.best_value == 0.9 and callback.best_epoch == 1


def test_reduce_lr_on_plateau_resumed_from_a_checkpoint_continues_bit_for_bit(tmp_path):
    """Six epochs in one go against three, then three more resumed by a new callback: the same
    rates in every epoch and the same parameters to the bit. The callback's counters come back
    from the History (without them the resumed run lowered nothing at epoch 4)."""
    trainset = small_data()
    make = lambda: train.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, cooldown=2, min_delta=10.0)
    kw = dict(batch_size=32, verbose=0, optimizer=train.rmsprop(1e-2))
    whole = small_model()
    h = train.fit(whole, trainset, epochs=6, callbacks=[make()], checkpoint_dir=tmp_path / "whole", **kw)
    train.fit(small_model(), trainset, epochs=3, callbacks=[make()], checkpoint_dir=tmp_path / "parts", **kw)
    resumed = small_model()
    h2 = train.fit(resumed, trainset, epochs=6, callbacks=[make()], checkpoint_dir=tmp_path / "parts",
                   resume=True, **kw)
    assert h.history["learning_rate"] == h2.history["learning_rate"]
    np.testing.assert_allclose(h.history["learning_rate"], [1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3], rtol=1e-6)
    for a, b in zip(params_of(whole), params_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_reduce_lr_on_plateau_refuses_what_it_cannot_honour():
    """Bad arguments name themselves; an optimizer without a rate in its state is refused
    before training; a rate a schedule overrides is refused at the epoch it shows."""
    for kwargs, message in [({"factor": 1.0}, "`factor` must be a number in (0, 1)"),
                            ({"patience": -1}, "`patience` must be a non-negative int, got -1"),
                            ({"min_lr": -0.1}, "`min_lr` must be a finite number >= 0, got -0.1"),
                            ({"mode": "down"}, "`mode` must be 'auto', 'min' or 'max', got 'down'")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            train.ReduceLROnPlateau(**kwargs)
    x, y = small_data(32)
    kw = dict(epochs=4, batch_size=16, verbose=0, callbacks=[train.ReduceLROnPlateau("loss", patience=0,
                                                                                      min_delta=10.0)])
    with pytest.raises(ValueError, match=re.escape("build it with optax.inject_hyperparams")):
        train.fit(small_model(), (x, y), optimizer=optax.adam(1e-3), **kw)
    scheduled = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.constant_schedule(0.1))
    with pytest.raises(ValueError, match=re.escape("set the learning rate to 0.01, but epoch 3 trained at 0.1: "
                                                   "the optimizer's rate follows a schedule")):
        train.fit(small_model(), (x, y), optimizer=scheduled, **kw)


def _steps(directory):
    checkpointer = train.checkpoints.Checkpointer(directory)
    try:
        return checkpointer.steps()
    finally:
        checkpointer.close()


def test_model_checkpoint_save_best_only_keeps_the_epochs_that_improved_and_restores_the_best(tmp_path):
    """Keras' best-model checkpoint: saved after exactly the epochs whose val_loss beat every
    earlier one; restore() gives the best epoch's weights (a run trained that many epochs)."""
    trainset, validation = rising_validation()
    kw = dict(batch_size=16, validation=validation, verbose=0, optimizer=optax.adam(1e-2))
    h = train.fit(small_model(), trainset, epochs=6, callbacks=[
        train.ModelCheckpoint(tmp_path / "best", save_best_only=True, keep=10)], **kw)
    losses = h.history["val_loss"]
    improved = [i for i in range(6) if losses[i] < min(losses[:i], default=np.inf)]
    assert 0 < len(improved) < 6 and _steps(tmp_path / "best") == [(i + 1) * 6 for i in improved]  # 6 steps an epoch
    restored = small_model()
    assert train.restore(restored, tmp_path / "best", optimizer=optax.adam(1e-2))["epoch"] == improved[-1] + 1
    reference = small_model()
    train.fit(reference, trainset, epochs=improved[-1] + 1, **kw)
    for a, b in zip(params_of(restored), params_of(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_save_best_only_resumed_finds_its_best_again(tmp_path):
    """Three epochs, then three more resumed (fit's own checkpoint_dir restores the run; the
    best-only checkpoint, resume=True, only adds to its directory): the same best epochs as
    six in one go. Without the best found again in the History, epoch 4 was saved too."""
    trainset, validation = rising_validation()
    kw = dict(batch_size=16, validation=validation, verbose=0, optimizer=optax.adam(1e-2))
    best = lambda name, **more: train.ModelCheckpoint(tmp_path / name, save_best_only=True, keep=10, **more)
    train.fit(small_model(), trainset, epochs=6, callbacks=[best("whole")], **kw)
    train.fit(small_model(), trainset, epochs=3, callbacks=[best("parts")], checkpoint_dir=tmp_path / "run", **kw)
    train.fit(small_model(), trainset, epochs=6, callbacks=[best("parts", resume=True)],
              checkpoint_dir=tmp_path / "run", resume=True, **kw)
    assert _steps(tmp_path / "parts") == _steps(tmp_path / "whole")


def test_model_checkpoint_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match=re.escape("`save_best_only` saves after an epoch whose monitored value "
                                                   "improved; it cannot also save `every_segment`")):
        train.ModelCheckpoint(tmp_path / "a", save_best_only=True, every_segment=True)
    x, y = small_data(32)
    used = train.ModelCheckpoint(tmp_path / "b", save_best_only=True, monitor="loss")
    train.fit(small_model(), (x, y), epochs=1, batch_size=16, verbose=0, callbacks=[used])
    with pytest.raises(ValueError, match=re.escape("was closed by the fit that used it; give each fit a new one")):
        train.fit(small_model(), (x, y), epochs=1, batch_size=16, verbose=0, callbacks=[used])
    with pytest.warns(UserWarning, match="ModelCheckpoint monitors 'val_loss', which the records do not hold"):
        train.fit(small_model(), (x, y), epochs=1, batch_size=16, verbose=0,
                  callbacks=[train.ModelCheckpoint(tmp_path / "c", save_best_only=True)])
