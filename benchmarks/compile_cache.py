"""Time to result with the per-user compile cache: each experiment run with a fresh cache
(it compiles everything and fills the cache), then rerun from the cache, then with
``--no-compile-cache``; one process after another, wall and CPU seconds of each.

    python benchmarks/compile_cache.py                         # xo.py and the MNIST samples run
    python benchmarks/compile_cache.py --record docs/results/compile_cache.json

Each run gets its own new ``--workdir`` (a resumed run would train nothing) and its cache
its own new folder (``CNNJAX_COMPILE_CACHE``), so nothing on the machine is read or
changed. Prints a table; ``--record FILE`` writes it as a run record (the command, commit,
package versions and machine), as ``docs/results/`` keeps them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "xo": ["experiments/xo.py"],
    "mnist_samples": ["experiments/mnist.py", "--data-dir", "samples/mnist", "--limit-train", "8000"],
}


def timed(args: list[str], env: dict) -> dict:
    """Runs ``args`` to its end; its wall and CPU seconds (user + system of the child)."""
    from _records import run_timed

    done, wall, cpu = run_timed(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    if done.returncode != 0:
        sys.exit(f"{shlex.join(args)} stopped with exit code {done.returncode}:\n{done.stderr[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def cache_size(folder: Path) -> dict:
    files = [f for f in folder.rglob("*") if f.is_file()]
    return {"files": len(files), "kb": round(sum(f.stat().st_size for f in files) / 1024)}


def measure(name: str, reruns: int, scratch: Path) -> dict:
    cache = scratch / f"cache-{name}"
    env = {**os.environ, "CNNJAX_COMPILE_CACHE": str(cache)}
    run = lambda label, *extra: timed([sys.executable, *COMMANDS[name], "--workdir", str(scratch / f"{name}-{label}"),
                                       *extra], env)
    row = {"first": run("first")}
    row["cache"] = cache_size(cache)
    row["reruns"] = [run(f"rerun{i}") for i in range(reruns)]
    row["no_compile_cache"] = run("nocache", "--no-compile-cache")
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=list(COMMANDS), default=list(COMMANDS), help="which experiments")
    p.add_argument("--reruns", type=int, default=2, help="runs from the filled cache, each timed")
    p.add_argument("--record", metavar="FILE", help="write the table as a run record (JSON)")
    args = p.parse_args(argv)
    if args.reruns < 1:
        p.error(f"argument --reruns: expected an integer >= 1, got {args.reruns}")
    with tempfile.TemporaryDirectory(prefix="cnnjax-compile-cache-") as scratch:
        rows = {name: {"command": shlex.join(["python", *COMMANDS[name]]), **measure(name, args.reruns, Path(scratch))}
                for name in args.only}
    print(f"{'command':80s} {'first':>14s} {'reruns':>22s} {'no cache':>14s} {'cache':>16s}")
    cell = lambda t: f"{t['wall_s']:.1f} s ({t['cpu_s']:.1f})"
    for row in rows.values():
        print(f"{row['command']:80s} {cell(row['first']):>14s} {', '.join(cell(t) for t in row['reruns']):>22s} "
              f"{cell(row['no_compile_cache']):>14s} {row['cache']['files']:5d} files {row['cache']['kb']:5d} KB")
    if args.record:
        from _records import write_record

        write_record(args.record, {"runs": rows}, "compile_cache.py", argv)
    return rows


if __name__ == "__main__":
    main()
