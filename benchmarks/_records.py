"""Run records for the benchmarks: their figures with the experiments' provenance (the
command, commit, package versions, machine and date), as ``docs/results/`` keeps them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from common import provenance, write_json  # noqa: E402


def write_record(path: str | Path, figures: dict[str, Any], script: str, argv: list[str] | None) -> None:
    """Writes ``figures`` and ``"run"`` (how they were made) to ``path`` as JSON, atomically."""
    write_json(path, {**figures, "run": provenance(f"benchmarks/{script}", argv)})
    print(f"run record in {path}")
