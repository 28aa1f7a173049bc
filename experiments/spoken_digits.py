"""CNNs are not just for images: spoken digits, as spectrograms (2-D) and as waveforms (1-D).

The lecture's slide shows "a spectrogram, an image representation of spoken digit 0".
This script trains two CNNs built from cnnjax's layers on the Free Spoken Digit Dataset
(mono 8 kHz wav files named ``{digit}_{speaker}_{index}.wav``):

- ``spectrogram``: a 2-D CNN on 40-band log-mel spectrograms (61 frames x 40 bands), each
  filter's maximum over time kept, trained also on its inputs stretched in time;
- ``waveform``: a 1-D CNN on the one-second waveform itself (8,000 samples);

(both trained with Adam, its rate falling along a half cosine over the epochs) and their
ensemble (the mean of the two CNNs' probabilities), measured two ways:

- ``official``: the dataset's own split (recordings 0-4 of every digit and speaker
  test, 5-49 train);
- ``speakers``: nested leave-one-speaker-out. For each speaker: the epoch count is chosen
  by leaving out each of the other speakers in turn, a model trained on all the others for
  that many epochs, and every recording of the one never heard scored (see docs/audio.md).

Writes ``results.json`` (accuracies with their counts, per speaker), ``metrics.json``,
``spectrogram_zero.png`` (the slide), ``response_maps.png`` and ``confusion_matrix.png``
to ``--workdir`` (default ``runs/spoken_digits-<time>``).

Examples::

    python experiments/spoken_digits.py                          # the shared FSDD copy
    python experiments/spoken_digits.py --inputs spectrogram --normalise mixed --members 4   # for new voices
    python experiments/spoken_digits.py --data-dir DIR --test-dir MY_RECORDINGS
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
from common import (
    RunConfig,
    expect,
    expect_int,
    expect_rate,
    fail,
    flag,
    lazy,
    parse,
    pictures_flag,
    provenance,
    recorded_settings,
    run_directory,
    write_json,
)

# JAX, flax and cnnjax load when first used: --help and a bad flag answer at once
jax = lazy("jax")
optax = lazy("optax")
nnx = lazy("flax.nnx")
audio = lazy("cnnjax.audio")
models = lazy("cnnjax.models")
train = lazy("cnnjax.train")
viz = lazy("cnnjax.viz")


DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
SAMPLE_RATE = 8000
FRAME_LENGTH, FRAME_STEP, MEL_BINS = 256, 128, 40
TEST_INDICES = range(5)  # the dataset's official test recordings per digit and speaker
MIN_LENGTH = 4000  # half a second: what the CNNs' three pooling stages need
VTLP_WARPS = (0.9, 1.1)  # --augment vtlp: the frequency warps of the extra copies
TEMPO_FACTORS = (1.25, 0.8)  # --augment tempo: how much longer each extra copy lasts


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The spoken-digit experiment's settings: every field is a flag (``--data-dir``)."""

    data_dir: str = flag(str(DEFAULT_DATA), "a folder of {digit}_{speaker}_{index}.wav files (mono 16-bit, 8 kHz)")
    test_dir: str | None = flag(None, "also evaluate the models trained on the official split on every wav file of "
                                      "this folder (any speaker); written as test_accuracy")
    inputs: Literal["both", "spectrogram", "waveform"] = flag("both", "which CNN: 2-D on spectrograms, 1-D on "
                                                                      "waveforms, or both")
    split: Literal["both", "official", "speakers"] = flag("both", "the official split, leave-one-speaker-out, or both")
    epochs: int = flag(20, "passes over the training recordings, for every model trained")
    batch_size: int = flag(32, "recordings per training step")
    learning_rate: float = flag(1e-3, "Adam's learning rate, in (0, 1]")
    schedule: Literal["cosine", "constant"] = flag("cosine", "cosine: the learning rate falls along a half cosine "
                                                            "to 0 over --epochs (also when the nested choice stops "
                                                            "a model earlier); constant: it stays")
    seed: int = flag(0, "seed of the initial weights, dropout and data order, 0 <= seed < 2**32")
    members: int = flag(1, "networks per CNN, from seeds --seed, --seed + 1, ...: each recording's class is the one "
                           "with the highest mean of their probabilities (the epoch count is chosen with one)")
    length: int = flag(8000, "samples per recording, at least 4000: shorter recordings are centred between zeros, "
                             "longer ones keep their middle (8000: one second)")
    augment: Literal["none", "speed", "tempo", "vtlp"] = flag(
        "tempo", "speed: train on each recording also played 10% slower and 10% faster (pitch and tempo change "
                "together); tempo (the spectrogram CNN only): also with its spectrogram stretched in time by 1.25 and "
                "0.8 (said slower or faster, the same pitch); vtlp (the spectrogram CNN only): also with its "
                "frequencies warped by 0.9 and 1.1 (another vocal tract's length)")
    normalise: Literal["recording", "band", "own", "mixed"] = flag(
        "band", "the spectrogram CNN's inputs: each recording standardised as a whole; (band) each of its frequency "
                "bands' mean over time removed first; (own) the same over the recording's own frames only, the zeros "
                "it was centred between read as its quietest frame; (mixed) --members alternately band and own")
    over_time: Literal["max", "flatten"] = flag("max", "the spectrogram CNN's last maps: each filter's maximum "
                                                        "over time in each band, or every position flattened")
    choose: Literal["epochs", "none"] = flag("epochs", "leave-one-speaker-out: choose the number of epochs (1 to "
                                                       "--epochs) by leaving out each of the other speakers in turn, "
                                                       "never the one scored (nested), or train --epochs")
    workdir: str | None = flag(None, "where the results and pictures go (default runs/spoken_digits-<time>)")
    pictures: bool = pictures_flag()

    def __post_init__(self):
        super().__post_init__()
        expect_int(self.epochs, "epochs")
        expect_int(self.batch_size, "batch_size")
        expect_int(self.members, "members")
        expect(self.seed + self.members <= 2**32, "members", self.members,
               f"at most 2**32 - seed = {2**32 - self.seed}")
        expect_rate(self.learning_rate, "learning_rate")
        expect_int(self.length, "length", low=MIN_LENGTH)
        expect(self.normalise != "mixed" or self.members >= 2, "normalise", self.normalise,
               "--members 2 or more with mixed (the members alternate band and own)")

    def check_paths(self) -> None:
        super().check_paths()
        expect(os.path.isdir(self.data_dir), "data_dir", self.data_dir, "an existing folder of wav files")
        if self.test_dir is not None:
            expect(os.path.isdir(self.test_dir), "test_dir", self.test_dir, "an existing folder of wav files")


# ------------------------------------------------------------------------------- inputs


def inputs(recordings: audio.Recordings, kind: str, normalise: str = "recording", warp: float = 1.0) -> np.ndarray:
    """What a CNN of ``kind`` reads: log-mel spectrograms normalised as ``normalise`` says
    (:func:`cnnjax.audio.log_mel_inputs`), or ``(N, samples, 1)`` waveforms, each standardised."""
    if kind == "spectrogram":
        return audio.log_mel_inputs(recordings, normalise, warp=warp, sample_rate=SAMPLE_RATE,
                                    frame_length=FRAME_LENGTH, frame_step=FRAME_STEP, mel_bins=MEL_BINS)
    return audio.standardise(recordings.waveforms)[..., None]  # (N, samples, 1): a 1-D image of one channel


def views(kind: str, config: Config) -> list[str]:
    """The normalisation of each member in turn: member ``i`` of ``--members`` reads
    ``views[i % len(views)]`` (``--normalise mixed``: band and own alternately)."""
    if kind != "spectrogram":
        return ["recording"]
    return ["band", "own"] if config.normalise == "mixed" else [config.normalise]


MODELS = {"spectrogram": "spectrogram_cnn", "waveform": "waveform_cnn"}  # cnnjax.models' builders


# ------------------------------------------------------------------------------- runs


def probabilities(models: list, recordings: audio.Recordings, kind: str, config: Config) -> np.ndarray:
    """``(N, 10)``: the mean of the members' softmax outputs for each recording, each member
    reading its own normalisation (:func:`views`)."""
    order = views(kind, config)
    x = {view: inputs(recordings, kind, view) for view in order[: len(models)]}
    return np.mean([train.predict(model, x[order[i % len(order)]], probabilities=True)
                    for i, model in enumerate(models)], axis=0)


def scored(p: np.ndarray, y: np.ndarray) -> dict:
    correct = int((p.argmax(-1) == y).sum())
    return {"accuracy": correct / len(y), "correct": correct, "total": int(len(y))}


def summary(per_speaker: dict) -> dict:
    """Mean, spread and worst of the per-speaker accuracies."""
    accuracies = {s: r["accuracy"] for s, r in per_speaker.items()}
    worst = min(accuracies, key=accuracies.get)
    return {"per_speaker": per_speaker, "mean": float(np.mean(list(accuracies.values()))),
            "std": float(np.std(list(accuracies.values()))), "worst": {"speaker": worst, "accuracy": accuracies[worst]}}


def print_summary(result: dict) -> None:
    worst = result["worst"]
    print(f"mean over speakers {result['mean']:.4f} (std {result['std']:.4f}), worst {worst['speaker']} "
          f"{worst['accuracy']:.4f}" + (f", {result['seconds']:.0f} s" if "seconds" in result else ""))


def build(kind: str, input_shape, config: Config, seed: int):
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    if kind == "spectrogram":
        return models.spectrogram_cnn(input_shape, over_time=config.over_time, rngs=rngs)
    return getattr(models, MODELS[kind])(input_shape, rngs=rngs)


def learning_rates(config: Config, examples: int):
    """The learning rate at each step: ``--learning-rate`` throughout, or (``--schedule
    cosine``) falling along a half cosine to 0 over ``--epochs`` epochs of ``examples``
    recordings. The schedule is the same whatever epoch a model stops at, so a model stopped
    at the epoch the nested choice picked has followed the very curve it was chosen on."""
    if config.schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    steps = train.epoch_steps(examples, config.batch_size)  # fit's steps per epoch (the last batch smaller)
    return optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps)


def training_inputs(recordings: audio.Recordings, kind: str, normalise: str, config: Config):
    """The inputs and labels a CNN trains on: ``recordings`` and, for the spectrogram CNN,
    their tempo or vocal-tract-length copies (``--augment``)."""
    x, y = inputs(recordings, kind, normalise), recordings.labels
    if config.augment == "tempo" and kind == "spectrogram":
        x = np.concatenate([x] + [audio.stretched(x, factor) for factor in TEMPO_FACTORS])
        y = np.tile(y, len(TEMPO_FACTORS) + 1)
    if config.augment == "vtlp" and kind == "spectrogram":
        x = np.concatenate([x] + [inputs(recordings, kind, normalise, warp) for warp in VTLP_WARPS])
        y = np.tile(y, len(VTLP_WARPS) + 1)
    return x, y


def train_one(kind: str, recordings: audio.Recordings, config: Config, validation=None, epochs: int | None = None,
              members: int = 1):
    """``members`` ``kind`` CNNs trained on ``recordings`` (augmented as ``config`` says) for
    ``epochs`` (default ``config.epochs``), from seeds ``config.seed``, ``config.seed + 1``, ...;
    returns them and the first one's history."""
    if config.augment == "speed":
        recordings = audio.speed_perturbed(recordings)
    models, histories, order, made = [], [], views(kind, config), {}
    for i, seed in enumerate(range(config.seed, config.seed + members)):
        view = order[i % len(order)]
        if view not in made:
            made[view] = training_inputs(recordings, kind, view, config)
        x, y = made[view]
        models.append(build(kind, x.shape[1:], config, seed))
        histories.append(train.fit(models[-1], (x, y), epochs=epochs or config.epochs, batch_size=config.batch_size,
                                   validation=validation, optimizer=optax.adam(learning_rates(config, len(x))),
                                   seed=seed, verbose=config.verbose))
    return models, histories[0]


def choose_epochs(kind: str, recordings: audio.Recordings, config: Config) -> dict:
    """The number of epochs chosen on ``recordings`` alone: for each of their speakers, a
    model trained on the others and scored on that one after every epoch; the epoch count
    with the best mean over those speakers wins (the fewest, on a tie). The models are the
    first member's (its seed and normalisation)."""
    x = inputs(recordings, kind, views(kind, config)[0])
    curves = {}
    for speaker in sorted(set(recordings.speakers.tolist())):
        held = recordings.speakers == speaker
        _, history = train_one(kind, recordings.subset(~held), config, validation=(x[held], recordings.labels[held]))
        curves[speaker] = history.history["val_accuracy"]
    mean = np.mean(list(curves.values()), axis=0)
    best = int(np.argmax(mean))
    return {"epochs": best + 1, "inner_mean": float(mean[best]),
            "inner": {speaker: float(curve[best]) for speaker, curve in curves.items()}}


def leave_one_speaker_out(kind: str, recordings: audio.Recordings, config: Config,
                          histories: dict, kept: dict) -> dict:
    """Each speaker scored by a model that never heard them, its epoch count chosen (with
    ``config.choose == "epochs"``) on the other speakers only; each speaker's probabilities
    go to ``kept[speaker]``."""
    speakers = sorted(set(recordings.speakers.tolist()))
    per_speaker = {}
    t0 = time.perf_counter()
    if config.choose == "epochs" and len(speakers) < 3:
        print(f"{len(speakers)} speakers: too few to choose the epoch count on the others; each model trains "
              f"--epochs {config.epochs}")
    for speaker in speakers:
        held = recordings.speakers == speaker
        chosen = (choose_epochs(kind, recordings.subset(~held), config)
                  if config.choose == "epochs" and len(speakers) > 2 else {"epochs": config.epochs})
        models, history = train_one(kind, recordings.subset(~held), config, epochs=chosen["epochs"],
                                    members=config.members)
        histories[f"{kind}/without_{speaker}"] = history.epochs
        kept[speaker] = probabilities(models, recordings.subset(held), kind, config)
        per_speaker[speaker] = {**scored(kept[speaker], recordings.labels[held]), **chosen}
        inner = (f", {chosen['epochs']} epochs chosen on the others ({chosen['inner_mean']:.4f})"
                 if "inner_mean" in chosen else "")
        print(f"leave out {speaker:10s}: {per_speaker[speaker]['accuracy']:.4f} "
              f"({per_speaker[speaker]['correct']}/{per_speaker[speaker]['total']}){inner}", flush=True)
    return {**summary(per_speaker), "seconds": time.perf_counter() - t0}


def slide_figure(recordings: audio.Recordings):
    """The slide: a spectrogram of a spoken "0", time across, frequency up."""
    i = int(np.flatnonzero(recordings.labels == 0)[0])
    n = int(recordings.lengths[i])
    start = max(0, (recordings.waveforms.shape[1] - n) // 2)
    wave = recordings.waveforms[i, start : start + n]
    values = np.asarray(audio.spectrogram(wave, sample_rate=SAMPLE_RATE, frame_length=FRAME_LENGTH, frame_step=32))
    return viz.plot_spectrogram(values, sample_rate=SAMPLE_RATE, frame_step=32, frame_length=FRAME_LENGTH,
                                title=f'A spectrogram of spoken digit 0 ("{recordings.speakers[i]}", '
                                      f"recording {recordings.indices[i]})")


def run(config: Config, argv: list[str] | None = None) -> dict:
    """Trains and scores as ``config`` says; returns the results (``results.json``) with the run's
    record (:func:`common.provenance`: ``argv`` is the command's flags, default ``sys.argv``)."""
    config.check_paths()
    try:
        recordings = audio.load_recordings(config.data_dir, length=config.length, sample_rate=SAMPLE_RATE)
        extra = (audio.load_recordings(config.test_dir, length=config.length, sample_rate=SAMPLE_RATE)
                 if config.test_dir else None)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    workdir = Path(config.workdir or os.path.join("runs", f"spoken_digits-{datetime.datetime.now():%Y%m%d-%H%M%S}"))
    with run_directory(workdir):  # locked; an OSError (a full disk) is one error line
        return _run_in(config, extra, recordings, workdir, argv)


def _run_in(config: Config, extra, recordings, workdir: Path, argv: list[str] | None = None) -> dict:
    """The run itself, in ``workdir`` (locked by the caller)."""
    speakers = sorted(set(recordings.speakers.tolist()))
    kinds = list(MODELS) if config.inputs == "both" else [config.inputs]
    print(f"{len(recordings)} recordings of {len(speakers)} speakers ({', '.join(speakers)}) from {config.data_dir}")
    if config.pictures:
        viz.save(slide_figure(recordings), workdir / "spectrogram_zero.png")
    results: dict = {"config": recorded_settings(config), "official": {}, "speakers": {}}
    histories: dict = {}
    kept: dict = {"official": {}, "test_dir": {}, "speakers": {}}  # each model's probabilities, for the ensemble
    official_test = np.isin(recordings.indices, TEST_INDICES)
    for kind in kinds:
        x, y = inputs(recordings, kind, views(kind, config)[0]), recordings.labels
        print(f"\n== {kind} CNN, inputs {x.shape[1:]}")
        if kind == "waveform" and config.augment in ("tempo", "vtlp"):
            print(f"--augment {config.augment} is for the spectrogram CNN: this one trains on the recordings as is")
        if kind == "waveform" and config.normalise != "band":
            print(f"--normalise {config.normalise} is for the spectrogram CNN: this one standardises each waveform")
        if config.split in ("both", "official"):
            t0 = time.perf_counter()
            models, history = train_one(kind, recordings.subset(~official_test), config,
                                        validation=(x[official_test], y[official_test]), members=config.members)
            histories[f"{kind}/official"] = history.epochs
            kept["official"][kind] = probabilities(models, recordings.subset(official_test), kind, config)
            result = scored(kept["official"][kind], y[official_test])
            result["seconds"] = time.perf_counter() - t0
            results["official"][kind] = result
            print(f"official split: {result['accuracy']:.4f} ({result['correct']}/{result['total']}), "
                  f"{result['seconds']:.0f} s")
            if extra is not None:
                kept["test_dir"][kind] = probabilities(models, extra, kind, config)
                results.setdefault("test_accuracy", {})[kind] = scored(kept["test_dir"][kind], extra.labels)
                print(f"--test-dir {config.test_dir}: {results['test_accuracy'][kind]['accuracy']:.4f}")
            if kind == "spectrogram" and config.pictures:
                viz.save(viz.response_maps(models[0], x[official_test][:2], max_channels=8),
                         workdir / "response_maps.png")
                matrix = viz.confusion_matrix(y[official_test], kept["official"][kind].argmax(-1), 10)
                viz.save(viz.plot_confusion_matrix(matrix), workdir / "confusion_matrix.png")
        if config.split in ("both", "speakers") and len(speakers) > 1:
            kept["speakers"][kind] = {}
            results["speakers"][kind] = leave_one_speaker_out(kind, recordings, config, histories,
                                                              kept["speakers"][kind])
            print_summary(results["speakers"][kind])
    if len(kinds) > 1:
        ensemble(results, kept, recordings, official_test, extra)
    write_json(workdir / "metrics.json", histories)
    results["run"] = provenance("spoken_digits.py", argv)
    write_json(workdir / "results.json", results)
    print(f"\nresults{' and pictures' if config.pictures else ''} in {workdir}")
    return results


def ensemble(results: dict, kept: dict, recordings, official_test, extra) -> None:
    """The two CNNs together: each recording's class is the one with the highest mean of
    their two softmax outputs. Scored wherever both were (no training of its own)."""
    mean = lambda parts: np.mean(list(parts.values()), axis=0)
    print("\n== ensemble: the mean of the two CNNs' probabilities")
    if kept["official"]:
        results["official"]["ensemble"] = scored(mean(kept["official"]), recordings.labels[official_test])
        print(f"official split: {results['official']['ensemble']['accuracy']:.4f}")
    if kept["test_dir"]:
        results["test_accuracy"]["ensemble"] = scored(mean(kept["test_dir"]), extra.labels)
        print(f"--test-dir: {results['test_accuracy']['ensemble']['accuracy']:.4f}")
    if kept["speakers"]:
        by_speaker = {s: mean({k: p[s] for k, p in kept["speakers"].items()}) for s in kept["speakers"]["spectrogram"]}
        per_speaker = {s: scored(p, recordings.labels[recordings.speakers == s]) for s, p in by_speaker.items()}
        for speaker, result in per_speaker.items():
            print(f"leave out {speaker:10s}: {result['accuracy']:.4f} ({result['correct']}/{result['total']})")
        results["speakers"]["ensemble"] = summary(per_speaker)
        print_summary(results["speakers"]["ensemble"])


def main(argv: list[str] | None = None) -> dict:
    return run(parse(Config, argv, __doc__.splitlines()[0]), argv)


if __name__ == "__main__":
    main()
