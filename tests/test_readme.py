"""The Python examples of the README and of docs/ run, and print exactly the output shown."""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [README, *(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))]
# a Python block directly followed by a text block of what it prints (never across fences)
EXAMPLES = [example for page in PAGES for example in
            re.findall(r"```python\n((?:(?!```).)*?)```\s*```text\n(.*?)```", page, flags=re.S)]


def test_readme_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("code, shown", EXAMPLES, ids=lambda v: v.splitlines()[0][:40])
@pytest.mark.slow
def test_example_prints_what_the_readme_shows(code, shown):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})
    assert out.getvalue().strip() == shown.strip()


def test_ci_runs_the_readme_test_command():
    """.ci/run runs README's command 2 as it is written, after installing torch (the README
    says so), and nothing else."""
    command = re.search(r"# 2\. [^\n]*\n([^\n]+)\n", README).group(1).strip()
    assert command.endswith("ruff check . && python -m pytest -q")
    torch = "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0"
    assert "torch==2.13.0" in README
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', torch, command]


def test_every_picture_a_page_shows_is_there():
    """Each image link of the README and of docs/ resolves from the page's own folder (as GitHub reads it)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    links = [(page, link) for page in pages for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text())]
    assert len(links) > 10
    missing = [f"{page.name}: {link}" for page, link in links if not (page.parent / link).is_file()]
    assert not missing, missing


def test_the_mnist_results_follow_their_run_records():
    """The README's headline figure and docs/results.md's MNIST rows are the accuracies the script
    wrote in its run records (docs/results/*.json), to the printed precision: the README said
    98.20% in one row and 98.50% two rows lower for the same CNN."""
    import json

    record = lambda name: json.loads((ROOT / "docs" / "results" / f"mnist_t10k_8000_{name}.json").read_text())
    functional, sequential = (f"{record(n)['test_accuracy'] * 100:.2f}%" for n in ("functional", "sequential"))
    for name in ("functional", "sequential"):
        assert record(name)["run"]["command"].startswith("python experiments/mnist.py --data-dir samples/mnist "
                                                         "--limit-train 8000")
    row = next(line for line in README.splitlines() if line.startswith("| The lecture's CNN on real MNIST"))
    assert f"| {functional} (Sequential: {sequential}) |" in row, row
    results = (ROOT / "docs" / "results.md").read_text()
    assert f"| functional | 8,000 / 2,000 | 5 | {functional} |" in results
    assert f"| sequential | 8,000 / 2,000 | 5 | {sequential} |" in results
    customer = next(line for line in README.splitlines() if line.startswith('| "Customer data"'))
    assert f"CNN {functional} ->" in customer  # the same CNN on the same split, quoted again


def test_the_xo_results_follow_their_run_record():
    """The README said "shifted, scaled, rotated, thicker" where the script and the lecture say
    translation, scaling, rotation, weight; the row now quotes the record's cases and figures."""
    import json

    record = json.loads((ROOT / "docs" / "results" / "xo.json").read_text())
    assert record["run"]["command"].startswith("python experiments/xo.py")
    cell = ", ".join(f"{case} {acc * 100:.1f}%" for case, acc in record["accuracy"].items())
    row = next(line for line in README.splitlines() if line.startswith("| X's and O's, the trickier cases"))
    assert f"| {cell} |" in row, row
    assert f"| {cell} |" in (ROOT / "docs" / "results.md").read_text()
