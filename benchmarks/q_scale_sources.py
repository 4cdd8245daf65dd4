"""What set the Q scale in learning runs: from the ``train/`` diagnostics each evaluation line of a
``benchmarks/learn.py`` run file carries, per SOM run (file, seed, hyperparameters), the range over its
evaluations of ``q_scale / sqrt(critic_loss)`` (near 1 where the RMS TD error floors the scale) and, where
logged, of ``q_disagreement / q_scale`` and of ``q_scale`` itself.

    python benchmarks/q_scale_sources.py benchmarks/results/learn_*_100k_cpu.jsonl \\
        benchmarks/results/learn_hopper_alpha_cpu.jsonl benchmarks/results/learn_mujoco_critic_disagreement_cpu.jsonl \\
        > benchmarks/results/q_scale_sources.md
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict

COLUMNS = ("file", "task", "seed", "hyperparams", "evaluations", "q_scale / sqrt(critic_loss)", "q_disagreement / q_scale")


def span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def main() -> None:
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for path in sys.argv[1:]:
        with open(path) as lines:
            for line in lines:
                row = json.loads(line)
                if row["algo"] == "som" and "q_scale" in row.get("train", {}):
                    key = (path.rsplit("/", 1)[-1], row["env"], row["seed"], json.dumps(row["hyperparams"]))
                    runs[key].append(row["train"])
    print("| " + " | ".join((*COLUMNS, "q_scale")) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for (name, env, seed, hyperparams), logs in sorted(runs.items()):
        td_ratio = [log["q_scale"] / math.sqrt(log["critic_loss"]) for log in logs]
        disagreement = [log["q_disagreement"] / log["q_scale"] for log in logs if "q_disagreement" in log]
        cells = (
            name,
            env,
            seed,
            hyperparams,
            len(logs),
            span(td_ratio),
            span(disagreement),
            span([log["q_scale"] for log in logs]),
        )
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
