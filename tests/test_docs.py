"""README and docs stay honest: the files they cite exist, their results tables are what the runner reports from the
committed raw lines, and their relative links resolve."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
# the raw lines behind the MuJoCo table of README.md and docs/benchmarks.md (section 1 has the command)
MUJOCO_LINES = ["learn_mujoco_cpu.jsonl", "learn_mujoco_sac_cpu.jsonl", "acting_at_100k_cpu.jsonl"]
# the tasks whose policies over training the report tabulates there (--over-training)
MUJOCO_OVER_TRAINING = ["Humanoid-v5"]
# the longer budgets docs/benchmarks.md compares at (--budget), each in a block of its own
MUJOCO_BUDGETS = [300_000]


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


def mujoco_report(tmp_path: Path, budget: int | None = None) -> str:
    """What ``benchmarks/learn.py report`` writes from the committed MuJoCo lines, with the options of
    docs/benchmarks.md's command, or at ``budget`` steps (``--budget``) without the table over training."""
    spec = importlib.util.spec_from_file_location("learn", ROOT / "benchmarks" / "learn.py")
    assert spec is not None and spec.loader is not None
    learn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learn)
    table = tmp_path / "table.md"
    files = [str(RESULTS / name) for name in MUJOCO_LINES]
    options = ["--over-training", *MUJOCO_OVER_TRAINING] if budget is None else ["--budget", str(budget)]
    learn.report(learn.parse_args(["report", *files, *options, "--table", str(table)]))
    return table.read_text()


def report_rows(tmp_path: Path) -> set[str]:
    """The rows of the tables that ``benchmarks/learn.py report`` prints from the committed MuJoCo lines, at the
    default budget and at each of ``MUJOCO_BUDGETS``."""
    reports = [mujoco_report(tmp_path), *(mujoco_report(tmp_path, budget) for budget in MUJOCO_BUDGETS)]
    return {line for text in reports for line in text.splitlines() if line.startswith("| ")}


def test_the_benchmarks_doc_holds_the_whole_report(tmp_path: Path):
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    block = re.search(r"<!-- mujoco table: [^\n]*-->\n(.*?)<!-- end -->", text, re.DOTALL)
    assert block is not None, "docs/benchmarks.md has no MuJoCo report block"
    assert block.group(1).strip() == mujoco_report(tmp_path).strip()
    for budget in MUJOCO_BUDGETS:
        block = re.search(rf"<!-- mujoco table at {budget} steps: [^\n]*-->\n(.*?)<!-- end -->", text, re.DOTALL)
        assert block is not None, f"docs/benchmarks.md has no MuJoCo report block at {budget} steps"
        assert block.group(1).strip() == mujoco_report(tmp_path, budget).strip()


@pytest.mark.parametrize("doc", [ROOT / "README.md", ROOT / "docs" / "benchmarks.md"], ids=lambda path: path.name)
def test_the_results_table_is_what_the_runner_reports_from_the_committed_lines(doc: Path, tmp_path: Path):
    reported = report_rows(tmp_path)
    rows = [line for line in doc.read_text().splitlines() if re.match(r"\| (HalfCheetah|Hopper|Ant|Humanoid)-v5 \| \d", line)]
    assert rows, f"{doc.name} has no MuJoCo results table"
    for row in rows:
        assert row in reported, f"{doc.name}: {row!r} is not what benchmarks/learn.py report prints"


def test_the_multigoal_table_is_what_the_script_reports_from_the_committed_lines(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("multigoal", ROOT / "benchmarks" / "multigoal.py")
    assert spec is not None and spec.loader is not None
    multigoal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(multigoal)
    table = tmp_path / "multigoal.md"
    multigoal.report(argparse.Namespace(lines=[str(RESULTS / "multigoal_cpu.jsonl")], table=str(table), png=None))
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    marker = "<!-- multigoal table: benchmarks/multigoal.py report benchmarks/results/multigoal_cpu.jsonl -->\n"
    assert marker + table.read_text().strip() + "\n<!-- end -->" in text
    # the README's verdict: SOM's and SAC's mean goal-share entropy, as the summary rows give them
    entropy = {row.split(" | ")[0].strip("| "): row.split(" | ")[4].strip(" |") for row in table.read_text().splitlines()
               if row.startswith(("| SOM | ", "| SAC | ")) and row.count(" | ") == 4}  # fmt: skip
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"(goal-share entropy {entropy['SOM']} against {entropy['SAC']}," in readme


def test_every_results_file_is_cited_by_a_doc():
    cited = set().union(*(result_files_named(doc.read_text()) for doc in DOCS))
    orphans = sorted(path.name for path in RESULTS.iterdir() if path.name not in cited)
    assert not orphans, f"benchmarks/results/ holds files no doc cites: {orphans}"


def test_the_readme_verdicts_numbers_are_those_of_the_committed_files(tmp_path: Path):
    readme = " ".join((ROOT / "README.md").read_text().split())
    # every task SOM has reached 100,000 steps on: the report's SOM mean and SAC cell, as the verdict states them
    rows = [row for row in report_rows(tmp_path) if " | 100000 | " in row and " | - | " not in row]
    assert rows
    for row in rows:
        som_mean, sac_cell = row.split(" | ")[2].split(" ± ")[0], row.split(" | ")[3].split(" (")[0]
        assert f", {som_mean} against SAC's {sac_cell}" in readme, row
    # breadth on fixed targets: the one-step spread's range over every cell and seed, per shape
    rows = [json.loads(line) for line in (RESULTS / "breadth_by_dimension.jsonl").read_text().splitlines()]
    runs = [row for row in rows if row["kind"] == "run"]
    cells = [(shape, dim, width) for shape in ("gaussian", "laplace") for dim in (1, 3, 6, 17) for width in (0.25, 0.1, 0.05)]
    seeds = {cell: sorted(row["seed"] for row in runs if (row["shape"], row["d"], row["width"]) == cell) for cell in cells}
    seed_set = seeds[cells[0]]
    assert seed_set and all(cell_seeds == seed_set for cell_seeds in seeds.values()), seeds  # every cell, same seeds
    named = f"seeds {seed_set[0]}-{seed_set[-1]}" if len(seed_set) > 1 else f"seed {seed_set[0]} so far"
    assert f"`benchmarks/results/breadth_by_dimension.jsonl`, {named}" in readme
    ranges = []
    for shape in ("gaussian", "laplace"):
        spreads = [row["one_step_spread"] for row in runs if row["shape"] == shape]
        ranges.append(f"{min(spreads):.2f}-{max(spreads):.2f}")
    assert f"ends {ranges[0]} times as broad as a Gaussian target and {ranges[1]} times as broad as a Laplace" in readme
    gaussian_ess = [row["ess"] for row in rows if row["kind"] == "ess" and row["shape"] == "gaussian"]
    assert min(gaussian_ess) >= 12.9  # "at least 12.9 effective samples of 16 on narrow Gaussian targets"
    # speed: the ratios of the CPU speed tables
    ratios = {}
    for task in ("halfcheetah", "humanoid"):
        speed = (RESULTS / f"speed_cpu_{task}.md").read_text()
        ratios[task] = {line.split(" | ")[0].strip("| "): line.rsplit(" | ", 1)[1].strip(" |") for line in speed.splitlines()
                        if line.startswith("| predict") or line.startswith("| gradient step")}  # fmt: skip
    predict = sorted(float(value) for table in ratios.values() for name, value in table.items() if name.startswith("predict"))
    assert f"takes {predict[0]:.2f}-{predict[-1]:.2f}x SAC's time" in readme
    step = {
        task: next(v for name, v in table.items() if name.startswith("gradient step (defaults"))
        for task, table in ratios.items()
    }
    compiled = {task: next(v for name, v in table.items() if "compile_step=True" in name) for task, table in ratios.items()}
    assert (
        f"A CPU gradient step takes {step['halfcheetah']}x SAC's on HalfCheetah-v5 and {step['humanoid']}x on Humanoid-v5;"
        f" with `compile_step=True`, {compiled['halfcheetah']}x and {compiled['humanoid']}x" in readme
    )


def test_the_conditional_fit_table_is_that_of_the_committed_lines():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    pools = {"32": "latest 32", "1024": "latest 1,024", "all": "whole buffer"}
    lines = [json.loads(line) for line in (RESULTS / "conditional_fit_cpu.jsonl").read_text().splitlines()]
    assert {(line["env"], line["pool"]) for line in lines} == {(env, pool) for env in ("Humanoid-v5", "HalfCheetah-v5")
                                                               for pool in pools}  # fmt: skip
    for line in lines:
        row = (f"| {line['env']} | {pools[line['pool']]} | {line['target_spread']:.3f} | "
               f"{line['spread_before']:.3f} / {line['spread']:.3f} |")  # fmt: skip
        assert row in text, row
