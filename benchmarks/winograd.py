"""Winograd's F(2x2, 3x3) (``cnnjax.lowering.winograd``) against the CPU default (``auto``),
on the lecture's three 3x3 convolutions at batch 64 and on two wider ones: forward, and
forward with both gradients; then a whole gradient step of the lecture's functional CNN.

The two lowerings take turns for ``--rounds`` rounds; each one's best round counts. Prints
milliseconds per call and Winograd's time over the default's, with each convolution's
multiply count (Winograd's is 16/36 of the direct algorithm's) and the rate the default
reaches (GFLOP/s of the direct algorithm's arithmetic); ``--record FILE`` writes a run record.

    python benchmarks/winograd.py
    python benchmarks/winograd.py --record docs/results/winograd.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import cnnjax
from cnnjax import lowering, models

SHAPES = {  # (batch, height = width, C_in, C_out, padding)
    "lecture conv1 28x28x1->32": (64, 28, 1, 32, "valid"),
    "lecture conv2 13x13x32->64": (64, 13, 32, 64, "valid"),
    "lecture conv3 5x5x64->128": (64, 5, 64, 128, "valid"),
    "wide 16x16x128->128": (64, 16, 128, 128, "same"),
    "wide 16x16x256->256": (32, 16, 256, 256, "same"),
}
NAMES = ("auto", "winograd")


def best_ms(fn, args, calls: int) -> float:
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / calls * 1e3


def programs(name: str, shape):
    n, h, c, o, padding = shape
    with lowering.use(conv=name):
        forward = jax.jit(lambda x, k: cnnjax.conv(x, k, padding=padding))
        grads = jax.jit(jax.grad(lambda x, k: jnp.sum(cnnjax.conv(x, k, padding=padding) ** 2), argnums=(0, 1)))
    return forward, grads


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--record", help="write the figures as a run record (JSON) to this file")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = {}
    for label, shape in SHAPES.items():
        n, h, c, o, padding = shape
        x = jnp.asarray(rng.standard_normal((n, h, h, c)).astype(np.float32))
        k = jnp.asarray(rng.standard_normal((3, 3, c, o)).astype(np.float32))
        out = h - 2 if padding == "valid" else h
        multiplies = n * out * out * 9 * c * o
        best = {name: {"forward_ms": float("inf"), "gradients_ms": float("inf")} for name in NAMES}
        built = {name: programs(name, shape) for name in NAMES}
        for _ in range(args.rounds):
            for name in NAMES:
                forward, grads = built[name]
                with lowering.use(conv=name):
                    best[name]["forward_ms"] = min(best[name]["forward_ms"], best_ms(forward, (x, k), 5))
                    best[name]["gradients_ms"] = min(best[name]["gradients_ms"], best_ms(grads, (x, k), 3))
        row = {name: {key: round(v, 3) for key, v in best[name].items()} for name in NAMES}
        row["direct_multiplies"] = multiplies
        row["auto_forward_gflops"] = round(2 * multiplies / best["auto"]["forward_ms"] / 1e6, 1)
        row["winograd_over_auto"] = {key: round(best["winograd"][key] / best["auto"][key], 2)
                                     for key in ("forward_ms", "gradients_ms")}
        rows[label] = row
        print(f"{label:28s} forward {row['auto']['forward_ms']:8.2f} ms (auto, {row['auto_forward_gflops']} GFLOP/s) "
              f"vs {row['winograd']['forward_ms']:8.2f} ms (winograd): {row['winograd_over_auto']['forward_ms']}x; "
              f"with gradients {row['auto']['gradients_ms']:8.2f} vs {row['winograd']['gradients_ms']:8.2f} ms: "
              f"{row['winograd_over_auto']['gradients_ms']}x", flush=True)
    model = models.mnist_functional(rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    x = jnp.asarray(rng.uniform(size=(64, 28, 28, 1)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, 64).astype(np.int32))
    step = {}
    for name in NAMES:
        with lowering.use(conv=name):
            step[name] = jax.jit(jax.grad(lambda p: cnnjax.sparse_categorical_crossentropy(nnx.merge(graphdef, p)(x),
                                                                                          y)))
    best = {name: float("inf") for name in NAMES}
    for _ in range(args.rounds):
        for name in NAMES:
            with lowering.use(conv=name):
                best[name] = min(best[name], best_ms(step[name], (params,), 10))
    rows["lecture model gradient step, batch 64"] = {name: {"ms": round(best[name], 3)} for name in NAMES}
    rows["lecture model gradient step, batch 64"]["winograd_over_auto"] = round(best["winograd"] / best["auto"], 2)
    print(f"lecture model gradient step: {best['auto']:.2f} ms (auto) vs {best['winograd']:.2f} ms (winograd)")
    figures = {"shapes": rows, "rounds": args.rounds}
    if args.record:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _records import write_record

        write_record(args.record, figures, "winograd.py", argv)
    return figures


if __name__ == "__main__":
    main()
