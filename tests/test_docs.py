"""README and docs stay honest: the files they cite exist, their results tables are what the runner reports from the
committed raw lines, and their relative links resolve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
# the raw lines behind the MuJoCo table of README.md and docs/benchmarks.md (section 1 has the command)
MUJOCO_LINES = ["learn_mujoco_cpu.jsonl", "learn_mujoco_sac_cpu.jsonl"]


def result_files_named(text: str) -> set[str]:
    """The results files a text names: ``benchmarks/results/NAME`` or a bare file name with a results extension."""
    names = set(re.findall(r"benchmarks/results/([\w.-]+\.\w+)", text))
    names |= {name for name in re.findall(r"`([\w.-]+\.(?:jsonl|md|png|txt|json))`", text) if "/" not in name}
    return names - {"README.md", "algorithm.md", "benchmarks.md", "sb3_suite.md", "CHANGELOG.md"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_results_file_a_doc_names_exists(doc: Path):
    text = doc.read_text()
    outputs = {"learn_table.md", "learn_curves.png", "multigoal.md", "multigoal.png", "table.md", "curves.png"}
    for name in result_files_named(text) - outputs:  # outputs: what a command shown there writes
        assert (RESULTS / name).exists(), f"{doc.name} names {name}, which benchmarks/results/ does not hold"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve_and_no_placeholder_is_left(doc: Path):
    text = doc.read_text()
    for target in re.findall(r"\]\(([^)\s#]+)", text):
        if not target.startswith(("http://", "https://", "mailto:")):
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}"
    assert not re.search(r"\b[A-Z]+_(?:TABLE|VERDICT|TEXT)\b", text), f"{doc.name} holds a placeholder"


def report_rows(tmp_path: Path) -> set[str]:
    """The rows of the table that ``benchmarks/learn.py report`` prints from the committed MuJoCo lines."""
    spec = importlib.util.spec_from_file_location("learn", ROOT / "benchmarks" / "learn.py")
    assert spec is not None and spec.loader is not None
    learn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learn)
    table = tmp_path / "table.md"
    learn.report(learn.parse_args(["report", *(str(RESULTS / name) for name in MUJOCO_LINES), "--table", str(table)]))
    return {line for line in table.read_text().splitlines() if line.startswith("| ")}


@pytest.mark.parametrize("doc", [ROOT / "README.md", ROOT / "docs" / "benchmarks.md"], ids=lambda path: path.name)
def test_the_results_table_is_what_the_runner_reports_from_the_committed_lines(doc: Path, tmp_path: Path):
    reported = report_rows(tmp_path)
    rows = [line for line in doc.read_text().splitlines() if re.match(r"\| (HalfCheetah|Hopper|Ant|Humanoid)-v5 \| \d", line)]
    assert rows, f"{doc.name} has no MuJoCo results table"
    for row in rows:
        assert row in reported, f"{doc.name}: {row!r} is not what benchmarks/learn.py report prints"
