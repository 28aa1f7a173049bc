"""cnnjax.text, the masked max over time, nn.Embed and models.sentence_cnn: tiny hand-made
files and sentences, hand-computed expectations, a NumPy loop for the whole sentence CNN."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import cnnjax
from cnnjax import models, nn, text, train


def write(tmp_path, raw: bytes, name="data.txt"):
    path = tmp_path / name
    path.write_bytes(raw)
    return path


# ------------------------------------------------------------------------------- reading


def test_reads_labelled_lines_as_written(tmp_path):
    path = write(tmp_path, "1 a fine film .\n0 not\tgood  at all \n1 café\n".encode())
    d = text.read_labelled(path)
    assert d.encoding == "utf-8" and d.source == str(path) and len(d) == 3
    assert d.labels.tolist() == [1, 0, 1]
    assert d.sentences == (("a", "fine", "film", "."), ("not", "good", "at", "all"), ("café",))
    assert d.subset([2, 0]).sentences == (("café",), ("a", "fine", "film", "."))


def test_latin1_is_read_byte_for_byte_and_nel_does_not_break_a_line(tmp_path):
    # MR's bytes: 0x85 (NEL in Latin-1, a line break to str.splitlines) and 0xe9 (e acute), not UTF-8
    path = write(tmp_path, b"0 wait\x85 what\r\n1 caf\xe9 ok\n")
    d = text.read_labelled(path)
    assert d.encoding == "latin-1" and len(d) == 2
    assert d.sentences == (("wait\x85", "what"), ("caf\xe9", "ok"))  # \r is not part of a word
    with pytest.raises(ValueError, match=r"is not utf-8 text: byte 0x85 on line 1"):
        text.read_labelled(path, encoding="utf-8")
    assert text.read_labelled(path, encoding="cp1252").sentences[0] == ("wait\u2026", "what")


@pytest.mark.parametrize("raw, message", [
    (b"", "is empty: it holds no labelled sentence"),
    (b"\n", r"line 1: an empty line"),
    (b"1 good\n\n0 bad\n", r"line 2: an empty line"),
    (b"good film\n", r"line 1: the label must be a non-negative integer .*got 'good'"),
    (b"1 good\n-1 bad\n", r"line 2: the label must be a non-negative integer .*got '-1'"),
    (b"1.0 good\n", r"got '1.0'"),
    (b"1 good\n0\n", r"line 2: label 0 and no words"),
    (b"1 good\x00 film\n", r"is not a text file: it holds control character '\\x00' on line 1"),
    ("1 good film\n".encode("utf-16"), r"is not a text file"),
    (bytes(range(256)), r"is not a text file"),
])
def test_bad_files_are_refused_naming_the_line(tmp_path, raw, message):
    with pytest.raises(ValueError, match=message):
        text.read_labelled(write(tmp_path, raw))


def test_an_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="`encoding` must be 'auto' or a codec Python knows, got 'klingon'"):
        text.decode(b"1 a\n", "klingon")


def test_class_count_checks_every_split_against_training():
    assert text.class_count(np.array([2, 0, 1, 1]), dev=np.array([0]), test=np.array([2, 1])) == 3
    with pytest.raises(ValueError, match=r"must be the classes 0 .. K-1, each present; got \[1, 2\], which lacks \[0\]"):
        text.class_count(np.array([1, 2, 2]))
    with pytest.raises(ValueError, match=r"The test labels hold 2 \(at row 1\), a class the training labels never had"):
        text.class_count(np.array([0, 1]), test=np.array([1, 2]))
    with pytest.raises(ValueError, match="one class only"):
        text.class_count(np.array([0, 0]))


# ------------------------------------------------------------------------------- vocabulary


def test_vocabulary_counts_then_first_appearance_from_training_only():
    sentences = [("the", "film", "is", "good"), ("the", "plot", "is", "thin"), ("good", "film")]
    vocab = text.Vocabulary.build(sentences)
    # counts: the 2, film 2, is 2, good 2, plot 1, thin 1 (ties in order of first appearance)
    assert vocab.words == ("<pad>", "<unk>", "the", "film", "is", "good", "plot", "thin")
    assert text.Vocabulary.build(sentences, min_count=2).words == ("<pad>", "<unk>", "the", "film", "is", "good")
    assert text.Vocabulary.build(sentences, max_size=4).words == ("<pad>", "<unk>", "the", "film")
    assert "film" in vocab and "<unk>" not in vocab and vocab.id("dull") == text.UNKNOWN_ID
    encoded = vocab.encode([("the", "film", "is", "dull"), ("good",), ("<pad>", "thin")])
    assert encoded.ids.tolist() == [[2, 3, 4, 1], [5, 0, 0, 0], [1, 7, 0, 0]]  # a '<pad>' word is not padding
    assert encoded.lengths.tolist() == [4, 1, 2] and encoded.unknown == 2
    assert encoded.truncated == 0 and encoded.words_cut == 0
    cut = vocab.encode([("the", "film", "is", "good"), ("good",)], max_length=2)
    assert cut.ids.tolist() == [[2, 3], [5, 0]] and cut.lengths.tolist() == [2, 1]
    assert cut.truncated == 1 and cut.words_cut == 2
    assert vocab.decode([2, 3, 1, 0, 0]) == ["the", "film", "<unk>"]


@pytest.mark.parametrize("call, error, message", [
    (lambda v: v.encode("a good film"), TypeError, "must be sequences of words"),
    (lambda v: v.encode([("a",)], max_length=0), ValueError, "`max_length` must be None or an integer >= 1, got 0"),
    (lambda v: text.Vocabulary.build([("a",)], min_count=0), ValueError, "`min_count` must be an integer >= 1"),
    (lambda v: text.Vocabulary.build([("a",)], max_size=1), ValueError, "`max_size` must be None or an integer >= 2"),
    (lambda v: text.Vocabulary(["a", "b"]), ValueError, "must start with '<pad>' and '<unk>'"),
    (lambda v: text.Vocabulary(["<pad>", "<unk>", "a", "a"]), ValueError, "must not repeat a word, got 'a' twice"),
])
def test_vocabulary_refuses_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(text.Vocabulary.build([("a", "film")]))


# ------------------------------------------------------------------------------- max over time


def masked_max_loop(x, mask):
    """For each example and channel, the largest value at a marked position (NaN wins), by loop."""
    out = np.empty((x.shape[0], x.shape[-1]), x.dtype)
    for n in range(x.shape[0]):
        for c in range(x.shape[-1]):
            values = [x[n, t, c] for t in range(x.shape[1]) if mask[n, t]]
            out[n, c] = np.nan if any(np.isnan(values)) else max(values)
    return out


def test_masked_global_maxpool_matches_a_loop_and_padding_never_wins():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 0]], bool)
    x[0, 4, :] = 50.0  # padding, larger than everything
    x[1, 1, 0] = np.nan  # padding holding NaN
    x[1, 3, 1] = np.nan  # a counted NaN wins
    got = np.asarray(cnnjax.global_maxpool(x, mask=mask))
    np.testing.assert_array_equal(got, masked_max_loop(x, mask))
    assert np.isnan(got[1, 1]) and not np.isnan(got[1, 0]) and got[0].max() < 50
    one = cnnjax.global_maxpool(x[2], spatial_dims=1, mask=mask[2])  # one example
    np.testing.assert_array_equal(one, got[2])
    np.testing.assert_array_equal(jax.vmap(lambda a, m: cnnjax.global_maxpool(a, spatial_dims=1, mask=m))(x, mask),
                                  got)


def test_masked_global_maxpool_gradient_goes_to_the_first_counted_maximum():
    x = jnp.array([[[9.0], [2.0], [5.0], [5.0]]])  # 9 is padding
    g = jax.grad(lambda x: cnnjax.global_maxpool(x, mask=jnp.array([[False, True, True, True]])).sum())(x)
    np.testing.assert_array_equal(g[0, :, 0], [0, 0, 1, 0])
    g = jax.jit(jax.grad(lambda x, m: cnnjax.global_maxpool(x, mask=m).sum()))(x, jnp.array([[False, True, True, True]]))
    np.testing.assert_array_equal(g[0, :, 0], [0, 0, 1, 0])


@pytest.mark.parametrize("mask, error, message", [
    (np.ones((2, 3), np.int32), TypeError, "`mask` must be a bool array"),
    (np.ones((2, 4), bool), ValueError, r"`mask` must have the shape of `x` without its channels, \(2, 3\), got \(2, 4\)"),
    (np.array([[True, True, True], [False, False, False]]), ValueError, "marks no position of example 1"),
])
def test_masked_global_maxpool_refuses_a_bad_mask(mask, error, message):
    with pytest.raises(error, match=message):
        cnnjax.global_maxpool(np.zeros((2, 3, 5), np.float32), mask=mask)


# ------------------------------------------------------------------------------- the sentence CNN


def numpy_sentence_cnn(model, ids):
    """Kim's network written out in NumPy loops: zero vectors for padding, each filter over every
    window of the sentence padded by width - 1 zero vectors on both sides that covers a word,
    ReLU, the maximum, the dense layer (evaluation mode: no dropout)."""
    table = np.asarray(model.embed.embedding[...], np.float64)
    out = []
    for row in np.asarray(ids):
        words = [w for w in row if w != 0]  # padding only after the words, as text.encode writes it
        x = table[words] if words else np.zeros((1, table.shape[1]))
        features = []
        for conv in model.convs:
            kernel, bias = np.asarray(conv.kernel[...], np.float64), np.asarray(conv.bias[...], np.float64)
            w = kernel.shape[0]
            padded = np.concatenate([np.zeros((w - 1, x.shape[1])), x, np.zeros((w - 1, x.shape[1]))])
            responses = [np.maximum(np.einsum("we,wef->f", padded[t : t + w], kernel) + bias, 0)
                         for t in range(len(x) + w - 1)]
            features.append(np.max(responses, axis=0))
        h = np.concatenate(features)
        out.append(h @ np.asarray(model.classifier.kernel[...], np.float64) + np.asarray(model.classifier.bias[...]))
    return np.array(out)


@pytest.fixture(scope="module")
def small_cnn():
    model = models.sentence_cnn(30, num_classes=3, embed_dim=6, widths=(2, 3), features=4,
                                rngs=nnx.Rngs(params=0, dropout=1))
    model.eval()
    for i, conv in enumerate(model.convs):  # biases far from zero: a window of padding alone would win somewhere
        conv.bias[...] = jnp.asarray(np.random.default_rng(i).normal(size=4) * 3, jnp.float32)
    ids = np.array([[5, 8, 2, 9, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0], [4, 4, 7, 1, 2, 11, 29], [0] * 7], np.int32)
    return model, ids


@pytest.mark.slow
def test_sentence_cnn_is_kims_network_written_out(small_cnn):
    model, ids = small_cnn
    np.testing.assert_allclose(model(ids), numpy_sentence_cnn(model, ids), rtol=1e-5, atol=1e-6)


def test_sentence_cnn_scores_do_not_depend_on_the_padding(small_cnn):
    model, ids = small_cnn
    call = nnx.jit(lambda m, x: m(x))  # one program per shape, not one per operation
    short = call(model, ids)
    for width in (20, 60):
        longer = np.pad(ids, ((0, 0), (0, width - ids.shape[1])))
        np.testing.assert_allclose(call(model, longer), short, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(nnx.jit(lambda m, x: jax.vmap(m)(x))(model, ids), short)  # per example
    np.testing.assert_allclose(call(model, ids[0]), short[0], rtol=1e-6)  # (L,) is one sentence


def test_sentence_cnn_summary_counts_by_hand():
    model = models.sentence_cnn(1000, rngs=nnx.Rngs(0))  # Kim's settings
    s = cnnjax.summary(model, (20,), dtype=jnp.int32)
    e, f = 300, 100
    want = 1000 * e + sum(w * e * f + f for w in (3, 4, 5)) + 3 * f * 2 + 2
    assert s.total_params == want == 660_902
    names = [r.name for r in s.rows]
    assert names[:2] == ["input_layer", "embed"] and "dropout" in names and names[-1] == "dense"
    positions = {3: 22, 4: 23, 5: 24}  # 20 words, padded by w - 1 on each side
    assert sum(r.flops for r in s.rows) == sum(2 * positions[w] * w * e * f for w in (3, 4, 5)) + 2 * 300 * 2


@pytest.mark.parametrize("build, error, message", [
    (lambda r: models.sentence_cnn(0, rngs=r), ValueError, "`vocab_size` must be positive, got 0"),
    (lambda r: models.sentence_cnn(9, widths=(), rngs=r), ValueError, "`widths` must be a non-empty sequence"),
    (lambda r: models.sentence_cnn(9, widths=(3, 0), rngs=r), ValueError, "`widths` must be positive, got 0"),
    (lambda r: models.sentence_cnn(9, dropout=1.0, rngs=r), ValueError, r"`dropout` must be a rate in \[0, 1\), got 1.0"),
    (lambda r: models.sentence_cnn(9, pad_id=9, rngs=r), ValueError, r"`pad_id` must be an id in \[0, 9\), got 9"),
    (lambda r: models.sentence_cnn(9, embed_dim=2, features=2, rngs=r)(jnp.zeros((2, 3, 4), jnp.int32)), ValueError,
     r"takes token ids \(N, L\), or \(L,\) for one sentence, got shape \(2, 3, 4\)"),
    (lambda r: models.sentence_cnn(9, embed_dim=2, features=2, rngs=r)(jnp.zeros((2, 3))), TypeError,
     "takes integer token ids, got dtype float32"),
])
def test_sentence_cnn_refuses_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build(nnx.Rngs(0))


@pytest.mark.slow
def test_embed_refuses_ids_outside_its_table_and_floats():
    embed = nn.Embed(5, 2, rngs=nnx.Rngs(0))
    assert embed(jnp.array([[0, 4]])).shape == (1, 2, 2)
    with pytest.raises(ValueError, match=r"ids in \[0, 5\), got 5 at index \(1, 0\)"):
        embed(np.array([[1, 2], [5, 0]]))
    with pytest.raises(ValueError, match=r"got -1 at index \(0,\)"):
        embed(np.array([-1]))
    with pytest.raises(TypeError, match="must be integer ids, got dtype float32"):
        embed(np.zeros(3, np.float32))
    looked_up = np.asarray(nnx.jit(lambda m, ids: m(ids))(embed, jnp.array([4, 5, -1])))  # under jit: NaN
    assert np.isfinite(looked_up[0]).all() and np.isnan(looked_up[1:]).all()


# ------------------------------------------------------------------------------- training on ids


def word_decides(n=256, length=10, seed=0):
    """Sentences of random words; class 1 when word 7 appears: one n-gram decides."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, 30, (n, length)).astype(np.int32)
    for i, k in enumerate(rng.integers(3, length + 1, n)):
        ids[i, k:] = 0
    return ids, (ids == 7).any(axis=1).astype(np.int32)


@pytest.mark.slow
def test_fit_evaluate_and_predict_take_integer_ids_for_a_model_that_declares_them():
    ids, y = word_decides()
    model = models.sentence_cnn(30, embed_dim=8, features=4, rngs=nnx.Rngs(params=0, dropout=1))
    optimizer = optax.chain(optax.adam(1e-2), train.max_norm(3.0, lambda path: path == "classifier/kernel"))
    train.fit(model, (ids, y), epochs=12, batch_size=32, optimizer=optimizer, validation=(ids[:64], y[:64]),
              verbose=0)
    assert train.evaluate(model, (ids, y))["accuracy"] == 1.0
    np.testing.assert_array_equal(train.predict(model, ids).argmax(-1), y)
    norms = np.linalg.norm(np.asarray(model.classifier.kernel[...]), axis=0)
    assert np.all(norms <= 3.0 + 1e-5)
    with pytest.raises(TypeError, match=r"`train` inputs must be integer ids for this model \(its input_dtype is "
                                        r"int32\), got float32"):
        train.fit(model, (ids.astype(np.float32), y), epochs=1)
    with pytest.raises(TypeError, match="`validation` inputs must be integer ids for this model"):
        train.fit(model, (ids, y), epochs=1, validation=(ids.astype(np.float32), y))
    with pytest.raises(TypeError, match="`predict` inputs must be integer ids for this model"):
        train.predict(model, ids.astype(np.float32))
    stream = [(ids[:32], y[:32]), (ids[32:64].astype(np.float32), y[32:64])]
    with pytest.raises(TypeError, match="Batch 1 of the `train` stream holds inputs of dtype float32; the first "
                                        "batch's are int32"):
        train.fit(model, stream, epochs=1, optimizer=optimizer, verbose=0)


def test_a_model_of_images_still_refuses_integer_inputs():
    model = models.xo_net(rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="`train` inputs must be floating point, got uint8; scale images first"):
        train.fit(model, (np.zeros((4, 9, 9, 1), np.uint8), np.zeros(4, np.int32)), epochs=1)
    with pytest.raises(TypeError, match="`predict` inputs must be floating point, got int32"):
        train.predict(model, np.zeros((4, 9, 9, 1), np.int32))


def test_max_norm_rescales_only_the_vectors_too_long_and_only_where_asked():
    params = {"classifier": {"kernel": jnp.array([[3.0, 0.3], [4.0, 0.4]])}, "other": {"kernel": jnp.full((2, 2), 9.0)}}
    tx = train.max_norm(1.0, lambda path: path == "classifier/kernel")
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["classifier"]["kernel"], [[0.6, 0.3], [0.8, 0.4]], rtol=1e-6)  # norm 5 -> 1
    np.testing.assert_array_equal(new["other"]["kernel"], params["other"]["kernel"])
    with pytest.raises(ValueError, match="`limit` must be a finite number > 0, got 0"):
        train.max_norm(0, lambda path: True)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(zero, tx.init(params))


TREES = ("(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 great)) (2 .)))\n"
         "(1 (2 Not) (0 (4 great) (2 -LRB-sadly-RRB-)))\n"
         "(2 (2 It) (2 is))\n")


def test_a_treebank_gives_its_sentences_and_phrases_labelled_as_written(tmp_path):
    """Three trees whose every node is labelled by hand. SST-2's view drops the neutral
    sentence and maps 0-1 to 0, 3-4 to 1; its phrases are each node's words; "great" (4),
    met twice, is one phrase unless every node is asked for; SST-1 keeps the five labels."""
    path = tmp_path / "train.txt"
    path.write_text(TREES)
    sentences = text.read_treebank(path)
    assert sentences.sentences == (("the", "rock", "is", "great", "."), ("not", "great", "-lrb-sadly-rrb-"))
    assert sentences.labels.tolist() == [1, 0]
    phrases = text.read_treebank(path, phrases=True)
    assert list(zip(phrases.labels.tolist(), phrases.sentences, strict=True)) == [
        (1, ("the", "rock", "is", "great", ".")), (1, ("is", "great", ".")), (1, ("is", "great")), (1, ("great",)),
        (0, ("not", "great", "-lrb-sadly-rrb-")), (0, ("great", "-lrb-sadly-rrb-"))]
    every = text.read_treebank(path, phrases=True, unique=False)
    assert len(every) == 7 and every.sentences.count(("great",)) == 2
    fine = text.read_treebank(path, classes=5, lower=False)
    assert fine.labels.tolist() == [3, 1, 2] and fine.sentences[0] == ("The", "Rock", "is", "great", ".")
    assert len(text.read_treebank(path, classes=5, phrases=True)) == 15  # 17 nodes; (4 great), (2 is) met twice
    words, nodes = text.parse_tree("(3 (2 a) (4 (2 b) (3 c)))")
    assert words == ("a", "b", "c") and nodes == [(3, 0, 3), (2, 0, 1), (4, 1, 3), (2, 1, 2), (3, 2, 3)]


@pytest.mark.parametrize("line, message", [
    ("(3 (2 a) (2 b)", "line 2, column 1: the bracket opened here is never closed"),
    ("(3 (2 a) (2 b)))", "line 2, column 16: a ')' that closes no bracket"),
    ("(3 (2 a)) (2 b)", "line 2, column 11: '(' after the tree's last bracket: one tree a line"),
    ("(7 (2 a) (2 b))", "line 2, column 2: a node's label must be 0-4 (from very negative to very positive), got '7'"),
    ("(3 (2 a) ( (2 b)))", "line 2, column 12: a node's label must be 0-4 (from very negative to very positive), "
                           "got nothing"),
    ("(3 (2 a) (2))", "line 2, column 10: a node without words"),
    ("(3 (2 a b) (2 c))", "line 2, column 9: the word 'b' beside the word 'a': a node holds one word or child nodes"),
    ("(3 a (2 b))", "line 2, column 6: a child node beside the word 'a'"),
    ("word (2 a)", "line 2, column 1: the word 'word' outside any bracket"),
    (")(2 a)", "line 2, column 1: a ')' that closes no bracket"),
    ("", "line 2: an empty line, where a tree '(LABEL ...)' was expected"),
])
def test_a_malformed_tree_is_refused_naming_the_file_line_and_column(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text("(2 (2 fine) (2 tree))\n" + line + "\n(3 (3 after))\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, {message}")):
        text.read_treebank(path)


def test_an_empty_treebank_and_a_wrong_class_count_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=re.escape(f"{empty} is empty: it holds no tree")):
        text.read_treebank(empty)
    with pytest.raises(ValueError, match=re.escape("`classes` must be 2 (SST-2: negative/positive, neutral dropped) "
                                                   "or 5 (SST-1), got 3")):
        text.read_treebank(empty, classes=3)
    with pytest.raises(TypeError, match=re.escape("`phrases` must be True or False, got 'yes'")):
        text.read_treebank(empty, phrases="yes")  # a string is truthy: refused, not read as True


def _ragged_ids(n: int = 40, length: int = 13, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sentences of 0 to ``length`` words (ids 2..29), padded with 0 after their words."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, length), np.int32)
    for row, k in enumerate(rng.integers(0, length + 1, n)):
        ids[row, :k] = rng.integers(2, 30, k)
    return ids, rng.integers(0, 2, n)


def test_bucket_by_length_deals_every_sentence_once_cut_to_its_bucket():
    ids, _ = _ragged_ids()
    lengths = (ids != 0).sum(axis=1)
    rows = np.arange(len(ids))  # labels that name each sentence's row
    buckets = text.bucket_by_length(ids, rows, 6, width=4, seed=3)
    seen = []
    for _epoch in range(2):
        dealt = []
        for x, named in buckets:
            assert len(x) <= 6 and len(set(-(-np.maximum(lengths[named], 1) // 4))) == 1  # one bucket a batch
            assert x.shape[1] == min(-(-max(lengths[named].max(), 1) // 4) * 4, 13)  # cut to the bucket's width
            np.testing.assert_array_equal(x, ids[named, : x.shape[1]])
            assert not ids[named, x.shape[1]:].any()  # nothing but padding was cut
            dealt += named.tolist()
        assert sorted(dealt) == rows.tolist()  # every sentence once an epoch
        seen.append(dealt)
    assert seen[0] != seen[1]  # dealt anew each epoch
    again = text.bucket_by_length(text.Encoded(ids, lengths, 0, 0, 0), rows, 6, width=4, seed=3)
    assert sum((y.tolist() for _, y in again), []) == seen[0]  # the same seed deals the same epochs
    assert len(buckets) == sum(-(-c // 6) for c in np.bincount(-(-np.maximum(lengths, 1) // 4)) if c)
    in_order = [y.tolist() for _, y in text.bucket_by_length(ids, rows, 6, width=4, shuffle=False)]
    assert sum(in_order, []) == sorted(rows, key=lambda r: -(-max(lengths[r], 1) // 4))  # stable, shortest first


@pytest.mark.slow
def test_training_on_buckets_learns_what_full_width_batches_teach():
    """The same batches, cut to their bucket or padded to the full width: the same weights
    (padding never changes a sentence's logits, so neither its gradient)."""
    ids, y = _ragged_ids(48)
    batches = list(text.bucket_by_length(ids, y, 8, width=4, seed=0))
    assert len({x.shape for x, _ in batches}) > 2
    full = [(np.pad(x, ((0, 0), (0, ids.shape[1] - x.shape[1]))), labels) for x, labels in batches]
    trained = []
    for stream in (batches, full):
        model = models.sentence_cnn(30, embed_dim=6, widths=(2, 3), features=4, rngs=nnx.Rngs(params=0, dropout=1))
        train.fit(model, stream, epochs=2, optimizer=optax.adam(1e-2), seed=0, verbose=0)
        trained.append(jax.tree.leaves(nnx.state(model, nnx.Param)))
    for a, b in zip(*trained, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("call, error, message", [
    (lambda: text.bucket_by_length(np.zeros((3,), np.int32), np.zeros(3), 2), ValueError,
     "`ids` must be token ids of shape (N, L), integers, got shape (3,)"),
    (lambda: text.bucket_by_length(np.zeros((3, 4)), np.zeros(3), 2), ValueError, "of dtype float64"),
    (lambda: text.bucket_by_length(np.zeros((3, 4), np.int32), np.zeros(2), 2), ValueError,
     "`labels` must hold one target per sentence: 3, got shape (2,)"),
    (lambda: text.bucket_by_length(np.zeros((3, 4), np.int32), np.zeros(3), 0), ValueError,
     "`batch_size` must be an integer >= 1, got 0"),
    (lambda: text.bucket_by_length(np.zeros((3, 4), np.int32), np.zeros(3), 2, width=2.5), ValueError,
     "`width` must be an integer >= 1, got 2.5"),
    (lambda: text.bucket_by_length(np.zeros((3, 4), np.int32), np.zeros(3), 2, seed=-1), ValueError,
     "`seed` must be an integer >= 0, got -1"),
    (lambda: text.bucket_by_length(np.zeros((3, 4), np.int32), np.zeros(3), 2, shuffle=1), TypeError,
     "`shuffle` must be True or False, got 1"),
])
def test_bucket_by_length_refuses_bad_arguments(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_a_stream_of_many_shapes_is_warned_about_once():
    model = models.sentence_cnn(30, embed_dim=4, widths=(2,), features=2, rngs=nnx.Rngs(params=0, dropout=1))
    stream = [np.full((1, n), 3, np.int32) for n in range(1, 19)]  # 18 example shapes
    with pytest.warns(UserWarning, match="The `inputs` stream has given batches of 17 example shapes") as caught:
        assert train.predict(model, iter(stream)).shape == (18, 2)  # (a list of arrays is one array)
    assert len([w for w in caught if "example shapes" in str(w.message)]) == 1
