"""cnnjax against PyTorch (eager) and Keras/TensorFlow on the lecture's functional CNN.

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

Example::

    python benchmarks/compare.py                 # batch 64, 300 steps an epoch, 2 rounds
    python benchmarks/compare.py --batch-size 128 --steps 200
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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

    import cnnjax
    from cnnjax import models, train

    from train_throughput import matmul_gflops, peak_rss_mb

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


def bench_pytorch(x, y, batch_size: int, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(1152, 10),
    )
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


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300, help="steps per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the warm-up epoch")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times the whole set of frameworks runs, in turn; each one's best round counts")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    args = parser.parse_args(argv)
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
    return rows


if __name__ == "__main__":
    main()
