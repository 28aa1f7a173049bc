"""cnnjax against PyTorch (eager and ``torch.compile``) on one GPU: the lecture's functional CNN.

Training: the same model (Conv 32 -> pool -> Conv 64 -> pool -> Conv 128 -> Dense 10), the
same random 28x28x1 data of a 60,000-image epoch, RMSprop (lr 1e-3, rho 0.9, eps 1e-7), float32
and bfloat16 compute (float32 parameters), batch 64, 256 and 1024. Each run trains one warm-up
epoch (compilation, autotuning) and ``--repeats`` timed epochs; the best timed epoch counts.

- cnnjax runs ``train.fit`` (the whole epoch on the device), each configuration in its own
  process (``train_throughput.py``) so that its peak device memory is its own.
- PyTorch keeps the data on the GPU and runs its plain loop (``randperm``, index, step), in
  NCHW with ``cudnn.benchmark`` on; bfloat16 through ``torch.autocast``. ``torch.compile`` wraps
  the model (default mode; the optimizer step stays eager).
- float32 precision: JAX's default lets cuDNN and cuBLAS use TensorFloat-32 for float32
  convolutions and matmuls on this GPU; PyTorch's default does so for convolutions only, so
  ``torch.set_float32_matmul_precision("high")`` gives it the same for its one matmul.

Also ``--accuracy DIR``: test accuracy after ``--accuracy-epochs`` epochs on the MNIST-style IDX
files in DIR (Fashion-MNIST), float32 vs bfloat16 compute, same seed; and the number of kernels in
one compiled training step (the top-level operations of its optimised HLO), which is what a
launch-bound step at batch 64 pays for.

Prints one JSON line per measurement and a table at the end.

Example::

    python benchmarks/gpu.py                              # every configuration, both peers
    python benchmarks/gpu.py --batch-sizes 64 --frameworks cnnjax eager --accuracy /data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # for compare: the same PyTorch model and optimizer settings

from compare import RMSPROP, torch_net  # noqa: E402

FRAMEWORKS = ("cnnjax", "eager", "compile")  # eager and compile: PyTorch's


def cnnjax_row(batch: int, dtype: str, images: int, repeats: int) -> dict:
    """One cnnjax configuration in a process of its own (its own peak device memory)."""
    steps = math.ceil(images / batch)
    cmd = [sys.executable, os.path.join(HERE, "train_throughput.py"), "--model", "functional",
           "--batch-size", str(batch), "--steps", str(steps), "--dtype", dtype, "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        return {"framework": "cnnjax", "batch_size": batch, "dtype": dtype, "error": out.stderr.strip()[-2000:]}
    row = json.loads(lines[-1])
    row.update(framework="cnnjax", ms_per_step=round(1000 * batch / row["images_per_s"], 3))
    return row


def torch_row(batch: int, dtype: str, images: int, repeats: int, compiled: bool) -> dict:
    """PyTorch on the GPU in its plain idiom, the data resident on the device."""
    import torch

    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")  # TF32 for the matmul, as JAX's default
    device = torch.device("cuda")
    torch.manual_seed(0)
    net = torch_net().to(device)
    opt = torch.optim.RMSprop(net.parameters(), lr=RMSPROP["learning_rate"], alpha=RMSPROP["rho"],
                              eps=RMSPROP["epsilon"])
    model = torch.compile(net) if compiled else net
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(size=(images, 1, 28, 28)).astype(np.float32)).to(device)
    y = torch.from_numpy(rng.integers(0, 10, images)).to(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def epoch() -> float:
        torch.cuda.synchronize()
        t = time.perf_counter()
        order = torch.randperm(images, device=device)
        for i in range(0, images, batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            with amp:
                loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return time.perf_counter() - t

    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    first = epoch()
    best = min(epoch() for _ in range(repeats))
    return {"framework": f"pytorch {torch.__version__} {'torch.compile' if compiled else 'eager'}",
            "batch_size": batch, "dtype": dtype, "images_per_s": round(images / best),
            "s_per_60k_epoch": round(60_000 * best / images, 3), "ms_per_step": round(1000 * best * batch / images, 3),
            "warmup_epoch_s": round(first, 2), "peak_device_mb": round(torch.cuda.max_memory_allocated() / 2**20),
            "total_s": round(time.perf_counter() - t, 1)}


def kernels_per_step(batch: int, dtype: str) -> dict:
    """Top-level operations (kernels) of one compiled training step of the lecture model."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from cnnjax import models, train

    state = train.create_state(models.mnist_functional(rngs=nnx.Rngs(0)),
                               compute_dtype=None if dtype == "float32" else jnp.bfloat16)
    batch_spec = (jax.ShapeDtypeStruct((batch, 28, 28, 1), jnp.float32), jax.ShapeDtypeStruct((batch,), jnp.int32))
    text = jax.jit(train.train_step).lower(state, batch_spec).compile().as_text()
    entry = text[text.index("ENTRY"):]
    entry = entry[: entry.index("\n}")]
    skip = ("parameter(", "tuple(", "get-tuple-element(", "bitcast(", "constant(", "copy-start(", "copy-done(")
    # "%name = <shape> opcode(operands), ...": the opcode follows the shape's closing bracket
    found = (re.search(r"[\]})]\s+([a-z][a-z0-9-]*)\(", line.split("=", 1)[1]) for line in entry.splitlines()[1:]
             if "=" in line)
    ops = [m.group(1) for m in found if m and m.group(1) + "(" not in skip]
    return {"measure": "kernels_per_step", "batch_size": batch, "dtype": dtype, "kernels": len(ops),
            "by_kind": dict(Counter(ops))}


def accuracy(data_dir: str, epochs: int, batch: int, limit: int | None = None) -> list[dict]:
    """Test accuracy after ``epochs`` on real data, float32 vs bfloat16 compute, the same seed."""
    import jax.numpy as jnp
    from flax import nnx

    from cnnjax import data, models, train

    train_set, test_set = data.load(data_dir, "train", limit=limit), data.load(data_dir, "test")
    rows = []
    for dtype in ("float32", "bfloat16"):
        model = models.mnist_functional(rngs=nnx.Rngs(0))
        t = time.perf_counter()
        history = train.fit(model, train_set, epochs=epochs, batch_size=batch, seed=0, verbose=0,
                            compute_dtype=None if dtype == "float32" else jnp.bfloat16)
        seconds = time.perf_counter() - t
        result = train.evaluate(model, test_set)
        rows.append({"measure": "accuracy", "data": os.path.basename(os.path.normpath(data_dir)), "dtype": dtype,
                     "epochs": epochs, "batch_size": batch, "test_accuracy": round(float(result["accuracy"]), 4),
                     "correct": round(float(result["accuracy"]) * len(test_set[1])), "of": len(test_set[1]),
                     "train_loss": round(history.epochs[-1]["loss"], 4), "fit_s": round(seconds, 1)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| framework | dtype | batch | images/s | s per 60k epoch | ms per step | compile / warm-up s | "
             "peak device MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "images_per_s" not in r:
            continue
        warm = r.get("compile_s", r.get("warmup_epoch_s"))
        lines.append(f"| {r['framework']} | {r['dtype']} | {r['batch_size']} | {r['images_per_s']:,} | "
                     f"{r['s_per_60k_epoch']} | {r['ms_per_step']} | {warm} | {r.get('peak_device_mb')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"], default=["float32", "bfloat16"])
    parser.add_argument("--images", type=int, default=60_000, help="images per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the warm-up")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS),
                        help="cnnjax, PyTorch eager, PyTorch with torch.compile")
    parser.add_argument("--accuracy", metavar="DIR", help="IDX files for the float32 vs bfloat16 accuracy run")
    parser.add_argument("--accuracy-epochs", type=int, default=5)
    parser.add_argument("--accuracy-limit", type=int, help="train on the first N images only (quick runs)")
    parser.add_argument("--deadline", type=float, default=float("inf"),
                        help="seconds after which torch.compile runs not yet started are skipped")
    parser.add_argument("--record", metavar="FILE",
                        help="write every row as a run record (JSON: the rows, the command, commit, versions and "
                             "machine), as docs/results/ keeps them")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows: list[dict] = []

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)
        rows.append(row)

    for dtype in args.dtypes:
        for batch in args.batch_sizes:
            if "cnnjax" in args.frameworks:
                emit(cnnjax_row(batch, dtype, args.images, args.repeats))
            if "eager" in args.frameworks:
                emit(torch_row(batch, dtype, args.images, args.repeats, compiled=False))
    if "cnnjax" in args.frameworks:
        emit(kernels_per_step(64, "float32"))
    if args.accuracy:
        for row in accuracy(args.accuracy, args.accuracy_epochs, 64, args.accuracy_limit):
            emit(row)
    if "compile" in args.frameworks:
        for batch in args.batch_sizes:
            for dtype in args.dtypes:
                if time.perf_counter() - start > args.deadline:
                    print(f"torch.compile batch {batch} {dtype}: skipped (past --deadline)", file=sys.stderr)
                    continue
                emit(torch_row(batch, dtype, args.images, args.repeats, compiled=True))
    print(table(rows))
    if args.record:
        from _records import write_record

        write_record(args.record, {"rows": rows}, "gpu.py", argv)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
