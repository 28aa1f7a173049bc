"""Training throughput of the lecture's CNNs through cnnjax's public training API.

Trains each configuration with :func:`cnnjax.train.fit` on random 28x28x1 data: one
warm-up epoch of ``--steps`` steps, then ``--repeats`` timed epochs, the best of which
counts (this kind of shared 2-core machine varies by +-25% from minute to minute).
Prints one JSON line per configuration:

    backend, devices, model, batch_size, dtype, loop, lowering, compile_s, images_per_s,
    s_per_60k_epoch, peak_rss_mb (and peak_device_mb on accelerators), train_gflops_per_s,
    matmul_gflops_per_s, pct_of_matmul_peak

Achieved GFLOP/s counts 3x the forward FLOPs of ``cnnjax.summary`` per training image
(forward, and the backward pass's two products), against a float32 2048x2048 ``jnp``
matmul timed in the same process.

Examples::

    python benchmarks/train_throughput.py                        # both models, batch 64
    python benchmarks/train_throughput.py --model functional --batch-size 64 128 256
    python benchmarks/train_throughput.py --lowering reference --loop python
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/train_throughput.py
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import cnnjax
from cnnjax import lowering, models, train

MODELS = {"functional": models.mnist_functional, "sequential": models.mnist_sequential}


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    """float32 n x n matmul throughput of this process's default device, in GFLOP/s."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (a high-water mark across configurations)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_device_mb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def run(model_name: str, batch_size: int, steps: int, dtype: str, loop: str, peak: float, repeats: int = 2) -> dict:
    model = MODELS[model_name](rngs=nnx.Rngs(0))
    n = steps * batch_size
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    history = train.fit(model, (x, y), epochs=1 + repeats, batch_size=batch_size, loop=loop, verbose=0,
                        compute_dtype=None if dtype == "float32" else dtype)
    ips = max(e["images_per_s"] for e in history.epochs[1:])
    gflops = 3 * cnnjax.summary(model, (28, 28, 1)).total_flops * ips / 1e9
    out = {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "model": model_name,
        "batch_size": batch_size,
        "dtype": dtype,
        "loop": loop if loop != "auto" else train.choose_loop(x.nbytes + y.nbytes),
        "lowering": {op: lowering.current(op) for op in ("conv", "maxpool")},
        "compile_s": round(history.compile_seconds, 2),
        "images_per_s": round(ips),
        "s_per_60k_epoch": round(60_000 / ips, 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "train_gflops_per_s": round(gflops, 1),
        "matmul_gflops_per_s": round(peak, 1),
        "pct_of_matmul_peak": round(100 * gflops / peak, 1),
    }
    device_peak = peak_device_mb()
    if device_peak is not None and jax.default_backend() != "cpu":
        out["peak_device_mb"] = round(device_peak)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=300, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the warm-up")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--loop", choices=["auto", "scan", "python"], default="auto")
    parser.add_argument("--lowering", choices=["default", *lowering.available("conv")], default="default",
                        help="conv and maxpool lowering (default: the platform's)")
    args = parser.parse_args(argv)
    names = list(MODELS) if args.model == "both" else [args.model]
    peak = matmul_gflops()
    results = []
    choice = {} if args.lowering == "default" else {op: args.lowering for op in ("conv", "maxpool")
                                                     if args.lowering in lowering.available(op)}
    with lowering.use(**choice):
        for name in names:
            for batch_size in args.batch_size:
                result = run(name, batch_size, args.steps, args.dtype, args.loop, peak, args.repeats)
                print(json.dumps(result), flush=True)
                results.append(result)
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
