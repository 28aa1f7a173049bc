"""cnnjax against PyTorch (eager) and Keras/TensorFlow on the lecture's functional CNN:
training, inference, and a table of convolution shapes.

The same model (Conv 32 -> pool -> Conv 64 -> pool -> Conv 128 -> Dense 10; 104,202
parameters), the same random 28x28x1 data and labels, batch size, float32 and RMSprop
(lr 1e-3, rho 0.9, eps 1e-7), each framework in its own plain idiom, one after another
in this process. Each trains one warm-up epoch (compilation, caches) and then
``--repeats`` timed epochs; the best timed epoch counts, for every framework alike. The
frameworks take turns for ``--rounds`` rounds and each one's best round counts: on a
shared machine whose speed drifts by +-25% from minute to minute, this keeps a slow
minute from deciding a ratio.
Peers that are not installed are skipped with a message (``pip install -e ".[bench]"``).

Prints a table and one JSON line per framework with images/s, seconds per 60k-image
epoch, and the ratio cnnjax / peer; for cnnjax also compile seconds, peak RSS and the
share of a float32 2048x2048 matmul's GFLOP/s measured here.

``--inference``: the trained-model path at batch 1, 64, 256 and 1024 --
:class:`cnnjax.train.Predictor` (what ``predict`` runs, Python included) and cnnjax's
jitted forward under each lowering, against PyTorch under ``torch.inference_mode`` in
its faster memory format (NCHW or channels_last), in turns, best of ``--rounds``; and the
Predictor again in a process of its own with JAX's asynchronous CPU dispatch turned off,
which shortens a small batch's call (it runs in the calling thread, as PyTorch does).
``--text``: the sentence CNN (Kim, 2014: word vectors of 300, filters of 3, 4 and 5 words,
100 each, max over time, dropout, Adadelta with the max-norm constraint) on random
sentences of MR's shape (56 words, a vocabulary of 18,000, batch 50), cnnjax's ``fit``
against the same network in PyTorch eager, in turns; sentences/s.
``--shapes``: one convolution (bias and ReLU included) per row, forward and
forward+backward, under each lowering and under the CPU default, so that each shape's
choice can be checked against the faster form.

Every framework runs in this one process, after cnnjax has raised glibc's malloc
thresholds (printed with the tables): PyTorch gains as much from them as cnnjax, so a
peer run alone must be given ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:
glibc.malloc.trim_threshold=1073741824`` to be compared fairly.

Example::

    python benchmarks/compare.py                 # training: batch 64, 300 steps an epoch, 2 rounds
    python benchmarks/compare.py --batch-size 128 --steps 200
    python benchmarks/compare.py --inference --shapes --no-training
    python benchmarks/compare.py --text --no-training
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for train_throughput

RMSPROP = dict(learning_rate=1e-3, rho=0.9, epsilon=1e-7)


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


def bench_cnnjax(x, y, batch_size: int, repeats: int) -> dict:
    import jax
    from flax import nnx
    from train_throughput import matmul_gflops, peak_rss_mb

    import cnnjax
    from cnnjax import models, train

    model = models.mnist_functional(rngs=nnx.Rngs(0))
    history = train.fit(model, (x, y), epochs=1 + repeats, batch_size=batch_size, verbose=0,
                        optimizer=train.rmsprop(**RMSPROP))
    ips = max(e["images_per_s"] for e in history.epochs[1:])
    peak = matmul_gflops()
    gflops = 3 * cnnjax.summary(model, (28, 28, 1)).total_flops * ips / 1e9
    return {"framework": f"cnnjax {cnnjax.__version__} (jax {jax.__version__}, {jax.default_backend()})",
            "images_per_s": ips, "compile_s": round(history.compile_seconds, 2),
            "peak_rss_mb": round(peak_rss_mb()), "pct_of_matmul_peak": round(100 * gflops / peak, 1),
            "matmul_gflops_per_s": round(peak, 1)}


def torch_net():
    """The lecture's functional CNN in PyTorch (NCHW), seeded by the caller."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(1152, 10),
    )


def bench_pytorch(x, y, batch_size: int, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    net = torch_net()
    opt = torch.optim.RMSprop(net.parameters(), lr=RMSPROP["learning_rate"], alpha=RMSPROP["rho"],
                              eps=RMSPROP["epsilon"])
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW, PyTorch's layout
    labels = torch.from_numpy(y.astype(np.int64))
    n = len(images)

    def epoch():
        t = time.perf_counter()
        order = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(images[idx]), labels[idx])
            loss.backward()
            opt.step()
        return n / (time.perf_counter() - t)

    epoch()
    ips = max(epoch() for _ in range(repeats))
    return {"framework": f"pytorch {torch.__version__} eager ({torch.get_num_threads()} threads)", "images_per_s": ips}


def bench_keras(x, y, batch_size: int, repeats: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    # The lecture's own code ("New CNN for MNIST using Functional API").
    inputs = keras.Input(shape=(28, 28, 1))
    h = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    h = layers.MaxPooling2D(pool_size=2)(h)
    h = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(h)
    h = layers.MaxPooling2D(pool_size=2)(h)
    h = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(h)
    h = layers.Flatten()(h)
    outputs = layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.RMSprop(**RMSPROP), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    times: list[float] = []
    model.fit(x, y, epochs=1 + repeats, batch_size=batch_size, verbose=0, callbacks=[Timer()])
    return {"framework": f"keras {keras.__version__} ({keras.backend.backend()} backend)",
            "images_per_s": len(x) / min(times[1:])}


PEERS = {"pytorch": ("torch", bench_pytorch), "keras": ("keras", bench_keras)}

TEXT = dict(vocab=18_000, length=56, batch_size=50, embed_dim=300, widths=(3, 4, 5), features=100)


def text_data(n: int, seed: int = 0):
    """Random sentences of 10 to ``length`` words as ids (padding 0 after them), binary labels."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, TEXT["vocab"], (n, TEXT["length"])).astype(np.int32)
    for i, k in enumerate(rng.integers(10, TEXT["length"] + 1, n)):
        ids[i, k:] = 0
    return ids, rng.integers(0, 2, n).astype(np.int32)


def text_cnnjax(ids, y, repeats: int) -> float:
    import optax
    from flax import nnx

    from cnnjax import models, train

    model = models.sentence_cnn(TEXT["vocab"], embed_dim=TEXT["embed_dim"], widths=TEXT["widths"],
                                features=TEXT["features"], rngs=nnx.Rngs(params=0, dropout=1))
    optimizer = optax.chain(optax.adadelta(1.0, rho=0.95, eps=1e-6),
                            train.max_norm(3.0, lambda path: path == "classifier/kernel"))
    history = train.fit(model, (ids, y), epochs=1 + repeats, batch_size=TEXT["batch_size"], optimizer=optimizer,
                        verbose=0)
    return max(e["images_per_s"] for e in history.epochs[1:])


def text_pytorch(ids, y, repeats: int) -> float:
    import torch

    torch.manual_seed(0)
    e, f, widths = TEXT["embed_dim"], TEXT["features"], TEXT["widths"]

    class SentenceCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(TEXT["vocab"], e, padding_idx=0)
            self.convs = torch.nn.ModuleList(torch.nn.Conv1d(e, f, w, padding=w - 1) for w in widths)
            self.dropout = torch.nn.Dropout(0.5)
            self.classifier = torch.nn.Linear(f * len(widths), 2)

        def forward(self, ids):
            words = ids != 0
            x = self.embed(ids).transpose(1, 2)  # (N, E, L): PyTorch's channels-first layout
            pooled = []
            for conv, w in zip(self.convs, widths, strict=True):
                padded = torch.nn.functional.pad(words[:, None].float(), (w - 1, w - 1))
                covered = torch.nn.functional.max_pool1d(padded, w, 1)[:, 0] > 0  # windows with a word
                maps = torch.relu(conv(x)).masked_fill(~covered[:, None], float("-inf"))
                pooled.append(maps.amax(dim=2))
            return self.classifier(self.dropout(torch.cat(pooled, dim=1)))

    net = SentenceCNN()
    opt = torch.optim.Adadelta(net.parameters(), lr=1.0, rho=0.95, eps=1e-6)
    loss_fn = torch.nn.CrossEntropyLoss()
    tokens, labels = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
    n, b = len(tokens), TEXT["batch_size"]

    def epoch():
        t = time.perf_counter()
        order = torch.randperm(n)
        for i in range(0, n - n % b, b):
            idx = order[i : i + b]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(tokens[idx]), labels[idx]).backward()
            opt.step()
            with torch.no_grad():  # the max-norm constraint on the classifier's weight vectors
                net.classifier.weight.copy_(torch.renorm(net.classifier.weight, 2, 0, 3.0))
        return (n - n % b) / (time.perf_counter() - t)

    epoch()
    return max(epoch() for _ in range(repeats))


def text_table(steps: int, repeats: int, rounds: int, peers: list[str]) -> dict:
    ids, y = text_data(steps * TEXT["batch_size"])
    have_torch = "pytorch" in peers and importlib.util.find_spec("torch") is not None
    best: dict[str, float] = {}
    for _ in range(rounds):  # in turns, each one's best round counts
        best["cnnjax"] = max(best.get("cnnjax", 0.0), text_cnnjax(ids, y, repeats))
        if have_torch:
            import torch

            best["pytorch"] = max(best.get("pytorch", 0.0), text_pytorch(ids, y, repeats))
    print(f"\nsentence CNN (Kim 2014: {TEXT['embed_dim']}-d words, widths {TEXT['widths']}, {TEXT['features']} "
          f"each), {TEXT['length']} words, batch {TEXT['batch_size']}, Adadelta + max-norm, {len(ids)} sentences "
          f"an epoch, best of {repeats} epochs after one warm-up, best of {rounds} rounds\n")
    print(f"{'framework':40s} {'sentences/s':>12s} {'cnnjax/peer':>12s}")
    print(f"{'cnnjax':40s} {best['cnnjax']:12.0f}")
    if "pytorch" in best:
        name = f"pytorch {torch.__version__} eager ({torch.get_num_threads()} threads)"
        print(f"{name:40s} {best['pytorch']:12.0f} {best['cnnjax'] / best['pytorch']:11.2f}x")
    row = {"table": "text", **{k: round(v) for k, v in best.items()}}
    print(json.dumps(row))
    return row


def malloc_setting() -> str:
    """The malloc setting this process (and so every framework in it) runs under."""
    from cnnjax import _memory, train

    if train.tune_cpu_memory():
        return (f"glibc mmap_threshold={_memory._THRESHOLD}, trim_threshold={_memory._THRESHOLD} "
                "(set by cnnjax; every framework below ran in this process under it)")
    return "the C library's defaults (cnnjax's tuning is off or not glibc)"


def per_call_seconds(fn, min_seconds: float = 0.3, tries: int = 3) -> float:
    """Best over ``tries`` of the mean time of ``fn()`` over at least ``min_seconds``."""
    fn()
    best = float("inf")
    for _ in range(tries):
        calls, t = 0, time.perf_counter()
        while time.perf_counter() - t < min_seconds:
            fn()
            calls += 1
        best = min(best, (time.perf_counter() - t) / calls)
    return best


INFERENCE_BATCHES = (1, 64, 256, 1024)


def inference_predictor(batch: int) -> float:
    """:class:`cnnjax.train.Predictor`'s images/s at ``batch``, Python included."""
    from flax import nnx

    from cnnjax import models, train

    model = models.mnist_functional(rngs=nnx.Rngs(0))
    x = data(batch, seed=1)[0]
    predictor = train.Predictor(model, batch_size=batch)
    return batch / per_call_seconds(lambda: predictor(x))


def inference_predictor_sync(batches: tuple[int, ...] = INFERENCE_BATCHES) -> dict[int, float]:
    """:func:`inference_predictor` at each of ``batches`` in a fresh process whose JAX runs
    each CPU program in the calling thread (``jax_cpu_enable_async_dispatch=False``, which
    only takes effect before JAX starts)."""
    code = ("import json, sys, jax; jax.config.update('jax_cpu_enable_async_dispatch', False); "
            f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); import compare; "
            f"print(json.dumps({{b: compare.inference_predictor(b) for b in {tuple(batches)!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {int(b): v for b, v in json.loads(out.splitlines()[-1]).items()}


def inference_cnnjax(batch: int) -> dict:
    import jax
    from flax import nnx

    from cnnjax import lowering, models

    model = models.mnist_functional(rngs=nnx.Rngs(0))
    x = data(batch, seed=1)[0]
    row = {"predictor": inference_predictor(batch)}
    graphdef, state = nnx.split(model)
    for name in ("patches", "reference"):
        with lowering.use(conv=name, maxpool=name):
            f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, x).compile()
        row[name] = batch / per_call_seconds(lambda f=f: np.asarray(f(state, x)))
    return row


def inference_pytorch(batch: int) -> float:
    import torch

    torch.manual_seed(0)
    net = torch_net().eval()
    x = torch.from_numpy(np.ascontiguousarray(data(batch, seed=1)[0].transpose(0, 3, 1, 2)))
    best = 0.0
    for fmt in (torch.contiguous_format, torch.channels_last):
        net, xf = net.to(memory_format=fmt), x.contiguous(memory_format=fmt)

        def call(net=net, xf=xf):
            with torch.inference_mode():
                return net(xf).numpy()

        best = max(best, batch / per_call_seconds(call))
    return best


def inference_table(rounds: int, peers: list[str]) -> list[dict]:
    have_torch = "pytorch" in peers and importlib.util.find_spec("torch") is not None
    best: dict[int, dict] = {batch: {} for batch in INFERENCE_BATCHES}
    keep = lambda row, name, value: row.__setitem__(name, max(row.get(name, 0.0), value))
    for _ in range(rounds):  # in turns, each one's best round counts
        for batch in INFERENCE_BATCHES:
            for name, value in inference_cnnjax(batch).items():
                keep(best[batch], name, value)
            if have_torch:
                keep(best[batch], "pytorch", inference_pytorch(batch))
        for batch, value in inference_predictor_sync().items():
            keep(best[batch], "predictor_sync", value)
    rows = [{"batch_size": batch, **{k: round(v) for k, v in best[batch].items()}} for batch in INFERENCE_BATCHES]
    print("\ninference, lecture functional CNN, images/s (best of "
          f"{rounds} rounds); Predictor includes its Python per call; 'sync' is Predictor in a\n"
          "process with JAX's asynchronous CPU dispatch off (jax_cpu_enable_async_dispatch=False)\n")
    print(f"{'batch':>6s} {'Predictor':>10s} {'ms/call':>8s} {'sync':>7s} {'ms/call':>8s} {'patches':>9s} "
          f"{'reference':>10s} {'pytorch':>9s} {'vs faster lowering':>19s} {'vs pytorch':>11s} {'sync/pytorch':>13s}")
    ratio = lambda a, b: f"{a / b:.2f}x" if b else "-"
    for r in rows:
        b, torch_ips = r["batch_size"], r.get("pytorch")
        faster = max(r["patches"], r["reference"])
        print(f"{b:6d} {r['predictor']:10d} {1e3 * b / r['predictor']:8.3f} {r['predictor_sync']:7d} "
              f"{1e3 * b / r['predictor_sync']:8.3f} {r['patches']:9d} {r['reference']:10d} {torch_ips or 0:9d} "
              f"{ratio(r['predictor'], faster):>19s} {ratio(r['predictor'], torch_ips):>11s} "
              f"{ratio(r['predictor_sync'], torch_ips):>13s}")
    for r in rows:
        print(json.dumps({"table": "inference", **r}))
    return rows


# (name, input shape, kernel shape, stride): one convolution each, with bias and ReLU.
SHAPES = [
    ("lecture conv1", (64, 28, 28, 1), (3, 3, 1, 32), 1),
    ("lecture conv2", (64, 13, 13, 32), (3, 3, 32, 64), 1),
    ("lecture conv3", (64, 5, 5, 64), (3, 3, 64, 128), 1),
    ("64x64x32 maps", (16, 64, 64, 32), (3, 3, 32, 32), 1),
    ("5x5 window", (32, 32, 32, 16), (5, 5, 16, 32), 1),
    ("7x7 stride-2 stem", (16, 112, 112, 3), (7, 7, 3, 64), 2),
    ("11x11 stride-4 stem", (8, 224, 224, 3), (11, 11, 3, 64), 4),
    ("1-D, kernel 3", (16, 1024, 64), (3, 64, 64), 1),
    ("1-D, kernel 31", (16, 4096, 16), (31, 16, 32), 1),
    ("3-D 3x3x3", (8, 16, 16, 16, 8), (3, 3, 3, 8, 16), 1),
]


# Whole networks, where XLA:CPU may fuse several layers: (name, input shape, layers), a
# layer being (C_in, C_out) for a 3x3 "same" convolution with ReLU, or "pool" (2x2).
NETWORKS = [
    ("lecture CNN, batch 256", (256, 28, 28, 1), [(1, 32), "pool", (32, 64), "pool", (64, 128)]),
    ("CIFAR-style net, batch 256", (256, 32, 32, 3),
     [(3, 32), (32, 32), "pool", (32, 64), (64, 64), "pool", (64, 128), "pool"]),
]


def _network(layers):
    import jax
    import jax.numpy as jnp

    import cnnjax

    def forward(kernels, x):
        kernels = iter(kernels)
        for layer in layers:
            x = cnnjax.maxpool(x, 2) if layer == "pool" else jax.nn.relu(cnnjax.conv(x, next(kernels), padding="SAME"))
        return jnp.mean(x, axis=(1, 2))

    return forward


def _time_forms(row: dict, fn, *args) -> dict:
    """Adds ms per call of ``fn(*args)`` and of its gradient under each lowering to ``row``."""
    import jax
    import jax.numpy as jnp

    from cnnjax import lowering

    argnums = tuple(range(len(args)))
    for form in ("patches", "reference", "auto"):
        with lowering.use(conv=form, maxpool=form):
            fwd = jax.jit(fn).lower(*args).compile()
            both = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a) ** 2), argnums=argnums)).lower(*args).compile()
        row[f"{form}_fwd_ms"] = 1e3 * per_call_seconds(lambda f=fwd: jax.block_until_ready(f(*args)))
        row[f"{form}_fwd_bwd_ms"] = 1e3 * per_call_seconds(lambda f=both: jax.block_until_ready(f(*args)))
    return row


def shapes_table() -> list[dict]:
    import jax
    import jax.numpy as jnp

    import cnnjax
    from cnnjax import lowering

    rng = np.random.default_rng(0)
    rows = []
    for name, x_shape, k_shape, stride in SHAPES:
        x = jnp.asarray(rng.uniform(size=x_shape).astype(np.float32))
        k = jnp.asarray(0.1 * rng.standard_normal(k_shape).astype(np.float32))
        b = jnp.zeros(k_shape[-1:], jnp.float32)
        layer = lambda x, k, b, stride=stride: jax.nn.relu(cnnjax.conv(x, k, b, stride=stride))
        row = _time_forms({"shape": name}, layer, x, k, b)
        n = len(k_shape) - 2
        row["auto_forms"] = lowering.auto.conv_forms(x_shape, k_shape, (stride,) * n, ((0, 0),) * n, (1,) * n)
        rows.append(row)
    for name, x_shape, layers in NETWORKS:
        x = jnp.asarray(rng.uniform(size=x_shape).astype(np.float32))
        kernels = [jnp.asarray(0.1 * rng.standard_normal((3, 3, *c)).astype(np.float32)) for c in layers if c != "pool"]
        forward = _network(layers)
        rows.append(_time_forms({"shape": name}, forward, kernels, x))
    print("\nconvolution shapes (bias + ReLU), ms per call; 'auto' is the CPU default, and "
          "'/best' its time over the faster lowering's\n")
    print(f"{'shape':20s} {'fwd: patches':>12s} {'reference':>10s} {'auto':>8s} {'/best':>6s}   "
          f"{'fwd+bwd: patches':>16s} {'reference':>10s} {'auto':>8s} {'/best':>6s}")
    for r in rows:
        cells = []
        for d in ("fwd", "fwd_bwd"):
            p, ref, a = (r[f"{f}_{d}_ms"] for f in ("patches", "reference", "auto"))
            cells.append(f"{p:{12 if d == 'fwd' else 16}.2f} {ref:10.2f} {a:8.2f} {a / min(p, ref):6.2f}")
        print(f"{r['shape']:20s} {cells[0]}   {cells[1]}")
    for r in rows:
        print(json.dumps({"table": "shapes", **{k: (round(v, 3) if isinstance(v, float) else v)
                                                 for k, v in r.items()}}))
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300, help="steps per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the warm-up epoch")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times the whole set of frameworks runs, in turn; each one's best round counts")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--inference", action="store_true", help="also time inference at batch 1, 64, 256, 1024")
    parser.add_argument("--shapes", action="store_true", help="also time one convolution per shape of a table")
    parser.add_argument("--text", action="store_true", help="also race the sentence CNN (Kim 2014)")
    parser.add_argument("--no-training", dest="training", action="store_false", help="skip the training race")
    parser.add_argument("--record", metavar="FILE",
                        help="write the training race's rows as a run record (JSON: the rows, the malloc setting, "
                             "the command, commit, versions and machine), as docs/results/ keeps them")
    args = parser.parse_args(argv)
    print(f"malloc: {malloc_setting()}")
    if args.inference:
        inference_table(args.rounds, args.peers)
    if args.shapes:
        shapes_table()
    if args.text:
        text_table(args.steps, args.repeats, args.rounds, args.peers)
    if not args.training:
        return []
    x, y = data(args.steps * args.batch_size)
    benches = [bench_cnnjax]
    for name in args.peers:
        module, bench = PEERS[name]
        if importlib.util.find_spec(module) is None:
            print(f"skipping {name}: `{module}` is not installed (pip install -e '.[bench]')", file=sys.stderr)
            continue
        benches.append(bench)
    # The frameworks take turns, round after round, so that a slow minute on a shared
    # machine does not land on one of them only.
    best: dict = {}
    cnnjax_rss = None
    for _ in range(args.rounds):
        for bench in benches:
            row = bench(x, y, args.batch_size, args.repeats)
            if bench is bench_cnnjax and cnnjax_rss is None:
                cnnjax_rss = row["peak_rss_mb"]  # the process's high-water mark before any peer ran
            if bench not in best or row["images_per_s"] > best[bench]["images_per_s"]:
                best[bench] = row
    rows = [best[bench] for bench in benches]
    rows[0]["peak_rss_mb"] = cnnjax_rss
    ours = rows[0]["images_per_s"]
    print(f"\nlecture functional CNN, batch {args.batch_size}, float32, RMSprop, {len(x)} images an "
          f"epoch, best of {args.repeats} epochs after one warm-up, best of {args.rounds} rounds\n")
    print(f"{'framework':58s} {'images/s':>9s} {'s/60k epoch':>12s} {'cnnjax/peer':>12s}")
    for row in rows:
        row["images_per_s"] = round(row["images_per_s"])
        row["s_per_60k_epoch"] = round(60_000 / row["images_per_s"], 2)
        row["cnnjax_over_peer"] = round(ours / row["images_per_s"], 2)
        ratio = "" if row is rows[0] else f"{row['cnnjax_over_peer']:.2f}x"
        print(f"{row['framework']:58s} {row['images_per_s']:9d} {row['s_per_60k_epoch']:12.2f} {ratio:>12s}")
    print()
    for row in rows:
        print(json.dumps({"batch_size": args.batch_size, **row}))
    if args.record:
        from _records import write_record

        write_record(args.record, {"batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
                                   "rounds": args.rounds, "malloc": malloc_setting(), "training": rows},
                     "compare.py", argv)
    return rows


if __name__ == "__main__":
    main()
