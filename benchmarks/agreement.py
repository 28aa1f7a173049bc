"""cnnjax's operations against ``torch.nn.functional`` on random configurations.

For each operation (avgpool, maxpool with dilation, grouped/depthwise conv, conv_transpose,
the global and adaptive pools, local response normalisation) and each lowering, draws
``--configs`` random configurations (1-3 spatial dimensions, strides, paddings, dilations,
groups, ceil mode...), runs both frameworks on the same float64 input, and compares the
values and the gradients of ``sum(out * w)``
for a random ``w`` with respect to the input (and the kernel). Prints, per operation and
lowering, the number of configurations and the largest absolute and relative
differences, and exits 1 if any exceeds 1e-9 (float64).

Needs PyTorch (``pip install -e ".[bench]"``). Example::

    python benchmarks/agreement.py --configs 100
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import cnnjax  # noqa: E402
from cnnjax import lowering  # noqa: E402

TOLERANCE = 1e-9


def _torch():
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed: pip install -e '.[bench]'")
    torch.set_default_dtype(torch.float64)
    return torch


def to_torch(torch, a):
    """Channels-last (N, *S, C) -> PyTorch's (N, C, *S)."""
    a = np.asarray(a)
    return torch.tensor(np.moveaxis(a, -1, 1).copy(), requires_grad=True)


def from_torch(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def draw_pool(rng):
    n = int(rng.integers(1, 4))
    window = tuple(int(rng.integers(1, 4)) for _ in range(n))
    stride = tuple(int(rng.integers(1, 4)) for _ in range(n))
    padding = tuple(int(rng.integers(0, w // 2 + 1)) for w in window)
    ceil_mode = bool(rng.integers(0, 2))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(n))  # max pooling's
    span = [(w - 1) * d + 1 for w, d in zip(window, dilation, strict=True)]
    sizes = tuple(int(rng.integers(max(s, 2), max(s, 2) + 7 - 2 * n)) for s in span)
    divisor = int(rng.integers(1, 6)) if rng.integers(0, 3) == 0 else None  # average pooling's, now and then
    return dict(n=n, window=window, stride=stride, padding=padding, ceil_mode=ceil_mode, sizes=sizes,
                dilation=dilation, divisor_override=divisor, count_include_pad=bool(rng.integers(0, 2)),
                channels=int(rng.integers(1, 4)), output_size=tuple(int(rng.integers(1, 7)) for _ in range(n)))


def draw_conv(rng, transpose):
    n = int(rng.integers(1, 4))
    window = tuple(int(rng.integers(1, 4)) for _ in range(n))
    stride = tuple(int(rng.integers(1, 3)) for _ in range(n))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(n))
    groups = int(rng.choice([1, 2, 3]))
    depthwise = bool(rng.integers(0, 2)) and not transpose
    c_in = groups * int(rng.integers(1, 3))
    c_out = c_in if depthwise else groups * int(rng.integers(1, 3))
    if depthwise:
        groups = c_in
    sizes = tuple(int(rng.integers((w - 1) * d + 1, (w - 1) * d + 5 - n))
                  for w, d in zip(window, dilation, strict=True))
    padding = tuple(int(rng.integers(0, (w - 1) * d // 2 + 1)) for w, d in zip(window, dilation, strict=True))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation, strict=True))
    return dict(n=n, window=window, stride=stride, dilation=dilation, groups=groups, c_in=c_in, c_out=c_out,
                sizes=sizes, padding=padding, output_padding=output_padding)


def compare(torch, cnnjax_fn, torch_fn, arrays, rng):
    """Max |difference| of the values and of the gradients of sum(out * w) for every array."""
    out = np.asarray(cnnjax_fn(*arrays))
    w = rng.normal(size=out.shape)
    grads = jax.grad(lambda *a: jnp.sum(cnnjax_fn(*a) * w), argnums=tuple(range(len(arrays))))(*arrays)
    tensors = [to_torch(torch, a) if a.ndim > 2 and i == 0 else torch.tensor(np.asarray(a), requires_grad=True)
               for i, a in enumerate(arrays)]
    t_out = torch_fn(*tensors)
    (t_out * to_torch(torch, w).detach()).sum().backward()
    value = np.abs(out - from_torch(t_out)).max() if out.size else 0.0
    scale = max(np.abs(out).max(initial=0.0), 1.0)
    diffs = [value / scale]
    for i, (g, t) in enumerate(zip(grads, tensors, strict=True)):
        tg = from_torch(t.grad) if i == 0 else t.grad.numpy()
        diffs.append(np.abs(np.asarray(g) - tg).max() / max(np.abs(tg).max(initial=0.0), 1.0))
    return max(diffs)


def run(op, cfg, torch, rng):
    F = torch.nn.functional
    n = cfg["n"]
    if op in ("avgpool", "maxpool"):
        x = rng.normal(size=(2, *cfg["sizes"], cfg["channels"]))
        if op == "avgpool":
            divisor = cfg["divisor_override"] if n > 1 else None  # avg_pool1d has none
            ours = lambda x: cnnjax.avgpool(x, cfg["window"], cfg["stride"], padding=cfg["padding"],
                                            ceil_mode=cfg["ceil_mode"], count_include_pad=cfg["count_include_pad"],
                                            divisor_override=divisor)
            extra = {} if divisor is None else {"divisor_override": divisor}
            theirs = lambda x: getattr(F, f"avg_pool{n}d")(x, cfg["window"], cfg["stride"], cfg["padding"],
                                                           cfg["ceil_mode"], cfg["count_include_pad"], **extra)
        else:
            ours = lambda x: cnnjax.maxpool(x, cfg["window"], cfg["stride"], padding=cfg["padding"],
                                            ceil_mode=cfg["ceil_mode"], dilation=cfg["dilation"])
            theirs = lambda x: getattr(F, f"max_pool{n}d")(x, cfg["window"], cfg["stride"], cfg["padding"],
                                                           cfg["dilation"], ceil_mode=cfg["ceil_mode"])
        return compare(torch, ours, theirs, [x], rng)
    if op in ("adaptive_avgpool", "adaptive_maxpool"):
        x = rng.normal(size=(2, *cfg["sizes"], cfg["channels"]))
        kind = "avg" if op == "adaptive_avgpool" else "max"
        ours = lambda x: getattr(cnnjax, op)(x, cfg["output_size"])
        theirs = lambda x: getattr(F, f"adaptive_{kind}_pool{n}d")(x, cfg["output_size"])
        return compare(torch, ours, theirs, [x], rng)
    if op == "local_response_norm":
        x = rng.normal(size=(2, *cfg["sizes"], cfg["channels"]))
        size, alpha = int(rng.integers(1, 8)), float(rng.uniform(1e-4, 2.0))
        beta, k = float(rng.uniform(0.25, 1.5)), float(rng.uniform(0.5, 2.0))
        ours = lambda x: cnnjax.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)
        theirs = lambda x: F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)
        return compare(torch, ours, theirs, [x], rng)
    if op in ("global_avgpool", "global_maxpool"):
        x = rng.normal(size=(2, *cfg["sizes"], cfg["channels"]))
        dims = tuple(range(2, n + 2))
        theirs = (lambda t: t.mean(dim=dims)) if op == "global_avgpool" else (lambda t: t.amax(dim=dims))
        return compare(torch, getattr(cnnjax, op), theirs, [x], rng)
    transpose = op == "conv_transpose"
    x = rng.normal(size=(2, *cfg["sizes"], cfg["c_in"]))
    if transpose:
        k = rng.normal(size=(*cfg["window"], cfg["c_out"] // cfg["groups"], cfg["c_in"]))
        ours = lambda x, k: cnnjax.conv_transpose(x, k, stride=cfg["stride"], padding=cfg["padding"],
                                                  output_padding=cfg["output_padding"], dilation=cfg["dilation"],
                                                  groups=cfg["groups"])
        theirs = lambda x, k: getattr(F, f"conv_transpose{n}d")(
            x, _tk(torch, k, n),
            stride=cfg["stride"], padding=cfg["padding"], output_padding=cfg["output_padding"],
            groups=cfg["groups"], dilation=cfg["dilation"])
    else:
        k = rng.normal(size=(*cfg["window"], cfg["c_in"] // cfg["groups"], cfg["c_out"]))
        ours = lambda x, k: cnnjax.conv(x, k, stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                                        groups=cfg["groups"])
        theirs = lambda x, k: getattr(F, f"conv{n}d")(x, _tk(torch, k, n), stride=cfg["stride"],
                                                      padding=cfg["padding"], dilation=cfg["dilation"],
                                                      groups=cfg["groups"])
    return compare(torch, ours, theirs, [x, k], rng)


def _tk(torch, k, n):
    """A channels-last kernel tensor (*K, A, B) as PyTorch's (B, A, *K), differentiably."""
    return k.permute(n + 1, n, *range(n))


OPS = ["avgpool", "maxpool", "adaptive_avgpool", "adaptive_maxpool", "global_avgpool", "global_maxpool",
       "local_response_norm", "conv", "conv_transpose"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=100, help="random configurations per operation and lowering")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", nargs="+", choices=OPS, default=OPS, help="which operations (default: every one)")
    parser.add_argument("--record", metavar="FILE",
                        help="write the table as a run record (JSON: each operation and lowering's worst relative "
                             "difference, the command, commit, versions and machine), as docs/results/ keeps them")
    args = parser.parse_args(argv)
    torch = _torch()
    worst_all, rows = 0.0, []
    print(f"{'operation':16s} {'lowering':10s} {'configs':>7s} {'worst relative difference':>26s}")
    for op in args.ops:
        for name in lowering.available("conv" if op.startswith("conv") else "maxpool"):
            rng = np.random.default_rng(args.seed)
            worst = 0.0
            ops = [o for o in ("conv", "maxpool", "avgpool") if name in lowering.available(o)]
            with lowering.use(**dict.fromkeys(ops, name)):
                for _ in range(args.configs):
                    cfg = draw_pool(rng) if "pool" in op or "norm" in op else draw_conv(rng, op == "conv_transpose")
                    worst = max(worst, run(op, cfg, torch, rng))
            worst_all = max(worst_all, worst)
            print(f"{op:16s} {name:10s} {args.configs:7d} {worst:26.2e}")
            rows.append({"operation": op, "lowering": name, "configs": args.configs, "worst_relative": worst})
    print("agree" if worst_all <= TOLERANCE else f"DISAGREE: {worst_all:.2e} > {TOLERANCE}")
    if args.record:
        from _records import write_record

        write_record(args.record, {"worst_relative": worst_all, "tolerance": TOLERANCE, "rows": rows,
                                   "torch": torch.__version__}, "agreement.py", argv)
    return 0 if worst_all <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
