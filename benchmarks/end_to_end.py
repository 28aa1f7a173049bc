"""The whole command, cnnjax against plain PyTorch: read the files, train, evaluate, write.

The lecture's MNIST run, ``experiments/mnist.py --data-dir samples/mnist --limit-train
8000`` (5 epochs of 8,000 images, batch 64, validated and checkpointed after every epoch,
then evaluated, its figures drawn), raced as whole processes against
``benchmarks/peers/mnist_torch.py``, the same job in plain PyTorch (eager, its best plain
CPU settings: ``torch.set_flush_denormal(True)`` and glibc's malloc thresholds raised with
``GLIBC_TUNABLES``, as cnnjax raises them itself). One after another, in turns, for
``--rounds`` rounds (the order flips every round):

- cnnjax's **first run**: a new, empty compile cache (``CNNJAX_COMPILE_CACHE``), so every
  program is compiled, as on a new machine;
- cnnjax's **rerun**: the same command again, its programs read from that cache;
- the same two with ``--no-pictures`` (``cnnjax_plain_*``, a cache of their own): the job
  the PyTorch script does, which draws no figures;
- PyTorch, twice (it compiles nothing: its first run and rerun differ by what the
  operating system has cached), and once more with ``OMP_WAIT_POLICY=PASSIVE``
  (``pytorch_passive``: its OpenMP threads sleep instead of spinning while they wait, the
  setting that matters when another process wants the cores).

Every run gets a new ``--workdir``. ``--load`` runs it all again beside one busy process
(one thread spinning in Python: a laptop is rarely idle). Prints wall and CPU seconds
(min / median / max), the test accuracy each reached, and the ratios of the medians
(PyTorch's wall time over cnnjax's); ``--record FILE`` writes them as a run record.

    python benchmarks/end_to_end.py                       # 3 rounds, idle
    python benchmarks/end_to_end.py --rounds 5 --load --record docs/results/end_to_end.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MALLOC = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824"
JOB = ["--data-dir", "samples/mnist", "--limit-train", "8000"]
RUNS = ("cnnjax_first", "cnnjax_rerun", "cnnjax_plain_first", "cnnjax_plain_rerun", "pytorch_first",
        "pytorch_rerun", "pytorch_passive")
# PyTorch's wall time over cnnjax's, of the medians: (name, PyTorch's run, cnnjax's run)
RATIOS = (("first_run", "pytorch_first", "cnnjax_first"), ("rerun", "pytorch_rerun", "cnnjax_rerun"),
          ("plain_first_run", "pytorch_first", "cnnjax_plain_first"),
          ("plain_rerun", "pytorch_rerun", "cnnjax_plain_rerun"),
          ("passive_plain_rerun", "pytorch_passive", "cnnjax_plain_rerun"))


def command(run: str, workdir: Path) -> list[str]:
    if run.startswith("cnnjax"):
        plain = ["--no-pictures"] if run.startswith("cnnjax_plain") else []
        return [sys.executable, "experiments/mnist.py", *JOB, "--verbose", "0", *plain, "--workdir", str(workdir)]
    return [sys.executable, "benchmarks/peers/mnist_torch.py", *JOB, "--workdir", str(workdir)]


def timed(run: str, workdir: Path, cache: Path) -> dict:
    """One whole process: its wall and CPU seconds and the test accuracy it wrote. ``cache``
    is the round's compile cache of that kind of run (with or without pictures)."""
    from _records import run_timed

    env = {**os.environ, "CNNJAX_COMPILE_CACHE": str(cache)}
    if run.startswith("pytorch"):
        env["GLIBC_TUNABLES"] = MALLOC
    if run == "pytorch_passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    done, wall, cpu = run_timed(command(run, workdir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{run} stopped with exit code {done.returncode}:\n{done.stderr[-2000:]}")
    accuracy = json.loads((workdir / "results.json").read_text())["test_accuracy"]
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "test_accuracy": round(accuracy, 4)}


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": round(statistics.median(values), 2), "max": max(values)}


def race(rounds: int, scratch: Path, tag: str) -> dict:
    times = {run: [] for run in RUNS}
    for r in range(rounds):
        order = RUNS if r % 2 == 0 else RUNS[4:] + RUNS[:4]
        for run in order:
            # a new, empty compile cache each round for each kind of cnnjax run: its first run compiles
            cache = scratch / f"cache-{tag}-{r}-{run.rsplit('_', 1)[0]}"
            times[run].append(timed(run, scratch / f"{tag}-{run}-{r}", cache))
            print(f"{tag} round {r + 1}: {run:14s} {times[run][-1]}", flush=True)
    out = {run: {"wall_s": spread([t["wall_s"] for t in ts]), "cpu_s": spread([t["cpu_s"] for t in ts]),
                 "test_accuracy": [t["test_accuracy"] for t in ts]} for run, ts in times.items()}
    wall = {run: out[run]["wall_s"]["median"] for run in RUNS}
    out["pytorch_over_cnnjax"] = {name: round(wall[torch] / wall[ours], 2) for name, torch, ours in RATIOS}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="turns of the seven runs (default 3)")
    p.add_argument("--load", action="store_true", help="also race beside one busy process")
    p.add_argument("--record", help="write the figures as a run record (JSON) to this file")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"argument --rounds: expected an integer >= 1, got {args.rounds}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    figures = {"job": "experiments/mnist.py " + " ".join(JOB), "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="end_to_end-") as scratch:
        figures["idle"] = race(args.rounds, Path(scratch), "idle")
        if args.load:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                figures["loaded"] = race(args.rounds, Path(scratch), "loaded")
            finally:
                busy.kill()
                busy.wait()
    for setting in ("idle", "loaded"):
        if setting not in figures:
            continue
        f = figures[setting]
        print(f"\n{setting}: wall seconds min / median / max (CPU seconds median; test accuracy)")
        for run in RUNS:
            w = f[run]["wall_s"]
            print(f"  {run:19s} {w['min']:7.2f} / {w['median']:7.2f} / {w['max']:7.2f}  "
                  f"({f[run]['cpu_s']['median']:.1f} CPU s; {', '.join(map(str, f[run]['test_accuracy']))})")
        print("  PyTorch's wall time over cnnjax's: " + ", ".join(f"{name} {ratio}x" for name, ratio
                                                                 in f["pytorch_over_cnnjax"].items()))
    if args.record:
        from _records import write_record

        write_record(args.record, figures, "end_to_end.py", argv)
    return figures


if __name__ == "__main__":
    main()
