"""Every figure the README's Results table and the docs' result tables quote follows from a
committed run record (docs/results/*.json, written by the experiment that measured it).

``TABLES`` names each checked table (its page and the start of its header line; the first
such table), the columns that hold figures, and for each row (by the longest key its first
cell starts with) the records it quotes. Every
number in those cells must be a value of one of the row's records at the precision
printed (a percentage, or a spread in points, may be a fraction in the record: 98.50% is
0.985); a row not named
here, or a number no record holds, fails. Papers' figures come from
``docs/results/references.json``, which names their source.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import scripts

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "results"

MNIST = ["mnist_t10k_8000_functional", "mnist_t10k_8000_sequential"]
FASHION = ["fashion_mnist_functional", "fashion_mnist_sequential"]
SPOKEN = ["spoken_digits_default", "spoken_digits_members4"]
SST2_PHRASES = [f"sentences_sst2_phrases_seed{seed}" for seed in (0, 1, 2)]
SST1_PHRASES = [f"sentences_sst1_phrases_seed{seed}" for seed in (0, 1, 2)]
TEXT = ["sentences_mr", "sentences_sst2", *SST2_PHRASES, *SST1_PHRASES, "references"]

TABLES = {
    ("README.md", "| what | result | page |"): (["result"], {
        "The lecture's CNN on real MNIST": MNIST,
        "Fashion-MNIST": FASHION,
        "X's and O's": ["xo"],
        "Spoken digits": SPOKEN,
        "Sentences": TEXT,
        '"Customer data"': ["customer_data"],
        "Training speed": ["compare_cpu"],
        "Agreement with PyTorch": ["agreement"],
        "Three public tutorials": [],
    }),
    ("docs/results.md", "| data | model |"): (["test accuracy", "s / epoch", "images/s"], {
        "Fashion-MNIST (IDX, Debian": ["fashion_mnist_functional"],
        "Fashion-MNIST (IDX)": ["fashion_mnist_sequential"],
        "MNIST, real t10k split: first": ["mnist_t10k_8000_functional"],
        "MNIST, real t10k split, same": ["mnist_t10k_8000_sequential"],
        "X's and O's": ["xo"],
    }),
    ("docs/lecture.md", "| model | official split"): (
        ["official split (recordings 0-4 test)", "a speaker left out: george", "jackson", "nicolas", "theo",
         "yweweler", "mean", "worst"], {
            "2-D CNN, spectrograms": ["spoken_digits_default"],
            "1-D CNN, waveforms": ["spoken_digits_default"],
            "4 spectrogram CNNs": ["spoken_digits_members4"],
        }),
    ("docs/lecture.md", "| model | pixels as they are |"): (["pixels as they are", "pixels permuted"], {
        "the lecture's CNN": ["customer_data"],
        "dense 784-128-10": ["customer_data"],
    }),
    ("docs/lecture.md", "| set | cnnjax | Kim (2014) |"): (["cnnjax", "Kim (2014)", "harvardnlp's Torch"], {
        "MR": ["sentences_mr", "references"],
        "SST-2": ["sentences_sst2", "references"],
        "SST-2, trained on the treebank's phrases": [*SST2_PHRASES, "references"],
        "SST-1 (five classes), trained on the treebank's phrases": [*SST1_PHRASES, "references"],
    }),
    ("docs/text.md", "| set | cnnjax | Kim (2014) |"): (["cnnjax", "Kim (2014)", "harvardnlp's Torch"], {
        "MR": ["sentences_mr", "references"],
        "SST-2": ["sentences_sst2", "references"],
        **{f"SST-2, phrases, seed {name[-1]}": [name, "references"] for name in SST2_PHRASES},
        **{f"SST-1, phrases, seed {name[-1]}": [name, "references"] for name in SST1_PHRASES},
    }),
    ("docs/performance.md", "| framework | images/s |"): (["images/s", "s / 60k epoch", "cnnjax / peer"], {
        "cnnjax": ["compare_cpu"],
        "PyTorch eager": ["compare_cpu"],
    }),
    ("docs/performance.md", "| command | first run (fills the cache) |"): (
        ["first run (fills the cache)", "reruns", "`--no-compile-cache`", "cache"], {
            "`python experiments/xo.py`": ["compile_cache"],
            "`python experiments/mnist.py": ["compile_cache"],
        }),
    ("docs/performance.md", "| run | idle, wall s |"): (
        ["idle, wall s", "idle, CPU s", "beside one busy process, wall s", "busy, CPU s"], {
            "cnnjax, first run": ["end_to_end"],
            "cnnjax, rerun": ["end_to_end"],
            "cnnjax `--no-pictures`, first run": ["end_to_end"],
            "cnnjax `--no-pictures`, rerun": ["end_to_end"],
            "PyTorch eager, first run": ["end_to_end"],
            "PyTorch eager, rerun": ["end_to_end"],
            "PyTorch eager, `OMP_WAIT_POLICY=PASSIVE`": ["end_to_end"],
            "PyTorch's wall time over cnnjax's": ["end_to_end"],
        }),
    ("docs/performance.md", "| convolution | forward, auto |"): (
        ["forward, auto", "forward, winograd", "winograd / auto", "with gradients, auto", "with gradients, winograd"], {
            name: ["winograd"] for name in ("lecture conv1", "lecture conv2", "lecture conv3", "wide 16x16x128",
                                            "wide 16x16x256")
        }),
    ("docs/porting.md", "| operation | worst relative difference |"): (["worst relative difference"], {
        name: ["agreement"] for name in ("avgpool", "maxpool", "adaptive_avgpool", "adaptive_maxpool",
                                         "global_avgpool", "global_maxpool", "local_response_norm", "conv",
                                         "conv_transpose")
    }),
    ("docs/text.md", "| fold | 1 | 2 |"): ([str(i) for i in range(1, 11)], {
        "test accuracy": ["sentences_mr"],
        "epoch chosen": ["sentences_mr"],
    }),
    ("docs/audio.md", "| model | official split | george |"): (
        ["official split", "george", "jackson", "nicolas", "theo", "yweweler", "mean (std)", "worst"], {
            "**4 spectrogram CNNs": ["spoken_digits_members4"],
            "1 spectrogram CNN": ["spoken_digits_default"],
            "1 waveform CNN": ["spoken_digits_default"],
            "ensemble of the two": ["spoken_digits_default"],
        }),
}

# a number, not the end of a name ("SST-2", "conv1") nor of a word joined by a hyphen
NUMBER = re.compile(r"(?<![\w.])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(e-?\d+)?(%|x\b)?")


def record_values(name: str) -> list[float]:
    """Every number in the record ``name`` (bools left out; not its ``run``: the machine's cores
    are no figure), flattened as ``experiments/reproduce.py`` compares records."""
    path = RECORDS / f"{name}.json"
    assert path.is_file(), f"no run record {path.relative_to(ROOT)}"
    reproduce = scripts.load("experiments", "reproduce")
    return [float(v) for v in reproduce.leaves(json.loads(path.read_text())).values() if reproduce.is_figure(v)]


def shown(token: re.Match) -> tuple[str, str, int]:
    """``(digits as printed, exponent, decimals)`` of a number in a cell."""
    whole, fraction, exponent, _unit = token.groups()
    return whole.replace(",", "") + (fraction or ""), exponent or "", len(fraction or ".") - 1


def holds(values: list[float], token: re.Match) -> bool:
    """One of ``values`` printed at the token's precision is the token."""
    digits, exponent, decimals = shown(token)
    if exponent:
        return any(f"{v:.{decimals}e}".replace("e-0", "e-").replace("e+0", "e") == digits + exponent
                   for v in values)
    candidates = values + [v * 100 for v in values]  # a fraction shown in percent, or in points (std 3.1)
    return any(f"{v:.{decimals}f}" == digits for v in candidates)


def table(page: str, header: str) -> tuple[list[str], list[list[str]]]:
    lines = (ROOT / page).read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]  # the first such table
    assert starts, f"{page}: no table starts with {header!r}"
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return cells(lines[starts[0]]), rows


def unquoted(page: str, header: str) -> list[str]:
    """What the table quotes that no record of its row holds, as ``row: cell: number``."""
    columns, named = TABLES[(page, header)]
    heads, rows = table(page, header)
    missing = [f"no column {c!r}" for c in columns if c not in heads]
    seen = set()
    for row in rows:
        keys = [k for k in named if row[0].startswith(k)]  # the longest: "conv_transpose" over "conv"
        if not keys:
            missing.append(f"row {row[0][:40]!r}: no record named for it")
            continue
        key = max(keys, key=len)
        seen.add(key)
        values = [v for name in named[key] for v in record_values(name)]
        for column in columns:
            cell = row[heads.index(column)] if column in heads else ""
            missing += [f"{row[0][:40]}: {column}: {m.group(0)}" for m in NUMBER.finditer(cell)
                        if not holds(values, m)]
    missing += [f"row {k!r} is not in the table" for k in named if k not in seen]
    return missing


@pytest.mark.parametrize("page, header", list(TABLES), ids=[f"{p}:{h[:24]}" for p, h in TABLES])
def test_every_figure_follows_from_a_run_record(page, header):
    assert unquoted(page, header) == []


def test_the_readme_results_table_is_checked_whole():
    """The Results table is the README's only table of figures, and every one of its rows is named."""
    heads, rows = table("README.md", "| what | result | page |")
    assert len(rows) == len(TABLES[("README.md", "| what | result | page |")][1])


def test_every_record_says_how_it_was_made():
    """Each record holds its command (runnable by experiments/reproduce.py), commit, versions and machine."""
    for path in sorted(RECORDS.glob("*.json")):
        record = json.loads(path.read_text())
        if path.stem == "references":
            assert all("source" in entry for entry in record.values()), path
            continue
        run = record["run"]
        assert run["command"].startswith(("python experiments/", "python benchmarks/")), path
        assert run["commit"] and not run["commit"].endswith("-dirty"), (path, run["commit"])
        assert {"jax", "flax", "optax"} <= set(run["versions"]) and run["machine"]["cpus"], path


def test_holds_reads_figures_as_printed():
    """The matcher itself, on hand-made cases: precision, percentages, thousands, exponents."""
    first = lambda text: next(NUMBER.finditer(text))
    assert holds([0.985], first("98.50%")) and holds([98.5], first("98.50%"))
    assert not holds([0.9849], first("98.50%")) and not holds([0.9851], first("98.50"))
    assert holds([0.031], first("(3.1)")) and not holds([0.032], first("(3.1)"))
    assert holds([566270.4], first("566,270 images/s")) and not holds([566271], first("566,270"))
    assert holds([9.4e-16], first("9.4e-16")) and not holds([9.5e-16], first("9.4e-16"))
    assert holds([1.21], first("1.21x")) and [m.group(0) for m in NUMBER.finditer("(249/250), 11")] == [
        "249", "250", "11"]
    assert [m.group(0) for m in NUMBER.finditer("SST-2 1.16-1.35x")] == ["1.16", "1.35x"]  # a name, a range


def test_the_readmes_first_command_quotes_the_compile_cache_record():
    """The README said "~10 s on a laptop CPU" for xo.py (it took 20-25 s); its comment now
    quotes the record of benchmarks/compile_cache.py."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "xo.py alone:" in line)
    figures = list(NUMBER.finditer(line.split("xo.py alone:")[1]))
    assert len(figures) == 3  # first run, rerun, the machine's cores
    xo = json.loads((RECORDS / "compile_cache.json").read_text())["runs"]["xo"]
    assert holds([xo["first"]["wall_s"]], figures[0]), line
    assert holds([xo["reruns"][0]["wall_s"]], figures[1]), line


def test_the_readmes_suite_times_quote_the_suite_record():
    """How long the suite and the quick tier take, as the README says, is benchmarks/suite.py's record."""
    tiers = json.loads((RECORDS / "suite.json").read_text())["tiers"]
    text = " ".join((ROOT / "README.md").read_text().split())
    everything, quick = tiers["all"], tiers["quick"]
    assert everything["exit_code"] == quick["exit_code"] == 0 and everything["stderr_lines"] == 0
    assert (f"passed its {everything['passed']} tests in {everything['wall_s']:.1f} s "
            f"({everything['cpu_s']:.1f} CPU-s), printing nothing on stderr") in text
    assert f"{quick['passed']} tests in {quick['wall_s']:.1f} s" in text
