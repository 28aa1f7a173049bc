"""How long the test suite takes: the README's command (everything, as CI runs it) and the
quick tier (``-m "not slow"``), one after the other, wall and CPU seconds of each.

    python benchmarks/suite.py
    python benchmarks/suite.py --record docs/results/suite.json

CPU seconds are the user and system time of pytest and every process it starts (its
workers, the scripts the tests run), so they say what the suite costs on any number of
cores; wall seconds are this machine's. ``--record FILE`` writes them as a run record.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIERS = {"all": [], "quick": ["-m", "not slow"]}


def run_tier(extra: list[str], args: list[str]) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *extra, *args]
    from _records import run_timed

    done, wall, cpu = run_timed(command, cwd=ROOT, capture_output=True, text=True)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", last)}
    return {"command": shlex.join(["python", "-m", "pytest", "-q", *extra]), "exit_code": done.returncode,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "stderr_lines": len(done.stderr.splitlines()), **counts,
            **({"failures": [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("FAILED ")]}
               if done.returncode else {})}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=list(TIERS), default=list(TIERS), help="which tiers")
    p.add_argument("--record", metavar="FILE", help="write the figures as a run record (JSON)")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --), e.g. a folder of tests")
    args = p.parse_args(argv)
    rows = {}
    for tier in args.only:
        rows[tier] = run_tier(TIERS[tier], args.pytest_args)
        r = rows[tier]
        print(f"{tier:6s} {r['wall_s']:8.1f} s wall {r['cpu_s']:8.1f} CPU-s  {r.get('passed', 0)} passed, "
              f"{r.get('failed', 0)} failed, {r.get('deselected', 0)} deselected, exit {r['exit_code']}, "
              f"{r['stderr_lines']} lines on stderr", flush=True)
        for failure in r.get("failures", []):
            print(f"  FAILED {failure}", flush=True)
    if args.record:
        from _records import write_record

        write_record(args.record, {"tiers": rows}, "suite.py", argv)
    return rows


if __name__ == "__main__":
    main()
