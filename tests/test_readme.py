"""The README's Python examples run, and the printed map is what they print."""

import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_lecture_snippet_runs_and_prints_what_the_readme_shows():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(blocks[0], {})
    shown = re.search(r"```text\n(\[\[.*?\]\])\n```", README, flags=re.S).group(1)
    assert out.getvalue().strip() == shown.strip()


def test_ci_runs_the_readme_test_command():
    command = re.search(r"&& (python -m pytest[^\n`]*)", README).group(1).strip()
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert command in ci.splitlines()
