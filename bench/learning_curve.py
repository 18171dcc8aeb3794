"""Print the learning curve of a training run as markdown tables, from its ``scores.jsonl``.

    python bench/learning_curve.py runs/four_lane_cpu                # 10k-step bins
    python bench/learning_curve.py runs/four_lane_cpu --bin 5000

The first table bins the training episodes by the env step at which they ended (mean return,
length, route completion and success rate per bin); the second lists the periodic evaluations
that `cardreamer train --eval-every` wrote (actions sampled or greedy, as `model.eval_policy` says).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

TRAIN_COLUMNS = [("episode/return", "mean return", "{:.1f}"), ("episode/length", "mean length", "{:.0f}"),
                 ("episode/route_completion", "route completion", "{:.0%}"), ("episode/success", "success", "{:.0%}")]
EVAL_COLUMNS = [("eval/episodes", "episodes", "{:.0f}"), ("eval/return", "return", "{:.1f}"),
                ("eval/length", "length", "{:.0f}"), ("eval/route_completion", "route completion", "{:.0%}"),
                ("eval/collision_rate", "collisions", "{:.0%}"), ("eval/success_rate", "success", "{:.0%}")]


def read_rows(logdir: str, name: str) -> list[dict]:
    """The JSON rows of a run directory's ``name`` (scores.jsonl, metrics.jsonl); a live run's
    half-written last line is skipped."""
    path = os.path.join(logdir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no {name} (is {logdir!r} a run directory of `cardreamer train`?)")
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):  # only the last line of a live run may be half-written
                raise ValueError(f"{path}:{number}: not a JSON row") from None
    return rows


def read_scores(logdir: str) -> list[dict]:
    return [r for r in read_rows(logdir, "scores.jsonl") if "step" in r]


def _cell(rows: list[dict], key: str, fmt: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    return fmt.format(float(np.mean(values))) if values else "—"


def markdown(rows: list[dict], bin_steps: int) -> str:
    episodes = [r for r in rows if "episode/return" in r]
    evals = [r for r in rows if "eval/return" in r]
    lines = ["| env steps | episodes | " + " | ".join(name for _, name, _ in TRAIN_COLUMNS) + " |",
             "|---" * (len(TRAIN_COLUMNS) + 2) + "|"]
    last = max((r["step"] for r in episodes), default=0)
    for start in range(0, last + 1, bin_steps):
        group = [r for r in episodes if start <= r["step"] < start + bin_steps]
        if group:
            cells = " | ".join(_cell(group, key, fmt) for key, _, fmt in TRAIN_COLUMNS)
            end = min(start + bin_steps, last)
            lines.append(f"| {start / 1000:g}k–{end / 1000:g}k | {len(group)} | {cells} |")
    if evals:
        lines += ["", "| evaluation at | " + " | ".join(name for _, name, _ in EVAL_COLUMNS) + " |",
                  "|---" * (len(EVAL_COLUMNS) + 1) + "|"]
        for r in evals:
            lines.append(f"| {int(r['step']):,} | " + " | ".join(_cell([r], key, fmt) for key, _, fmt in EVAL_COLUMNS) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir")
    parser.add_argument("--bin", type=int, default=10_000, help="env steps per row of the training table")
    args = parser.parse_args()
    if args.bin <= 0:
        parser.error(f"--bin must be a positive number of env steps, got {args.bin}")
    try:
        print(markdown(read_scores(args.logdir), args.bin))
    except (FileNotFoundError, ValueError) as exc:
        print(f"learning_curve: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
