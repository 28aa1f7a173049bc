"""Rerun a committed run record and report what changed: every figure the README and docs/
quote comes from a record in docs/results/ that its experiment wrote.

    python experiments/reproduce.py                # the records: name, command, date, machine
    python experiments/reproduce.py xo             # rerun docs/results/xo.json's command, compare

A record is the ``results.json`` an experiment wrote, its ``run`` entry saying how (the
command, the commit, the package versions, the machine, the date). This script runs the
record's command again with a fresh ``--workdir`` (``--record`` for a benchmark), reads the
new results, and prints each figure that differs from the record, old and new. Timings
(seconds, images/s, the date) and text (paths, notes, the output folder) are this machine's
and are shown apart, never counted as a difference. Exit code 0 when every other figure is
the same to 4 significant digits, 1 when one differs, 2 when the record or its command
cannot be used. Reads and writes nothing else: the rerun's folder is kept
(``runs/reproduce-<name>-<time>``) for its pictures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "results"
OUTPUT_FLAGS = ("--workdir", "--record")  # where a command writes its results
TIMING_WORDS = ("seconds", "per_s", "date", "wall", "_ms", "compile")  # this machine's, not the result's


def records() -> dict[str, dict]:
    """Every committed record, by name (its file name without ``.json``)."""
    found = {}
    for path in sorted(RECORDS.glob("*.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and isinstance(record.get("run"), dict) and "command" in record["run"]:
            found[path.stem] = record
    return found


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """``{"a/b/0": 1.0, ...}``: every number, string and bool below ``value``; ``run`` left out."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() if not (path == "" and key == "run")
                for k, v in leaves(item, f"{path}/{key}" if path else str(key)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}/{i}").items()}
    return {path: value}


def is_timing(path: str) -> bool:
    return any(word in path.lower() for word in TIMING_WORDS)


def same(a: Any, b: Any) -> bool:
    """Equal, numbers to 4 significant digits (a result's printed precision or finer)."""
    if isinstance(a, bool) or isinstance(b, bool) or not all(isinstance(v, (int, float)) for v in (a, b)):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or f"{a:.4g}" == f"{b:.4g}"


def is_figure(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(old: dict, new: dict) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]],
                                           list[tuple[str, Any, Any]]]:
    """``(differences, timings, text)``, each a list of ``(path, recorded, now)``: figures
    (numbers, true/false, a figure present on one side only) that differ; timings; and
    text that differs (paths, notes, the output folder: the machine's, not the result's)."""
    a, b = leaves(old), leaves(new)
    rows = [(path, a.get(path), b.get(path)) for path in sorted(set(a) | set(b)) if not same(a.get(path), b.get(path))]
    timings = [r for r in rows if is_timing(r[0])]
    text = [r for r in rows if r not in timings and isinstance(r[1], str) and isinstance(r[2], str)]
    return [r for r in rows if r not in timings and r not in text], timings, text


def rerun_command(command: str, output: Path) -> tuple[list[str], Path]:
    """The record's command with its output folder (or file) replaced by ``output``; returns
    the argument list and where its results will be."""
    args = shlex.split(command)
    if len(args) < 2 or args[0] != "python" or not args[1].endswith(".py"):
        raise ValueError(f"expected a command 'python <script>.py ...', got {command!r}")
    args[0] = sys.executable
    for flag in OUTPUT_FLAGS:
        if flag in args:
            i = args.index(flag)
            del args[i:i + 2]
            break
    else:
        flag = "--workdir"
    if flag == "--record":
        return [*args, flag, str(output.with_suffix(".json"))], output.with_suffix(".json")
    return [*args, flag, str(output)], output / "results.json"


def show(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", nargs="?", help="a record's name (docs/results/NAME.json); none: list them")
    p.add_argument("--workdir", help="where the rerun writes (default runs/reproduce-<name>-<time>)")
    args = p.parse_args(argv)
    found = records()
    if args.name is None:
        for name, record in found.items():
            run = record["run"]
            print(f"{name}\n    {run['command']}\n    commit {run.get('commit')}, {run.get('date')}, "
                  f"{(run.get('machine') or {}).get('cpus')} x {(run.get('machine') or {}).get('cpu')}")
        return 0
    if args.name not in found:
        p.error(f"argument name: expected one of {', '.join(found)}, got {args.name!r}")
    record = found[args.name]
    output = Path(args.workdir or ROOT / "runs" / f"reproduce-{args.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    try:
        command, results = rerun_command(record["run"]["command"], output)
    except ValueError as e:
        p.error(f"the record {args.name}: {e}")
    print("running:", shlex.join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        print(f"error: the command stopped with exit code {done.returncode}; nothing to compare", file=sys.stderr)
        return 2
    differences, timings, text = compare(record, json.loads(results.read_text()))
    print(f"\n{args.name}: recorded {record['run'].get('date')} at commit {record['run'].get('commit')}, "
          f"rerun now at {output}")
    shown = (("text (paths, notes; not compared)", text), ("timings (this machine's; not compared)", timings),
             ("figures that differ", differences))
    for title, rows in shown:
        if rows:
            print(f"\n{title}:")
            width = max(len(path) for path, _, _ in rows)
            for path, old, new in rows:
                print(f"  {path:{width}s}  recorded {show(old):>12s}  now {show(new):>12s}")
    print(f"\n{len(differences)} figure(s) differ" if differences else "\nevery figure is the same")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
