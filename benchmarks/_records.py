"""What the benchmarks share: run records (their figures with the experiments' provenance:
the command, commit, package versions, machine and date, as ``docs/results/`` keeps them),
and a process timed in wall and CPU seconds."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from common import provenance, write_json  # noqa: E402


def run_timed(args: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float, float]:
    """``subprocess.run(args, **kwargs)`` to its end, with its wall seconds and CPU seconds (user
    and system time of it and every process it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(args, **kwargs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_record(path: str | Path, figures: dict[str, Any], script: str, argv: list[str] | None) -> None:
    """Writes ``figures`` and ``"run"`` (how they were made) to ``path`` as JSON, atomically."""
    write_json(path, {**figures, "run": provenance(f"benchmarks/{script}", argv)})
    print(f"run record in {path}")
